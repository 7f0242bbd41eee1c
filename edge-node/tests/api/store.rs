//! The database file itself: pragmas, migrations, and what happens to a
//! database the binary does not understand.

use std::sync::Arc;

use edge_node::store::{self, Store, SystemClock};

use crate::helpers::init_dir;

#[test]
fn the_database_is_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    let (mode, sync) = store
        .read_blocking(|conn| {
            Ok((
                conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?,
                conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?,
            ))
        })
        .expect("read");
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "FULL");
}

/// The SQLite build options of `.cargo/config.toml` (fdatasync, no memory
/// statistics) are one setting; built without them, this option is missing.
#[test]
fn sqlite_is_built_with_the_workspace_options() {
    let conn = rusqlite::Connection::open_in_memory().expect("open");
    let mut options = conn.prepare("PRAGMA compile_options").expect("prepare");
    let options: Vec<String> = options
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("options");
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
}

#[test]
fn a_database_newer_than_the_binary_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let path = dir.path().join(store::DB_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
    }
    let err = Store::open(dir.path(), Arc::new(SystemClock::default())).expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("newer edge-node"), "{message}");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 99);
}

/// A database written by the previous schema (version 4) is brought up to
/// date on open: bookings keep their lines, now in their own row and
/// sorted by pool, the booking_lines table is gone, the state rule still
/// holds, and inserting a booking no longer builds a temporary b-tree.
#[test]
fn an_older_database_is_migrated_with_its_bookings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(store::DB_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for sql in [
            include_str!("../../../migrations/edge-node/0001_initial.sql"),
            include_str!("../../../migrations/edge-node/0002_sync.sql"),
            include_str!("../../../migrations/edge-node/0003_users.sql"),
            include_str!("../../../migrations/edge-node/0004_locations.sql"),
        ] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 4;
             INSERT INTO node (id, location_id, timezone, epoch, created_at_ms)
                 VALUES (1, 'store-1', 'UTC', 0, 0);
             INSERT INTO resources VALUES ('store-1:cups', 'store-1', 'Cups', 'stock', 0);
             INSERT INTO pools VALUES ('store-1:cups', 'store-1:cups', 'store-1', 10, NULL, NULL,
                 10, 3, 0, 0);
             INSERT INTO pools VALUES ('store-1:beans', 'store-1:cups', 'store-1', 10, NULL, NULL,
                 10, 1, 0, 0);
             INSERT INTO bookings VALUES ('0190a0a0-0000-7000-8000-000000000001', 'ABC123',
                 'store-1', 'store-1', 'store-1', 'kiosk', 'held', 'Ada', NULL, NULL, 99, NULL,
                 0, 0);
             INSERT INTO booking_lines VALUES ('0190a0a0-0000-7000-8000-000000000001',
                 'store-1:cups', 3);
             INSERT INTO booking_lines VALUES ('0190a0a0-0000-7000-8000-000000000001',
                 'store-1:beans', 1);",
        )
        .expect("old rows");
    }
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, store::SCHEMA_VERSION as i64);
    let (state, lines): (String, String) = conn
        .query_row(
            "SELECT state, lines FROM bookings WHERE code = 'ABC123'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the booking survives");
    assert_eq!(state, "held");
    assert_eq!(
        lines,
        r#"[{"pool_id":"store-1:beans","quantity":1},{"pool_id":"store-1:cups","quantity":3}]"#
    );
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('booking_lines', 'bookings_new')",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert_eq!(tables, 0);
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open again");
    let id = "0190a0a0-0000-7000-8000-000000000001".parse().expect("id");
    let view = store
        .read_blocking(move |conn| edge_node::store::queries::booking(conn, &id))
        .expect("read")
        .expect("found");
    assert_eq!(
        view.lines
            .iter()
            .map(|l| (l.pool_id.as_str(), l.quantity))
            .collect::<Vec<_>>(),
        [("store-1:beans", 1), ("store-1:cups", 3)]
    );
    drop(store);
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM bookings INDEXED BY bookings_pending_by_expiry
             WHERE state IN ('requested', 'held') AND expires_at_ms < 100",
            [],
            |r| r.get(0),
        )
        .expect("the sweeper's index is back");
    assert_eq!(pending, 1);
    let bad = conn.execute(
        "UPDATE bookings SET state = 'lost' WHERE code = 'ABC123'",
        [],
    );
    assert!(bad.is_err(), "the state rule still holds");
    let mut explain = conn
        .prepare(
            "EXPLAIN INSERT INTO bookings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
             ?12, ?13, ?14, ?15)",
        )
        .expect("explain");
    let opcodes: Vec<String> = explain
        .query_map(
            rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, 15)),
            |r| r.get(1),
        )
        .expect("opcodes")
        .collect::<Result<_, _>>()
        .expect("opcodes");
    assert!(
        !opcodes.iter().any(|op| op == "OpenEphemeral"),
        "{opcodes:?}"
    );
}

