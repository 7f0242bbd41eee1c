//! Bad input to the hub's public API gets the JSON error shape with the
//! right status and changes nothing, wherever in the request it is: path,
//! query or body, including a JSON key given twice.

use serde_json::{Value, json};

use crate::world::World;

/// Sends a request with the world's API key; the status, the content type
/// and the body (which must be JSON).
async fn send(
    world: &World,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, String, Value) {
    let mut request = world
        .http
        .request(
            method.parse().expect("method"),
            format!("{}{path}", world.hub_url()),
        )
        .bearer_auth(&world.api_key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} is not JSON ({e}): {text:?}"));
    (status, content_type, value)
}

/// What a case is, its method, path and body, and the status and code it
/// must get.
type Case = (
    &'static str,
    &'static str,
    String,
    Option<Vec<u8>>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_public_api_is_json_with_its_status() {
    let mut world = World::new();
    world.start_hub();
    let order = |name_twice: bool| {
        if name_twice {
            r#"{"lines": [{"pool_id": "store-1:beans", "quantity": 1}], "customer": {"name": "Ada", "name": "Eve"}}"#.to_owned()
        } else {
            r#"{"lines": [{"pool_id": "store-1:beans", "quantity": 1}], "customer": {"name": "Ada"}, "customer": {"name": "Eve"}}"#.to_owned()
        }
    };
    let cases: Vec<Case> = vec![
        (
            "a path that is not UTF-8",
            "GET",
            "/v1/bookings/%FF".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "a malformed booking id",
            "GET",
            "/v1/bookings/not-an-id".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "a cancellation of a path that is not UTF-8",
            "POST",
            "/v1/bookings/%FF%FE/cancel".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "a pool id that is not UTF-8",
            "POST",
            "/v1/pools/%FF/allotment/return".into(),
            Some(br#"{"units": 1}"#.to_vec()),
            400,
            "invalid_request",
        ),
        (
            "a query that is not UTF-8",
            "GET",
            "/v1/pools?location=%FF".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "an unknown query parameter",
            "GET",
            "/v1/pools?location=store-1&bogus=1".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "a missing query parameter",
            "GET",
            "/v1/pools".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "a wait that is not a number",
            "POST",
            "/v1/bookings?wait_ms=soon".into(),
            Some(order(false).into_bytes()),
            400,
            "invalid_request",
        ),
        (
            "a top-level key given twice",
            "POST",
            "/v1/bookings".into(),
            Some(order(false).into_bytes()),
            400,
            "invalid_request",
        ),
        (
            "a nested key given twice",
            "POST",
            "/v1/bookings".into(),
            Some(order(true).into_bytes()),
            400,
            "invalid_request",
        ),
        (
            "units given twice",
            "POST",
            "/v1/pools/store-1:beans/allotment/return".into(),
            Some(br#"{"units": 1, "units": 5}"#.to_vec()),
            400,
            "invalid_request",
        ),
        (
            "malformed JSON",
            "POST",
            "/v1/bookings".into(),
            Some(br#"{"lines": ["#.to_vec()),
            400,
            "invalid_json",
        ),
        (
            "more units than any pool holds",
            "POST",
            "/v1/pools/store-1:beans/allotment/return".into(),
            Some(br#"{"units": 1000000001}"#.to_vec()),
            400,
            "invalid_request",
        ),
        (
            "malformed JSON for a return",
            "POST",
            "/v1/pools/store-1:beans/allotment/return".into(),
            Some(b"units=1".to_vec()),
            400,
            "invalid_json",
        ),
        (
            "a body beyond every limit",
            "POST",
            "/v1/bookings".into(),
            Some(vec![b' '; 100 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            "an unknown route",
            "GET",
            "/v1/nowhere/%FF".into(),
            None,
            404,
            "not_found",
        ),
        (
            "a method a route does not take",
            "DELETE",
            "/v1/bookings".into(),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let (got, content_type, reply) = send(&world, method, &path, body).await;
        assert_eq!(got, status, "{what}: {reply}");
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
        assert_eq!(reply["error"]["code"], code, "{what}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {reply}"
        );
        if what.contains("given twice") {
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("duplicate"), "{what}: {message}");
        }
    }
    // Nothing was booked.
    let (status, _, locations) = send(&world, "GET", "/v1/locations", None).await;
    assert_eq!(status, 200);
    assert_eq!(locations["locations"], json!([]));
    let bookings: i64 = world
        .hub_db()
        .query_row("SELECT count(*) FROM view_bookings", [], |r| r.get(0))
        .expect("count");
    assert_eq!(bookings, 0);
    world.kill_hub();
}
