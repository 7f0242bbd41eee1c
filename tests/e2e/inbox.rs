//! What the hub addresses to a store reaches it, once, while it is
//! connected; clocks are watched on every exchange.

use std::time::Duration;

use e2e::{eventually, post};
use serde_json::json;

use crate::world::{Store, World, assert_hub_mirrors};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn units_the_hub_returns_reach_the_store_once() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    let (status, granted) = store
        .api_post(
            &world,
            "/pools/store-1:beans/allotments",
            &json!({"to": "hub", "units": 4}),
        )
        .await;
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["available"], 6);
    store.synced(&world, Duration::from_secs(30)).await;
    let (_, pools) = world.public("/v1/pools?location=store-1").await;
    assert_eq!(
        pools["pools"][0]["hub_available"], 4,
        "the hub credited the grant"
    );

    // The hub gives 3 back; the connected store has them at once.
    let (status, body) = post(
        &world.http,
        &format!(
            "{}/v1/pools/store-1:beans/allotment/return",
            world.hub_url()
        ),
        &world.api_key,
        &json!({"units": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        "the returned units at the store",
        || async {
            let (_, pool) = store.api_get(&world, "/pools/store-1:beans").await;
            (pool["available"] == 9).then_some(())
        },
    )
    .await;
    let (_, pool) = store.api_get(&world, "/pools/store-1:beans").await;
    assert_eq!(pool["allotments"], json!([{"to": "hub", "units": 1}]));

    // More than the hub holds is refused.
    let (status, body) = post(
        &world.http,
        &format!(
            "{}/v1/pools/store-1:beans/allotment/return",
            world.hub_url()
        ),
        &world.api_key,
        &json!({"units": 2}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("insufficient_capacity"))
    );

    // Restarts of both sides apply nothing twice.
    store.synced(&world, Duration::from_secs(30)).await;
    store.kill();
    world.kill_hub();
    world.start_hub();
    store.start(&world);
    store.synced(&world, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, pool) = store.api_get(&world, "/pools/store-1:beans").await;
    assert_eq!(pool["available"], 9, "{pool}");
    let credited: i64 = store
        .db()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'allotment_credited'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(credited, 1);
    assert_hub_mirrors(&world, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_clock_off_by_a_minute_is_flagged_at_the_store_and_the_hub() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store
        .env
        .push(("EDGE_NODE_CLOCK_OFFSET_MS".into(), "60000".into()));
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;
    let status = store.status(&world).await;
    let offset = status["clock_offset_ms"].as_i64().expect("offset");
    assert!((59_000..61_000).contains(&offset), "{status}");
    assert_eq!(status["clock_alert"], true);
    let (_, locations) = world.public("/v1/locations").await;
    assert_eq!(
        locations["locations"][0]["clock_alert"], true,
        "{locations}"
    );
    let cli = e2e::run(&world.bins.edge, store.path(), &["status"]);
    assert!(cli.contains("ALERT"), "{cli}");
}

/// A store whose clock is further off than the freshness window has its
/// first request refused as stale; the refusal tells it the hub's time, it
/// stamps every later request in hub time, and those are accepted and
/// report its offset, which the hub shows with an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_ten_minutes_off_syncs_in_hub_time_and_the_hub_shows_its_offset() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store
        .env
        .push(("EDGE_NODE_CLOCK_OFFSET_MS".into(), "-600000".into()));
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;
    let (_, locations) = world.public("/v1/locations").await;
    let location = &locations["locations"][0];
    let offset = location["clock_offset_ms"].as_i64().expect("offset");
    assert!((-601_000..-599_000).contains(&offset), "{locations}");
    assert_eq!(location["clock_alert"], true, "{locations}");
    assert_eq!(location["reachable"], true, "{locations}");
    assert_eq!(world.hub_head("store-1"), 2, "its log reached the hub");
}

/// A store older than the hub gets every event it can read, stops before
/// the first it cannot (nothing is skipped), and says it needs an update;
/// once updated it takes in the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_older_than_the_hub_is_told_to_update_and_loses_nothing() {
    let mut world = World::quick();
    world.start_hub();
    let mut old = Store::enroll(&world, "store-1");
    old.env.push(("EDGE_NODE_SYNC_PROTOCOL".into(), "1".into()));
    old.start(&world);
    // store-2 joins: its introduction needs protocol 2; its catalog, which
    // follows it in store-1's inbox, would not.
    let mut other = Store::enroll(&world, "store-2");
    other.start(&world);
    other.stock(&world, "store-2:cups", 5).await;
    other.synced(&world, Duration::from_secs(30)).await;

    let told = eventually(
        Duration::from_secs(30),
        "the old store to say it needs an update",
        || async {
            let status = old.status(&world).await;
            status["error"]
                .as_str()
                .filter(|e| e.contains("update edge-node"))
                .map(str::to_owned)
        },
    )
    .await;
    assert!(told.contains("protocol 2"), "{told}");
    let (status, _) = old.api_get(&world, "/pools/store-2:cups").await;
    assert_eq!(status, 404, "nothing past the unreadable event");

    old.kill();
    old.env.clear();
    old.start(&world);
    eventually(
        Duration::from_secs(30),
        "the updated store to take in the rest",
        || async { (old.api_get(&world, "/pools/store-2:cups").await.0 == 200).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the update warning to clear",
        || async { old.status(&world).await["error"].is_null().then_some(()) },
    )
    .await;
    // The introduction itself arrived too: store-1 may now grant to store-2.
    old.stock(&world, "store-1:beans", 10).await;
    let (status, body) = old
        .api_post(
            &world,
            "/pools/store-1:beans/allotments",
            &json!({"to": "store-2", "units": 2}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
