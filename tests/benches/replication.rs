//! Replication figures, in one run over loopback, durable on both sides:
//!
//! 1. Replay: a store takes `BENCH_EVENTS` events (default 100,000) while
//!    the hub is down; the hub starts; we time until the hub holds them all
//!    (events per second of the replay itself) and until the store's
//!    backlog is 0 counted from the hub's start.
//! 2. Delivery: with the store connected, the hub appends an event
//!    addressed to it (`BENCH_SAMPLES` times, default 1,000); we time from
//!    just before the hub's API call until the store has applied it
//!    (p50, p99).
//!
//! The hub runs as its real binary; the store runs in this process (the
//! same library the binary runs) so the bench can see its commits.
//!
//! `cargo bench -p e2e --bench replication`

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bench::{add_location, cli, fill, hub_heads, percentile_ms, seed_pool, serve_quietly};
use e2e::env_or;
use edge_node::store::ops;
use edge_node::store::{Store, SystemClock, queries};
use serde_json::json;

const HUB: &str = env!("CARGO_BIN_EXE_e2e-sync-hub");
const EDGE: &str = env!("CARGO_BIN_EXE_e2e-edge-node");

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env_or("BENCH_EVENTS", 100_000);
    let samples = env_or("BENCH_SAMPLES", 1_000) as usize;
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let hub_dir = root.path().join("hub");
    let edge_dir = root.path().join("edge");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    cli(HUB, &hub_dir, &["init"]);
    let api_key = cli(HUB, &hub_dir, &["api-key", "create", "--name", "bench"]);
    let token = add_location(HUB, &hub_dir, "bench", "Bench");
    let hub = serve_quietly(HUB, &hub_dir, &format!("127.0.0.1:{port}"));
    let hub_url = format!("http://127.0.0.1:{port}");
    cli(
        EDGE,
        &edge_dir,
        &["enroll", "--hub", &hub_url, "--token", &token],
    );
    drop(hub);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Store::open(&edge_dir, Arc::new(SystemClock::default())).expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(edge_node::run(store.clone(), listener, async move {
            let _ = stopped.await;
        }));
seed_pool(&store, "bench:pool").await;
        let filled = Instant::now();
        fill(&store, events.saturating_sub(2), "bench:pool", 64).await;
        let total = *store.head_seq().borrow();
        eprintln!(
            "store took {total} events in {:.1} s with the hub down",
            filled.elapsed().as_secs_f64()
        );

        // 1. Replay.
        let started = Instant::now();
        let _hub = serve_quietly(HUB, &hub_dir, &format!("127.0.0.1:{port}"));
        let hub_up = started.elapsed();
        let mut first_at = None;
        loop {
            let head = hub_heads(&hub_dir, "bench");
            if head > 0 && first_at.is_none() {
                first_at = Some(started.elapsed());
            }
            if head >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let all_at = started.elapsed();
        loop {
            let row = store.read(queries::sync_row).await.expect("sync row");
            if row.acked_seq >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let backlog_zero_at = started.elapsed();
        let first_at = first_at.unwrap_or(all_at);
        let replay = all_at
            .saturating_sub(first_at)
            .max(Duration::from_millis(1));

        // 2. Delivery latency of hub events to the connected store.
        store
            .write(|ctx| {
                ops::grant_allotment(
                    ctx,
                    &"bench:pool".parse().expect("id"),
                    &shared::ParticipantId::Hub,
                    1_000_000,
                )
            })
            .await
            .expect("grant");
        loop {
            let row = store.read(queries::sync_row).await.expect("row");
            if row.acked_seq >= *store.head_seq().borrow() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let http = reqwest::Client::new();
        let url = format!("{hub_url}/v1/pools/bench:pool/allotment/return");
        let mut head = store.head_seq();
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            head.borrow_and_update();
            let t = Instant::now();
            let status = http
                .post(&url)
                .bearer_auth(&api_key)
                .json(&json!({"units": 1}))
                .send()
                .await
                .expect("return")
                .status();
            assert_eq!(status, 200);
            tokio::time::timeout(Duration::from_secs(10), head.changed())
                .await
                .expect("delivered")
                .expect("head");
            latencies.push(t.elapsed());
        }
        latencies.sort();
        let _ = stop.send(());
        let _ = served.await;

        println!("\nreplication over loopback, SQLite FULL on both sides, same disk:\n");
        println!("| measurement | figure |");
        println!("|---|---|");
        println!("| events replayed | {total} |");
        println!(
            "| hub process start to listening | {:.0} ms |",
            hub_up.as_secs_f64() * 1e3
        );
        println!(
            "| hub start to first event applied (store's retry backoff) | {:.0} ms |",
            first_at.as_secs_f64() * 1e3
        );
        println!(
            "| replay throughput (first to last event at the hub) | {:.0} events/s |",
            total as f64 / replay.as_secs_f64()
        );
        println!(
            "| hub start to store backlog 0 | {:.2} s |",
            backlog_zero_at.as_secs_f64()
        );
        println!(
            "| hub event to store applied, {} samples | p50 {:.2} ms, p99 {:.2} ms |",
            latencies.len(),
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.99)
        );
        let machine = json!({
            "bench": "replication",
            "events": total,
            "hub_up_ms": hub_up.as_secs_f64() * 1e3,
            "first_event_ms": first_at.as_secs_f64() * 1e3,
            "replay_events_per_second": total as f64 / replay.as_secs_f64(),
            "backlog_zero_s": backlog_zero_at.as_secs_f64(),
            "delivery_p50_ms": percentile_ms(&latencies, 0.5),
            "delivery_p99_ms": percentile_ms(&latencies, 0.99),
            "delivery_samples_ms": latencies.iter().map(|l| l.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        });
        println!("BENCH_JSON {machine}");
    });
}
