//! An enrolled store turned attacker, against the real hub and real stores:
//! with its own key, correctly signed requests and correctly chained
//! batches, it tries every event kind against other participants' pools
//! and bookings, values out of range, ids outside its namespace or that
//! exist already, and catalog that names what does not exist; then
//! thousands of mutated sync requests. Nothing is accepted, and the honest
//! stores keep syncing and deciding web orders throughout.
//!
//! `ABUSE_MUTATIONS=N` sets how many mutated requests are sent (10,000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::{env_or, eventually};
use edge_node::store::SystemClock;
use edge_node::sync::client::{HubClient, HubError, REQUEST_TIMEOUT};
use reqwest::Method;
use serde_json::{Value, json};
use shared::event::ChainHead;
use shared::protocol::{HeadResponse, PushRequest, PushResponse};
use shared::signing::{self, SigningKey};
use shared::{Event, EventBody, LocationId, ParticipantId};

use crate::world::{Store, World};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A store's device key and log, driven by hand.
struct Attacker {
    client: HubClient,
    key: Arc<SigningKey>,
    location: LocationId,
    epoch: u32,
    head: ChainHead,
}

impl Attacker {
    /// Stops `store` and speaks for it with its own key.
    async fn take_over(world: &World, store: &mut Store) -> Self {
        store.kill();
        let key = Arc::new(edge_node::sync::load_device_key(store.path()).expect("device key"));
        let hub_key: String = store
            .db()
            .query_row("SELECT hub_public_key FROM node", [], |r| r.get(0))
            .expect("hub key");
        let location = LocationId::parse(&store.location).expect("location");
        let client = HubClient::new(
            &world.hub_url(),
            key.clone(),
            location.clone(),
            hub_key,
            Arc::new(SystemClock::default()),
        );
        let head: HeadResponse = client
            .call(Method::GET, "/v1/sync/head", None, REQUEST_TIMEOUT)
            .await
            .expect("head")
            .value;
        Self {
            client,
            key,
            location,
            epoch: head.epoch,
            head: head.head.into(),
        }
    }

    fn me(&self) -> ParticipantId {
        ParticipantId::Location(self.location.clone())
    }

    /// The next event of the log, of any kind and body.
    fn next(&self, kind: &str, body: Value) -> Event {
        Event {
            origin: self.me(),
            epoch: self.epoch,
            seq: self.head.seq + 1,
            id: uuid::Uuid::now_v7(),
            prev: self.head.hash,
            at_ms: now_ms(),
            kind: kind.into(),
            body,
        }
    }

    /// A push of `event`, signed and chained as a real store would.
    fn push_body(&self, event: &Event) -> Vec<u8> {
        let head_signature = self.key.sign_b64(&signing::head_message(
            self.location.as_str(),
            event.epoch,
            event.seq,
            &event.hash(),
        ));
        serde_json::to_vec(&PushRequest {
            origin: self.me(),
            events: vec![event.clone()],
            head_signature,
        })
        .expect("json")
    }

    async fn push(&mut self, event: &Event) -> Result<(), HubError> {
        let body = self.push_body(event);
        let answer = self
            .client
            .call::<PushResponse>(Method::POST, "/v1/sync/push", Some(body), REQUEST_TIMEOUT)
            .await?;
        self.head = answer.value.acked.into();
        Ok(())
    }
}

