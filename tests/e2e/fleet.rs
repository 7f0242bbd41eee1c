//! Several hub processes serving one fleet from one PostgreSQL database:
//! a push two processes receive at once is applied once, a web order
//! taken by one process is decided by a store whose long poll another
//! holds, a process killed mid-push loses nothing, and a process with
//! another key refuses to start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::postgres::TempPostgres;
use e2e::{Link, Proxy, run_failing};
use serde_json::json;

use crate::protocol::{Device, Twist};
use crate::world::{Store, World, assert_hub_mirrors, hub_log};

/// A world of two hub processes on a fresh database of the shared cluster.
fn two_processes(pg: &Arc<TempPostgres>, database: &str) -> World {
    let url = pg.create_database(database).expect("create a database");
    let mut world = World::on(Some(url));
    world.start_hub();
    world.add_peers(1);
    world.start_process(1);
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_two_processes_receive_at_once_is_applied_once() {
    let pg = TempPostgres::shared().expect("start PostgreSQL");
    let world = two_processes(&pg, "same_push");
    let device = Device::enroll(&world, "twice").await;
    // Event ids are random: one log, its last event kept for the end.
    let log = device.log(61, 0);
    let (log, last) = log.split_at(60);
    let to = |i: usize| Twist {
        to: Some(world.process_url(i)),
        ..Twist::default()
    };
    for chunk in log.chunks(5) {
        // The same batch, each request signed afresh, to both at once.
        let (a, b) = tokio::join!(
            device.push(&world, chunk, to(0), &[]),
            device.push(&world, chunk, to(1), &[])
        );
        assert_eq!((a.0, b.0), (200, 200), "{} / {}", a.1, b.1);
    }
    let held = hub_log(&world, "twice");
    assert_eq!(held.len(), 60, "every event once");
    for (i, ((seq, hash), event)) in held.iter().zip(log).enumerate() {
        assert_eq!(*seq, i as i64 + 1);
        assert_eq!(hash, &event.hash().to_string());
    }
    assert_eq!(world.hub_head("twice"), 60);

    // The very same request (one nonce) to both: one is a replay.
    let nonce = shared::signing::nonce().expect("nonce");
    let same = |i: usize| Twist {
        to: Some(world.process_url(i)),
        nonce: Some(nonce.clone()),
        ..Twist::default()
    };
    let (a, b) = tokio::join!(
        device.push(&world, last, same(0), &[]),
        device.push(&world, last, same(1), &[])
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses[0], 200, "{} / {}", a.1, b.1);
    assert!(
        (400..500).contains(&statuses[1]),
        "the second use of a nonce is refused: {} / {}",
        a.1,
        b.1
    );
    assert_eq!(world.hub_head("twice"), 61);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_order_through_one_process_is_decided_by_a_store_on_another() {
    let pg = TempPostgres::shared().expect("start PostgreSQL");
    let world = two_processes(&pg, "web_order");
    // The store's long poll is held by the second process.
    let mut store = Store::enroll_via(&world, "shop", &world.process_url(1));
    store.start(&world);
    store.stock(&world, "shop:mugs", 5).await;
    store.synced(&world, Duration::from_secs(30)).await;
    // On one machine the store reads the hub's clock as its own: the
    // offset comes from short exchanges, not a long poll's midpoint.
    let status = store.status(&world).await;
    let offset = status["clock_offset_ms"].as_i64().expect("an offset");
    assert!(offset.abs() <= 50, "one machine, about 0: {status}");

    let mut latencies = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        // Through the first process.
        let (status, body) = world
            .order(
                &json!({"lines": [{"pool_id": "shop:mugs", "quantity": 1}],
                        "customer": {"name": format!("guest {i}")},
                        "hold_seconds": 600}),
                5_000,
            )
            .await;
        let took = started.elapsed();
        assert_eq!(status, 201, "decided within wait_ms: {body}");
        assert_eq!(body["state"], "held", "{body}");
        assert_eq!(body["decided_by"], "shop", "{body}");
        latencies.push(took);
    }
    latencies.sort();
    println!(
        "web order via process A, decided by the store on B: median {:?}",
        latencies[2]
    );
    assert!(
        latencies[2] < Duration::from_secs(2),
        "a decision crosses processes in well under wait_ms: {latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_process_killed_mid_push_loses_nothing_and_the_store_goes_on_with_the_other() {
    let pg = TempPostgres::shared().expect("start PostgreSQL");
    let mut world = two_processes(&pg, "killed_mid_push");
    let proxy = Proxy::start(world.process_url(0)).await;
    let mut store = Store::enroll_via(&world, "busy", &proxy.url());
    store.start(&world);
    store.stock(&world, "busy:tea", 100_000).await;
    store.synced(&world, Duration::from_secs(30)).await;

    // A backlog while cut off, then the link opens and the first process
    // dies while the backlog streams in.
    proxy.set(Link::Cut);
    store.book_many(&world, "busy:tea", 6_000, 16).await;
    let total = store.log().len() as u64;
    let before = world.hub_head("busy");
    proxy.set(Link::Open);
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_kill = loop {
        let head = world.hub_head("busy");
        if head > before {
            break head;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never started to arrive"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    world.kill_process(0);
    proxy.set_upstream(world.process_url(1));
    println!("killed the first process at {at_kill} of {total} events");
    assert!(at_kill < total, "killed before the backlog was all in");

    store.synced(&world, Duration::from_secs(60)).await;
    assert_eq!(world.hub_head("busy"), total);
    assert_hub_mirrors(&world, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_process_with_another_key_refuses_to_start() {
    let pg = TempPostgres::shared().expect("start PostgreSQL");
    let url = pg.create_database("other_key").expect("create a database");
    let mut world = World::on(Some(url.clone()));
    world.start_hub();
    // A data directory of its own, so a key of its own.
    let stranger = tempfile::tempdir().expect("tempdir");
    let said = run_failing(
        &world.bins.hub,
        stranger.path(),
        &["--database-url", &url, "serve", "--listen", "127.0.0.1:0"],
    );
    assert!(said.contains("another key"), "{said}");
    assert!(
        said.contains("hub.key"),
        "the message says what to copy: {said}"
    );
    // The first process serves on.
    let (status, _) = world.public("/v1/locations").await;
    assert_eq!(status, 200);
}
