//! Web order to store decision, over loopback, both sides durable: the hub
//! and one store run as their real binaries (release build); the store is
//! connected by its long poll, as in production.
//!
//! 1. Latency: `BENCH_ORDERS` (default 1,000) orders one after another,
//!    each waiting for the store's decision (`wait_ms=5000`): p50, p99.
//! 2. Throughput: 32 concurrent website clients for `BENCH_SECONDS`
//!    (default 10): decided orders per second, with p50 and p99.
//!
//! `cargo bench -p e2e --bench web_orders`

use std::time::{Duration, Instant};

use e2e::bench::{add_location, cli, percentile_ms, seed_pool_over_api, serve_quietly};
use e2e::env_or;

use serde_json::{Value, json};

const HUB: &str = env!("CARGO_BIN_EXE_e2e-sync-hub");
const EDGE: &str = env!("CARGO_BIN_EXE_e2e-edge-node");

async fn order(http: &reqwest::Client, hub: &str, key: &str, n: u64) -> (Duration, Value) {
    let body = json!({"lines": [{"pool_id": "bench:pool", "quantity": 1}],
                      "customer": {"name": format!("Web {n}")}});
    let t = Instant::now();
    let response = http
        .post(format!("{hub}/v1/bookings?wait_ms=5000"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("order");
    let status = response.status();
    let booking: Value = response.json().await.expect("json");
    let took = t.elapsed();
    assert_eq!(status, 201, "{booking}");
    (took, booking)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let orders = env_or("BENCH_ORDERS", 1_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (hub_dir, edge_dir) = (root.path().join("hub"), root.path().join("edge"));
    cli(HUB, &hub_dir, &["init"]);
    let key = cli(HUB, &hub_dir, &["api-key", "create", "--name", "bench"]);
    let token = add_location(HUB, &hub_dir, "bench", "Bench");
    let hub = serve_quietly(HUB, &hub_dir, "127.0.0.1:0");
    cli(
        EDGE,
        &edge_dir,
        &["enroll", "--hub", &hub.base, "--token", &token],
    );
    let manager = cli(EDGE, &edge_dir, &["token", "create", "--role", "manager"]);
    let edge = serve_quietly(EDGE, &edge_dir, "127.0.0.1:0");

    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        let http = reqwest::Client::new();
        seed_pool_over_api(&http, &edge.base, &manager, "bench:pool").await;
        loop {
            let pools: Value = http
                .get(format!("{}/v1/pools?location=bench", hub.base))
                .bearer_auth(&key)
                .send()
                .await
                .expect("pools")
                .json()
                .await
                .expect("json");
            if pools["pools"].as_array().is_some_and(|p| !p.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Warm-up.
        for n in 0..20 {
            order(&http, &hub.base, &key, n).await;
        }

        let mut latencies = Vec::with_capacity(orders as usize);
        for n in 0..orders {
            let (took, booking) = order(&http, &hub.base, &key, n).await;
            assert_eq!(booking["decided_by"], "bench", "decided by the store");
            latencies.push(took);
        }
        latencies.sort();

        let started = Instant::now();
        let run_for = Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..32u64)
            .map(|c| {
                let (http, hub, key) = (http.clone(), hub.base.clone(), key.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut n = 0;
                    while started.elapsed() < run_for {
                        mine.push(order(&http, &hub, &key, c * 1_000_000 + n).await.0);
                        n += 1;
                    }
                    mine
                })
            })
            .collect();
        let mut loaded = Vec::new();
        for task in tasks {
            loaded.extend(task.await.expect("client"));
        }
        let elapsed = started.elapsed();
        loaded.sort();

        println!("\nweb order to store decision, hub and store over loopback, FULL fsync on both:\n");
        println!("| measurement | figure |");
        println!("|---|---|");
        println!(
            "| {} sequential orders, latency | p50 {:.2} ms, p99 {:.2} ms |",
            latencies.len(),
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.99)
        );
        println!(
            "| 32 concurrent clients, {} s | {:.0} decided orders/s, p50 {:.2} ms, p99 {:.2} ms |",
            seconds,
            loaded.len() as f64 / elapsed.as_secs_f64(),
            percentile_ms(&loaded, 0.5),
            percentile_ms(&loaded, 0.99)
        );
        let machine = json!({
            "bench": "web_orders",
            "sequential_orders": latencies.len(),
            "sequential_p50_ms": percentile_ms(&latencies, 0.5),
            "sequential_p99_ms": percentile_ms(&latencies, 0.99),
            "concurrent_clients": 32,
            "concurrent_orders_per_second": loaded.len() as f64 / elapsed.as_secs_f64(),
            "concurrent_p50_ms": percentile_ms(&loaded, 0.5),
            "concurrent_p99_ms": percentile_ms(&loaded, 0.99),
        });
        println!("BENCH_JSON {machine}");
    });
}
