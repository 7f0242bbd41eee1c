//! Bearer tokens and what each role may do.

use edge_node::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestNode, assert_error, booking, token};

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let node = TestNode::start().await;
    let response = node
        .http
        .get(node.url("/pools"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = node.get("edge_not-a-real-token", "/pools").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let response = node
        .http
        .get(node.url("/pools"))
        .header("Authorization", format!("Basic {}", node.manager))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test]
async fn each_role_may_do_what_the_one_before_may_and_a_little_more() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;

    // Kiosk: read availability and book, nothing else.
    assert_eq!(
        node.get(&node.kiosk, &format!("/pools/{pool}")).await.0,
        StatusCode::OK
    );
    let (status, made) = node.post(&node.kiosk, "/bookings", booking(&pool, 1)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = made["id"].as_str().expect("id");
    let (status, body) = node
        .post(&node.kiosk, &format!("/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden");
    assert_eq!(
        node.get(&node.kiosk, "/bookings").await.0,
        StatusCode::FORBIDDEN
    );

    // Staff: also confirm, cancel, fulfil; not the catalog.
    let (status, _) = node
        .post(&node.staff, &format!("/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for (path, body) in [
        (
            "/resources".to_owned(),
            json!({"name": "x", "kind": "stock"}),
        ),
        (format!("/pools/{pool}/adjust"), json!({"delta": 1})),
        (
            format!("/pools/{pool}/allotments"),
            json!({"to": "hub", "units": 1}),
        ),
    ] {
        let (status, reply) = node.post(&node.staff, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {reply}");
    }
    assert_eq!(node.available(&pool).await, 10, "refusals changed nothing");

    // Manager: all of it.
    let (status, _) = node
        .post(
            &node.manager,
            &format!("/pools/{pool}/adjust"),
            json!({"delta": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn a_token_made_while_the_server_runs_works_at_once() {
    let node = TestNode::start().await;
    let fresh = token(node.dir.path(), Role::Staff);
    let (status, _) = node.get(&fresh, "/bookings").await;
    assert_eq!(status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let node = TestNode::start().await;
    let conn = rusqlite::Connection::open(node.store.path()).expect("open");
    let mut stmt = conn
        .prepare("SELECT token_hash FROM api_tokens")
        .expect("prepare");
    let stored: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(stored.len(), 3);
    for secret in [&node.kiosk, &node.staff, &node.manager] {
        assert!(!stored.contains(secret));
        assert!(stored.contains(&edge_node::auth::hash_token(secret)));
    }
    node.stop().await;
}
