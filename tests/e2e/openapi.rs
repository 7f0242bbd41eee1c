//! The OpenAPI documents of both servers: the committed copies under
//! `docs/openapi/` are what the code generates and what the servers serve,
//! every documented operation is answered by a running server, and the
//! reference page at `/docs` shows them with nothing loaded from elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::run;
use serde_json::{Value, json};

use crate::world::{Store, World};

/// The committed copy of `name`'s document.
fn committed(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/openapi")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn the_committed_documents_are_what_the_code_generates() {
    let world_bins = crate::world::bins();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bin) in [
        ("edge-node", &world_bins.edge),
        ("sync-hub", &world_bins.hub),
    ] {
        let generated = run(bin, dir.path(), &["openapi"]);
        let (path, text) = committed(name);
        assert!(
            generated == text,
            "{} differs from what the code generates: run `cargo run -q -p {name} -- openapi > docs/openapi/{name}.json` and commit it",
            path.display()
        );
        let document: Value = serde_json::from_str(&generated).expect("JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["title"], name);
    }
}

/// Calls every operation of the document served at `base` with `token`,
/// `{id}` filled in by `id_for(path)` with an id that exists, and returns
/// those that answered as if the path did not exist.
async fn unanswered(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    document: &Value,
    id_for: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut missing = Vec::new();
    let operations = ops_kit::openapi::operations(document);
    assert!(operations.len() >= 10, "{operations:?}");
    for (method, path) in operations {
        let url = format!("{base}{}", path.replace("{id}", &id_for(&path)));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = http.request(method.clone(), &url).bearer_auth(token);
        if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // A documented path answers with its own refusal when the request
        // is wrong (400, 401, 409); with real ids, a 404 or 405 can only be
        // the router's "no such endpoint".
        if status == 404 || status == 405 {
            missing.push(format!("{method} {path} -> {status} {body}"));
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_servers_serve_their_documents_and_answer_every_documented_operation() {
    let mut world = World::quick();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 50).await;
    let (status, booking) = store
        .api_post(
            &world,
            "/bookings",
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}],
                    "customer": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{booking}");
    let store_booking = booking["id"].as_str().expect("id").to_owned();
    store.synced(&world, Duration::from_secs(30)).await;
    let (status, order) = world
        .order(
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}],
                    "customer": {"name": "Web customer"}}),
            5_000,
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let hub_booking = order["id"].as_str().expect("id").to_owned();

    let http = e2e::http();
    for (name, base, token, booking) in [
        (
            "edge-node",
            store.base(),
            store.token.clone(),
            store_booking,
        ),
        (
            "sync-hub",
            world.hub_url(),
            world.api_key.clone(),
            hub_booking,
        ),
    ] {
        // Served without credentials, exactly as committed.
        let response = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .expect("openapi.json");
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name}"
        );
        let served = response.text().await.expect("text");
        assert_eq!(served, committed(name).1, "{name} serves another document");
        let document: Value = serde_json::from_str(&served).expect("JSON");

        let missing = unanswered(&http, &base, &token, &document, |path| {
            if path.contains("/pools/") {
                "store-1:beans".to_owned()
            } else {
                booking.clone()
            }
        })
        .await;
        assert!(missing.is_empty(), "{name}: {missing:#?}");

        // The reference page: every operation on it, its style sheet from
        // the server itself, and nothing from anywhere else.
        let response = http.get(format!("{base}/docs")).send().await.expect("docs");
        assert_eq!(response.status(), 200, "{name}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("type")
                .starts_with("text/html"),
            "{name}"
        );
        let page = response.text().await.expect("page");
        for (_, path) in ops_kit::openapi::operations(&document) {
            assert!(
                page.contains(&format!("<code>{path}</code>")),
                "{name}: /docs does not show {path}"
            );
        }
        assert!(!page.contains("<script"), "{name}");
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{name}: /docs loads {external}");
        }
        let style = http
            .get(format!("{base}/docs/style.css"))
            .send()
            .await
            .expect("style");
        assert_eq!(style.status(), 200, "{name}");
        assert_eq!(style.headers()["content-type"], "text/css", "{name}");
        assert!(!style.text().await.expect("css").contains("url("));
    }
}

/// The bounds the documents state are literals in `#[schema(...)]`
/// attributes (the derive takes no constants): each must be the limit the
/// code enforces, or a client built from the document is refused, or
/// sends what it was told it could not.
#[test]
fn the_documented_bounds_are_the_limits_the_servers_enforce() {
    use shared::limits::*;
    let edge: Value = serde_json::from_str(&committed("edge-node").1).expect("JSON");
    let hub: Value = serde_json::from_str(&committed("sync-hub").1).expect("JSON");
    let schemas = "/components/schemas";
    let cases: Vec<(&Value, String, i64)> = vec![
        (
            &edge,
            format!("{schemas}/Line/properties/quantity/minimum"),
            1,
        ),
        (
            &edge,
            format!("{schemas}/Line/properties/quantity/maximum"),
            LINE_QUANTITY_MAX,
        ),
        (
            &edge,
            format!("{schemas}/CreateBooking/properties/lines/maxItems"),
            BOOKING_LINES_MAX as i64,
        ),
        (
            &edge,
            format!("{schemas}/CreateBooking/properties/hold_seconds/maximum"),
            HOLD_SECONDS_MAX,
        ),
        (
            &edge,
            format!("{schemas}/CreateBooking/properties/request_ttl_seconds/maximum"),
            REQUEST_TTL_MAX_S,
        ),
        (
            &edge,
            format!("{schemas}/Customer/properties/name/maxLength"),
            CUSTOMER_NAME_MAX_CHARS as i64,
        ),
        (
            &edge,
            format!("{schemas}/Customer/properties/phone/maxLength"),
            CUSTOMER_PHONE_MAX_CHARS as i64,
        ),
        (
            &edge,
            format!("{schemas}/Customer/properties/email/maxLength"),
            CUSTOMER_EMAIL_MAX_CHARS as i64,
        ),
        (
            &edge,
            format!("{schemas}/CreateResourceBody/properties/name/maxLength"),
            RESOURCE_NAME_MAX_CHARS as i64,
        ),
        (
            &edge,
            format!("{schemas}/CreatePoolBody/properties/capacity/maximum"),
            POOL_CAPACITY_MAX,
        ),
        (
            &edge,
            format!("{schemas}/AllotmentBody/properties/units/maximum"),
            ALLOTMENT_UNITS_MAX,
        ),
        (
            &edge,
            format!("{schemas}/ReturnBody/properties/units/maximum"),
            ALLOTMENT_UNITS_MAX,
        ),
        (
            &hub,
            format!("{schemas}/ReturnBody/properties/units/maximum"),
            ALLOTMENT_UNITS_MAX,
        ),
        (
            &edge,
            "/paths/~1api~1v1~1bookings/post/parameters/0/schema/maxLength".to_owned(),
            IDEMPOTENCY_KEY_MAX_CHARS as i64,
        ),
        (
            &hub,
            "/paths/~1v1~1bookings/post/parameters/1/schema/maxLength".to_owned(),
            IDEMPOTENCY_KEY_MAX_CHARS as i64,
        ),
    ];
    let wrong: Vec<String> = cases
        .into_iter()
        .filter(|(document, pointer, limit)| {
            document.pointer(pointer).and_then(Value::as_i64) != Some(*limit)
        })
        .map(|(document, pointer, limit)| {
            format!(
                "{pointer}: documented {:?}, enforced {limit}",
                document.pointer(&pointer)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
