//! Bad input gets the JSON error shape with the right status and changes
//! nothing; no input makes the server panic or answer 500.

use std::sync::Arc;

use axum::body::Body;
use edge_node::auth::Role;
use edge_node::state::AppState;
use edge_node::store::{Store, SystemClock};
use http_body_util::BodyExt;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{TestNode, assert_error, booking, init_dir, token};

async fn post_raw(
    node: &TestNode,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let response = node
        .http
        .post(node.url(path))
        .bearer_auth(&node.manager)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    crate::helpers::decode(response).await
}

#[tokio::test]
async fn every_kind_of_bad_booking_is_refused_with_its_status_and_changes_nothing() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let events = node.events().await;

    let many_lines: Vec<Value> = (0..101)
        .map(|i| json!({"pool_id": format!("p{i}"), "quantity": 1}))
        .collect();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("malformed JSON", "{\"lines\": [".into(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("not JSON at all", "lines=1".into(), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "trailing characters after the object",
            format!("{} x", json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A"}})),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "an array instead of an object",
            "[1, 2]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "malformed after an unknown field",
            "{\"bogus\": 1".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "a field given twice",
            format!(
                r#"{{"lines": [{{"pool_id": "{pool}", "quantity": 1}}], "customer": {{"name": "A"}}, "customer": {{"name": "B"}}}}"#
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("empty body", String::new(), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "unknown field",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A"}, "discount": 5}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown field in a line",
            json!({"lines": [{"pool_id": pool, "quantity": 1, "price": 3}], "customer": {"name": "A"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "wrong type",
            json!({"lines": [{"pool_id": pool, "quantity": "two"}], "customer": {"name": "A"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "fractional quantity",
            json!({"lines": [{"pool_id": pool, "quantity": 1.5}], "customer": {"name": "A"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing customer",
            json!({"lines": [{"pool_id": pool, "quantity": 1}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("zero quantity", booking(&pool, 0).to_string(), StatusCode::BAD_REQUEST, "invalid_request"),
        ("negative quantity", booking(&pool, -4).to_string(), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "more than 100 lines",
            json!({"lines": many_lines, "customer": {"name": "A"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "no lines",
            json!({"lines": [], "customer": {"name": "A"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown pool",
            booking("no-such-pool", 1).to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "malformed pool id",
            booking("no such pool", 1).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "customer name over its limit",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "n".repeat(201)}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a NUL, an escape and a direction override in a name",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "Mal\u{0}lo\u{1b}[31mry\u{202E}"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a newline in a phone number",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A", "phone": "030\n123"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "phone over its limit",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A", "phone": "1".repeat(41)}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "zero hold",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A"}, "hold_seconds": 0}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "oversized body",
            json!({"lines": [{"pool_id": pool, "quantity": 1}], "customer": {"name": "A", "email": "x".repeat(70_000)}}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, reply) = post_raw(&node, "/bookings", body.clone()).await;
        assert_eq!(got, status, "{what}: {reply}");
        assert_error(&reply, code);
        // The same answer when the request carries an Idempotency-Key.
        let keyed = node
            .http
            .post(node.url("/bookings"))
            .bearer_auth(&node.kiosk)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("bad-{what}"))
            .body(body)
            .send()
            .await
            .expect("request");
        let (got, reply) = crate::helpers::decode(keyed).await;
        assert_eq!(got, status, "{what}, with a key: {reply}");
        assert_error(&reply, code);
    }
    assert_eq!(node.available(&pool).await, 10);
    assert_eq!(node.events().await, events, "nothing was written");
    node.stop().await;
}

#[tokio::test]
async fn bad_catalog_input_is_refused_and_changes_nothing() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let events = node.events().await;
    let cases: Vec<(&str, String, Value, StatusCode)> = vec![
        (
            "resource name over its limit",
            "/resources".into(),
            json!({"name": "r".repeat(201), "kind": "stock"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty resource name",
            "/resources".into(),
            json!({"name": " ", "kind": "stock"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown kind",
            "/resources".into(),
            json!({"name": "x", "kind": "vibes"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad resource id",
            "/resources".into(),
            json!({"name": "x", "kind": "stock", "id": "a b"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "resource id outside this location's namespace",
            "/resources".into(),
            json!({"name": "x", "kind": "stock", "id": "cups"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "resource id in another location's namespace",
            "/resources".into(),
            json!({"name": "x", "kind": "stock", "id": "store-2:cups"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "pool id outside this location's namespace",
            "/pools".into(),
            json!({"resource_id": "store-1:beans", "capacity": 1, "id": "beans-2"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicate resource",
            "/resources".into(),
            json!({"name": "x", "kind": "stock", "id": "store-1:beans"}),
            StatusCode::CONFLICT,
        ),
        (
            "pool of an unknown resource",
            "/pools".into(),
            json!({"resource_id": "nope", "capacity": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            "negative capacity",
            "/pools".into(),
            json!({"resource_id": "store-1:beans", "capacity": -1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "second pool of a stock item",
            "/pools".into(),
            json!({"resource_id": "store-1:beans", "capacity": 1}),
            StatusCode::CONFLICT,
        ),
        (
            "times on a stock pool",
            "/pools".into(),
            json!({"resource_id": "store-1:beans", "capacity": 1, "starts_at": "2099-01-01T00:00:00Z", "ends_at": "2099-01-01T01:00:00Z"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "time without a zone",
            "/pools".into(),
            json!({"resource_id": "store-1:beans", "capacity": 1, "starts_at": "2099-01-01T00:00:00"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "zero delta",
            format!("/pools/{pool}/adjust"),
            json!({"delta": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "delta below zero stock",
            format!("/pools/{pool}/adjust"),
            json!({"delta": -11}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "adjust an unknown pool",
            "/pools/nope/adjust".into(),
            json!({"delta": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            "zero units",
            format!("/pools/{pool}/allotments"),
            json!({"to": "hub", "units": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "allot to oneself",
            format!("/pools/{pool}/allotments"),
            json!({"to": "store-1", "units": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "allot to a bad id",
            format!("/pools/{pool}/allotments"),
            json!({"to": "Not A Store", "units": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, path, body, status) in cases {
        let (got, reply) = node.post(&node.manager, &path, body).await;
        assert_eq!(got, status, "{what}: {reply}");
        assert!(reply["error"]["code"].is_string(), "{what}: {reply}");
    }
    assert_eq!(node.available(&pool).await, 10);
    assert_eq!(node.events().await, events, "nothing was written");
    node.stop().await;
}

#[tokio::test]
async fn a_json_body_sent_as_text_or_as_a_form_is_refused_with_415_and_changes_nothing() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 10).await;
    let events = node.events().await;
    let order = booking(&pool, 1).to_string();
    let resource = json!({"name": "Mugs", "kind": "stock"}).to_string();
    let send = |path: &'static str, body: String, content_type: Option<&'static str>| {
        let mut request = node
            .http
            .post(node.url(path))
            .bearer_auth(&node.manager)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { crate::helpers::decode(request.send().await.expect("request")).await }
    };
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/json"),
        Some("application/jsonp"),
    ] {
        for (path, body) in [("/bookings", &order), ("/resources", &resource)] {
            let (status, reply) = send(path, body.clone(), content_type).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} as {content_type:?}: {reply}"
            );
            assert_error(&reply, "unsupported_media_type");
        }
    }
    assert_eq!(node.available(&pool).await, 10);
    assert_eq!(node.events().await, events, "nothing was written");

    // JSON with parameters, in any case, is JSON.
    let (status, reply) = send(
        "/bookings",
        order.clone(),
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, reply) = send("/resources", resource, Some("Application/JSON")).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    node.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_and_routes_get_json_errors() {
    let node = TestNode::start().await;
    let unknown = "01a20573-4fb7-77e9-94b3-c08b90fba463";
    let (status, body) = node.get(&node.staff, &format!("/bookings/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = node
        .post(
            &node.staff,
            &format!("/bookings/{unknown}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = node.get(&node.staff, "/bookings/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request");
    let (status, body) = node.get(&node.staff, "/pools/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = node.get(&node.staff, "/bookings?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request");
    let (status, body) = node.get(&node.staff, "/bookings?limit=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_request");
    let (status, body) = node.get(&node.staff, "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let response = node
        .http
        .delete(node.url("/bookings"))
        .bearer_auth(&node.manager)
        .send()
        .await
        .expect("request");
    let (status, body) = crate::helpers::decode(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
    node.stop().await;
}

/// Any JSON value, biased toward the field names our bodies use so the
/// fuzzer gets past the first `unknown field`.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("lines".to_owned()),
        Just("customer".to_owned()),
        Just("pool_id".to_owned()),
        Just("quantity".to_owned()),
        Just("name".to_owned()),
        Just("phone".to_owned()),
        Just("email".to_owned()),
        Just("hold_seconds".to_owned()),
        Just("kind".to_owned()),
        Just("capacity".to_owned()),
        Just("resource_id".to_owned()),
        Just("starts_at".to_owned()),
        Just("ends_at".to_owned()),
        Just("delta".to_owned()),
        Just("to".to_owned()),
        Just("units".to_owned()),
        Just("id".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("beans".to_owned()),
            Just("hub".to_owned()),
            Just("stock".to_owned()),
            Just("slot".to_owned()),
            Just("2099-01-01T00:00:00Z".to_owned()),
            ".{0,20}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn no_request_body_makes_the_api_fail_with_a_server_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let manager = token(dir.path(), Role::Manager);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = runtime.block_on(async {
        let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
        let app = edge_node::app(AppState::new(store));
        for (path, body) in [
            (
                "/api/v1/resources",
                json!({"name": "Beans", "kind": "stock", "id": "store-1:beans"}),
            ),
            (
                "/api/v1/pools",
                json!({"resource_id": "store-1:beans", "capacity": 5, "id": "store-1:beans"}),
            ),
        ] {
            let request = axum::http::Request::post(path)
                .header("authorization", format!("Bearer {manager}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        app
    });
    let paths = prop_oneof![
        Just("/api/v1/bookings"),
        Just("/api/v1/resources"),
        Just("/api/v1/pools"),
        Just("/api/v1/pools/beans/adjust"),
        Just("/api/v1/pools/beans/allotments"),
        Just("/api/v1/bookings/01a20573-4fb7-77e9-94b3-c08b90fba463/confirm"),
    ];
    let bodies = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    runner
        .run(&(paths, bodies), |(path, body)| {
            let (status, reply) = runtime.block_on(async {
                let request = axum::http::Request::post(path)
                    .header("authorization", format!("Bearer {manager}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .expect("request");
                let response = app.clone().oneshot(request).await.expect("infallible");
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                (status, bytes)
            });
            prop_assert!(status.as_u16() < 500, "{path} answered {status}");
            let reply: Value = serde_json::from_slice(&reply).expect("every answer is JSON");
            if status.as_u16() >= 400 {
                prop_assert!(reply["error"]["code"].is_string(), "{reply}");
            }
            Ok(())
        })
        .expect("no input causes a server error");
}
