//! Each store's log reaches the hub exactly once and in order, whatever
//! stops and starts.

use std::collections::HashSet;
use std::time::Duration;

use crate::world::{Store, World, assert_hub_mirrors};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_bookings_taken_offline_reach_the_hub_once_and_in_order() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    world.kill_hub();

    store.start(&world);
    store.stock(&world, "store-1:beans", 1000).await;
    let ids = store.book_many(&world, "store-1:beans", 500, 16).await;
    assert_eq!(ids.len(), 500);
    let offline = store.status(&world).await;
    assert_eq!(offline["backlog_events"], 502, "{offline}");
    assert_ne!(offline["state"], "online", "{offline}");

    world.start_hub();
    store.synced(&world, Duration::from_secs(60)).await;
    assert_hub_mirrors(&world, &store);

    // Every booking is at the hub, readable through the public API.
    let mut seen = HashSet::new();
    for id in &ids {
        let (status, booking) = world.public(&format!("/v1/bookings/{id}")).await;
        assert_eq!(status, 200, "{booking}");
        assert_eq!(booking["state"], "confirmed");
        assert!(seen.insert(id.clone()));
    }
    let (_, pools) = world.public("/v1/pools?location=store-1").await;
    assert_eq!(pools["pools"][0]["available"], 500, "{pools}");
    assert_eq!(pools["pools"][0]["stale"], false, "{pools}");
    let (_, locations) = world.public("/v1/locations").await;
    let location = &locations["locations"][0];
    assert_eq!(location["id"], "store-1");
    assert_eq!(location["backlog_events"], 0);
    assert_eq!(location["reachable"], true);
    assert!(location["clock_offset_ms"].is_i64(), "{location}");
}

/// Waits until the hub holds some but not all of `total` events, so a kill
/// lands in the middle of the replay; `false` if it finished first.
async fn mid_replay(world: &World, location: &str, total: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let head = world.hub_head(location);
        if head > 0 && head < total {
            return true;
        }
        if head >= total || tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_killed_in_the_middle_of_a_push_loses_nothing_and_applies_nothing_twice() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    world.kill_hub();
    store.start(&world);
    store.stock(&world, "store-1:beans", 100_000).await;
    store.book_many(&world, "store-1:beans", 4000, 16).await;
    let total = store.log().len() as u64;

    let mut killed_mid_push = 0;
    for _ in 0..5 {
        world.start_hub();
        if mid_replay(&world, "store-1", total).await {
            world.kill_hub();
            killed_mid_push += 1;
        } else {
            break;
        }
    }
    assert!(killed_mid_push > 0, "the hub was never caught mid-replay");
    if world.hub.is_none() {
        world.start_hub();
    }
    store.synced(&world, Duration::from_secs(60)).await;
    assert_hub_mirrors(&world, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_killed_in_the_middle_of_a_push_resumes_where_it_stopped() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    world.kill_hub();
    store.start(&world);
    store.stock(&world, "store-1:beans", 100_000).await;
    store.book_many(&world, "store-1:beans", 4000, 16).await;
    let total = store.log().len() as u64;

    world.start_hub();
    assert!(
        mid_replay(&world, "store-1", total).await,
        "the store was never caught mid-replay"
    );
    store.kill();
    let at_kill = world.hub_head("store-1");
    assert!(at_kill < total);

    store.start(&world);
    store.synced(&world, Duration::from_secs(60)).await;
    assert_hub_mirrors(&world, &store);

    // And it keeps syncing new work after the restart.
    store.book_many(&world, "store-1:beans", 10, 2).await;
    store.synced(&world, Duration::from_secs(30)).await;
    assert_hub_mirrors(&world, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standalone_store_enrolled_later_replays_its_whole_history() {
    let mut world = World::new();
    world.start_hub();
    let dir = tempfile::tempdir().expect("tempdir");
    let bins = &world.bins;
    e2e::run(
        &bins.edge,
        dir.path(),
        &[
            "init",
            "--location",
            "late-1",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    let token = e2e::last_line(&e2e::run(
        &bins.edge,
        dir.path(),
        &["token", "create", "--role", "manager"],
    ));
    let mut store = Store {
        location: "late-1".into(),
        dir,
        token,
        served: None,
        env: Vec::new(),
        args: Vec::new(),
    };
    store.start(&world);
    store.stock(&world, "late-1:beans", 50).await;
    store.book_many(&world, "late-1:beans", 20, 4).await;
    store.kill();

    let enrollment = world.add_location("late-1");
    e2e::run(
        &world.bins.edge,
        store.path(),
        &["enroll", "--hub", &world.hub_url(), "--token", &enrollment],
    );
    store.start(&world);
    store.synced(&world, Duration::from_secs(30)).await;
    assert_hub_mirrors(&world, &store);
    let epochs: Vec<i64> = {
        let conn = store.db();
        let mut stmt = conn
            .prepare("SELECT DISTINCT epoch FROM events ORDER BY epoch")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        epochs,
        vec![0],
        "history keeps the epoch it was written under"
    );
    world.kill_hub();
}