#[test]
fn an_uninitialized_directory_says_what_to_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Store::open(dir.path(), Arc::new(SystemClock::default())).expect_err("refused");
    assert!(err.to_string().contains("edge-node init"), "{err}");
}

#[test]
fn init_refuses_a_directory_that_already_holds_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let location = shared::LocationId::parse("store-2").expect("id");
    let err = store::init(dir.path(), &location, "Europe/Berlin", 0).expect_err("refused");
    assert!(err.to_string().contains("store-1"), "{err}");
    let err = store::init(
        tempfile::tempdir().expect("tempdir").path(),
        &location,
        "Mars/Olympus",
        0,
    )
    .expect_err("unknown zone");
    assert!(err.to_string().contains("time zone"), "{err}");
}

/// What the inbox did (units credited, a recall answered, a location
/// introduced) is in the node's own log, so a rebuild from that log alone
/// reaches the same state and the same pull cursor: nothing the hub sent is
/// answered twice.
#[test]
fn a_rebuild_from_the_own_log_restores_what_the_inbox_did() {
    use edge_node::store::{ops, queries, rebuild};
    use shared::protocol::InboxEvent;
    use shared::{ChainHead, Event, EventBody, LocationId, ParticipantId, PoolId, ResourceId};

    let owner = ParticipantId::parse("store-2").expect("id");
    let me = ParticipantId::parse(crate::helpers::LOCATION).expect("id");
    let pool = PoolId::parse("store-2:cups").expect("id");
    let theirs = [
        EventBody::ResourceCreated {
            id: ResourceId::parse("store-2:cups").expect("id"),
            owner: owner.clone(),
            name: "Cups".into(),
            kind: shared::ResourceKind::Stock,
        },
        EventBody::PoolCreated {
            id: pool.clone(),
            resource_id: ResourceId::parse("store-2:cups").expect("id"),
            owner: owner.clone(),
            capacity: 10,
            starts_at_ms: None,
            ends_at_ms: None,
        },
        EventBody::AllotmentGranted {
            pool: pool.clone(),
            to: me.clone(),
            units: 4,
        },
        EventBody::AllotmentRecalled {
            pool: pool.clone(),
            from: me.clone(),
            units: 1,
        },
    ];
    let (mut owner_head, mut hub_head) = (ChainHead::EMPTY, ChainHead::EMPTY);
    let mut inbox = Vec::new();
    let mut hub = |body: EventBody, head: &mut ChainHead| {
        let event = Event::next(*head, ParticipantId::Hub, 0, 1_000, body);
        *head = event.head();
        inbox.push(InboxEvent {
            hub_seq: event.seq,
            event,
        });
    };
    hub(
        EventBody::LocationJoined {
            location: LocationId::parse("store-2").expect("id"),
            name: "Store 2".into(),
        },
        &mut hub_head,
    );
    for body in theirs {
        let event = Event::next(owner_head, owner.clone(), 1, 1_000, body);
        owner_head = event.head();
        hub(
            EventBody::Relayed {
                event: Box::new(event),
            },
            &mut hub_head,
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let again = inbox.clone();
    let applied = runtime
        .block_on(store.write(move |ctx| ops::apply_inbox(ctx, &inbox)))
        .expect("applied");
    assert_eq!(applied, 5);
    type State = (u64, i64, Vec<queries::KnownLocation>);
    let state = |conn: &rusqlite::Connection| -> State {
        let cursor = queries::sync_row(conn).expect("sync").pull_cursor;
        let row = queries::pool_row_of(conn, &PoolId::parse("store-2:cups").expect("id"))
            .expect("read")
            .expect("the pool");
        (
            cursor,
            row.holding().available(),
            queries::known_locations(conn).expect("known"),
        )
    };
    let before = store.read_blocking(|conn| Ok(state(conn))).expect("read");
    assert_eq!(before.0, 5, "every inbox event was taken in");
    assert_eq!(before.1, 3, "4 granted, 1 given back on the recall");
    assert_eq!(before.2.len(), 1);
    let log = store
        .read_blocking(|conn| queries::events_after(conn, &me, 0, 1_000, usize::MAX))
        .expect("log");
    drop(store);
    // Our log took in the pool it names (its resource first), and not who
    // joined: what every store hears of is learned, not logged.
    let observed: Vec<String> = log
        .iter()
        .filter_map(|e| match e.typed() {
            Ok(EventBody::Observed { event, .. }) => Some(event.kind.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(observed, ["resource_created", "pool_created"]);

    let fresh = tempfile::tempdir().expect("tempdir");
    init_dir(fresh.path());
    let (mut conn, _) = store::open_admin(fresh.path()).expect("open");
    let tx = conn.transaction().expect("tx");
    rebuild::replace_history(&tx, &me, &log).expect("rebuilt");
    tx.commit().expect("commit");
    let rebuilt = state(&conn);
    assert_eq!(rebuilt.1, before.1, "the units our log took in");
    assert_eq!(
        (rebuilt.0, rebuilt.2.len()),
        (0, 0),
        "the inbox is pulled again"
    );
    drop(conn);
    // Pulled again, the inbox teaches what was learned, and changes nothing
    // our log already took in (the grant is not credited twice).
    let store = Store::open(fresh.path(), Arc::new(SystemClock::default())).expect("open");
    runtime
        .block_on(store.write(move |ctx| ops::apply_inbox(ctx, &again)))
        .expect("applied again");
    let head = *store.head_seq().borrow();
    assert_eq!(
        store.read_blocking(|conn| Ok(state(conn))).expect("read"),
        before
    );
    assert_eq!(head, log.len() as u64, "nothing new in our log");
}

/// Work that runs without its own savepoint: a refusal before writing is
/// that request's answer alone; a failure after writing rolls the whole
/// batch back, so nothing half-done is ever committed.
#[test]
fn work_checked_before_writing_fails_alone_or_rolls_back_its_batch() {
    use edge_node::store::{StoreError, ops, queries};
    use shared::{ResourceId, ResourceKind};

    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let resource = |slug: &str| ops::NewResource {
        id: Some(ResourceId::parse(&format!("store-1:{slug}")).expect("id")),
        name: slug.into(),
        kind: ResourceKind::Stock,
    };
    runtime.block_on(async {
        // A refusal before any write is the request's own answer.
        let refused = store
            .write_checked_first(|_ctx| -> Result<(), StoreError> {
                Err(StoreError::Conflict("refused before writing".into()))
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );

        // A failure after writing: the write is not kept, and the request
        // fails as an internal error, not with the job's own answer.
        let half = store
            .write_checked_first(move |ctx| -> Result<(), StoreError> {
                ops::create_resource(ctx, resource("half"))?;
                Err(StoreError::Conflict("failed after writing".into()))
            })
            .await;
        assert!(matches!(half, Err(StoreError::Internal(_))), "{half:?}");

        // The writer carries on, and its log has no trace of the half write.
        store
            .write(move |ctx| ops::create_resource(ctx, resource("whole")))
            .await
            .expect("written");
    });
    let (half, whole, events) = store
        .read_blocking(|conn| {
            Ok((
                queries::resource(conn, &ResourceId::parse("store-1:half").expect("id"))?,
                queries::resource(conn, &ResourceId::parse("store-1:whole").expect("id"))?,
                conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?,
            ))
        })
        .expect("read");
    assert!(half.is_none());
    assert!(whole.is_some());
    assert_eq!(events, 1);
    drop(store);
    assert_eq!(
        crate::helpers::verify_log(&dir.path().join(store::DB_FILE)),
        1
    );
}

/// A store with one stock pool, `store-1:cups`, of `capacity` units.
async fn store_with_cups(capacity: i64) -> (tempfile::TempDir, Store) {
    use edge_node::store::ops;
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    store
        .write(move |ctx| {
            ops::create_resource(
                ctx,
                ops::NewResource {
                    id: Some("store-1:cups".parse().expect("id")),
                    name: "Cups".into(),
                    kind: shared::ResourceKind::Stock,
                },
            )?;
            ops::create_pool(
                ctx,
                ops::NewPool {
                    id: Some("store-1:cups".parse().expect("id")),
                    resource_id: "store-1:cups".parse().expect("id"),
                    capacity,
                    starts_at_ms: None,
                    ends_at_ms: None,
                },
            )
        })
        .await
        .expect("catalog");
    (dir, store)
}

/// A booking of `quantity` cups.
fn cups_booking(quantity: i64) -> edge_node::store::ops::NewBooking {
    edge_node::store::ops::NewBooking {
        request: serde_json::from_value(serde_json::json!({
            "lines": [{"pool_id": "store-1:cups", "quantity": quantity}],
            "customer": {"name": "Ada"},
        }))
        .expect("request"),
        channel: shared::Channel::Kiosk,
    }
}

/// Keeps the writer busy for a moment once it has started, so that work
/// submitted meanwhile queues up and is committed in one batch.
async fn hold_writer(store: &Store) -> tokio::task::JoinHandle<edge_node::store::StoreResult<()>> {
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let blocker = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(move |_| {
                    let _ = started_tx.send(());
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .await
        }
    });
    started.await.expect("writer busy");
    blocker
}

/// A write that books and then fails is rolled back with its savepoint;
/// bookings after it in the same group commit must see the pool as the
/// database holds it, not as the rolled-back booking left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_after_a_rolled_back_write_in_the_same_batch_see_its_units_free() {
    use edge_node::store::{StoreError, ops};

    let (_dir, store) = store_with_cups(3).await;
    let pool: shared::PoolId = "store-1:cups".parse().expect("id");
    // The jobs below queue up behind this one and are committed together.
    let blocker = hold_writer(&store).await;
    let failing = tokio::spawn({
        let store = store.clone();
        let booking = cups_booking(2);
        async move {
            store
                .write(move |ctx| {
                    ops::create_booking(ctx, booking)?;
                    Err::<(), _>(StoreError::Invalid("changed my mind".into()))
                })
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let bookings: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            let booking = cups_booking(1);
            tokio::spawn(async move {
                store
                    .write_checked_first(move |ctx| ops::create_booking(ctx, booking))
                    .await
            })
        })
        .collect();
    blocker.await.expect("task").expect("blocker");
    assert!(failing.await.expect("task").is_err());
    for booking in bookings {
        booking
            .await
            .expect("task")
            .expect("each booking finds its unit free");
    }
    let available = store
        .read(move |conn| Ok(edge_node::store::queries::pool(conn, &pool)?.expect("pool")))
        .await
        .expect("read")
        .available;
    assert_eq!(available, 0);
}

/// A downloaded log whose booking names a pool the log never creates is
/// refused, as a foreign key from the lines to the pools would refuse it.
#[test]
fn a_rebuild_refuses_a_log_that_books_an_unknown_pool() {
    use edge_node::store::rebuild;
    use shared::{BookingId, BookingState, ChainHead, Channel, Customer, Event, EventBody, Line};

    let me = shared::ParticipantId::parse(crate::helpers::LOCATION).expect("id");
    let body = EventBody::BookingCreated {
        id: BookingId::generate(),
        owner: shared::ParticipantId::parse("store-2").expect("id"),
        requested_by: me.clone(),
        charged_to: shared::ParticipantId::parse("store-2").expect("id"),
        channel: Channel::Kiosk,
        lines: vec![Line {
            pool_id: "store-2:ghost".parse().expect("id"),
            quantity: 1,
        }],
        customer: Customer {
            name: "Ada".into(),
            phone: None,
            email: None,
        },
        state: BookingState::Requested,
        expires_at_ms: Some(10_000),
        hold_seconds: None,
        reason: None,
    };
    let log = [Event::next(ChainHead::EMPTY, me.clone(), 0, 1_000, body)];
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let (mut conn, _) = store::open_admin(dir.path()).expect("open");
    let tx = conn.transaction().expect("tx");
    let err = rebuild::replace_history(&tx, &me, &log).expect_err("refused");
    assert!(err.to_string().contains("store-2:ghost"), "{err}");
}

/// Bookings of one group commit write their units to the pool once, after
/// the last of them; work after them in the same batch must see every unit
/// they took. A grant that would give away booked units is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_after_bookings_in_the_same_batch_sees_the_units_they_took() {
    use edge_node::store::ops;

    let (_dir, store) = store_with_cups(5).await;
    let pool: shared::PoolId = "store-1:cups".parse().expect("id");
    let blocker = hold_writer(&store).await;
    let mut bookings = Vec::new();
    for _ in 0..3 {
        let store = store.clone();
        let booking = cups_booking(1);
        bookings.push(tokio::spawn(async move {
            store
                .write_checked_first(move |ctx| ops::create_booking(ctx, booking))
                .await
        }));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let grant = {
        let store = store.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            store
                .write(move |ctx| {
                    let too_many = ops::grant_allotment(ctx, &pool, &shared::ParticipantId::Hub, 3);
                    let what_is_left =
                        ops::grant_allotment(ctx, &pool, &shared::ParticipantId::Hub, 2)?;
                    Ok((too_many.is_err(), what_is_left.available))
                })
                .await
        })
    };
    blocker.await.expect("task").expect("blocker");
    for booking in bookings {
        booking.await.expect("task").expect("booked");
    }
    let (refused, available) = grant.await.expect("task").expect("granted what was left");
    assert!(
        refused,
        "3 of 5 units were booked; 3 more cannot be given away"
    );
    assert_eq!(available, 0);
    let (used, allotted) = store
        .read(move |conn| {
            let row = edge_node::store::queries::pool_row_of(conn, &pool)?.expect("pool");
            Ok((row.used, row.allotted))
        })
        .await
        .expect("read");
    assert_eq!(
        (used, allotted),
        (3, 3),
        "the pool row holds every booked unit"
    );
}

/// A database from before per-device sign-in counters keeps its locks: a
/// user's failures become the shared counter of their name, so an upgrade
/// neither lifts a lock nor forgets the failures before it.
#[test]
fn an_older_database_keeps_its_sign_in_locks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(store::DB_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for sql in [
            include_str!("../../../migrations/edge-node/0001_initial.sql"),
            include_str!("../../../migrations/edge-node/0002_sync.sql"),
            include_str!("../../../migrations/edge-node/0003_users.sql"),
            include_str!("../../../migrations/edge-node/0004_locations.sql"),
            include_str!("../../../migrations/edge-node/0005_booking_rows.sql"),
        ] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 5;
             INSERT INTO node (id, location_id, timezone, epoch, created_at_ms)
                 VALUES (1, 'store-1', 'UTC', 0, 0);
             INSERT INTO users (name, role, pin_hash, failed_attempts, locked_until_ms, created_at_ms)
                 VALUES ('Alice', 'staff', 'x', 6, 4000000000000, 0),
                        ('Bob', 'manager', 'x', 0, NULL, 0);",
        )
        .expect("old rows");
    }
    let store = Store::open(dir.path(), Arc::new(SystemClock::default())).expect("open");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let counters: Vec<(String, String, i64, Option<i64>)> = conn
        .prepare("SELECT name, device_hash, failed_attempts, locked_until_ms FROM sign_in_failures")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        counters,
        [(
            "Alice".to_owned(),
            String::new(),
            6,
            Some(4_000_000_000_000)
        )]
    );
    let old_columns: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('users')
             WHERE name IN ('failed_attempts', 'locked_until_ms')",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    assert_eq!(old_columns, 0, "the per-user counter is gone");
}
