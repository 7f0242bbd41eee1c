//! Commit throughput, measured side by side in one run on the same disk:
//!
//! (a) raw rusqlite, one booking-sized row per `synchronous = FULL` commit,
//!     serially: the cost of one durable commit on this disk;
//! (b) the real `edge-node` binary creating bookings over HTTP, with 1
//!     client and with 64 concurrent clients, where group commit shares each
//!     fsync among the requests that arrived during the previous one.
//!
//! (c) the store's writer alone, 64 concurrent tasks placing bookings
//!     through `Store::write` in this process: group commit without HTTP.
//!
//! Each measurement runs for a fixed time; the three alternate over several
//! rounds and the medians are reported with the ratio (b, 64) / (a).
//!
//! `cargo bench -p edge-node --bench commit_throughput`
//! (`BENCH_SECONDS` and `BENCH_ROUNDS` change the run length.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::store::ops::{self, NewBooking};
use edge_node::store::{Store, SystemClock};
use serde_json::json;
use shared::Channel;
use shared::protocol::CreateBooking;

const BIN: &str = env!("CARGO_BIN_EXE_edge-node");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
struct Sample {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
}

fn raw_sqlite(dir: &Path, run_for: Duration) -> Sample {
    let path = dir.join("raw.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE bookings (id TEXT PRIMARY KEY, pool_id TEXT NOT NULL, quantity INTEGER NOT NULL,
            customer_name TEXT NOT NULL, customer_phone TEXT, state TEXT NOT NULL, created_at_ms INTEGER NOT NULL)",
    )
    .expect("schema");
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < run_for {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        conn.execute(
            "INSERT INTO bookings VALUES (?1, 'bench-pool', 1, 'Bench Customer', '+49 30 1234', 'confirmed', ?2)",
            rusqlite::params![uuid_like(i), i as i64],
        )
        .expect("insert");
        conn.execute_batch("COMMIT").expect("commit");
        latencies.push(t.elapsed());
        i += 1;
    }
    Sample {
        ops: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn uuid_like(i: u64) -> String {
    format!("00000000-0000-7000-8000-{i:012x}")
}

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn edge_node(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run edge-node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn serve(dir: &Path) -> Served {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announces its address")
        .to_owned();
    Served { child, base }
}

async fn api(base: &str, token: &str, clients: usize, run_for: Duration) -> Sample {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let url = Arc::new(format!("{base}/api/v1/bookings"));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let http = http.clone();
            let url = url.clone();
            let token = token.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    let body = json!({
                        "lines": [{"pool_id": "bench:pool", "quantity": 1}],
                        "customer": {"name": format!("Bench Customer {c}-{n}"), "phone": "+49 30 1234"},
                    });
                    let t = Instant::now();
                    let response = http
                        .post(url.as_str())
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(response.status(), 201);
                    let _ = response.bytes().await.expect("body");
                    latencies.push(t.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    Sample {
        ops: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

/// Bookings placed straight through the store's writer by `tasks`
/// concurrent tasks.
async fn store_direct(store: &Store, tasks: usize, run_for: Duration) -> Sample {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    let request: CreateBooking = serde_json::from_value(json!({
                        "lines": [{"pool_id": "bench:pool", "quantity": 1}],
                        "customer": {"name": format!("Bench Customer {t}-{n}"), "phone": "+49 30 1234"},
                    }))
                    .expect("request");
                    let new = NewBooking {
                        request,
                        channel: Channel::Kiosk,
                    };
                    let at = Instant::now();
                    store
                        .write(move |ctx| ops::create_booking(ctx, new))
                        .await
                        .expect("booked");
                    latencies.push(at.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("task"));
    }
    Sample {
        ops: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let run_for = Duration::from_secs(env_or("BENCH_SECONDS", 5));
    let rounds = env_or("BENCH_ROUNDS", 3) as usize;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let node_dir = dir.path().join("node");
    edge_node(
        &node_dir,
        &["init", "--location", "bench", "--timezone", "UTC"],
    );
    let token = edge_node(&node_dir, &["token", "create", "--role", "manager"]);
    let served = serve(&node_dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        for (path, body) in [
            (
                "resources",
                json!({"name": "Bench", "kind": "stock", "id": "bench:pool"}),
            ),
            (
                "pools",
                json!({"resource_id": "bench:pool", "capacity": 1_000_000_000, "id": "bench:pool"}),
            ),
        ] {
            let status = http
                .post(format!("{}/api/v1/{path}", served.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("seed")
                .status();
            assert_eq!(status, 201);
        }
        // Warm up connections and caches.
        api(&served.base, &token, 64, Duration::from_millis(500)).await;
    });

    // A second node for (c), opened in this process.
    let direct_dir = dir.path().join("direct");
    edge_node(
        &direct_dir,
        &["init", "--location", "bench", "--timezone", "UTC"],
    );
    let store = Store::open(&direct_dir, Arc::new(SystemClock::default())).expect("open");
    runtime.block_on(async {
        store
            .write(|ctx| {
                ops::create_resource(
                    ctx,
                    ops::NewResource {
                        id: Some("bench:pool".parse().expect("id")),
                        name: "Bench".into(),
                        kind: shared::ResourceKind::Stock,
                    },
                )?;
                ops::create_pool(
                    ctx,
                    ops::NewPool {
                        id: Some("bench:pool".parse().expect("id")),
                        resource_id: "bench:pool".parse().expect("id"),
                        capacity: 1_000_000_000,
                        starts_at_ms: None,
                        ends_at_ms: None,
                    },
                )
            })
            .await
            .expect("seed")
    });

    let mut raw = Vec::new();
    let mut one = Vec::new();
    let mut many = Vec::new();
    let mut direct = Vec::new();
    for round in 1..=rounds {
        raw.push(raw_sqlite(dir.path(), run_for));
        one.push(runtime.block_on(api(&served.base, &token, 1, run_for)));
        many.push(runtime.block_on(api(&served.base, &token, 64, run_for)));
        direct.push(runtime.block_on(store_direct(&store, 64, run_for)));
        eprintln!(
            "round {round}: raw {:.0}/s, api x1 {:.0}/s, api x64 {:.0}/s, store x64 {:.0}/s",
            raw[round - 1].per_second(),
            one[round - 1].per_second(),
            many[round - 1].per_second(),
            direct[round - 1].per_second()
        );
    }
    let report = |name: &str, samples: &[Sample]| -> f64 {
        let rate = median(samples.iter().map(Sample::per_second).collect());
        let p50 = median(
            samples
                .iter()
                .map(|s| s.percentile(0.50).as_secs_f64() * 1e3)
                .collect(),
        );
        let p99 = median(
            samples
                .iter()
                .map(|s| s.percentile(0.99).as_secs_f64() * 1e3)
                .collect(),
        );
        println!("| {name} | {rate:.0} | {p50:.3} | {p99:.3} |");
        rate
    };
    println!(
        "\nmedians of {rounds} rounds of {}s each, same disk:\n",
        run_for.as_secs()
    );
    println!("| measurement | commits or bookings per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let raw_rate = report("(a) raw rusqlite, 1 row per FULL commit, serial", &raw);
    let one_rate = report("(b) edge API, 1 client", &one);
    let many_rate = report("(b) edge API, 64 clients", &many);
    let direct_rate = report("(c) store writer, 64 tasks, no HTTP", &direct);
    println!(
        "\nratio (b, 64 clients) / (a) = {:.2}; (b, 1 client) / (a) = {:.2}; (c) / (a) = {:.2}",
        many_rate / raw_rate,
        one_rate / raw_rate,
        direct_rate / raw_rate
    );
}
