//! The local booking lifecycle and the no-oversell guarantee under load.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestNode, assert_error, booking, verify_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_bookings_against_fifty_units_sell_exactly_fifty() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("espresso", 50).await;
    let events_before = node.events().await;

    let requests = (0..200).map(|i| {
        let http = node.http.clone();
        let url = node.url("/bookings");
        let token = node.kiosk.clone();
        let mut body = booking(&pool, 1);
        body["customer"]["name"] = json!(format!("customer {i}"));
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("request");
            crate::helpers::decode(response).await
        })
    });
    let mut created = 0;
    let mut refused = 0;
    for request in requests.collect::<Vec<_>>() {
        let (status, body) = request.await.expect("task");
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["state"], "confirmed");
                created += 1;
            }
            StatusCode::CONFLICT => {
                assert_error(&body, "insufficient_capacity");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (50, 150));
    let pool_view = node.pool(&pool).await;
    assert_eq!(pool_view["available"], 0);
    assert_eq!(pool_view["used"], 50);

    // Refused requests left nothing behind: one event per booking made.
    assert_eq!(node.events().await, events_before + 50);
    let (_, list) = node.get(&node.staff, "/bookings?state=confirmed").await;
    assert_eq!(list["bookings"].as_array().expect("list").len(), 50);
    assert_eq!(verify_log(node.store.path()), events_before + 50);
    node.stop().await;
}

#[tokio::test]
async fn staff_confirm_cancel_and_fulfil_and_units_follow_the_state() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("loaves", 10).await;

    let mut held = booking(&pool, 3);
    held["hold_seconds"] = json!(3600);
    let (status, hold) = node.post(&node.kiosk, "/bookings", held).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(hold["state"], "held");
    assert!(hold["expires_at"].is_string());
    assert_eq!(hold["code"].as_str().map(str::len), Some(6));
    assert_eq!(hold["channel"], "kiosk");
    assert_eq!(node.available(&pool).await, 7);

    let id = hold["id"].as_str().expect("id");
    let (status, confirmed) = node
        .post(&node.staff, &format!("/bookings/{id}/confirm"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["state"], "confirmed");

    let (status, fulfilled) = node
        .post(&node.staff, &format!("/bookings/{id}/fulfil"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fulfilled["state"], "fulfilled");
    assert_eq!(node.available(&pool).await, 7, "fulfilled units stay sold");

    let (status, body) = node
        .post(&node.staff, &format!("/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "invalid_state");

    let (_, other) = node.post(&node.staff, "/bookings", booking(&pool, 4)).await;
    assert_eq!(other["state"], "confirmed");
    assert_eq!(node.available(&pool).await, 3);
    let other_id = other["id"].as_str().expect("id");
    let (status, cancelled) = node
        .post(
            &node.staff,
            &format!("/bookings/{other_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(node.available(&pool).await, 7, "cancelled units come back");

    let (status, fetched) = node.get(&node.kiosk, &format!("/bookings/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["state"], "fulfilled");
    assert_eq!(fetched["lines"][0]["quantity"], 3);
    node.stop().await;
}

#[tokio::test]
async fn slot_pools_take_utc_times_and_refuse_bookings_once_ended() {
    let node = TestNode::start().await;
    let (status, _) = node
        .post(
            &node.manager,
            "/resources",
            json!({"name": "Table for four", "kind": "slot", "id": "store-1:table-4"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, slot) = node
        .post(
            &node.manager,
            "/pools",
            json!({"resource_id": "store-1:table-4", "capacity": 2,
                   "starts_at": "2099-03-29T17:00:00Z", "ends_at": "2099-03-29T21:00:00+02:00"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{slot}");
    assert_eq!(slot["starts_at"], "2099-03-29T17:00:00Z");
    assert_eq!(
        slot["ends_at"], "2099-03-29T19:00:00Z",
        "stored and shown in UTC"
    );
    let (status, _) = node
        .post(
            &node.kiosk,
            "/bookings",
            booking(slot["id"].as_str().expect("id"), 2),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, past) = node
        .post(
            &node.manager,
            "/pools",
            json!({"resource_id": "store-1:table-4", "capacity": 2,
                   "starts_at": "2020-01-01T17:00:00Z", "ends_at": "2020-01-01T19:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = node
        .post(
            &node.kiosk,
            "/bookings",
            booking(past["id"].as_str().expect("id"), 1),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");

    let (_, list) = node
        .get(
            &node.kiosk,
            "/pools?resource_id=store-1:table-4&from=2099-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(list["pools"].as_array().map(Vec::len), Some(1), "{list}");
    node.stop().await;
}

#[tokio::test]
async fn a_stock_decrease_below_what_is_booked_is_shown_as_overbooked() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("cakes", 5).await;
    let (status, _) = node.post(&node.kiosk, "/bookings", booking(&pool, 4)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, adjusted) = node
        .post(
            &node.manager,
            &format!("/pools/{pool}/adjust"),
            json!({"delta": -2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{adjusted}");
    assert_eq!(adjusted["capacity"], 3);
    assert_eq!(adjusted["available"], -1);
    assert_eq!(adjusted["overbooked"], true);
    let (status, body) = node.post(&node.kiosk, "/bookings", booking(&pool, 1)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "insufficient_capacity");

    let (status, restocked) = node
        .post(
            &node.manager,
            &format!("/pools/{pool}/adjust"),
            json!({"delta": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(restocked["available"], 9);
    assert_eq!(restocked["overbooked"], false);
    node.stop().await;
}

#[tokio::test]
async fn an_allotment_debits_the_owner_at_once() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("mugs", 10).await;
    let (status, granted) = node
        .post(
            &node.manager,
            &format!("/pools/{pool}/allotments"),
            json!({"to": "hub", "units": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    assert_eq!(granted["available"], 6);
    assert_eq!(granted["allotments"], json!([{"to": "hub", "units": 4}]));

    let (status, body) = node
        .post(
            &node.manager,
            &format!("/pools/{pool}/allotments"),
            json!({"to": "hub", "units": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "insufficient_capacity");

    let (status, body) = node.post(&node.kiosk, "/bookings", booking(&pool, 7)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the hub's units are not ours to sell"
    );
    assert_error(&body, "insufficient_capacity");
    node.stop().await;
}
