//! Bookings across participants: web orders confirmed by the store itself,
//! the hub's allotment while the store is away, and expiry that converges
//! on what the customer was told.

use std::time::Duration;

use e2e::{Link, Proxy, eventually};
use serde_json::{Value, json};

use crate::world::{Store, World};

fn order(pool: &str, quantity: i64, ttl_s: i64) -> Value {
    json!({"lines": [{"pool_id": pool, "quantity": quantity}],
           "customer": {"name": "Web Customer", "email": "web@example.com"},
           "request_ttl_seconds": ttl_s})
}

/// The booking's state at a store, `None` while the store does not have it.
async fn state_at(world: &World, store: &Store, id: &str) -> Option<String> {
    let (status, body) = store.api_get(world, &format!("/bookings/{id}")).await;
    (status == 200).then(|| body["state"].as_str().unwrap_or_default().to_owned())
}

async fn hub_state(world: &World, id: &str) -> String {
    world.hub_booking(id).await["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_order_for_a_connected_store_is_confirmed_by_the_store() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;

    let (status, booking) = world.order(&order("store-1:beans", 2, 900), 5000).await;
    assert_eq!(status, 201, "{booking}");
    assert_eq!(booking["state"], "confirmed");
    assert_eq!(
        booking["decided_by"], "store-1",
        "confirmed by the store itself"
    );
    let id = booking["id"].as_str().expect("id");
    let at_store = store.booking(&world, id).await;
    assert_eq!(at_store["state"], "confirmed");
    assert_eq!(at_store["channel"], "web");
    assert_eq!(store.available(&world, "store-1:beans").await, 8);

    // More than is left is refused by the store, and says so.
    let (status, refused) = world.order(&order("store-1:beans", 9, 900), 5000).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "insufficient_capacity");
    assert_eq!(refused["booking"]["state"], "rejected");

    // A cancellation through the hub is carried out by the store.
    let (status, cancelled) = e2e::post(
        &world.http,
        &format!("{}/v1/bookings/{id}/cancel", world.hub_url()),
        &world.api_key,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(store.available(&world, "store-1:beans").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_store_away_the_hub_sells_its_allotment_and_the_rest_waits_for_the_store() {
    let mut world = World::quick();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    let (status, _) = store
        .api_post(
            &world,
            "/pools/store-1:beans/allotments",
            &json!({"to": "hub", "units": 5}),
        )
        .await;
    assert_eq!(status, 201);
    store.synced(&world, Duration::from_secs(30)).await;
    store.kill();
    eventually(
        Duration::from_secs(10),
        "the hub to take the store for gone",
        || async { (!world.reachable("store-1").await).then_some(()) },
    )
    .await;

    let mut by_hub = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..8 {
        let (status, booking) = world.order(&order("store-1:beans", 1, 900), 300).await;
        let id = booking["id"].as_str().expect("id").to_owned();
        match status {
            201 => {
                assert_eq!(booking["decided_by"], "hub", "{booking}");
                by_hub.push(id);
            }
            202 => {
                assert_eq!(booking["state"], "requested", "{booking}");
                waiting.push(id);
            }
            other => panic!("unexpected {other}: {booking}"),
        }
    }
    assert_eq!((by_hub.len(), waiting.len()), (5, 3));

    store.start(&world);
    for id in &waiting {
        eventually(
            Duration::from_secs(30),
            "the store to decide a waiting order",
            || async { (hub_state(&world, id).await == "confirmed").then_some(()) },
        )
        .await;
        assert_eq!(world.hub_booking(id).await["decided_by"], "store-1");
    }
    store.synced(&world, Duration::from_secs(30)).await;
    for id in by_hub.iter().chain(&waiting) {
        assert_eq!(
            store.booking(&world, id).await["state"],
            "confirmed",
            "the store shows {id}"
        );
    }
    // 5 sold by the hub from its allotment, 3 by the store from its own 5.
    let (_, pool) = store.api_get(&world, "/pools/store-1:beans").await;
    assert_eq!(
        (pool["used"].as_i64(), pool["available"].as_i64()),
        (Some(3), Some(2)),
        "{pool}"
    );
    let (_, pools) = world.public("/v1/pools?location=store-1").await;
    assert_eq!(pools["pools"][0]["available"], 2, "never oversold: {pools}");
    assert_eq!(pools["pools"][0]["hub_available"], 0);

    // The store's staff hand over what the hub sold.
    let (status, handed) = store
        .api_post(
            &world,
            &format!("/bookings/{}/fulfil", by_hub[0]),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{handed}");
    store.synced(&world, Duration::from_secs(30)).await;
    assert_eq!(hub_state(&world, &by_hub[0]).await, "fulfilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_owner_stays_away_ends_expired_at_the_hub_the_requester_and_the_owner() {
    let mut world = World::quick();
    world.start_hub();
    let mut owner = Store::enroll(&world, "store-1");
    let mut requester = Store::enroll(&world, "store-2");
    requester
        .env
        .push(("EDGE_NODE__SKEW_MARGIN_MS".into(), "1000".into()));
    owner.start(&world);
    requester.start(&world);
    owner.stock(&world, "store-1:beans", 10).await;
    owner.synced(&world, Duration::from_secs(30)).await;
    // The requester learns the owner's catalog through the hub.
    eventually(
        Duration::from_secs(30),
        "the catalog at the other store",
        || async {
            (requester.api_get(&world, "/pools/store-1:beans").await.0 == 200).then_some(())
        },
    )
    .await;
    owner.kill();

    // A web order and another store's request, both with two seconds to live.
    let (status, web) = world.order(&order("store-1:beans", 1, 2), 0).await;
    assert_eq!(status, 202, "{web}");
    let web = web["id"].as_str().expect("id").to_owned();
    let mut request = order("store-1:beans", 2, 2);
    request["customer"]["name"] = json!("Phone customer");
    let (status, cross) = requester.api_post(&world, "/bookings", &request).await;
    assert_eq!(status, 202, "{cross}");
    assert_eq!(cross["state"], "requested");
    let cross = cross["id"].as_str().expect("id").to_owned();

    for id in [&web, &cross] {
        eventually(
            Duration::from_secs(30),
            "the hub to record the expiry",
            || async { (hub_state(&world, id).await == "expired").then_some(()) },
        )
        .await;
    }
    assert_eq!(requester.booking(&world, &cross).await["state"], "expired");

    owner.start(&world);
    for id in [&web, &cross] {
        eventually(
            Duration::from_secs(30),
            "the owner to record the expiry",
            || async {
                (state_at(&world, &owner, id).await.as_deref() == Some("expired")).then_some(())
            },
        )
        .await;
    }
    owner.synced(&world, Duration::from_secs(30)).await;
    requester.synced(&world, Duration::from_secs(30)).await;
    for id in [&web, &cross] {
        assert_eq!(hub_state(&world, id).await, "expired");
    }
    assert_eq!(requester.booking(&world, &cross).await["state"], "expired");
    assert_eq!(
        owner.available(&world, "store-1:beans").await,
        10,
        "nothing held for the expired requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_requesters_expiry_wins_over_a_confirmation_made_just_before_the_cut() {
    let mut world = World::quick();
    world.start_hub();
    let proxy = Proxy::start(world.hub_url()).await;
    let mut store = Store::enroll_via(&world, "store-1", &proxy.url());
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;

    // The store hears the hub, but nothing it says gets through.
    proxy.set(Link::NoPush);
    let (status, booking) = world.order(&order("store-1:beans", 3, 2), 0).await;
    assert_eq!(status, 202, "{booking}");
    let id = booking["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(10), "the store to confirm", || async {
        (state_at(&world, &store, &id).await.as_deref() == Some("confirmed")).then_some(())
    })
    .await;
    assert_eq!(store.available(&world, "store-1:beans").await, 7);

    // The customer hears nothing and is told the order expired.
    eventually(Duration::from_secs(30), "the hub to give up", || async {
        (hub_state(&world, &id).await == "expired").then_some(())
    })
    .await;
    // That word reaches the store, which frees the units it had confirmed.
    eventually(
        Duration::from_secs(30),
        "the store to adopt the expiry",
        || async {
            (state_at(&world, &store, &id).await.as_deref() == Some("expired")).then_some(())
        },
    )
    .await;
    assert_eq!(store.available(&world, "store-1:beans").await, 10);

    proxy.set(Link::Open);
    store.synced(&world, Duration::from_secs(30)).await;
    assert_eq!(
        hub_state(&world, &id).await,
        "expired",
        "the late confirmation changes nothing"
    );
    let (_, pools) = world.public("/v1/pools?location=store-1").await;
    assert_eq!(pools["pools"][0]["available"], 10, "{pools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_five_minutes_off_is_flagged_and_its_holds_still_expire_on_time() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store
        .env
        .push(("EDGE_NODE_CLOCK_OFFSET_MS".into(), "300000".into()));
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(60)).await;

    let status = store.status(&world).await;
    let offset = status["clock_offset_ms"].as_i64().expect("offset");
    assert!((299_000..301_000).contains(&offset), "{status}");
    assert_eq!(status["clock_alert"], true);
    let cli = e2e::run(&world.bins.edge, store.path(), &["status", "--json"]);
    let cli: Value = serde_json::from_str(&cli).expect("json");
    assert_eq!(cli["clock_alert"], true, "{cli}");
    let (_, locations) = world.public("/v1/locations").await;
    assert_eq!(
        locations["locations"][0]["clock_alert"], true,
        "{locations}"
    );

    let (status, hold) = store
        .api_post(
            &world,
            "/bookings",
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 4}],
                    "customer": {"name": "Pickup"}, "hold_seconds": 2}),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let id = hold["id"].as_str().expect("id").to_owned();
    let placed = std::time::Instant::now();
    eventually(Duration::from_secs(10), "the hold to expire", || async {
        (state_at(&world, &store, &id).await.as_deref() == Some("expired")).then_some(())
    })
    .await;
    let took = placed.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "expired early, after {took:?}"
    );
    assert_eq!(store.available(&world, "store-1:beans").await, 10);
    store.synced(&world, Duration::from_secs(30)).await;
    assert_eq!(hub_state(&world, &id).await, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_grants_units_only_to_locations_the_hub_introduced() {
    let mut world = World::quick();
    world.start_hub();
    let mut owner = Store::enroll(&world, "store-1");
    owner.start(&world);
    owner.stock(&world, "store-1:beans", 10).await;
    let grant = |to: &str| json!({"to": to, "units": 3});
    let path = "/pools/store-1:beans/allotments";

    // Nobody else has enrolled: units given to store-2 now, or to a typo,
    // could never be sold, returned or taken back.
    let (status, body) = owner.api_post(&world, path, &grant("store-2")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("store-2")),
        "{body}"
    );
    assert_eq!(owner.available(&world, "store-1:beans").await, 10);

    // store-2 enrolls; the hub introduces each to the other.
    let mut grantee = Store::enroll(&world, "store-2");
    grantee.start(&world);
    eventually(
        Duration::from_secs(30),
        "the grant to store-2 to be accepted",
        || async {
            let (status, _) = owner.api_post(&world, path, &grant("store-2")).await;
            (status == 201).then_some(())
        },
    )
    .await;
    assert_eq!(owner.available(&world, "store-1:beans").await, 7);
    eventually(
        Duration::from_secs(30),
        "the units to reach store-2",
        || async {
            let (status, pool) = grantee.api_get(&world, "/pools/store-1:beans").await;
            (status == 200 && pool["available"] == 3).then_some(())
        },
    )
    .await;
    let (status, body) = owner.api_post(&world, path, &grant("store-9")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("known: hub, store-2")),
        "{body}"
    );
    assert_eq!(owner.available(&world, "store-1:beans").await, 7);
}

/// The manager's page gives units to and takes them back from another
/// location as well as the website, through plain form posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_gives_units_to_another_location_and_takes_them_back() {
    let mut world = World::quick();
    world.start_hub();
    let mut owner = Store::enroll(&world, "store-1");
    e2e::run(
        &world.bins.edge,
        owner.path(),
        &[
            "user", "add", "--name", "Bob", "--role", "manager", "--pin", "1357",
        ],
    );
    owner.start(&world);
    let mut grantee = Store::enroll(&world, "store-2");
    grantee.start(&world);
    owner.stock(&world, "store-1:beans", 10).await;

    let http = e2e::form_client();
    let base = owner.base();
    let cookie =
        e2e::session_cookie(&e2e::sign_in(&http, &base, "Bob", "1357").await).expect("a session");
    let page = || async {
        http.get(format!("{base}/manager"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html")
    };
    let form = |action: &'static str, body: &'static str| {
        let request = http
            .post(format!("{base}/manager/pools/store-1:beans/{action}"))
            .header("cookie", &cookie)
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move { request.send().await.expect("form").status().as_u16() }
    };
    let given_out = || async {
        let (_, pool) = owner.api_get(&world, "/pools/store-1:beans").await;
        pool["allotments"].clone()
    };
    let at_grantee = || async {
        let (status, pool) = grantee.api_get(&world, "/pools/store-1:beans").await;
        (status == 200).then(|| pool["available"].as_i64().unwrap_or_default())
    };

    eventually(
        Duration::from_secs(30),
        "store-2 to be offered on the manager's page",
        || async {
            page()
                .await
                .contains(r#"<option value="store-2">"#)
                .then_some(())
        },
    )
    .await;
    assert_eq!(form("allot", "units=3&to=store-2").await, 303);
    assert_eq!(given_out().await, json!([{"to": "store-2", "units": 3}]));
    eventually(
        Duration::from_secs(30),
        "the units to reach store-2",
        || async { (at_grantee().await == Some(3)).then_some(()) },
    )
    .await;

    assert_eq!(form("recall", "units=2&to=store-2").await, 303);
    eventually(
        Duration::from_secs(30),
        "store-2 to give 2 units back",
        || async { (given_out().await == json!([{"to": "store-2", "units": 1}])).then_some(()) },
    )
    .await;
    assert_eq!(at_grantee().await, Some(1));
    assert_eq!(owner.available(&world, "store-1:beans").await, 9);

    // Without a choice of location, units go to the website.
    assert_eq!(form("allot", "units=4").await, 303);
    assert_eq!(owner.available(&world, "store-1:beans").await, 5);
    assert!(page().await.contains("website 4, store-2 1"));
    // An unknown location is refused and changes nothing.
    assert_eq!(form("allot", "units=1&to=store-9").await, 400);
    assert_eq!(owner.available(&world, "store-1:beans").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bookings_page_says_whether_it_is_only_on_this_pc_or_at_the_hub() {
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;
    e2e::run(
        &world.bins.edge,
        store.path(),
        &[
            "user", "add", "--name", "Alice", "--role", "staff", "--pin", "2468",
        ],
    );
    let http = e2e::form_client();
    let cookie = e2e::session_cookie(&e2e::sign_in(&http, &store.base(), "Alice", "2468").await)
        .expect("session");
    let detail = |id: String| {
        let request = http
            .get(format!("{}/staff/bookings/{id}", store.base()))
            .header("cookie", &cookie);
        async move {
            request
                .send()
                .await
                .expect("detail")
                .text()
                .await
                .expect("html")
        }
    };

    // With the hub down, a walk-in is on this PC alone, and says so.
    world.kill_hub();
    let (status, made) = store
        .api_post(
            &world,
            "/bookings",
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}],
                    "customer": {"name": "Offline Walk-in"}}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    let page = detail(id.clone()).await;
    assert!(page.contains("Only on this PC so far"), "{page}");

    world.start_hub();
    store.synced(&world, Duration::from_secs(30)).await;
    let page = detail(id).await;
    assert!(page.contains("The hub has it."), "{page}");
    assert!(!page.contains("Only on this PC so far"), "{page}");
}
