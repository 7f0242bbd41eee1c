//! One story every storage backend of the hub must tell the same way,
//! through the calls the handlers make: enrollments, pushes with
//! duplicates, gaps, forks and fenced epochs, pulls, web orders decided by
//! a store, by the hub's allotment and left waiting, cancellations,
//! expiries, Idempotency-Keys, nonces and webhooks. Each backend's test
//! runs [`story`] on a fresh database.

use std::sync::Arc;

use shared::event::ChainHead;
use shared::protocol::EnrollRequest;
use shared::{
    BookingId, BookingState, Channel, Customer, Event, EventBody, Line, LocationId, ParticipantId,
    PoolId, ResourceId, ResourceKind,
};
use sync_hub::keys::hash_secret;
use sync_hub::plan::Refusal;
use sync_hub::storage::{DeviceStatus, HubStorage, Seen, StorageError, WebOrder};

/// A location's own log as its store writes it.
struct Log {
    origin: ParticipantId,
    head: ChainHead,
    epoch: u32,
}

impl Log {
    fn new(location: &LocationId, epoch: u32) -> Self {
        Self {
            origin: ParticipantId::Location(location.clone()),
            head: ChainHead::EMPTY,
            epoch,
        }
    }

    fn next(&mut self, at_ms: i64, body: EventBody) -> Event {
        let event = Event::next(self.head, self.origin.clone(), self.epoch, at_ms, body);
        self.head = ChainHead {
            seq: event.seq,
            hash: event.hash(),
        };
        event
    }
}

fn id(value: &str) -> LocationId {
    LocationId::parse(value).expect("location id")
}

fn order(pool: &PoolId, quantity: i64, hold_seconds: Option<i64>) -> WebOrder {
    WebOrder {
        lines: vec![Line {
            pool_id: pool.clone(),
            quantity,
        }],
        customer: Customer {
            name: "Ada".into(),
            phone: None,
            email: None,
        },
        hold_seconds,
        ttl_ms: 60_000,
        idempotency: None,
    }
}

fn seen(at_ms: i64) -> Seen {
    Seen {
        at_ms,
        clock_offset_ms: 0,
        backlog_events: Some(0),
        synced_at_ms: None,
    }
}

/// Never reachable: every web order finds its owner away.
const AWAY: i64 = -1;
/// Reachable when heard from within the last minute.
const NEAR: i64 = 60_000;

async fn enroll(storage: &dyn HubStorage, token: &str, now_ms: i64) -> Result<u32, StorageError> {
    let key = shared::signing::SigningKey::generate().expect("key");
    storage
        .enroll(
            &EnrollRequest {
                token: token.into(),
                public_key: key.public_key_b64(),
                location: None,
                head_seq: 0,
                restore: false,
            },
            &hash_secret(token),
            now_ms,
        )
        .await
        .map(|e| e.epoch)
}

async fn state_of(storage: &dyn HubStorage, booking: &BookingId) -> BookingState {
    storage
        .booking(booking)
        .await
        .expect("read")
        .expect("booking")
        .state
}