/// Web orders and local bookings kept going while the attack runs; every
/// one must be decided by the store as usual, and both stores stay online.
struct Honest {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
    latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl Honest {
    fn start(world: &World, owner: &Store, other: &Store) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (hub, key, http) = (world.hub_url(), world.api_key.clone(), world.http.clone());
        let stores = [
            (owner.base(), owner.token.clone()),
            (other.base(), other.token.clone()),
        ];
        let (stop_flag, record) = (stop.clone(), latencies.clone());
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let order = json!({"lines": [{"pool_id": "s1:beans", "quantity": 1}],
                                   "customer": {"name": format!("web {n}")}});
                let (status, made) = e2e::post(
                    &http,
                    &format!("{hub}/v1/bookings?wait_ms=5000"),
                    &key,
                    &order,
                )
                .await;
                record.lock().expect("lock").push(started.elapsed());
                if status != 201 || made["decided_by"] != "s1" {
                    failures.push(format!("web order {n}: {status} {made}"));
                }
                let (status, made) = e2e::post(
                    &http,
                    &format!("{}/api/v1/bookings", stores[1].0),
                    &stores[1].1,
                    &json!({"lines": [{"pool_id": "s2:cups", "quantity": 1}],
                            "customer": {"name": format!("walk-in {n}")}}),
                )
                .await;
                if status != 201 {
                    failures.push(format!("walk-in {n}: {status} {made}"));
                }
                for (base, token) in &stores {
                    let (_, sync) =
                        e2e::get(&http, &format!("{base}/api/v1/sync/status"), token).await;
                    if sync["state"] != "online" || sync["set_aside_events"] != 0 {
                        failures.push(format!("{base} after order {n}: {sync}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failures
        });
        Self {
            stop,
            task,
            latencies,
        }
    }

    /// Stops and reports: every failure seen, and the order latencies.
    async fn finish(self) -> (Vec<String>, Vec<Duration>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.expect("honest traffic");
        let mut latencies = self.latencies.lock().expect("lock").clone();
        latencies.sort();
        (failures, latencies)
    }
}

/// A hub, two honest stores and one that will turn: s1 owns `s1:beans`
/// (5 units given to the hub, 1 to s3), s2 owns `s2:cups`, s3 owns
/// `s3:own`; a web order confirmed by s1 and a request of s2 that s1
/// confirmed exist to be attacked.
struct Fleet {
    world: World,
    s1: Store,
    s2: Store,
    s3: Store,
    web_order: String,
    store_request: String,
}

async fn fleet() -> Fleet {
    let mut world = World::new();
    world.start_hub();
    let mut s1 = Store::enroll(&world, "s1");
    let mut s2 = Store::enroll(&world, "s2");
    let mut s3 = Store::enroll(&world, "s3");
    e2e::run(
        &world.bins.edge,
        s1.path(),
        &[
            "user", "add", "--name", "Sam", "--role", "staff", "--pin", "2468",
        ],
    );
    for store in [&mut s1, &mut s2, &mut s3] {
        store.start(&world);
    }
    s1.stock(&world, "s1:beans", 100_000).await;
    s2.stock(&world, "s2:cups", 100_000).await;
    s3.stock(&world, "s3:own", 10).await;
    for store in [&s1, &s2, &s3] {
        store.synced(&world, Duration::from_secs(30)).await;
    }
    // Everyone has heard of everyone, and of s1's catalog.
    for store in [&s2, &s3] {
        eventually(
            Duration::from_secs(20),
            "s1's catalog everywhere",
            || async {
                let (status, _) = store.api_get(&world, "/pools/s1:beans").await;
                (status == 200).then_some(())
            },
        )
        .await;
    }
    eventually(Duration::from_secs(20), "s1 knows s3", || async {
        let (status, _) = s1
            .api_post(
                &world,
                "/pools/s1:beans/allotments",
                &json!({"to": "s3", "units": 1}),
            )
            .await;
        (status == 201).then_some(())
    })
    .await;
    let (status, body) = s1
        .api_post(
            &world,
            "/pools/s1:beans/allotments",
            &json!({"to": "hub", "units": 5}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(Duration::from_secs(20), "s3 credited its unit", || async {
        (s3.available(&world, "s1:beans").await == 1).then_some(())
    })
    .await;
    s3.synced(&world, Duration::from_secs(30)).await;
    s1.synced(&world, Duration::from_secs(30)).await;
    let (status, web) = world
        .order(
            &json!({"lines": [{"pool_id": "s1:beans", "quantity": 2}],
                    "customer": {"name": "Web Customer"}}),
            5000,
        )
        .await;
    assert_eq!((status, &web["decided_by"]), (201, &json!("s1")), "{web}");
    let (status, request) = s2
        .api_post(
            &world,
            "/bookings",
            &json!({"lines": [{"pool_id": "s1:beans", "quantity": 3}],
                    "customer": {"name": "Store Customer"}}),
        )
        .await;
    assert_eq!(status, 202, "{request}");
    let request = request["id"].as_str().expect("id").to_owned();
    eventually(
        Duration::from_secs(20),
        "s1 confirmed s2's request",
        || async { (s2.booking(&world, &request).await["state"] == "confirmed").then_some(()) },
    )
    .await;
    Fleet {
        web_order: web["id"].as_str().expect("id").to_owned(),
        store_request: request,
        world,
        s1,
        s2,
        s3,
    }
}

/// Every attack of a store with its own key: (what, kind, body).
fn attacks(web_order: &str, store_request: &str) -> Vec<(String, String, Value)> {
    let booking = |state: &str, charged: &str, quantity: i64| {
        json!({"id": uuid::Uuid::now_v7(), "owner": "s1", "requested_by": "s3",
               "charged_to": charged, "channel": "staff",
               "lines": [{"pool_id": "s1:beans", "quantity": quantity}],
               "customer": {"name": "Mallory"}, "state": state})
    };
    let request = |extra: Value| {
        let mut body = json!({"id": uuid::Uuid::now_v7(), "owner": "s1", "requested_by": "s3",
            "charged_to": "s1", "channel": "web",
            "lines": [{"pool_id": "s1:beans", "quantity": 1}],
            "customer": {"name": "Mallory"}, "state": "requested",
            "expires_at_ms": now_ms() + 60_000});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let forged = Event::next(
        ChainHead::EMPTY,
        ParticipantId::parse("s1").expect("id"),
        1,
        now_ms(),
        EventBody::PoolAdjusted {
            pool: shared::PoolId::parse("s1:beans").expect("id"),
            delta: 1000,
        },
    );
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "in another's name",
            "resource_created",
            json!({"id": "s3:x", "owner": "s1", "name": "X", "kind": "stock"}),
        ),
        (
            "outside its namespace",
            "resource_created",
            json!({"id": "s1:x", "owner": "s3", "name": "X", "kind": "stock"}),
        ),
        (
            "an id that exists",
            "resource_created",
            json!({"id": "s3:own", "owner": "s3", "name": "X", "kind": "stock"}),
        ),
        (
            "an endless name",
            "resource_created",
            json!({"id": "s3:z", "owner": "s3", "name": "x".repeat(201), "kind": "stock"}),
        ),
        (
            "a ghost pool",
            "pool_created",
            json!({"id": "s3:ghost-pool", "resource_id": "s3:no-such-resource", "owner": "s3", "capacity": 1}),
        ),
        (
            "a pool of another's resource",
            "pool_created",
            json!({"id": "s3:p", "resource_id": "s1:beans", "owner": "s3", "capacity": 1}),
        ),
        (
            "a pool in another's name",
            "pool_created",
            json!({"id": "s1:p", "resource_id": "s1:beans", "owner": "s1", "capacity": 1}),
        ),
        (
            "a pool that exists",
            "pool_created",
            json!({"id": "s3:own", "resource_id": "s3:own", "owner": "s3", "capacity": 1}),
        ),
        (
            "a second stock pool",
            "pool_created",
            json!({"id": "s3:own-2", "resource_id": "s3:own", "owner": "s3", "capacity": 1}),
        ),
        (
            "negative capacity",
            "pool_created",
            json!({"id": "s3:own-3", "resource_id": "s3:own", "owner": "s3", "capacity": -1}),
        ),
        (
            "capacity that is not a number",
            "pool_created",
            json!({"id": "s3:own-4", "resource_id": "s3:own", "owner": "s3", "capacity": "lots"}),
        ),
        (
            "another's stock",
            "pool_adjusted",
            json!({"pool": "s1:beans", "delta": 5}),
        ),
        (
            "beyond the range",
            "pool_adjusted",
            json!({"pool": "s3:own", "delta": i64::MAX}),
        ),
        (
            "by nothing",
            "pool_adjusted",
            json!({"pool": "s3:own", "delta": 0}),
        ),
        (
            "another's pool",
            "allotment_granted",
            json!({"pool": "s1:beans", "to": "s3", "units": 100}),
        ),
        (
            "to itself",
            "allotment_granted",
            json!({"pool": "s3:own", "to": "s3", "units": 1}),
        ),
        (
            "more than it holds",
            "allotment_granted",
            json!({"pool": "s3:own", "to": "hub", "units": 11}),
        ),
        (
            "to a stranger",
            "allotment_granted",
            json!({"pool": "s3:own", "to": "nowhere-9", "units": 1}),
        ),
        (
            "nothing",
            "allotment_granted",
            json!({"pool": "s3:own", "to": "hub", "units": 0}),
        ),
        (
            "from another's grantee",
            "allotment_recalled",
            json!({"pool": "s1:beans", "from": "hub", "units": 5}),
        ),
        (
            "-1000 units",
            "allotment_returned",
            json!({"pool": "s1:beans", "units": -1000}),
        ),
        (
            "1001 units of 1",
            "allotment_returned",
            json!({"pool": "s1:beans", "units": 1001}),
        ),
        (
            "by the owner",
            "allotment_returned",
            json!({"pool": "s3:own", "units": 1}),
        ),
        (
            "units never sent",
            "allotment_credited",
            json!({"pool": "s1:beans", "from": "s1", "units": 1000, "hub_seq": 1}),
        ),
        (
            "units the hub never sent",
            "allotment_credited",
            json!({"pool": "s1:beans", "from": "hub", "units": 5, "hub_seq": 1}),
        ),
        (
            "900,000 units",
            "booking_created",
            booking("confirmed", "s3", 900_000),
        ),
        (
            "-5 units",
            "booking_created",
            booking("confirmed", "s3", -5),
        ),
        (
            "2 units of 1",
            "booking_created",
            booking("confirmed", "s3", 2),
        ),
        (
            "against the owner's units",
            "booking_created",
            booking("confirmed", "s1", 1),
        ),
        (
            "that starts cancelled",
            "booking_created",
            booking("cancelled", "s3", 1),
        ),
        ("of an unknown pool", "booking_created", {
            let mut b = booking("confirmed", "s3", 1);
            b["lines"][0]["pool_id"] = json!("s1:none");
            b
        }),
        (
            "re-requesting a confirmed web order to expire it",
            "booking_created",
            json!({"id": web_order, "owner": "s1", "requested_by": "s3", "charged_to": "s1",
                   "channel": "web", "lines": [{"pool_id": "s1:beans", "quantity": 2}],
                   "customer": {"name": "Web Customer"}, "state": "requested",
                   "expires_at_ms": now_ms() - 600_000}),
        ),
        (
            "deciding another's request",
            "booking_created",
            json!({"id": store_request, "owner": "s1", "requested_by": "s2", "charged_to": "s1",
                   "channel": "staff", "lines": [{"pool_id": "s1:beans", "quantity": 3}],
                   "customer": {"name": "Store Customer"}, "state": "rejected"}),
        ),
        (
            "a request in another's name",
            "booking_created",
            request(json!({"requested_by": "s2"})),
        ),
        (
            "a hold of 1,000,000,000 s",
            "booking_created",
            request(json!({"hold_seconds": 1_000_000_000_i64})),
        ),
        (
            "a hold of -100,000 s",
            "booking_created",
            request(json!({"hold_seconds": -100_000})),
        ),
        (
            "a hold past i64 milliseconds",
            "booking_created",
            request(json!({"hold_seconds": 9_223_372_036_854_776_i64})),
        ),
        (
            "a request waiting two days",
            "booking_created",
            request(json!({"expires_at_ms": now_ms() + 2 * 86_400_000})),
        ),
        (
            "another's web order",
            "booking_confirmed",
            json!({"id": web_order}),
        ),
        (
            "another's web order",
            "booking_cancelled",
            json!({"id": web_order}),
        ),
        (
            "another's web order",
            "booking_fulfilled",
            json!({"id": web_order}),
        ),
        (
            "another's web order",
            "booking_expired",
            json!({"id": web_order, "reason": "gone"}),
        ),
        (
            "another store's request",
            "booking_expired",
            json!({"id": store_request, "reason": "gone"}),
        ),
        (
            "another's web order",
            "booking_cancel_requested",
            json!({"id": web_order}),
        ),
        (
            "an unknown booking",
            "booking_cancelled",
            json!({"id": uuid::Uuid::now_v7()}),
        ),
        (
            "introducing a location",
            "location_joined",
            json!({"location": "s9", "name": "S9"}),
        ),
        (
            "relaying a forged event",
            "relayed",
            json!({"event": forged}),
        ),
        (
            "observing itself",
            "observed",
            json!({"hub_seq": 1, "event": {
            "origin": "s3", "epoch": 1, "seq": 1, "id": uuid::Uuid::now_v7(),
            "prev": "0".repeat(64), "at_ms": 1, "kind": "pool_adjusted",
            "body": {"pool": "s3:own", "delta": 1}}}),
        ),
        (
            "at hub seq 0",
            "inbox_set_aside",
            json!({"hub_seq": 0, "origin": "s1", "kind": "x", "reason": "x"}),
        ),
        (
            "of a kind nobody knows",
            "booking_teleported",
            json!({"id": web_order}),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, kind, body)| (what.to_owned(), kind.to_owned(), body))
        .collect()
}

/// A raw signed sync request, to be mutated.
#[derive(Debug, Clone)]
struct Raw {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn signed(
    key: &SigningKey,
    device: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    timestamp: &str,
) -> Raw {
    let nonce = signing::nonce().expect("nonce");
    let stamp: i64 = timestamp.parse().unwrap_or(0);
    let signature = key.sign_b64(&signing::request_message(
        method.as_str(),
        path,
        stamp,
        &nonce,
        &body,
    ));
    Raw {
        method,
        path: path.into(),
        headers: vec![
            (signing::HEADER_DEVICE.into(), device.into()),
            (signing::HEADER_TIMESTAMP.into(), timestamp.into()),
            (signing::HEADER_NONCE.into(), nonce),
            (signing::HEADER_SIGNATURE.into(), signature),
            ("content-type".into(), "application/json".into()),
        ],
        body,
    }
}

async fn send(http: &reqwest::Client, hub: &str, raw: &Raw) -> Option<(u16, Vec<u8>)> {
    let mut request = http
        .request(raw.method.clone(), format!("{hub}{}", raw.path))
        .body(raw.body.clone());
    for (name, value) in &raw.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.bytes().await.ok()?.to_vec()))
}

/// A small deterministic generator: the same seed, the same mutations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Flips one bit of a visible ASCII byte of `text` from `from` on,
/// keeping it visible ASCII (so the request can still be sent).
fn flip_visible(text: &str, from: usize, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..32 {
        let at = from + rng.below(bytes.len().saturating_sub(from).max(1));
        let flipped = bytes[at] ^ (1 << rng.below(7));
        if (0x21..0x7f).contains(&flipped) && flipped != b'%' && flipped != b'?' && flipped != b'#'
        {
            bytes[at] = flipped;
            break;
        }
    }
    String::from_utf8(bytes).expect("ascii")
}

/// One mutation of `base`: its class, and the request to send.
fn mutate(
    base: &Raw,
    rng: &mut Rng,
    attacker: &SigningKey,
    other: &SigningKey,
) -> (&'static str, Raw) {
    let mut raw = base.clone();
    let header = |raw: &mut Raw, name: &str| -> usize {
        raw.headers
            .iter()
            .position(|(n, _)| n == name)
            .expect("header")
    };
    let resign = |key: &SigningKey, device: &str, timestamp: &str| {
        signed(
            key,
            device,
            base.method.clone(),
            &base.path,
            base.body.clone(),
            timestamp,
        )
    };
    let now = now_ms();
    match rng.below(12) {
        0 if !raw.body.is_empty() => {
            let at = rng.below(raw.body.len());
            raw.body[at] ^= 1 << rng.below(8);
            ("a bit flipped in the body", raw)
        }
        0 | 1 => {
            let i = header(&mut raw, signing::HEADER_SIGNATURE);
            let mut signature = base64::engine::general_purpose::STANDARD
                .decode(&raw.headers[i].1)
                .expect("base64");
            let at = rng.below(signature.len());
            signature[at] ^= 1 << rng.below(8);
            raw.headers[i].1 = base64::engine::general_purpose::STANDARD.encode(signature);
            ("a bit flipped in the signature", raw)
        }
        2 => {
            let name = [
                signing::HEADER_TIMESTAMP,
                signing::HEADER_NONCE,
                signing::HEADER_DEVICE,
            ][rng.below(3)];
            let i = header(&mut raw, name);
            raw.headers[i].1 = flip_visible(&raw.headers[i].1, 0, rng);
            ("a bit flipped in a header", raw)
        }
        3 => {
            // The leading slash stays: without it the URL names another host.
            raw.path = flip_visible(&raw.path, 1, rng);
            ("a bit flipped in the path", raw)
        }
        4 => ("a replay", raw),
        5 => (
            "another location's key",
            resign(other, "s3", &now.to_string()),
        ),
        6 => (
            "another location's name",
            resign(attacker, "s2", &now.to_string()),
        ),
        7 => {
            let off = [-1, 1][rng.below(2)] * (6 * 60_000 + rng.below(1_000_000) as i64);
            (
                "a stale timestamp",
                resign(attacker, "s3", &(now + off).to_string()),
            )
        }
        8 => {
            let stamp = [
                "-9223372036854775808",
                "9223372036854775807",
                "0",
                "-1",
                "1e12",
                "",
                "now",
            ][rng.below(7)];
            ("an extreme timestamp", resign(attacker, "s3", stamp))
        }
        9 => {
            let mut fresh = resign(attacker, "s3", &now.to_string());
            let i = header(&mut fresh, signing::HEADER_NONCE);
            fresh.headers[i].1 =
                ["00", "zz".repeat(10).as_str(), &"a".repeat(65)][rng.below(3)].into();
            ("a malformed nonce", fresh)
        }
        10 => {
            // A correct signature over the original nonce: a replay with a
            // new timestamp.
            let nonce = base.headers[header(&mut raw, signing::HEADER_NONCE)]
                .1
                .clone();
            let stamp = now.to_string();
            let signature = attacker.sign_b64(&signing::request_message(
                base.method.as_str(),
                &base.path,
                now,
                &nonce,
                &base.body,
            ));
            let (t, s) = (
                header(&mut raw, signing::HEADER_TIMESTAMP),
                header(&mut raw, signing::HEADER_SIGNATURE),
            );
            raw.headers[t].1 = stamp;
            raw.headers[s].1 = signature;
            ("a nonce used before", raw)
        }
        _ => {
            let name = [
                signing::HEADER_TIMESTAMP,
                signing::HEADER_NONCE,
                signing::HEADER_DEVICE,
                signing::HEADER_SIGNATURE,
            ][rng.below(4)];
            let i = header(&mut raw, name);
            raw.headers.remove(i);
            ("a header left out", raw)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_with_its_own_key_gets_nothing_past_the_hub_and_the_fleet_keeps_syncing() {
    let Fleet {
        world,
        s1,
        s2,
        mut s3,
        web_order,
        store_request,
    } = fleet().await;
    let mut attacker = Attacker::take_over(&world, &mut s3).await;

    // A name with hidden characters is refused where it is entered; one
    // already in a store's log (it may predate that rule) is taken as it
    // is, and shown to the owner's staff neutralised.
    let hidden = "Mal\u{0}lo\u{1b}[31mry\u{202E}gnp.exe";
    let sale = attacker.next(
        "booking_created",
        json!({"id": uuid::Uuid::now_v7(), "owner": "s1", "requested_by": "s3",
               "charged_to": "s3", "channel": "staff",
               "lines": [{"pool_id": "s1:beans", "quantity": 1}],
               "customer": {"name": hidden}, "state": "confirmed"}),
    );
    attacker
        .push(&sale)
        .await
        .expect("a sale from its own unit");
    let (status, refused) = world
        .order(
            &json!({"lines": [{"pool_id": "s1:beans", "quantity": 1}],
                    "customer": {"name": hidden}}),
            0,
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let http = e2e::form_client();
    let cookie = e2e::session_cookie(&e2e::sign_in(&http, &s1.base(), "Sam", "2468").await)
        .expect("a staff session");
    let page = eventually(
        Duration::from_secs(20),
        "the sale on s1's staff page",
        || async {
            let page = http
                .get(format!("{}/staff", s1.base()))
                .header("cookie", &cookie)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            page.contains("Mal").then_some(page)
        },
    )
    .await;
    assert!(
        !page.contains(['\u{0}', '\u{1b}', '\u{202E}']),
        "hidden characters reach the staff page raw"
    );
    assert!(page.contains("Mal\u{FFFD}lo\u{FFFD}[31mry\u{FFFD}gnp.exe"));

    let honest = Honest::start(&world, &s1, &s2);
    let head_before = attacker.head;

    // Every event kind, against others' pools and bookings, out of range,
    // outside its namespace, naming what exists or does not.
    let mut accepted = Vec::new();
    let mut tried: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (what, kind, body) in attacks(&web_order, &store_request) {
        let event = attacker.next(&kind, body);
        let result = attacker.push(&event).await;
        let entry = tried.entry(kind.clone()).or_default();
        entry.0 += 1;
        match result {
            Err(HubError::Refused { status, code, .. })
                if matches!(status, 400 | 403)
                    && matches!(code.as_str(), "forbidden" | "invalid_event") => {}
            Err(e) => panic!("{kind} ({what}) got an unexpected answer: {e}"),
            Ok(()) => {
                entry.1 += 1;
                accepted.push(format!("{kind}: {what}"));
            }
        }
    }
    for (kind, (count, ok)) in &tried {
        println!("figure: attacks of kind {kind}: {count} tried, {ok} accepted");
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
    assert_eq!(
        attacker.head, head_before,
        "nothing of a refused batch is kept"
    );

    // The channel works: an honest event of the attacker's goes through.
    let control = attacker.next(
        "resource_created",
        json!({"id": "s3:control", "owner": "s3", "name": "Control", "kind": "stock"}),
    );
    attacker
        .push(&control)
        .await
        .expect("an honest event is accepted");

    // What the attacks aimed at is as it was.
    let booking = world.hub_booking(&web_order).await;
    assert_eq!(
        (&booking["state"], &booking["decided_by"]),
        (&json!("confirmed"), &json!("s1")),
        "{booking}"
    );
    assert_eq!(s1.booking(&world, &web_order).await["state"], "confirmed");
    assert_eq!(
        s2.booking(&world, &store_request).await["state"],
        "confirmed"
    );
    let (_, pools) = world.public("/v1/pools?location=s1").await;
    let beans = &pools["pools"][0];
    assert!(
        beans["available"].as_i64().expect("available") >= 0
            && beans["hub_available"].as_i64().expect("hub") <= 5,
        "{beans}"
    );

    // Mutated sync requests: bit flips in body, signature, headers and
    // path, replays, another location's key, stale and extreme timestamps.
    let other_key = edge_node::sync::load_device_key(s2.path()).expect("s2's key");
    let now = now_ms().to_string();
    let next = attacker.next(
        "resource_created",
        json!({"id": "s3:control-2", "owner": "s3", "name": "Control", "kind": "stock"}),
    );
    let bases = [
        signed(
            &attacker.key,
            "s3",
            Method::GET,
            "/v1/sync/head",
            Vec::new(),
            &now,
        ),
        signed(
            &attacker.key,
            "s3",
            Method::GET,
            "/v1/sync/pull?after=0&wait_ms=0&protocol=2",
            Vec::new(),
            &now,
        ),
        signed(
            &attacker.key,
            "s3",
            Method::POST,
            "/v1/sync/push",
            attacker.push_body(&next),
            &now,
        ),
    ];
    let http = world.http.clone();
    let hub = world.hub_url();
    for base in &bases {
        let (status, body) = send(&http, &hub, base).await.expect("answer");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let pushed_head = world.hub_head("s3");
    let mutations = env_or("ABUSE_MUTATIONS", 10_000) as usize;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut planned = Vec::with_capacity(mutations);
    for _ in 0..mutations {
        let base = &bases[rng.below(bases.len())];
        planned.push(mutate(base, &mut rng, &attacker.key, &other_key));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let planned = Arc::new(planned);
    const SENDERS: usize = 8;
    for sender in 0..SENDERS {
        let (http, hub, planned) = (http.clone(), hub.clone(), planned.clone());
        tasks.spawn(async move {
            let mut seen: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
            for (class, raw) in planned.iter().skip(sender).step_by(SENDERS) {
                let answer = match send(&http, &hub, raw).await {
                    None => "not sent".to_owned(),
                    Some((status, body)) => {
                        let shaped =
                            serde_json::from_slice::<shared::protocol::ErrorBody>(&body).is_ok();
                        match status {
                            200..=299 => format!("ACCEPTED {status}"),
                            400..=499 if shaped => "refused".to_owned(),
                            s => format!("UNEXPECTED {s} {}", String::from_utf8_lossy(&body)),
                        }
                    }
                };
                *seen.entry((*class, answer)).or_default() += 1;
            }
            seen
        });
    }
    let mut outcomes: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    while let Some(seen) = tasks.join_next().await {
        for (key, count) in seen.expect("sender") {
            *outcomes.entry(key).or_default() += count;
        }
    }
    println!(
        "figure: {mutations} mutated sync requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut bad = Vec::new();
    for ((class, answer), count) in &outcomes {
        println!("figure: mutation {class}: {answer} x{count}");
        if answer != "refused" {
            bad.push(format!("{class}: {answer} x{count}"));
        }
    }
    assert!(
        bad.is_empty(),
        "mutations not refused with a JSON 4xx: {bad:#?}"
    );
    assert_eq!(
        world.hub_head("s3"),
        pushed_head,
        "no mutation moved the log"
    );

    let (failures, latencies) = honest.finish().await;
    assert!(
        failures.is_empty(),
        "honest traffic was disturbed: {failures:#?}"
    );
    assert!(
        latencies.len() >= 5,
        "honest traffic ran: {}",
        latencies.len()
    );
    println!(
        "figure: {} web orders decided by the store during the attack, p50 {:?}, max {:?}; sync never left online",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// Appends `body` to the hub's own log addressed to `recipient`, as an
/// older hub that did not check it would have: straight into its database.
fn inject_hub_event(world: &World, recipient: &str, body: EventBody) {
    let conn = rusqlite::Connection::open(world.hub_dir.path().join("hub.db")).expect("hub db");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    let (seq, hash): (i64, String) = conn
        .query_row(
            "SELECT seq, hash FROM events WHERE origin = 'hub' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("hub head");
    let head = ChainHead {
        seq: seq as u64,
        hash: shared::Hash::parse_hex(&hash).expect("hash"),
    };
    let event = Event::next(head, ParticipantId::Hub, 0, now_ms(), body);
    let (hash, canonical) = event.sealed();
    conn.execute(
        "INSERT INTO events (origin, seq, epoch, id, prev, hash, at_ms, kind, body, recipient, received_at_ms)
         VALUES ('hub', ?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?5)",
        rusqlite::params![
            event.seq as i64,
            event.id.to_string(),
            event.prev.to_hex(),
            hash.to_hex(),
            event.at_ms,
            event.kind,
            canonical,
            recipient
        ],
    )
    .expect("inject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inbox_event_a_store_cannot_apply_is_set_aside_and_the_store_keeps_deciding() {
    let Fleet { world, s1, .. } = fleet().await;
    // What an older hub relayed to every store: a pool whose resource
    // never existed. Applying it fails (a foreign key); it used to stop
    // the store's inbox for good.
    let ghost = Event::next(
        ChainHead::EMPTY,
        ParticipantId::parse("s3").expect("id"),
        1,
        now_ms(),
        EventBody::PoolCreated {
            id: shared::PoolId::parse("s3:ghost-pool").expect("id"),
            resource_id: shared::ResourceId::parse("s3:no-such-resource").expect("id"),
            owner: ParticipantId::parse("s3").expect("id"),
            capacity: 1,
            starts_at_ms: None,
            ends_at_ms: None,
        },
    );
    inject_hub_event(
        &world,
        "s1",
        EventBody::Relayed {
            event: Box::new(ghost),
        },
    );
    let set_aside = eventually(Duration::from_secs(20), "the event set aside", || async {
        let (_, list) = s1.api_get(&world, "/sync/set-aside").await;
        list["events"]
            .as_array()
            .filter(|events| !events.is_empty())
            .cloned()
    })
    .await;
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(
        (&set_aside[0]["origin"], &set_aside[0]["kind"]),
        (&json!("s3"), &json!("pool_created"))
    );
    assert!(
        set_aside[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown resource")),
        "{set_aside:?}"
    );
    let status = s1.status(&world).await;
    assert_eq!(
        (&status["state"], &status["set_aside_events"]),
        (&json!("online"), &json!(1)),
        "{status}"
    );
    let (status, pool) = s1.api_get(&world, "/pools/s3:ghost-pool").await;
    assert_eq!(status, 404, "{pool}");

    // The store still decides web orders, and the hub shows what it set aside.
    let (status, made) = world
        .order(
            &json!({"lines": [{"pool_id": "s1:beans", "quantity": 1}],
                    "customer": {"name": "After"}}),
            5000,
        )
        .await;
    assert_eq!((status, &made["decided_by"]), (201, &json!("s1")), "{made}");
    eventually(Duration::from_secs(20), "the hub shows it", || async {
        let (_, all) = world.public("/v1/locations").await;
        let s1 = all["locations"]
            .as_array()?
            .iter()
            .find(|l| l["id"] == "s1")?
            .clone();
        (s1["set_aside_events"] == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_enrolled_later_does_not_inherit_a_poisoned_catalog() {
    let Fleet {
        world, mut s3, s1, ..
    } = fleet().await;
    // An older hub kept a pool of s3's that names no resource in s3's log
    // and in its view; the catalog a new store gets must not carry it.
    let attacker = Attacker::take_over(&world, &mut s3).await;
    let ghost = attacker.next(
        "pool_created",
        json!({"id": "s3:ghost-pool", "resource_id": "s3:no-such-resource", "owner": "s3", "capacity": 1}),
    );
    {
        let conn = rusqlite::Connection::open(world.hub_dir.path().join("hub.db")).expect("hub db");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
        let (hash, body) = ghost.sealed();
        conn.execute(
            "INSERT INTO events (origin, seq, epoch, id, prev, hash, at_ms, kind, body, received_at_ms)
             VALUES ('s3', ?1, ?2, ?3, ?4, ?5, ?6, 'pool_created', ?7, ?6)",
            rusqlite::params![
                ghost.seq as i64,
                ghost.epoch,
                ghost.id.to_string(),
                ghost.prev.to_hex(),
                hash.to_hex(),
                ghost.at_ms,
                body
            ],
        )
        .expect("poison the log");
        conn.execute(
            "INSERT INTO view_pools (id, resource_id, owner, capacity, updated_at_ms)
             VALUES ('s3:ghost-pool', 's3:no-such-resource', 's3', 1, 0)",
            [],
        )
        .expect("poison the view");
    }
    let mut s4 = Store::enroll(&world, "s4");
    s4.start(&world);
    eventually(Duration::from_secs(20), "s1's catalog at s4", || async {
        let (status, _) = s4.api_get(&world, "/pools/s1:beans").await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _) = s4.api_get(&world, "/pools/s3:own").await;
    assert_eq!(status, 200, "s3's real catalog arrives");
    let (status, _) = s4.api_get(&world, "/pools/s3:ghost-pool").await;
    assert_eq!(status, 404, "the ghost pool does not");
    s4.synced(&world, Duration::from_secs(30)).await;
    let status = s4.status(&world).await;
    assert_eq!(
        (&status["state"], &status["set_aside_events"]),
        (&json!("online"), &json!(0)),
        "{status}"
    );
    drop(s1);
}
