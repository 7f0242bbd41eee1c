//! Ingest at one hub from several stores at once, durable on both sides:
//! `STORES` (8) stores are enrolled to one hub; with the hub down each
//! takes `BENCH_EVENTS` events (default 20,000 each); then the hub starts
//! and all of them replay at once. We time, at the hub, from the first
//! event applied to the last (all stores' events per second), and until
//! every store's backlog is 0 counted from the hub's start.
//!
//! The hub runs as its real binary (SQLite, `synchronous = FULL`, one
//! commit per pushed batch); the stores run in this process (the same
//! library the binary runs), each with its own database and sync client,
//! so the bench can see their commits. Modelled on `replication.rs`.
//!
//! `cargo bench -p e2e --bench ingest`

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bench::{add_location, cli, fill, hub_heads, seed_pool, serve_quietly};
use e2e::{env_or, free_port};
use edge_node::store::{Store, SystemClock, queries};
use serde_json::json;

const HUB: &str = env!("CARGO_BIN_EXE_e2e-sync-hub");
const EDGE: &str = env!("CARGO_BIN_EXE_e2e-edge-node");

/// Stores pushing into the hub at once.
const STORES: usize = 8;
/// Concurrent writers filling each store while the hub is down.
const FILLERS_PER_STORE: u64 = 16;
/// How often the bench looks at the hub's and the stores' progress.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// How long the replay may take before the bench gives up.
const REPLAY_LIMIT: Duration = Duration::from_secs(1_800);

/// The pool each store books into: ids are global, so each store's own.
fn pool_id(store: usize) -> String {
    format!("ingest{store}:pool")
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env_or("BENCH_EVENTS", 20_000);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let hub_dir = root.path().join("hub");
    let port = free_port();
    cli(HUB, &hub_dir, &["api-key", "create", "--name", "bench"]);
    let tokens: Vec<String> = (0..STORES)
        .map(|i| add_location(HUB, &hub_dir, &format!("ingest{i}"), &format!("Ingest {i}")))
        .collect();
    let edge_dirs: Vec<_> = (0..STORES)
        .map(|i| root.path().join(format!("edge{i}")))
        .collect();
    let hub = serve_quietly(HUB, &hub_dir, &format!("127.0.0.1:{port}"));
    let hub_url = format!("http://127.0.0.1:{port}");
    for (dir, token) in edge_dirs.iter().zip(&tokens) {
        cli(EDGE, dir, &["enroll", "--hub", &hub_url, "--token", token]);
    }
    // The stores' listeners are bound while the hub still holds its port,
    // so that none of them is given that port once the hub has let it go.
    let listeners: Vec<std::net::TcpListener> = (0..STORES)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        })
        .collect();
    drop(hub);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut stores = Vec::new();
        let mut served = Vec::new();
        let mut stops = Vec::new();
        for (i, (dir, listener)) in edge_dirs.iter().zip(listeners).enumerate() {
            let store = Store::open(dir, Arc::new(SystemClock::default())).expect("open");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            served.push(tokio::spawn(edge_node::run(
                store.clone(),
                listener,
                async move {
                    let _ = stopped.await;
                },
            )));
            stops.push(stop);
            seed_pool(&store, &pool_id(i)).await;
            stores.push(store);
        }
        let filled = Instant::now();
        let fills: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let store = store.clone();
                tokio::spawn(async move { fill(&store, events.saturating_sub(2), &pool_id(i), FILLERS_PER_STORE).await })
            })
            .collect();
        for f in fills {
            f.await.expect("fill");
        }
        let totals: Vec<u64> = stores.iter().map(|s| *s.head_seq().borrow()).collect();
        let total: u64 = totals.iter().sum();
        eprintln!(
            "{STORES} stores took {total} events in {:.1} s with the hub down",
            filled.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        let _hub = serve_quietly(HUB, &hub_dir, &format!("127.0.0.1:{port}"));
        let hub_up = started.elapsed();
        let mut first_at = None;
        loop {
            let heads = hub_heads(&hub_dir, "ingest%");
            if heads > 0 && first_at.is_none() {
                first_at = Some(started.elapsed());
            }
            if heads >= total {
                break;
            }
            assert!(started.elapsed() < REPLAY_LIMIT, "replay took too long");
            tokio::time::sleep(POLL_EVERY).await;
        }
        let all_at = started.elapsed();
        for (store, &head) in stores.iter().zip(&totals) {
            loop {
                let row = store.read(queries::sync_row).await.expect("sync row");
                if row.acked_seq >= head {
                    break;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
        let backlog_zero_at = started.elapsed();
        let first_at = first_at.unwrap_or(all_at);
        let replay = all_at
            .saturating_sub(first_at)
            .max(Duration::from_millis(1));
        for stop in stops {
            let _ = stop.send(());
        }
        for s in served {
            let _ = s.await;
        }
        let rate = total as f64 / replay.as_secs_f64();

        println!(
            "\ningest: {STORES} stores replaying at once into one hub over loopback, SQLite FULL on both sides, same disk:\n"
        );
        println!("| measurement | figure |");
        println!("|---|---|");
        println!("| stores | {STORES} |");
        println!("| events replayed (all stores) | {total} |");
        println!(
            "| hub process start to listening | {:.0} ms |",
            hub_up.as_secs_f64() * 1e3
        );
        println!(
            "| hub start to first event applied | {:.0} ms |",
            first_at.as_secs_f64() * 1e3
        );
        println!("| ingest throughput (first to last event at the hub) | {rate:.0} events/s |");
        println!(
            "| hub start to every store's backlog 0 | {:.2} s |",
            backlog_zero_at.as_secs_f64()
        );
        let machine = json!({
            "bench": "ingest",
            "stores": STORES,
            "events_per_store": totals,
            "events": total,
            "hub_up_ms": hub_up.as_secs_f64() * 1e3,
            "first_event_ms": first_at.as_secs_f64() * 1e3,
            "ingest_seconds": replay.as_secs_f64(),
            "events_per_second": rate,
            "backlog_zero_s": backlog_zero_at.as_secs_f64(),
        });
        println!("BENCH_JSON {machine}");
    });
}
