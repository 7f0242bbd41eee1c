//! Rebuilding a node's state from its own log as the hub holds it: a
//! replacement PC (`enroll --restore`) and a reset after a fork. Both run
//! with the server stopped, on one transaction: the node is either wholly
//! the old one or wholly the rebuilt one.

use rusqlite::{Connection, OptionalExtension, params};
use shared::event::ChainHead;
use shared::{Event, ParticipantId};

use super::writer::insert_own_event;
use super::{StoreError, StoreResult, project};

/// Replaces every state table and the log with `log` (this node's own log,
/// from seq 1), checking the hash chain as it goes. Returns the new head.
pub fn replace_history(
    conn: &Connection,
    me: &ParticipantId,
    log: &[Event],
) -> StoreResult<ChainHead> {
    conn.execute_batch(
        "DELETE FROM bookings;
         DELETE FROM booking_history;
         DELETE FROM allotments;
         DELETE FROM pools;
         DELETE FROM resources;
         DELETE FROM known_locations;
         DELETE FROM inbox_set_aside;
         DELETE FROM events;
         -- Answers recorded for requests of the replaced history.
         DELETE FROM idempotency_keys;
         UPDATE sync_state SET pull_cursor = 0 WHERE id = 1;",
    )?;
    let mut head = ChainHead::EMPTY;
    for event in log {
        // Check what arrives as it was checked when it was written.
        if event.origin != *me || event.seq != head.seq + 1 || event.prev != head.hash {
            return Err(StoreError::Corrupt(format!(
                "the downloaded log breaks at seq {} (expected {} after {})",
                event.seq,
                head.seq + 1,
                head.hash
            )));
        }
        let body = event
            .typed()
            .map_err(|e| StoreError::Corrupt(format!("event {} has a bad body: {e}", event.seq)))?;
        project::apply(conn, me, &body, event.at_ms)?;
        let sealed = event.to_sealed();
        insert_own_event(conn, &sealed)?;
        head = ChainHead {
            seq: event.seq,
            hash: sealed.hash,
        };
    }
    // What a foreign key from lines to pools would check: a log whose
    // bookings name pools it never created is not this node's.
    let unknown: Option<String> = conn
        .query_row(
            "SELECT line.value ->> 'pool_id' FROM bookings, json_each(bookings.lines) AS line
             WHERE line.value ->> 'pool_id' NOT IN (SELECT id FROM pools) LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(pool) = unknown {
        return Err(StoreError::Corrupt(format!(
            "the downloaded log books pool {pool}, which it never creates"
        )));
    }
    // What the inbox taught us without an event of ours (the catalog of
    // others, who joined) is learned again from the start of the inbox.
    conn.execute_batch(
        "UPDATE sync_state SET relearn_until = pull_cursor, pull_cursor = 0 WHERE id = 1;",
    )?;
    Ok(head)
}

/// Sets this node aside from events `from_seq` on: copies them into the
/// quarantine for staff to review. Returns how many.
pub fn quarantine_from(conn: &Connection, from_seq: u64, now_ms: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO quarantine (id, seq, epoch, at_ms, kind, body, hash, quarantined_at_ms)
         SELECT id, seq, epoch, at_ms, kind, body, hash, ?2 FROM events WHERE seq >= ?1",
        params![from_seq as i64, now_ms],
    )?)
}
