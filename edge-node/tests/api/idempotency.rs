//! `Idempotency-Key` on `POST /bookings`, with the semantics payment APIs
//! use.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestNode, assert_error, booking, decode};

async fn post_keyed(node: &TestNode, key: &str, body: &Value) -> (StatusCode, Value, bool) {
    let response = node
        .http
        .post(node.url("/bookings"))
        .bearer_auth(&node.kiosk)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let (status, body) = decode(response).await;
    (status, body, replayed)
}

#[tokio::test]
async fn the_same_key_and_body_get_the_first_answer_again() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let body = booking(&pool, 2);
    let (status, first, replayed) = post_keyed(&node, "order-1", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!replayed);
    let events = node.events().await;

    // The same JSON spelled differently is the same request.
    let respelled: Value = serde_json::from_str(&format!(
        r#"{{ "customer": {{"phone": "+49 30 1234", "name": "Ada Lovelace"}},
             "lines": [{{"quantity": 2, "pool_id": "{pool}"}}] }}"#
    ))
    .expect("json");
    for again in [&body, &respelled] {
        let (status, second, replayed) = post_keyed(&node, "order-1", again).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(replayed);
        assert_eq!(second, first);
    }
    assert_eq!(node.available(&pool).await, 8, "booked once");
    assert_eq!(node.events().await, events);
    node.stop().await;
}

#[tokio::test]
async fn a_refusal_is_remembered_under_its_key_too() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 1).await;
    let (status, first, _) = post_keyed(&node, "too-many", &booking(&pool, 2)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&first, "insufficient_capacity");
    node.post(
        &node.manager,
        &format!("/pools/{pool}/adjust"),
        json!({"delta": 5}),
    )
    .await;
    let (status, second, replayed) = post_keyed(&node, "too-many", &booking(&pool, 2)).await;
    assert_eq!((status, replayed), (StatusCode::CONFLICT, true));
    assert_eq!(second, first);
    node.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_changes_nothing() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let (status, _, _) = post_keyed(&node, "order-2", &booking(&pool, 2)).await;
    assert_eq!(status, StatusCode::CREATED);
    let events = node.events().await;
    let (status, body, _) = post_keyed(&node, "order-2", &booking(&pool, 3)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "idempotency_key_reused");
    assert_eq!(node.available(&pool).await, 8);
    assert_eq!(node.events().await, events);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_in_flight_with_the_same_key_is_409() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    // Another process holds the database's write lock, so the first request
    // waits in the writer: it is in flight for as long as we hold it.
    let blocker = rusqlite::Connection::open(node.store.path()).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let body = booking(&pool, 1);
    let first = {
        let http = node.http.clone();
        let url = node.url("/bookings");
        let token = node.kiosk.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "slow-1")
                .json(&body)
                .send()
                .await
                .expect("request");
            decode(response).await
        })
    };
    // Wait until the first request is certainly queued behind the lock.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, duplicate, _) = post_keyed(&node, "slow-1", &body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&duplicate, "idempotency_key_in_flight");

    blocker.execute_batch("ROLLBACK").expect("unlock");
    let (status, created) = first.await.expect("task");
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, replay, replayed) = post_keyed(&node, "slow-1", &body).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    assert_eq!(replay["id"], created["id"]);
    assert_eq!(node.available(&pool).await, 9);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_book_once() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 100).await;
    let body = booking(&pool, 1);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let http = node.http.clone();
            let url = node.url("/bookings");
            let token = node.kiosk.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", "burst")
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                decode(response).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            StatusCode::CREATED => {
                ids.insert(body["id"].as_str().expect("id").to_owned());
            }
            StatusCode::CONFLICT => assert_error(&body, "idempotency_key_in_flight"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same booking");
    assert_eq!(node.available(&pool).await, 99, "booked exactly once");
    node.stop().await;
}

#[tokio::test]
async fn keys_are_kept_for_at_least_24_hours() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let body = booking(&pool, 1);
    let (_, first, _) = post_keyed(&node, "day-old", &body).await;

    node.clock.advance_ms(24 * 3600 * 1000 - 60_000);
    let purged = node
        .store
        .write(edge_node::store::ops::purge_idempotency_keys)
        .await
        .expect("purge");
    assert_eq!(purged, 0);
    let (_, again, replayed) = post_keyed(&node, "day-old", &body).await;
    assert!(replayed, "a key is still honoured a minute before 24 hours");
    assert_eq!(again["id"], first["id"]);

    node.clock.advance_ms(2 * 60_000);
    let purged = node
        .store
        .write(edge_node::store::ops::purge_idempotency_keys)
        .await
        .expect("purge");
    assert_eq!(purged, 1, "and forgotten after");
    let (status, fresh, replayed) = post_keyed(&node, "day-old", &body).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    assert_ne!(fresh["id"], first["id"]);
    node.stop().await;
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let (status, body, _) = post_keyed(&node, &"k".repeat(256), &booking(&pool, 1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request");
    assert_eq!(node.available(&pool).await, 10);
    node.stop().await;
}
