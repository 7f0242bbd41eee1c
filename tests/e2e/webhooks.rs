//! Webhooks: every booking state change reaches a receiver that fails its
//! first answers, once per event id, in order per booking, signed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use e2e::{eventually, last_line, run};
use serde_json::{Value, json};

use crate::world::{Store, World};

#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    signature: String,
    timestamp: String,
    body: String,
    accepted: bool,
}

/// A receiver that answers 500 to its first `failures` requests.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let mut log = log.lock().expect("lock");
                let accepted = log.len() >= failures;
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                log.push(Received {
                    event_id: header("x-event-id"),
                    signature: header("x-signature"),
                    timestamp: header("x-timestamp"),
                    body,
                    accepted,
                });
                if accepted {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn hmac(secret: &str, timestamp: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_still_gets_every_change_once_per_event_in_order() {
    let mut world = World::new();
    let (url, seen) = receiver(3).await;
    let secret = last_line(&run(
        &world.bins.hub,
        world.hub_dir.path(),
        &["webhook", "add", "--url", &url],
    ));
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;

    let order = json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}], "customer": {"name": "Web"}});
    let (status, first) = world.order(&order, 5000).await;
    assert_eq!(status, 201, "{first}");
    let first = first["id"].as_str().expect("id").to_owned();
    let (status, _) = e2e::post(
        &world.http,
        &format!("{}/v1/bookings/{first}/cancel", world.hub_url()),
        &world.api_key,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, second) = world.order(&order, 5000).await;
    assert_eq!(status, 201, "{second}");
    let second = second["id"].as_str().expect("id").to_owned();
    let (status, _) = store
        .api_post(&world, &format!("/bookings/{second}/fulfil"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, walk_in) = store.api_post(&world, "/bookings", &order).await;
    assert_eq!(status, 201);
    let walk_in = walk_in["id"].as_str().expect("id").to_owned();

    let expected: Vec<(&str, Vec<&str>)> = vec![
        (&first, vec!["requested", "confirmed", "cancelled"]),
        (&second, vec!["requested", "confirmed", "fulfilled"]),
        (&walk_in, vec!["confirmed"]),
    ];
    let total: usize = expected.iter().map(|(_, states)| states.len()).sum();
    let accepted = eventually(
        Duration::from_secs(60),
        "every change to be delivered",
        || async {
            let log = seen.lock().expect("lock").clone();
            let accepted: Vec<Received> = log.into_iter().filter(|r| r.accepted).collect();
            let mut ids: Vec<&str> = accepted.iter().map(|r| r.event_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            (ids.len() >= total).then_some(accepted)
        },
    )
    .await;

    let log = seen.lock().expect("lock").clone();
    assert!(
        log.iter().take(3).all(|r| !r.accepted),
        "the first answers failed"
    );
    assert!(log.len() > accepted.len(), "failed deliveries were retried");
    let mut delivered_ids = std::collections::HashSet::new();
    for r in &accepted {
        assert!(
            delivered_ids.insert(r.event_id.clone()),
            "event {} accepted twice",
            r.event_id
        );
        assert_eq!(
            r.signature,
            hmac(&secret, &r.timestamp, &r.body),
            "signed with the secret"
        );
    }
    for (id, states) in expected {
        let seen_states: Vec<String> = accepted
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).expect("json"))
            .filter(|body| body["booking"]["id"] == id)
            .map(|body| {
                body["booking"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(seen_states, states, "changes of {id} in order");
    }
}
