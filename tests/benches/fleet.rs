//! A fleet on one hub process: simulated stores that enroll, sign and
//! long-poll exactly as `edge-node` does (they run its own sync client),
//! with one real store (its binary) taking the website's orders.
//!
//! The fleet grows in steps (`BENCH_FLEET`, default `1000,10000`). At each
//! step the new stores enroll 4 at a time, each pulling its inbox until it
//! has caught up and then holding a long poll, as a store does all day.
//! Once all have caught up, a window of `BENCH_WINDOW_SECONDS` (default
//! 30) measures the hub process (resident memory, threads, CPU), the polls
//! answered and failed, and web orders placed one after another, each
//! waiting for the real store's decision.
//!
//! `cargo bench -p e2e --bench fleet`

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::bench::{add_location, cli, percentile_ms, seed_pool_over_api, serve_quietly};
use e2e::env_or;
use edge_node::store::SystemClock;
use edge_node::sync::client::{self, HubClient, REQUEST_TIMEOUT};
use reqwest::Method;
use serde_json::{Value, json};
use shared::LocationId;
use shared::limits::{LONG_POLL_MAX_MS, PULL_EVENTS_MAX};
use shared::protocol::{EnrollRequest, PROTOCOL, PullResponse};
use shared::signing::SigningKey;
use tokio::sync::Semaphore;

const HUB: &str = env!("CARGO_BIN_EXE_e2e-sync-hub");
const EDGE: &str = env!("CARGO_BIN_EXE_e2e-edge-node");

/// Enrollments in flight at once: a fleet rolled out by a few scripts.
const ENROLLING_AT_ONCE: usize = 4;
/// How long a step may take for every store to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// Web orders per second during the window, one after another.
const ORDERS_PER_SECOND: u64 = 10;

/// What `/proc` says of a process: resident memory (bytes), threads, and
/// CPU time used so far (seconds).
fn process(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // /proc counts in USER_HZ, 100 on Linux whatever the kernel's tick.
    let hz = 100.0;
    // utime and stime are fields 14 and 15: 11 and 12 after the name.
    let cpu = (ticks(11) + ticks(12)) as f64 / hz;
    (field("VmRSS:") * 1024, field("Threads:"), cpu)
}

#[derive(Default)]
struct Stats {
    polls: AtomicU64,
    errors: AtomicU64,
    caught_up: AtomicU64,
    catch_up: Mutex<Vec<Duration>>,
    enrollment: Mutex<Vec<Duration>>,
}

