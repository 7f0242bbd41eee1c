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
//! Each measurement runs for a fixed time; they alternate over several
//! rounds and the medians are reported with the ratio (b, 64) / (a). The
//! load generator for (b) is a minimal HTTP/1.1 client on one thread, like
//! `wrk`. For (b, 64) the bench also reports the CPU time each thread of the
//! server and of the load generator spent per booking, read from `/proc`:
//! when every core is busy, that bounds the rate.
//!
//! With `BENCH_BASELINE_BIN=PATH` (another build of `edge-node`, say one of
//! an earlier commit), (b, 64) also runs against a node served by that
//! binary in every round, and the two are reported side by side.
//!
//! `cargo bench -p edge-node --bench commit_throughput`
//! (`BENCH_SECONDS`, `BENCH_ROUNDS` and `BENCH_WARMUP_SECONDS` change the run
//! length.)

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
        // Statements prepared once, as the store's writer does.
        conn.prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut begin| begin.execute([]))
            .expect("begin");
        conn.prepare_cached(
            "INSERT INTO bookings VALUES (?1, 'bench-pool', 1, 'Bench Customer', '+49 30 1234', 'confirmed', ?2)",
        )
        .and_then(|mut insert| insert.execute(rusqlite::params![uuid_like(i), i as i64]))
        .expect("insert");
        conn.prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .expect("commit");
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