/// The story; panics at the first thing the backend does differently.
pub async fn story(storage: Arc<dyn HubStorage>) {
    let storage: &dyn HubStorage = &*storage;
    // A backend that opened is migrated to this binary's schema.
    storage.ready().await.expect("ready");
    let now = jiff::Timestamp::now().as_millisecond();
    let (s1, s2) = (id("s1"), id("s2"));

    // Enrollment: a token binds once, before it expires.
    for (location, token, expires) in [
        (&s1, "token-s1", now + 60_000),
        (&s2, "token-s2", now + 60_000),
        (&s2, "token-s2-old", now - 1),
    ] {
        storage
            .add_location(
                location,
                location.as_str(),
                "Europe/Berlin",
                &hash_secret(token),
                expires,
                now,
            )
            .await
            .expect("add location");
    }
    assert!(matches!(
        enroll(storage, "token-s2-old", now).await,
        Err(StorageError::Unauthorized(_))
    ));
    assert!(matches!(
        enroll(storage, "no-such-token", now).await,
        Err(StorageError::Unauthorized(_))
    ));
    assert_eq!(
        enroll(storage, "token-s1", now).await.expect("enroll s1"),
        1
    );
    assert!(matches!(
        enroll(storage, "token-s1", now).await,
        Err(StorageError::Unauthorized(_))
    ));
    assert_eq!(
        enroll(storage, "token-s2", now).await.expect("enroll s2"),
        1
    );
    let device = storage.device(&s1).await.expect("read").expect("device");
    assert_eq!(device.status, DeviceStatus::Active);

    // Both joined, once each, on the stream every location reads.
    let inbox = storage.inbox(&s2, 0, 100).await.expect("inbox");
    let joined: Vec<_> = inbox
        .iter()
        .filter_map(|e| match e.event.typed() {
            Ok(EventBody::LocationJoined { location, .. }) => Some(location),
            _ => None,
        })
        .collect();
    assert_eq!(joined, vec![s1.clone(), s2.clone()]);

    // A catalog and a grant to the hub, pushed twice: applied once.
    let beans = PoolId::parse("s1:beans").expect("pool id");
    let mut log = Log::new(&s1, 1);
    let batch = vec![
        log.next(
            now,
            EventBody::ResourceCreated {
                id: ResourceId::parse("s1:beans").expect("resource id"),
                owner: ParticipantId::Location(s1.clone()),
                name: "Beans".into(),
                kind: ResourceKind::Stock,
            },
        ),
        log.next(
            now,
            EventBody::PoolCreated {
                id: beans.clone(),
                resource_id: ResourceId::parse("s1:beans").expect("resource id"),
                owner: ParticipantId::Location(s1.clone()),
                capacity: 10,
                starts_at_ms: None,
                ends_at_ms: None,
            },
        ),
        log.next(
            now,
            EventBody::AllotmentGranted {
                pool: beans.clone(),
                to: ParticipantId::Hub,
                units: 3,
            },
        ),
    ];
    let pushed = storage
        .push(&s1, batch.clone(), "sig", Some(3), now)
        .await
        .expect("push");
    assert_eq!((pushed.applied, pushed.acked.seq), (3, 3));
    let again = storage
        .push(&s1, batch.clone(), "sig", None, now)
        .await
        .expect("duplicate push");
    assert_eq!((again.applied, again.acked.seq), (0, 3));
    let (own, head) = storage.own_log(&s1, 0, 100).await.expect("own log");
    assert_eq!(own.len(), 3);
    assert_eq!(head.seq, 3);
    assert_eq!(own[2].hash(), batch[2].hash());
    let pools = storage.pool_summaries(&s1).await.expect("pools");
    assert_eq!(pools.len(), 1);
    assert_eq!(
        (
            pools[0].capacity,
            pools[0].available,
            pools[0].hub_available
        ),
        (10, 10, 3)
    );
    // The catalog reached everyone, once.
    let catalog = storage
        .inbox(&s2, 0, 100)
        .await
        .expect("inbox")
        .into_iter()
        .filter(|e| e.event.kind == "relayed")
        .count();
    assert_eq!(catalog, 2, "a resource and a pool, relayed to everyone");

    // A gap is refused with the seq to send from; nothing of it applies.
    let mut ahead = Log {
        origin: log.origin.clone(),
        head: ChainHead {
            seq: 4,
            hash: shared::Hash::GENESIS,
        },
        epoch: 1,
    };
    let gap = ahead.next(
        now,
        EventBody::PoolAdjusted {
            pool: beans.clone(),
            delta: 1,
        },
    );
    match storage.push(&s1, vec![gap], "sig", None, now).await {
        Err(StorageError::Refused(Refusal::Gap { expected })) => assert_eq!(expected, 4),
        other => panic!("a gap must be refused, got {other:?}"),
    }

    // A fork (another event at seq 3) quarantines the device.
    let mut fork = Log {
        origin: log.origin.clone(),
        head: ChainHead {
            seq: 2,
            hash: batch[1].hash(),
        },
        epoch: 1,
    };
    let forked = fork.next(
        now,
        EventBody::AllotmentGranted {
            pool: beans.clone(),
            to: ParticipantId::Hub,
            units: 1,
        },
    );
    match storage.push(&s1, vec![forked], "sig", None, now).await {
        Err(StorageError::Refused(Refusal::Fork { seq })) => assert_eq!(seq, 3),
        other => panic!("a fork must be refused, got {other:?}"),
    }
    let device = storage.device(&s1).await.expect("read").expect("device");
    assert_eq!(device.status, DeviceStatus::Quarantined);
    let next = log.next(
        now,
        EventBody::PoolAdjusted {
            pool: beans.clone(),
            delta: 2,
        },
    );
    assert!(matches!(
        storage
            .push(&s1, vec![next.clone()], "sig", None, now)
            .await,
        Err(StorageError::Refused(Refusal::Quarantined(_)))
    ));

    // A reset starts epoch 2 after the hub's head; the old epoch is fenced.
    let (epoch, start, head) = storage.reset(&s1).await.expect("reset");
    assert_eq!((epoch, start, head.seq), (2, 4, 3));
    assert!(matches!(
        storage.push(&s1, vec![next], "sig", None, now).await,
        Err(StorageError::Refused(Refusal::Fenced { .. }))
    ));
    log.head = ChainHead {
        seq: 3,
        hash: batch[2].hash(),
    };
    log.epoch = 2;
    let adjusted = log.next(
        now,
        EventBody::PoolAdjusted {
            pool: beans.clone(),
            delta: 2,
        },
    );
    let pushed = storage
        .push(&s1, vec![adjusted], "sig", None, now)
        .await
        .expect("push in the new epoch");
    assert_eq!(pushed.acked.seq, 4);
    assert_eq!(
        storage.pool_summaries(&s1).await.expect("pools")[0].capacity,
        12
    );

    // A signed request's nonce is taken once.
    assert!(
        storage
            .admit(&s1, "n1", now, now + 600_000, seen(now))
            .await
            .expect("admit")
    );
    assert!(
        !storage
            .admit(&s1, "n1", now, now + 600_000, seen(now))
            .await
            .expect("admit")
    );

    let hook = storage
        .add_webhook("http://127.0.0.1:9/hook", "secret", now)
        .await
        .expect("webhook");
    assert!(hook > 0);

    // A web order with the owner reachable waits for the owner, who
    // decides it; a waiter hears of the decision.
    let mut decisions = storage.decisions().subscribe();
    let placed = storage
        .place_web_order(order(&beans, 2, None), NEAR, now)
        .await
        .expect("web order");
    assert_eq!(placed.booking.state, BookingState::Requested);
    assert_eq!(
        placed.booking.charged_to,
        ParticipantId::Location(s1.clone())
    );
    let request = placed.booking.id;
    let addressed = storage.inbox(&s1, 0, 1000).await.expect("inbox");
    assert!(
        addressed.iter().any(
            |e| matches!(e.event.typed(), Ok(EventBody::BookingCreated { id, .. }) if id == request)
        ),
        "the request reached the owner's inbox"
    );
    let decision = log.next(
        now + 1,
        EventBody::BookingCreated {
            id: request,
            owner: ParticipantId::Location(s1.clone()),
            requested_by: ParticipantId::Hub,
            charged_to: ParticipantId::Location(s1.clone()),
            channel: Channel::Web,
            lines: placed.booking.lines.clone(),
            customer: placed.booking.customer.clone(),
            state: BookingState::Confirmed,
            expires_at_ms: None,
            hold_seconds: None,
            reason: None,
        },
    );
    let pushed = storage
        .push(&s1, vec![decision], "sig", None, now + 1)
        .await
        .expect("decision");
    assert_eq!(pushed.changed, vec![request]);
    let mut heard = false;
    while let Ok(id) = decisions.try_recv() {
        heard |= id == request;
    }
    assert!(heard, "the decision reached the decisions channel");
    let booking = storage
        .booking(&request)
        .await
        .expect("read")
        .expect("booking");
    assert_eq!(booking.state, BookingState::Confirmed);
    assert_eq!(
        booking.decided_by,
        Some(ParticipantId::Location(s1.clone()))
    );
    assert_eq!(
        storage.pool_summaries(&s1).await.expect("pools")[0].available,
        10
    );

    // With the owner away the hub sells from its allotment; beyond it the
    // order waits for the owner.
    let sold = storage
        .place_web_order(order(&beans, 2, None), AWAY, now)
        .await
        .expect("web order");
    assert_eq!(sold.booking.state, BookingState::Confirmed);
    assert_eq!(sold.booking.charged_to, ParticipantId::Hub);
    assert_eq!(
        storage.pool_summaries(&s1).await.expect("pools")[0].hub_available,
        1
    );
    let waiting = storage
        .place_web_order(order(&beans, 2, None), AWAY, now)
        .await
        .expect("web order");
    assert_eq!(waiting.booking.state, BookingState::Requested);

    // Idempotency-Keys: the same request answers with the same booking; a
    // different body under the same key is refused.
    let mut keyed = order(&beans, 1, Some(60));
    keyed.idempotency = Some(("key-1".into(), "hash-a".into()));
    let first = storage
        .place_web_order(keyed.clone(), AWAY, now)
        .await
        .expect("keyed order");
    assert!(!first.replayed);
    assert_eq!(first.booking.state, BookingState::Held);
    let replay = storage
        .place_web_order(keyed.clone(), AWAY, now)
        .await
        .expect("replayed order");
    assert!(replay.replayed);
    assert_eq!(replay.booking.id, first.booking.id);
    keyed.idempotency = Some(("key-1".into(), "hash-b".into()));
    assert!(matches!(
        storage.place_web_order(keyed, AWAY, now).await,
        Err(StorageError::IdempotencyMismatch)
    ));

    // Cancellations: the hub's own sale is cancelled at once; what the
    // store holds is asked of the store; a store's own booking is not the
    // website's to cancel.
    let cancelled = storage
        .cancel_booking(&sold.booking.id, now)
        .await
        .expect("cancel");
    assert_eq!(cancelled.booking.state, BookingState::Cancelled);
    let asked = storage.cancel_booking(&request, now).await.expect("cancel");
    assert_eq!(asked.booking.state, BookingState::Confirmed);
    assert!(
        storage
            .inbox(&s1, 0, 1000)
            .await
            .expect("inbox")
            .iter()
            .any(|e| matches!(e.event.typed(), Ok(EventBody::BookingCancelRequested { id }) if id == request)),
        "the owner is asked to cancel"
    );
    let walk_in = BookingId::generate();
    let sale = log.next(
        now,
        EventBody::BookingCreated {
            id: walk_in,
            owner: ParticipantId::Location(s1.clone()),
            requested_by: ParticipantId::Location(s1.clone()),
            charged_to: ParticipantId::Location(s1.clone()),
            channel: Channel::Staff,
            lines: vec![Line {
                pool_id: beans.clone(),
                quantity: 1,
            }],
            customer: Customer {
                name: "Bo".into(),
                phone: None,
                email: None,
            },
            state: BookingState::Confirmed,
            expires_at_ms: None,
            hold_seconds: None,
            reason: None,
        },
    );
    storage
        .push(&s1, vec![sale], "sig", None, now)
        .await
        .expect("walk-in");
    assert!(matches!(
        storage.cancel_booking(&walk_in, now).await,
        Err(StorageError::InvalidState(_))
    ));
    // An order out of stock at the owner and at the hub is still taken, to
    // wait; a pool nobody has is not found.
    assert!(matches!(
        storage
            .place_web_order(
                order(&PoolId::parse("s1:none").expect("id"), 1, None),
                NEAR,
                now
            )
            .await,
        Err(StorageError::NotFound { .. })
    ));

    // Expiry: the hub's hold when it runs out; its waiting request once
    // its time and the skew margin have passed; nothing before.
    let skew = 30_000;
    assert!(
        storage
            .expire_due(skew, now)
            .await
            .expect("sweep")
            .is_empty()
    );
    let expired = storage.expire_due(skew, now + 61_000).await.expect("sweep");
    assert_eq!(
        expired,
        vec![first.booking.id],
        "the hold, not yet the request"
    );
    let expired = storage
        .expire_due(skew, now + 60_000 + skew + 1)
        .await
        .expect("sweep");
    assert_eq!(expired, vec![waiting.booking.id]);
    assert_eq!(
        state_of(storage, &waiting.booking.id).await,
        BookingState::Expired
    );
    assert_eq!(
        state_of(storage, &first.booking.id).await,
        BookingState::Expired
    );
    assert_eq!(
        storage.pool_summaries(&s1).await.expect("pools")[0].hub_available,
        3,
        "the hub's units came back"
    );

    // Webhooks: every change queued; each claimed once per lease; a failed
    // attempt is due again at its retry time; one done is gone.
    let later = now + 120_000;
    let claimed = storage
        .claim_deliveries(later, 30_000, 100)
        .await
        .expect("claim");
    assert!(!claimed.is_empty());
    let mut bookings_told: Vec<String> = claimed
        .iter()
        .map(|d| {
            let payload: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
            assert_eq!(payload["type"], "booking.state_changed");
            payload["booking"]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    bookings_told.sort();
    bookings_told.dedup();
    assert_eq!(
        bookings_told.len(),
        claimed.len(),
        "one change per booking at a time"
    );
    assert!(
        storage
            .claim_deliveries(later, 30_000, 100)
            .await
            .expect("claim")
            .is_empty(),
        "claimed deliveries are not handed out again within the lease"
    );
    let (done, failed) = (claimed[0].id, claimed.get(1).map(|d| d.id));
    storage.delivery_done(done, later).await.expect("done");
    if let Some(failed) = failed {
        storage
            .delivery_failed(failed, "answered 500", later + 1_000)
            .await
            .expect("failed");
        let again = storage
            .claim_deliveries(later + 1_000, 30_000, 100)
            .await
            .expect("claim");
        let retried = again.iter().find(|d| d.id == failed).expect("due again");
        assert_eq!(retried.attempts, 1);
        assert!(again.iter().all(|d| d.id != done));
    }

    // The fleet as the hub sees it.
    let locations = storage.locations().await.expect("locations");
    let ids: Vec<_> = locations.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids, vec![s1.clone(), s2.clone()]);
    assert_eq!(locations[0].epoch, 2);
    assert_eq!(locations[0].head_seq, 6);
}

#[tokio::test]
async fn the_sqlite_backend_tells_the_conformance_story() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = sync_hub::storage::sqlite::SqliteStorage::open(dir.path()).expect("open");
    story(Arc::new(storage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_backend_tells_the_conformance_story() {
    let pg = e2e::postgres::TempPostgres::shared().expect("start PostgreSQL");
    let url = pg
        .create_database("conformance")
        .expect("create a database");
    let storage = sync_hub::storage::postgres::PostgresStorage::connect(&url, Some("hub-key"))
        .await
        .expect("connect");
    story(Arc::new(storage)).await;
}