/// One simulated store: enrolls with `token`, then pulls its inbox until it
/// is empty (caught up) and long-polls it from then on, until `stop`.
async fn store(
    base: String,
    http: reqwest::Client,
    token: String,
    stats: Arc<Stats>,
    enrolling: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let permit = enrolling.acquire_owned().await.expect("semaphore");
    let key = Arc::new(SigningKey::generate().expect("key"));
    let request = EnrollRequest {
        token,
        public_key: key.public_key_b64(),
        location: None,
        head_seq: 0,
        restore: false,
    };
    let started = Instant::now();
    let enrolled = match client::enroll(&base, &request).await {
        Ok(enrolled) => enrolled,
        Err(e) => {
            eprintln!("enrollment failed: {e}");
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let enrolled_at = Instant::now();
    stats
        .enrollment
        .lock()
        .expect("lock")
        .push(enrolled_at - started);
    drop(permit);
    let hub = HubClient::new(
        &base,
        key,
        enrolled.location,
        enrolled.hub_public_key,
        Arc::new(SystemClock::default()),
    )
    .with_http(http);
    let mut cursor = 0;
    let mut caught_up = false;
    let timeout = REQUEST_TIMEOUT + Duration::from_millis(LONG_POLL_MAX_MS);
    while !*stop.borrow() {
        let path = format!(
            "/v1/sync/pull?after={cursor}&wait_ms={LONG_POLL_MAX_MS}&backlog=0&protocol={PROTOCOL}"
        );
        let answer = tokio::select! {
            answer = hub.call::<PullResponse>(Method::GET, &path, None, timeout) => answer,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(exchange) => {
                stats.polls.fetch_add(1, Ordering::Relaxed);
                let events = exchange.value.events;
                if let Some(last) = events.last() {
                    cursor = last.hub_seq;
                }
                // A page short of full holds all there was to read.
                match events.len() {
                    n if n < PULL_EVENTS_MAX && !caught_up => {
                        caught_up = true;
                        stats
                            .catch_up
                            .lock()
                            .expect("lock")
                            .push(enrolled_at.elapsed());
                        stats.caught_up.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                if stats.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("poll failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What one measuring window saw.
struct Window {
    polls: u64,
    errors: u64,
    took: Duration,
    /// Decided web orders, sorted.
    latencies: Vec<Duration>,
    failed: u64,
    rss: u64,
    threads: u64,
    /// Of one core.
    cpu: f64,
}

impl Window {
    fn figures(&self, stores: u64) -> Value {
        json!({
            "stores": stores,
            "hub_rss_bytes": self.rss,
            "hub_threads": self.threads,
            "hub_cpu_of_one_core": self.cpu,
            "polls": self.polls,
            "poll_errors": self.errors,
            "window_s": self.took.as_secs_f64(),
            "web_orders_decided": self.latencies.len(),
            "web_orders_failed": self.failed,
            "web_order_p50_ms": percentile_ms(&self.latencies, 0.5),
            "web_order_p99_ms": percentile_ms(&self.latencies, 0.99),
        })
    }

    fn row(&self, stores: u64) -> String {
        format!(
            "| {stores} | {:.0} MB | {} | {} | {:.0} % | {} / {} ({:.0}/s) | {} / {} | {:.1} / {:.1} ms |",
            self.rss as f64 / 1e6,
            if stores == 0 {
                "-".to_owned()
            } else {
                format!("{:.0} KB", self.rss as f64 / 1e3 / stores as f64)
            },
            self.threads,
            self.cpu * 100.0,
            self.polls,
            self.errors,
            self.polls as f64 / self.took.as_secs_f64(),
            self.latencies.len(),
            self.failed,
            percentile_ms(&self.latencies, 0.5),
            percentile_ms(&self.latencies, 0.99),
        )
    }
}

async fn order(http: &reqwest::Client, hub: &str, key: &str, n: u64) -> (Duration, u16) {
    let body = json!({"lines": [{"pool_id": "bench:pool", "quantity": 1}],
                      "customer": {"name": format!("Web {n}")}});
    let t = Instant::now();
    let status = match http
        .post(format!("{hub}/v1/bookings?wait_ms=5000"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let booking: Value = response.json().await.unwrap_or_default();
            if status == 201 && booking["decided_by"] != "bench" {
                0
            } else {
                status
            }
        }
        Err(_) => 0,
    };
    (t.elapsed(), status)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let steps: Vec<u64> = std::env::var("BENCH_FLEET")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_FLEET: numbers"))
        .collect();
    let window = Duration::from_secs(env_or("BENCH_WINDOW_SECONDS", 30));
    let files = ops_kit::serve::raise_open_file_limit().expect("open file limit");
    let largest = steps.iter().copied().max().unwrap_or(0);
    assert!(
        files > largest + 256,
        "this process may open {files} files: too few for {largest} stores' connections"
    );

    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (hub_dir, edge_dir) = (root.path().join("hub"), root.path().join("edge"));
    cli(HUB, &hub_dir, &["init"]);
    let key = cli(HUB, &hub_dir, &["api-key", "create", "--name", "bench"]);
    let token = add_location(HUB, &hub_dir, "bench", "Bench");
    let hub = serve_quietly(HUB, &hub_dir, "127.0.0.1:0");
    let hub_pid = hub.pid();
    cli(
        EDGE,
        &edge_dir,
        &["enroll", "--hub", &hub.base, "--token", &token],
    );
    let manager = cli(EDGE, &edge_dir, &["token", "create", "--role", "manager"]);
    let edge = serve_quietly(EDGE, &edge_dir, "127.0.0.1:0");
    // Tokens for the simulated stores, made as `location add` makes them,
    // in this process (a command per store would only measure process
    // start-up).
    let admin = sync_hub::open(&hub_dir, sync_hub::HubSettings::default()).expect("open hub");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        seed_pool_over_api(&http, &edge.base, &manager, "bench:pool").await;
        for n in 0..20 {
            loop {
                if order(&http, &hub.base, &key, n).await.1 == 201 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        let stats = Arc::new(Stats::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let enrolling = Arc::new(Semaphore::new(ENROLLING_AT_ONCE));
        let fleet_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        let mut rows = Vec::new();
        let window_at = |stats: &Arc<Stats>| {
            let (http, base, key, stats) = (http.clone(), hub.base.clone(), key.clone(), stats.clone());
            async move {
                let polls = stats.polls.load(Ordering::Relaxed);
                let errors = stats.errors.load(Ordering::Relaxed);
                let (_, _, cpu) = process(hub_pid);
                let started = Instant::now();
                let mut latencies = Vec::new();
                let mut failed = 0;
                let mut n = 1_000_000;
                let mut tick = tokio::time::interval(Duration::from_millis(1_000 / ORDERS_PER_SECOND));
                while started.elapsed() < window {
                    tick.tick().await;
                    let (took, status) = order(&http, &base, &key, n).await;
                    n += 1;
                    if status == 201 {
                        latencies.push(took);
                    } else {
                        failed += 1;
                    }
                }
                let took = started.elapsed();
                let (rss, threads, cpu_after) = process(hub_pid);
                latencies.sort();
                Window {
                    polls: stats.polls.load(Ordering::Relaxed) - polls,
                    errors: stats.errors.load(Ordering::Relaxed) - errors,
                    took,
                    latencies,
                    failed,
                    rss,
                    threads,
                    cpu: (cpu_after - cpu) / took.as_secs_f64(),
                }
            }
        };
        let mut machine_rows = Vec::new();
        let first = window_at(&stats).await;
        rows.push(first.row(0));
        machine_rows.push(first.figures(0));

        let mut enrolled = 0;
        let mut enrollment_rows = Vec::new();
        let mut enrollment_figures = Vec::new();
        for &size in &steps {
            let new = size.saturating_sub(enrolled);
            let began = Instant::now();
            for n in enrolled..size {
                let id = LocationId::parse(&format!("s{n}")).expect("id");
                let (token, hash) = sync_hub::keys::new_secret("enroll_").expect("token");
                let now = jiff::Timestamp::now().as_millisecond();
                admin
                    .storage
                    .add_location(&id, &format!("Store {n}"), "UTC", &hash, now + 86_400_000, now)
                    .await
                    .expect("location");
                tasks.push(tokio::spawn(store(
                    hub.base.clone(),
                    fleet_http.clone(),
                    token,
                    stats.clone(),
                    enrolling.clone(),
                    stopped.clone(),
                )));
            }
            let added = began.elapsed();
            while stats.caught_up.load(Ordering::Relaxed) < size && began.elapsed() < CATCH_UP_LIMIT {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let all_in = began.elapsed();
            enrolled = size;
            let mut enrollment = stats.enrollment.lock().expect("lock").clone();
            enrollment.sort();
            let mut catch_up = stats.catch_up.lock().expect("lock").clone();
            catch_up.sort();
            enrollment_rows.push(format!(
                "| {enrolled} | {new} in {:.1} s (tokens {:.1} s) | {:.1} / {:.1} ms | {:.0} / {:.0} / {:.0} ms | {} of {size} |",
                all_in.as_secs_f64(),
                added.as_secs_f64(),
                percentile_ms(&enrollment, 0.5),
                percentile_ms(&enrollment, 0.99),
                percentile_ms(&catch_up, 0.5),
                percentile_ms(&catch_up, 0.99),
                catch_up.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                stats.caught_up.load(Ordering::Relaxed),
            ));
            enrollment_figures.push(json!({
                "stores": size,
                "enrolled_and_caught_up_s": all_in.as_secs_f64(),
                "enrollment_p50_ms": percentile_ms(&enrollment, 0.5),
                "enrollment_p99_ms": percentile_ms(&enrollment, 0.99),
                "catch_up_p50_ms": percentile_ms(&catch_up, 0.5),
                "catch_up_p99_ms": percentile_ms(&catch_up, 0.99),
                "caught_up": stats.caught_up.load(Ordering::Relaxed),
            }));
            let measured = window_at(&stats).await;
            rows.push(measured.row(size));
            machine_rows.push(measured.figures(size));
        }
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }

        println!("\nA fleet on one hub process (SQLite), simulated stores over loopback, {} s windows:\n", window.as_secs());
        println!("| stores | hub RSS | RSS per store | hub threads | hub CPU (of one core) | polls answered / errors in the window | web orders decided / failed | web order to store's decision p50 / p99 |");
        println!("|---|---|---|---|---|---|---|---|");
        for row in &rows {
            println!("{row}");
        }
        println!("\n| fleet | enrolled (and caught up) | enrollment p50 / p99 | catch-up after enrollment p50 / p99 / max | caught up |");
        println!("|---|---|---|---|---|");
        for row in &enrollment_rows {
            println!("{row}");
        }
        let machine = json!({
            "bench": "fleet",
            "window_seconds": window.as_secs_f64(),
            "windows": machine_rows,
            "enrollment": enrollment_figures,
        });
        println!("BENCH_JSON {machine}");
    });
    drop(edge);
    drop(hub);
}