fn edge_node(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
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

fn serve(bin: &Path, dir: &Path) -> Served {
    let mut child = Command::new(bin)
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

/// `clients` keep-alive connections, each placing one booking after another
/// for `run_for`. The load generator is a minimal HTTP/1.1 client on one
/// thread, like `wrk`: a full client library costs about as much CPU per
/// request as the server does, and on a small machine it would take that
/// CPU from the server being measured.
fn api(base: &str, token: &str, clients: usize, run_for: Duration) -> Sample {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = base.strip_prefix("http://").expect("http").to_owned();
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let addr = addr.clone();
                let token = token.to_owned();
                tokio::spawn(async move {
                    let mut conn = HttpConnection::open(&addr).await;
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut body = String::with_capacity(256);
                    let mut n = 0u64;
                    let mut t = Instant::now();
                    while t - start < run_for {
                        use std::fmt::Write as _;
                        body.clear();
                        let _ = write!(
                            body,
                            r#"{{"lines":[{{"pool_id":"bench:pool","quantity":1}}],"customer":{{"name":"Bench Customer {c}-{n}","phone":"+49 30 1234"}}}}"#
                        );
                        let status = conn.post("/api/v1/bookings", &token, &body).await;
                        assert_eq!(status, 201);
                        let done = Instant::now();
                        latencies.push(done - t);
                        t = done;
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
    })
}

/// One keep-alive HTTP/1.1 connection that sends a request and reads the
/// whole response before the next.
struct HttpConnection {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl HttpConnection {
    async fn open(addr: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
        }
    }

    /// Posts a JSON body; returns the status once the response is read.
    async fn post(&mut self, path: &str, token: &str, body: &str) -> u16 {
        use std::io::Write as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.request.clear();
        let _ = write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(&self.request).await.expect("send");
        self.buf.clear();
        loop {
            if let Some((status, length)) = Self::complete(&self.buf) {
                assert_eq!(self.buf.len(), length, "one response at a time");
                // Nothing more can arrive before the next request: forget
                // the socket's readiness now, instead of learning it from
                // one more read that finds nothing.
                let _ = self.stream.try_io(tokio::io::Interest::READABLE, || {
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
                return status;
            }
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("receive");
            assert!(read > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// The status and total length of the response in `buf`, once all of
    /// it has arrived.
    fn complete(buf: &[u8]) -> Option<(u16, usize)> {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&buf[..head_end]).expect("ascii head");
        let status = head.get(9..12)?.parse().expect("status code");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().expect("length"))
            })
            .expect("responses carry a Content-Length");
        (buf.len() >= head_end + length).then_some((status, head_end + length))
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

/// CPU time used so far by each thread name of process `pid` (`self` for
/// this one), in clock ticks, from `/proc`.
fn cpu_ticks(pid: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, so split at
        // the last parenthesis; utime and stime are fields 14 and 15.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        *out.entry(name).or_default() += ticks;
    }
    out
}

/// Bytes process `pid` has sent to the storage layer so far (`write_bytes`
/// of `/proc/PID/io`, counted in whole pages as they are dirtied), if the
/// kernel reports it.
fn disk_bytes(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// Bytes written to disk per operation between two readings.
fn disk_per_op(before: Option<u64>, after: Option<u64>, ops: usize) -> f64 {
    match (before, after) {
        (Some(before), Some(after)) => after.saturating_sub(before) as f64 / ops.max(1) as f64,
        _ => f64::NAN,
    }
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU microseconds per booking, by thread, between two readings.
fn cpu_per_op(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    ops: usize,
) -> std::collections::BTreeMap<String, f64> {
    let tick_us = 1e6 / ticks_per_second();
    after
        .iter()
        .map(|(name, ticks)| {
            let used = ticks - before.get(name).copied().unwrap_or(0);
            (name.clone(), used as f64 * tick_us / ops.max(1) as f64)
        })
        .filter(|(_, us)| *us > 0.0)
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A node in `dir` served by `bin`, with one stock pool to book from, and
/// its manager token.
fn node(bin: &Path, dir: &Path, runtime: &tokio::runtime::Runtime) -> (Served, String) {
    edge_node(
        bin,
        dir,
        &["init", "--location", "bench", "--timezone", "UTC"],
    );
    let token = edge_node(bin, dir, &["token", "create", "--role", "manager"]);
    let served = serve(bin, dir);
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
    });
    (served, token)
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
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (served, token) = node(Path::new(BIN), &dir.path().join("node"), &runtime);
    // The same node served by another build, when one is given.
    let baseline = std::env::var_os("BENCH_BASELINE_BIN")
        .map(|bin| node(Path::new(&bin), &dir.path().join("baseline"), &runtime));
    // Warm up to the steady state of a store that has been open a while:
    // the WAL file grown to its working size and reused after each
    // checkpoint, caches filled. Until then every commit also extends the
    // WAL file, which a store pays once, not per booking.
    let warm_up = Duration::from_secs(env_or("BENCH_WARMUP_SECONDS", 3));
    api(&served.base, &token, 64, warm_up);
    if let Some((served, token)) = &baseline {
        api(&served.base, token, 64, warm_up);
    }

    // A second node for (c), opened in this process.
    let direct_dir = dir.path().join("direct");
    edge_node(
        Path::new(BIN),
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

    runtime.block_on(store_direct(&store, 64, warm_up));

    let mut raw = Vec::new();
    let mut one = Vec::new();
    let mut many = Vec::new();
    let mut direct = Vec::new();
    let mut before_builds = Vec::new();
    let mut server_cpu = Vec::new();
    let mut client_cpu = Vec::new();
    // Bytes written to disk per commit of (a) and per booking of (b, 64)
    // and (c): what each FULL commit waits for the disk to take.
    let (mut raw_disk, mut many_disk, mut direct_disk) = (Vec::new(), Vec::new(), Vec::new());
    let server_pid = served.child.id().to_string();
    for round in 1..=rounds {
        let before = disk_bytes("self");
        raw.push(raw_sqlite(dir.path(), run_for));
        raw_disk.push(disk_per_op(before, disk_bytes("self"), raw[round - 1].ops));
        one.push(api(&served.base, &token, 1, run_for));
        // The baseline build runs before this one in even rounds and after
        // it in odd ones, so neither always has the warmer disk.
        if round % 2 == 0
            && let Some((served, token)) = &baseline
        {
            before_builds.push(api(&served.base, token, 64, run_for));
        }
        let server_before = cpu_ticks(&server_pid);
        let client_before = cpu_ticks("self");
        let before = disk_bytes(&server_pid);
        many.push(api(&served.base, &token, 64, run_for));
        let ops = many[round - 1].ops;
        many_disk.push(disk_per_op(before, disk_bytes(&server_pid), ops));
        server_cpu.push(cpu_per_op(&server_before, &cpu_ticks(&server_pid), ops));
        client_cpu.push(cpu_per_op(&client_before, &cpu_ticks("self"), ops));
        if round % 2 == 1
            && let Some((served, token)) = &baseline
        {
            before_builds.push(api(&served.base, token, 64, run_for));
        }
        let before = disk_bytes("self");
        direct.push(runtime.block_on(store_direct(&store, 64, run_for)));
        direct_disk.push(disk_per_op(
            before,
            disk_bytes("self"),
            direct[round - 1].ops,
        ));
        eprintln!(
            "round {round}: raw {:.0}/s, api x1 {:.0}/s, api x64 {:.0}/s, store x64 {:.0}/s",
            raw[round - 1].per_second(),
            one[round - 1].per_second(),
            many[round - 1].per_second(),
            direct[round - 1].per_second()
        );
    }
    // The figures of each measurement, for `BENCH_JSON`.
    let figures = |samples: &[Sample]| {
        json!({
            "per_second_rounds": samples.iter().map(Sample::per_second).collect::<Vec<_>>(),
            "per_second": median(samples.iter().map(Sample::per_second).collect()),
            "p50_ms": median(samples.iter().map(|s| s.percentile(0.50).as_secs_f64() * 1e3).collect()),
            "p99_ms": median(samples.iter().map(|s| s.percentile(0.99).as_secs_f64() * 1e3).collect()),
        })
    };
    let machine = json!({
        "bench": "commit_throughput",
        "rounds": rounds,
        "seconds": run_for.as_secs_f64(),
        "raw_sqlite": figures(&raw),
        "api_1": figures(&one),
        "api_64": figures(&many),
        "store_64": figures(&direct),
        "api_64_baseline_build": (!before_builds.is_empty()).then(|| figures(&before_builds)),
        "sqlite_version": rusqlite::version(),
    });
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
    if !before_builds.is_empty() {
        let baseline_rate = report("(b) baseline build's edge API, 64 clients", &before_builds);
        let paired: Vec<f64> = many
            .iter()
            .zip(&before_builds)
            .map(|(this, baseline)| this.per_second() / baseline.per_second())
            .collect();
        println!(
            "\nthis build / baseline build at 64 clients: {:.3} (medians); round by round {}",
            many_rate / baseline_rate,
            paired
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Where the CPU of (b, 64 clients) goes: with every core busy, the rate
    // cannot exceed cores / (CPU per booking).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut total = 0.0;
    println!("\nCPU per booking at 64 clients (median of {rounds} rounds):\n");
    for (side, readings) in [("edge-node", &server_cpu), ("load generator", &client_cpu)] {
        let names: std::collections::BTreeSet<&String> =
            readings.iter().flat_map(|r| r.keys()).collect();
        for name in names {
            let us = median(
                readings
                    .iter()
                    .map(|r| r.get(name).copied().unwrap_or(0.0))
                    .collect(),
            );
            total += us;
            println!("- {side}, thread {name}: {us:.1} µs");
        }
    }
    println!(
        "- total {total:.1} µs: on {cores} cores at most {:.0} bookings/s",
        cores as f64 * 1e6 / total.max(1e-9)
    );
    println!(
        "\nwritten to disk (median of {rounds} rounds): (a) {:.0} B per commit; \
         (b, 64 clients) {:.0} B per booking; (c) {:.0} B per booking",
        median(raw_disk),
        median(many_disk),
        median(direct_disk)
    );
    println!(
        "\nratio (b, 64 clients) / (a) = {:.2}; (b, 1 client) / (a) = {:.2}; (c) / (a) = {:.2}",
        many_rate / raw_rate,
        one_rate / raw_rate,
        direct_rate / raw_rate
    );
    // The same ratio within each round, where (a) and (b) ran seconds apart:
    // on a shared machine whose speed drifts, the pairs are the fairer
    // comparison.
    let paired: Vec<f64> = raw
        .iter()
        .zip(&many)
        .map(|(raw, many)| many.per_second() / raw.per_second())
        .collect();
    println!(
        "(b, 64 clients) / (a) round by round: {}; median {:.2}",
        paired
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        median(paired)
    );
    println!("BENCH_JSON {machine}");
}
