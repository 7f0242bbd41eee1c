//! Durability: the real `edge-node` binary, loaded by concurrent clients and
//! killed with SIGKILL at many points, never loses a booking it acknowledged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{client, verify_log};

const BIN: &str = env!("CARGO_BIN_EXE_edge-node");

/// Kill points per run. Each is one start, some load, one SIGKILL and a full
/// check of the database the killed process left behind.
const KILL_POINTS: u64 = 24;
const CLIENTS: usize = 8;

fn edge_node(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run edge-node");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// A served node; dropping it kills the process.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn edge-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("edge-node announces its address");
        Self { child, base }
    }

    /// SIGKILL: no shutdown hook, no flush, nothing but what was committed.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client was told about one of its bookings.
#[derive(Debug, Clone)]
struct Expected {
    state: String,
    /// A transition sent whose answer never came: the booking may be in
    /// this state instead.
    maybe: Option<String>,
    quantity: i64,
}

/// A small deterministic generator, so a failing run can be replayed from
/// its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn client_loop(
    seed: u64,
    base: String,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    mine: Arc<Mutex<HashMap<String, Expected>>>,
) {
    let http = client();
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::SeqCst) {
        let pick = {
            let mine = mine.lock().expect("lock");
            let open: Vec<_> = mine
                .iter()
                .filter(|(_, e)| e.maybe.is_none() && (e.state == "held" || e.state == "confirmed"))
                .map(|(id, e)| (id.clone(), e.state.clone()))
                .collect();
            (rng.below(10) < 3 && !open.is_empty())
                .then(|| open[rng.below(open.len() as u64) as usize].clone())
        };
        match pick {
            None => {
                let quantity = 1 + rng.below(3) as i64;
                let mut body = json!({
                    "lines": [{"pool_id": "store-1:crash-pool", "quantity": quantity}],
                    "customer": {"name": format!("guest {}", rng.next())},
                });
                if rng.below(2) == 0 {
                    body["hold_seconds"] = json!(86_400);
                }
                let sent = http
                    .post(format!("{base}/api/v1/bookings"))
                    .bearer_auth(&token)
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != StatusCode::CREATED {
                    continue;
                }
                let Ok(made) = response.json::<Value>().await else {
                    return;
                };
                let id = made["id"].as_str().expect("id").to_owned();
                let state = made["state"].as_str().expect("state").to_owned();
                mine.lock().expect("lock").insert(
                    id,
                    Expected {
                        state,
                        maybe: None,
                        quantity,
                    },
                );
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Some((id, state)) => {
                let target = match (state.as_str(), rng.below(2)) {
                    ("held", 0) => ("confirm", "confirmed"),
                    ("confirmed", 0) => ("fulfil", "fulfilled"),
                    _ => ("cancel", "cancelled"),
                };
                if let Some(e) = mine.lock().expect("lock").get_mut(&id) {
                    e.maybe = Some(target.1.to_owned());
                }
                let sent = http
                    .post(format!("{base}/api/v1/bookings/{id}/{}", target.0))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                let status = response.status();
                let Ok(_) = response.bytes().await else {
                    return;
                };
                let mut mine = mine.lock().expect("lock");
                let e = mine.get_mut(&id).expect("known");
                if status == StatusCode::OK {
                    e.state = target.1.to_owned();
                }
                e.maybe = None;
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Checks the database a killed process left: integrity, a gap-free hash
/// chain, every acknowledged booking in its acknowledged state, and pool
/// counters that agree with the bookings. Settles uncertain states.
fn check_after_kill(db: &Path, expected: &Mutex<HashMap<String, Expected>>) {
    let conn = rusqlite::Connection::open(db).expect("open");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(integrity, "ok");
    drop(conn);
    verify_log(db);
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut expected = expected.lock().expect("lock");
    let mut consumed = 0;
    for (id, e) in expected.iter_mut() {
        let state: String = conn
            .query_row("SELECT state FROM bookings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap_or_else(|err| panic!("acknowledged booking {id} is missing: {err}"));
        let allowed = state == e.state || e.maybe.as_deref() == Some(state.as_str());
        assert!(allowed, "booking {id} is {state}, was told {e:?}");
        e.state = state;
        e.maybe = None;
        if matches!(e.state.as_str(), "held" | "confirmed" | "fulfilled") {
            consumed += e.quantity;
        }
    }
    // Bookings whose creation was committed but never acknowledged exist
    // too; the pool's counter must match all of them, acknowledged or not.
    let (used, booked): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT used FROM pools WHERE id = 'store-1:crash-pool'),
                    (SELECT coalesce(sum(l.value ->> 'quantity'), 0)
                       FROM bookings b, json_each(b.lines) l
                      WHERE b.state IN ('held', 'confirmed', 'fulfilled')
                        AND l.value ->> 'pool_id' = 'store-1:crash-pool')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counters");
    assert_eq!(used, booked, "pool counter agrees with the bookings");
    assert!(booked >= consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_any_point_loses_no_acknowledged_booking() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64);
    println!("crash test seed: {seed} (set CRASH_SEED to replay)");
    let mut rng = Rng(seed | 1);

    let dir = tempfile::tempdir().expect("tempdir");
    edge_node(
        dir.path(),
        &[
            "init",
            "--location",
            "store-1",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    let manager = edge_node(dir.path(), &["token", "create", "--role", "manager"])
        .trim()
        .to_owned();
    let db = dir.path().join(edge_node::store::DB_FILE);
    let expected: Arc<Mutex<HashMap<String, Expected>>> = Arc::default();
    let mut total_acked = 0;

    for point in 0..KILL_POINTS {
        let served = Served::start(dir.path());
        if point == 0 {
            let http = client();
            for (path, body) in [
                (
                    "resources",
                    json!({"name": "Crash", "kind": "stock", "id": "store-1:crash-pool"}),
                ),
                (
                    "pools",
                    json!({"resource_id": "store-1:crash-pool", "capacity": 1_000_000, "id": "store-1:crash-pool"}),
                ),
            ] {
                let status = http
                    .post(format!("{}/api/v1/{path}", served.base))
                    .bearer_auth(&manager)
                    .json(&body)
                    .send()
                    .await
                    .expect("seed")
                    .status();
                assert_eq!(status, StatusCode::CREATED);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client_loop(
                    rng.next(),
                    served.base.clone(),
                    manager.clone(),
                    stop.clone(),
                    acked.clone(),
                    expected.clone(),
                ))
            })
            .collect();
        // Kill once this many answers came back: from almost at once to
        // well into the load.
        let kill_after = 1 + rng.below(150) as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::SeqCst) < kill_after && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        served.kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.await.expect("client");
        }
        let acked = acked.load(Ordering::SeqCst);
        assert!(
            acked >= kill_after,
            "point {point}: only {acked} answers before the deadline"
        );
        total_acked += acked;
        check_after_kill(&db, &expected);
    }
    let bookings = expected.lock().expect("lock").len();
    println!(
        "{KILL_POINTS} kill points, {total_acked} acknowledged answers, {bookings} bookings verified"
    );
    assert!(bookings > KILL_POINTS as usize);

    // Restarted once more, the node serves every acknowledged booking in
    // the state the database holds.
    let served = Served::start(dir.path());
    let http = client();
    let expected = expected.lock().expect("lock").clone();
    for (id, e) in &expected {
        let booking: Value = http
            .get(format!("{}/api/v1/bookings/{id}", served.base))
            .bearer_auth(&manager)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(booking["state"], e.state.as_str(), "{id}");
    }
    served.kill();
}
