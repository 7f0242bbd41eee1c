//! The hub's schema migrations on a database written by an older hub.

use sync_hub::storage::sqlite::{DB_FILE, SCHEMA_VERSION, SqliteStorage};
use sync_hub::working::EVERYONE;

/// A hub database at schema version 2 (before the ledgers) with a short
/// history: s1 owns 10 beans and gave 4 to s3 and 2 to the hub; s3
/// credited 3 of its 4 (1 still on its way) and returned 1. s3 sold 1, and
/// sold 2 more that it cancelled while s1's staff handed them over (the
/// view says fulfilled); s1 holds 2 and sold 3 that it cancelled; a web
/// request waits for s1, and another the hub gave up on before s1 decided.
fn version_2_database(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open");
    conn.execute_batch(include_str!(
        "../../migrations/sync-hub/sqlite/0001_initial.sql"
    ))
    .expect("0001");
    conn.execute_batch(include_str!(
        "../../migrations/sync-hub/sqlite/0002_bookings.sql"
    ))
    .expect("0002");
    let event = |origin: &str, seq: i64, kind: &str, body: String| {
        conn.execute(
            "INSERT INTO events (origin, seq, epoch, id, prev, hash, at_ms, kind, body, received_at_ms)
             VALUES (?1, ?2, 1, '00000000-0000-7000-8000-000000000000', ?5, ?5, 0, ?3, ?4, 0)",
            rusqlite::params![origin, seq, kind, body, "0".repeat(64)],
        )
        .expect("event");
    };
    let id = |n: u8| format!("00000000-0000-7000-8000-00000000000{n}");
    let created = |n: u8, state: &str, charged: &str| {
        format!(
            r#"{{"id":"{}","owner":"s1","charged_to":"{charged}","state":"{state}"}}"#,
            id(n)
        )
    };
    let about = |n: u8| format!(r#"{{"id":"{}"}}"#, id(n));
    event(
        "s1",
        1,
        "pool_created",
        r#"{"id":"s1:beans","resource_id":"s1:beans","owner":"s1","capacity":10}"#.into(),
    );
    event(
        "s1",
        2,
        "allotment_granted",
        r#"{"pool":"s1:beans","to":"s3","units":4}"#.into(),
    );
    event(
        "s1",
        3,
        "allotment_granted",
        r#"{"pool":"s1:beans","to":"hub","units":2}"#.into(),
    );
    event("s1", 4, "booking_created", created(2, "held", "s1"));
    event("s1", 5, "booking_created", created(4, "confirmed", "s1"));
    event("s1", 6, "booking_cancelled", about(4));
    event("s1", 7, "booking_fulfilled", about(5));
    event(
        "s3",
        1,
        "allotment_credited",
        r#"{"pool":"s1:beans","from":"s1","units":3,"hub_seq":5}"#.into(),
    );
    event(
        "s3",
        2,
        "allotment_returned",
        r#"{"pool":"s1:beans","units":1}"#.into(),
    );
    event("s3", 3, "booking_created", created(1, "confirmed", "s3"));
    event("s3", 4, "booking_created", created(5, "confirmed", "s3"));
    event("s3", 5, "booking_cancelled", about(5));
    event("hub", 1, "booking_created", created(3, "requested", "s1"));
    event("hub", 2, "booking_created", created(6, "requested", "s1"));
    event("hub", 3, "booking_expired", about(6));
    let booking = |n: u8, requested_by: &str, charged_to: &str, state: &str, quantity: i64| {
        conn.execute(
            "INSERT INTO view_bookings (id, owner, requested_by, charged_to, channel, state, lines,
                customer, created_at_ms, updated_at_ms)
             VALUES (?1, 's1', ?2, ?3, 'staff', ?4, ?5, '{\"name\":\"Ada\"}', 0, 0)",
            rusqlite::params![
                id(n),
                requested_by,
                charged_to,
                state,
                format!(r#"[{{"pool_id":"s1:beans","quantity":{quantity}}}]"#)
            ],
        )
        .expect("booking");
    };
    booking(1, "s3", "s3", "confirmed", 1);
    booking(2, "s1", "s1", "held", 2);
    booking(3, "hub", "s1", "requested", 5);
    booking(4, "s1", "s1", "cancelled", 3);
    booking(5, "s3", "s3", "fulfilled", 2);
    booking(6, "hub", "s1", "expired", 1);
    conn.execute_batch(
        "INSERT INTO view_pools (id, resource_id, owner, capacity, used, hub_allotted, updated_at_ms)
             VALUES ('s1:beans', 's1:beans', 's1', 10, 5, 2, 0);
         INSERT INTO view_allotments VALUES ('s1:beans', 's3', 3), ('s1:beans', 'hub', 2);
         INSERT INTO view_resources VALUES ('s1:beans', 's1', 'Beans', 'stock', 0);
         INSERT INTO locations (id, name, timezone, public_key, created_at_ms, enrolled_at_ms)
             VALUES ('s1', 'Store 1', 'UTC', 'key1', 0, 1), ('s3', 'Store 3', 'UTC', 'key3', 0, 2);
         PRAGMA user_version = 2;",
    )
    .expect("view");
}

#[test]
fn an_older_hub_database_gets_every_locations_ledger_from_the_logs_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    version_2_database(dir.path());
    drop(SqliteStorage::open(dir.path()).expect("migrate"));
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
    let holding = |holder: &str| -> (i64, i64) {
        conn.query_row(
            "SELECT allotted, used FROM view_holdings WHERE pool_id = 's1:beans' AND holder = ?1",
            [holder],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("holding")
    };
    assert_eq!(holding("s1"), (4, 2), "10 - 4 - 2 given away; 2 held");
    assert_eq!(
        holding("s3"),
        (2, 1),
        "3 credited - 1 returned; 1 sold, and 2 it cancelled itself"
    );
    let in_flight = |from: &str, to: &str| -> i64 {
        conn.query_row(
            "SELECT units FROM view_in_flight WHERE pool_id = 's1:beans' AND sender = ?1 AND receiver = ?2",
            [from, to],
            |r| r.get(0),
        )
        .expect("in flight")
    };
    assert_eq!(
        in_flight("s1", "s3"),
        1,
        "one granted unit not yet credited"
    );
    assert_eq!(in_flight("s3", "s1"), 1, "the returned unit");
    let charged = |n: u8| -> String {
        conn.query_row(
            "SELECT charged_state FROM view_bookings WHERE id = ?1",
            [format!("00000000-0000-7000-8000-00000000000{n}")],
            |r| r.get(0),
        )
        .expect("charged state")
    };
    // Each charged participant's own last word, not the view's merge.
    assert_eq!(charged(1), "confirmed");
    assert_eq!(charged(3), "requested", "s1 has not decided it");
    assert_eq!(charged(4), "cancelled");
    assert_eq!(charged(5), "cancelled", "s3's own word, whatever s1 did");
    assert_eq!(
        charged(6),
        "requested",
        "the hub gave up; s1 may still decide"
    );
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION as i64);
    // What the older hub had copied to each store is addressed to
    // everyone once: both locations, and s1's pool.
    let everyone: Vec<String> = conn
        .prepare("SELECT kind || ' ' || body FROM events WHERE recipient = ?1 ORDER BY seq")
        .expect("everyone")
        .query_map([EVERYONE], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(everyone.len(), 3, "{everyone:?}");
    assert!(everyone[0].contains(r#""location":"s1""#), "{everyone:?}");
    assert!(everyone[1].contains(r#""location":"s3""#), "{everyone:?}");
    assert!(everyone[2].starts_with("relayed") && everyone[2].contains("pool_created"));
    let pending: i64 = conn
        .query_row("SELECT count(*) FROM hub_meta", [], |r| r.get(0))
        .expect("meta");
    assert_eq!(pending, 0, "done once");
    let old_table: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'view_allotments'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert_eq!(old_table, 0, "the ledger replaces the old allotments table");
}

#[test]
fn a_hub_database_newer_than_the_binary_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        conn.execute_batch("PRAGMA user_version = 99;")
            .expect("version");
    }
    let error = SqliteStorage::open(dir.path()).expect_err("refused");
    assert!(error.to_string().contains("newer sync-hub"), "{error}");
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 99);
}

/// A store's catch-up reads a range of the inbox index, whatever the
/// length of the hub's log and the number of other stores.
#[test]
fn the_inbox_is_read_through_its_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(SqliteStorage::open(dir.path()).expect("open"));
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            sync_hub::storage::sqlite::INBOX_QUERY
        ))
        .expect("plan")
        .query_map(rusqlite::params!["s1", 0, 500], |r| r.get::<_, String>(3))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        plan,
        vec!["SEARCH events USING INDEX events_inbox (recipient=? AND seq>?)".to_owned()],
        "{plan:?}"
    );
}
