//! The sync protocol refuses what docs/ARCHITECTURE.md (sections 5 and 7) says it must, and
//! applies nothing of a refused batch. The test plays a device itself.

use edge_node::sync::client::CLOCK_SAMPLE_ROUND_TRIP_MAX_MS;
use serde_json::{Value, json};
use shared::event::{ChainHead, ResourceKind};
use shared::protocol::PushRequest;
use shared::signing::{self, SigningKey};
use shared::{Event, EventBody, ParticipantId, PoolId, ResourceId};

use crate::world::World;

/// A device driven by hand: its key and its log.
pub(crate) struct Device {
    location: String,
    key: SigningKey,
    epoch: u32,
}

/// What to do to a request before it is sent.
#[derive(Default, Clone)]
pub(crate) struct Twist {
    /// The hub process to send to, if not the world's first.
    pub to: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub nonce: Option<String>,
    pub sign_with: Option<usize>,
    pub claim_device: Option<String>,
    pub alter_body_after_signing: bool,
}

impl Device {
    pub(crate) async fn enroll(world: &World, location: &str) -> Self {
        let token = world.add_location(location);
        let key = SigningKey::generate().expect("key");
        let (status, body) = e2e::post(
            &world.http,
            &format!("{}/v1/sync/enroll", world.hub_url()),
            "",
            &json!({"token": token, "public_key": key.public_key_b64(), "head_seq": 0}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        Self {
            location: location.to_owned(),
            epoch: body["epoch"].as_u64().expect("epoch") as u32,
            key,
        }
    }

    fn origin(&self) -> ParticipantId {
        ParticipantId::parse(&self.location).expect("id")
    }

    /// Our catalog: a resource, its pool, then stock adjustments.
    pub(crate) fn log(&self, len: usize, salt: i64) -> Vec<Event> {
        let mut head = ChainHead::EMPTY;
        let pool = PoolId::parse(&format!("{}:pool", self.location)).expect("id");
        let resource = ResourceId::parse(&format!("{}:res", self.location)).expect("id");
        (0..len)
            .map(|i| {
                let body = match i {
                    0 => EventBody::ResourceCreated {
                        id: resource.clone(),
                        owner: self.origin(),
                        name: "Thing".into(),
                        kind: ResourceKind::Stock,
                    },
                    1 => EventBody::PoolCreated {
                        id: pool.clone(),
                        resource_id: resource.clone(),
                        owner: self.origin(),
                        capacity: 10,
                        starts_at_ms: None,
                        ends_at_ms: None,
                    },
                    _ => EventBody::PoolAdjusted {
                        pool: pool.clone(),
                        delta: i as i64 + salt,
                    },
                };
                let event = Event::next(head, self.origin(), self.epoch, 1_000 + i as i64, body);
                head = event.head();
                event
            })
            .collect()
    }

    pub(crate) async fn push(
        &self,
        world: &World,
        events: &[Event],
        twist: Twist,
        keys: &[&SigningKey],
    ) -> (u16, Value) {
        let last = events.last().expect("events");
        let batch = PushRequest {
            origin: self.origin(),
            events: events.to_vec(),
            head_signature: self.key.sign_b64(&signing::head_message(
                &self.location,
                last.epoch,
                last.seq,
                &last.hash(),
            )),
        };
        let mut body = serde_json::to_vec(&batch).expect("json");
        self.send(world, "POST", "/v1/sync/push", &mut body, twist, keys)
            .await
    }

    async fn send(
        &self,
        world: &World,
        method: &str,
        path: &str,
        body: &mut Vec<u8>,
        twist: Twist,
        keys: &[&SigningKey],
    ) -> (u16, Value) {
        let timestamp = twist
            .timestamp_ms
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let nonce = twist
            .nonce
            .clone()
            .unwrap_or_else(|| signing::nonce().expect("nonce"));
        let key = twist.sign_with.map_or(&self.key, |i| keys[i]);
        let signature = key.sign_b64(&signing::request_message(
            method, path, timestamp, &nonce, body,
        ));
        if twist.alter_body_after_signing {
            let text = String::from_utf8(body.clone()).expect("utf8");
            *body = text.replacen("\"Thing\"", "\"Th1ng\"", 1).into_bytes();
        }
        let device = twist
            .claim_device
            .clone()
            .unwrap_or_else(|| self.location.clone());
        let hub = twist.to.clone().unwrap_or_else(|| world.hub_url());
        let response = world
            .http
            .request(method.parse().expect("method"), format!("{hub}{path}"))
            .header(signing::HEADER_DEVICE, device)
            .header(signing::HEADER_TIMESTAMP, timestamp.to_string())
            .header(signing::HEADER_NONCE, nonce)
            .header(signing::HEADER_SIGNATURE, signature)
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn held(world: &World, location: &str) -> (u64, i64) {
    let count: i64 = world
        .hub_db()
        .query_row(
            "SELECT count(*) FROM events WHERE origin = ?1",
            [location],
            |r| r.get(0),
        )
        .expect("count");
    (world.hub_head(location), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_batch_is_refused_with_nothing_applied() {
    let mut world = World::new();
    world.start_hub();
    let device = Device::enroll(&world, "store-9").await;
    let other = Device::enroll(&world, "store-8").await;
    let log = device.log(6, 0);

    let (status, body) = device.push(&world, &log[..3], Twist::default(), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acked"]["seq"], 3);
    assert_eq!(held(&world, "store-9"), (3, 3));

    // A repeated batch changes nothing and is acknowledged again.
    let (status, body) = device.push(&world, &log[..3], Twist::default(), &[]).await;
    assert_eq!((status, body["acked"]["seq"].as_u64()), (200, Some(3)));
    assert_eq!(held(&world, "store-9"), (3, 3));

    let refusals: Vec<(&str, Vec<Event>, Twist, u16, &str)> = vec![
        ("a gap", log[4..].to_vec(), Twist::default(), 409, "gap"),
        (
            "a tampered event",
            {
                let mut batch = log[3..].to_vec();
                batch[0].body["delta"] = json!(1000);
                batch
            },
            Twist::default(),
            400,
            "broken_chain",
        ),
        (
            "a body changed after signing",
            log[..4].to_vec(),
            Twist {
                alter_body_after_signing: true,
                ..Twist::default()
            },
            401,
            "unauthorized",
        ),
        (
            "a bad signature",
            log[3..].to_vec(),
            Twist {
                sign_with: Some(0),
                ..Twist::default()
            },
            401,
            "unauthorized",
        ),
        (
            "a stale timestamp",
            log[3..].to_vec(),
            Twist {
                timestamp_ms: Some(jiff::Timestamp::now().as_millisecond() - 6 * 60 * 1000),
                ..Twist::default()
            },
            401,
            "stale_request",
        ),
        (
            "a device claiming to be another",
            log[3..].to_vec(),
            Twist {
                claim_device: Some("store-8".into()),
                ..Twist::default()
            },
            401,
            "unauthorized",
        ),
    ];
    for (what, batch, twist, status, expected) in refusals {
        let (got, body) = device.push(&world, &batch, twist, &[&other.key]).await;
        assert_eq!((got, code(&body)), (status, expected), "{what}: {body}");
        assert_eq!(held(&world, "store-9"), (3, 3), "{what} applied nothing");
    }
    // A stale request is neither contact nor a clock reading: it could be
    // a captured request replayed, and must not make the store look
    // reachable nor raise a clock alert.
    // As the hub shows it (its readings in memory are newer than those it
    // has written).
    let contact = || async {
        let (_, all) = world.public("/v1/locations").await;
        let store = all["locations"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["id"] == "store-9"))
            .cloned()
            .expect("store-9");
        (
            store["last_seen_at"].clone(),
            store["clock_offset_ms"].as_i64(),
        )
    };
    let before = contact().await;
    let offset = before.1.expect("accepted requests measured the offset");
    // Taken from exchanges whose round trip is under a second, so off by
    // half of one at most: not the midpoint of a long poll's wait.
    assert!(
        offset.abs() <= CLOCK_SAMPLE_ROUND_TRIP_MAX_MS / 2,
        "two processes on one machine read about 0: {offset}"
    );
    for timestamp_ms in [
        jiff::Timestamp::now().as_millisecond() - 6 * 60 * 1000,
        jiff::Timestamp::now().as_millisecond() + 10 * 60 * 1000,
        i64::MIN,
        i64::MAX,
    ] {
        let stale = Twist {
            timestamp_ms: Some(timestamp_ms),
            ..Twist::default()
        };
        let (status, body) = device.push(&world, &log[3..], stale, &[]).await;
        assert_eq!(
            (status, code(&body)),
            (401, "stale_request"),
            "{timestamp_ms}: {body}"
        );
        assert_eq!(contact().await, before, "{timestamp_ms}: nothing recorded");
    }
    // A device may report its offset, within reason.
    for offset in [i64::MIN, i64::MAX, -4_000_000_000_000] {
        let (status, body) = device
            .send(
                &world,
                "GET",
                &format!("/v1/sync/head?clock_offset_ms={offset}"),
                &mut Vec::new(),
                Twist::default(),
                &[],
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{offset}: {body}"
        );
        assert_eq!(contact().await, before, "{offset}: nothing recorded");
    }
    assert_eq!(held(&world, "store-9"), (3, 3));

    let (_, gap) = device.push(&world, &log[4..], Twist::default(), &[]).await;
    assert_eq!(
        gap["error"]["expected_seq"], 4,
        "a gap names the seq to resend from"
    );

    // A reused nonce: the first use is fine, the second refused.
    let nonce = signing::nonce().expect("nonce");
    let twist = Twist {
        nonce: Some(nonce),
        ..Twist::default()
    };
    let (status, _) = device.push(&world, &log[..3], twist.clone(), &[]).await;
    assert_eq!(status, 200);
    let (status, body) = device.push(&world, &log[3..], twist, &[]).await;
    assert_eq!((status, code(&body)), (401, "replayed_request"), "{body}");
    assert_eq!(held(&world, "store-9"), (3, 3));

    // A valid key pushing another location's log.
    let (status, body) = other.push(&world, &log[3..], Twist::default(), &[]).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(held(&world, "store-9"), (3, 3));
    assert_eq!(held(&world, "store-8"), (0, 0));

    // The rest of the log, as it should be sent, is applied.
    let (status, body) = device.push(&world, &log[3..], Twist::default(), &[]).await;
    assert_eq!(
        (status, body["acked"]["seq"].as_u64()),
        (200, Some(6)),
        "{body}"
    );

    // A fork: another event 6. Refused, and the device is quarantined.
    let forked = device.log(7, 50);
    let (status, body) = device
        .push(&world, &forked[5..], Twist::default(), &[])
        .await;
    assert_eq!((status, code(&body)), (409, "fork"), "{body}");
    let (status, body) = device.push(&world, &log[5..], Twist::default(), &[]).await;
    assert_eq!((status, code(&body)), (409, "quarantined"), "{body}");
    assert_eq!(held(&world, "store-9"), (6, 6));
    let (_, locations) = world.public("/v1/locations").await;
    let status_of = |id: &str| {
        locations["locations"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["id"] == id))
            .map(|l| l["status"].clone())
    };
    assert_eq!(status_of("store-9"), Some(json!("quarantined")));
    assert_eq!(status_of("store-8"), Some(json!("active")));
    world.kill_hub();
}

/// A key given twice anywhere in a signed body (even inside an event's
/// free-form body, which the hub reads as a `Value`) is refused before
/// anything is applied: the hub must not act on another reading of the
/// bytes than the one the device signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_batch_with_a_key_given_twice_is_refused_with_nothing_applied() {
    let mut world = World::new();
    world.start_hub();
    let device = Device::enroll(&world, "store-9").await;
    let log = device.log(3, 0);
    let batch = |events: &[Event]| {
        let last = events.last().expect("events");
        let batch = PushRequest {
            origin: device.origin(),
            events: events.to_vec(),
            head_signature: device.key.sign_b64(&signing::head_message(
                &device.location,
                last.epoch,
                last.seq,
                &last.hash(),
            )),
        };
        String::from_utf8(serde_json::to_vec(&batch).expect("json")).expect("utf8")
    };
    let text = batch(&log);
    for (what, twisted) in [
        (
            "inside an event body",
            text.replacen(r#""name":"Thing""#, r#""name":"Thing","name":"Other""#, 1),
        ),
        (
            "at the top of the batch",
            text.replacen(
                r#""origin":"store-9""#,
                r#""origin":"store-9","origin":"store-9""#,
                1,
            ),
        ),
    ] {
        assert_ne!(twisted, text, "{what}: the twist applies");
        let mut body = twisted.into_bytes();
        let (status, reply) = device
            .send(
                &world,
                "POST",
                "/v1/sync/push",
                &mut body,
                Twist::default(),
                &[],
            )
            .await;
        assert_eq!(
            (status, code(&reply)),
            (400, "invalid_request"),
            "{what}: {reply}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("duplicate key")),
            "{what}: {reply}"
        );
        assert_eq!(held(&world, "store-9"), (0, 0), "{what} applied nothing");
    }
    let mut body = text.into_bytes();
    let (status, reply) = device
        .send(
            &world,
            "POST",
            "/v1/sync/push",
            &mut body,
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!(
        (status, reply["acked"]["seq"].as_u64()),
        (200, Some(3)),
        "{reply}"
    );
    world.kill_hub();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_unknown_callers_get_nothing() {
    let mut world = World::new();
    world.start_hub();
    let response = world
        .http
        .get(format!("{}/v1/sync/head", world.hub_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let stranger = Device {
        location: "nobody".into(),
        key: SigningKey::generate().expect("key"),
        epoch: 1,
    };
    let (status, body) = stranger
        .send(
            &world,
            "GET",
            "/v1/sync/head",
            &mut Vec::new(),
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    let (status, _) = e2e::get(
        &world.http,
        &format!("{}/v1/locations", world.hub_url()),
        "wrong-key",
    )
    .await;
    assert_eq!(status, 401);
    world.kill_hub();
}

/// A device that speaks an older protocol never gets an event it cannot
/// read. With nothing readable, the hub answers at the end of the long poll
/// (so an old device does not poll in a loop) and says what it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gets_no_event_newer_than_its_protocol() {
    let mut world = World::new();
    world.start_hub();
    let first = Device::enroll(&world, "store-9").await;
    // Enrolling store-8 introduces it to store-9: a protocol 2 event.
    Device::enroll(&world, "store-8").await;

    let started = std::time::Instant::now();
    let (status, old) = first
        .send(
            &world,
            "GET",
            "/v1/sync/pull?after=0&wait_ms=1000",
            &mut Vec::new(),
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["events"], json!([]), "{old}");
    assert_eq!(old["upgrade_to_protocol"], 2, "{old}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "the hub waited out the long poll"
    );

    let (status, current) = first
        .send(
            &world,
            "GET",
            "/v1/sync/pull?after=0&wait_ms=0&protocol=2",
            &mut Vec::new(),
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{current}");
    // Every location hears who joined, itself included.
    let joined: Vec<&Value> = current["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"]["kind"] == "location_joined")
        .map(|e| &e["event"]["body"]["location"])
        .collect();
    assert_eq!(joined, [&json!("store-9"), &json!("store-8")], "{current}");
    assert!(current.get("upgrade_to_protocol").is_none(), "{current}");
}

/// News for everyone (here a location joining) does not end a store's long
/// poll, or a fleet rolling out would have every waiting store answered
/// once per enrollment: it rides the answer at the end of the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_for_everyone_rides_the_end_of_a_long_poll() {
    let mut world = World::new();
    world.start_hub();
    let first = Device::enroll(&world, "store-9").await;
    let (status, own) = first
        .send(
            &world,
            "GET",
            "/v1/sync/pull?after=0&wait_ms=0&protocol=2",
            &mut Vec::new(),
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{own}");
    let cursor = own["events"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["hub_seq"].as_u64())
        .expect("its own introduction");

    const WAIT_MS: u64 = 2_000;
    let started = std::time::Instant::now();
    let path = format!("/v1/sync/pull?after={cursor}&wait_ms={WAIT_MS}&protocol=2");
    let mut empty = Vec::new();
    let poll = first.send(&world, "GET", &path, &mut empty, Twist::default(), &[]);
    let join = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Device::enroll(&world, "store-8").await
    };
    let ((status, answer), _) = tokio::join!(poll, join);
    let waited = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    let kinds: Vec<&Value> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["event"]["body"]["location"])
        .collect();
    assert_eq!(kinds, [&json!("store-8")], "{answer}");
    assert!(
        waited >= std::time::Duration::from_millis(WAIT_MS - 50),
        "answered after {waited:?}, before the long poll ended"
    );
}

/// Replay protection costs no write per request and still holds across a
/// restart: a request captured before the hub restarted, replayed within
/// its freshness window after, is refused; a fresh one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_captured_before_a_hub_restart_cannot_be_replayed_after_it() {
    let mut world = World::new();
    world.start_hub();
    let device = Device::enroll(&world, "store-9").await;
    let captured = Twist {
        timestamp_ms: Some(jiff::Timestamp::now().as_millisecond()),
        nonce: Some(signing::nonce().expect("nonce")),
        ..Twist::default()
    };
    let (status, body) = device
        .send(
            &world,
            "GET",
            "/v1/sync/head",
            &mut Vec::new(),
            captured.clone(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = device
        .send(
            &world,
            "GET",
            "/v1/sync/head",
            &mut Vec::new(),
            captured.clone(),
            &[],
        )
        .await;
    assert_eq!((status, code(&body)), (401, "replayed_request"), "{body}");
    world.kill_hub();
    world.start_hub();
    let (status, body) = device
        .send(
            &world,
            "GET",
            "/v1/sync/head",
            &mut Vec::new(),
            captured,
            &[],
        )
        .await;
    assert_eq!((status, code(&body)), (401, "replayed_request"), "{body}");
    let (status, body) = device
        .send(
            &world,
            "GET",
            "/v1/sync/head",
            &mut Vec::new(),
            Twist::default(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
