//! Pending holds expire at their time and free their units.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestNode, assert_error, booking};

/// Polls `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hold_that_is_not_confirmed_expires_and_frees_its_units() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("pickup", 5).await;
    let mut unconfirmed = booking(&pool, 2);
    unconfirmed["hold_seconds"] = json!(1);
    let (status, hold) = node.post(&node.kiosk, "/bookings", unconfirmed).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(hold["state"], "held");
    assert_eq!(node.available(&pool).await, 3);

    let mut kept = booking(&pool, 1);
    kept["hold_seconds"] = json!(1);
    let (_, kept) = node.post(&node.kiosk, "/bookings", kept).await;
    let kept_id = kept["id"].as_str().expect("id");
    let (status, confirmed) = node
        .post(
            &node.staff,
            &format!("/bookings/{kept_id}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(confirmed["state"], "confirmed");

    let expires_at: jiff::Timestamp = hold["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("ts");
    let id = hold["id"].as_str().expect("id").to_owned();
    // The sweeper promises expiry within one second of expires_at.
    let expired = eventually(Duration::from_secs(10), || async {
        node.get(&node.staff, &format!("/bookings/{id}")).await.1["state"] == "expired"
    })
    .await;
    assert!(expired, "the hold never expired");
    let (_, after) = node.get(&node.staff, &format!("/bookings/{id}")).await;
    let updated_at: jiff::Timestamp = after["updated_at"]
        .as_str()
        .expect("ts")
        .parse()
        .expect("ts");
    let late = updated_at.duration_since(expires_at);
    assert!(
        late < jiff::SignedDuration::from_secs(1) && !late.is_negative(),
        "expired {late:?} after its time"
    );
    assert_eq!(node.available(&pool).await, 4, "2 freed, 1 still confirmed");

    let (_, kept_now) = node.get(&node.staff, &format!("/bookings/{kept_id}")).await;
    assert_eq!(
        kept_now["state"], "confirmed",
        "a confirmed hold does not expire"
    );

    let (status, body) = node
        .post(&node.staff, &format!("/bookings/{id}/confirm"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an expired hold cannot be confirmed"
    );
    assert_error(&body, "invalid_state");
    node.stop().await;
}

#[tokio::test]
async fn a_hold_past_its_time_cannot_be_confirmed_even_before_the_sweeper_runs() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("pickup", 5).await;
    let mut hold = booking(&pool, 1);
    hold["hold_seconds"] = json!(600);
    let (_, hold) = node.post(&node.kiosk, "/bookings", hold).await;
    let id = hold["id"].as_str().expect("id");
    // Jump past expiry; the confirm below may reach the writer first.
    node.clock.advance_ms(601_000);
    let (status, body) = node
        .post(&node.staff, &format!("/bookings/{id}/confirm"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let expired = eventually(Duration::from_secs(5), || async {
        node.get(&node.staff, &format!("/bookings/{id}")).await.1["state"] == "expired"
    })
    .await;
    assert!(expired);
    assert_eq!(node.available(&pool).await, 5);
    node.stop().await;
}
