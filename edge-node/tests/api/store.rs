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
