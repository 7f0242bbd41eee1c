//! The projection: how each event of this node's own log changes its state
//! tables. The write path calls [`apply`] right before it appends the event,
//! and a rebuild (restore, reset) calls it for every event of a downloaded
//! log, so both reach the same state by construction.
//!
//! Decisions (is there capacity, is the transition allowed) are made before
//! an event exists; here an event is a fact and is applied as one.

use rusqlite::{Connection, OptionalExtension, params};
use shared::{BookingState, EventBody, ParticipantId, PoolId};

use uuid::Uuid;

use super::{StoreError, StoreResult, queries};

fn changed(rows: usize, what: &str, id: &str) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::Corrupt(format!(
            "event names unknown {what} {id}"
        )));
    }
    Ok(())
}

fn move_pool(
    conn: &Connection,
    pool: &PoolId,
    capacity: i64,
    allotted: i64,
    used: i64,
    at_ms: i64,
) -> StoreResult<()> {
    let rows = conn
        .prepare_cached(
            "UPDATE pools SET capacity = capacity + ?2, allotted = allotted + ?3, used = used + ?4,
                              updated_at_ms = ?5
             WHERE id = ?1",
        )?
        .execute(params![pool.as_str(), capacity, allotted, used, at_ms])?;
    changed(rows, "pool", pool.as_str())
}

fn move_allotment(
    conn: &Connection,
    pool: &PoolId,
    grantee: &ParticipantId,
    units: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO allotments (pool_id, grantee, units) VALUES (?1, ?2, max(?3, 0))
         ON CONFLICT (pool_id, grantee) DO UPDATE SET units = max(units + ?3, 0)",
    )?
    .execute(params![pool.as_str(), grantee.as_str(), units])?;
    Ok(())
}

fn pool_owner(conn: &Connection, pool: &PoolId) -> StoreResult<ParticipantId> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT owner FROM pools WHERE id = ?1")?
        .query_row([pool.as_str()], |r| r.get(0))
        .optional()?;
    let owner =
        owner.ok_or_else(|| StoreError::Corrupt(format!("event names unknown pool {pool}")))?;
    ParticipantId::parse(&owner).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Changes the units a booking's lines consume from pools charged to us.
fn consume(conn: &Connection, lines: &str, sign: i64, at_ms: i64) -> StoreResult<()> {
    for line in queries::parse_lines(lines)? {
        move_pool(conn, &line.pool_id, 0, 0, sign * line.quantity, at_ms)?;
    }
    Ok(())
}

fn set_state(
    conn: &Connection,
    me: &ParticipantId,
    id: &str,
    next: BookingState,
    change: Change<'_>,
    at_ms: i64,
) -> StoreResult<()> {
    let (state, charged_to, lines): (String, String, String) = conn
        .prepare_cached("SELECT state, charged_to, lines FROM bookings WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("event names unknown booking {id}")))?;
    let current = BookingState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?;
    if charged_to == me.as_str() {
        match (current.consumes_units(), next.consumes_units()) {
            (true, false) => consume(conn, &lines, -1, at_ms)?,
            (false, true) => consume(conn, &lines, 1, at_ms)?,
            _ => {}
        }
    }
    conn.prepare_cached(
        "UPDATE bookings SET state = ?2, reason = coalesce(?3, reason), updated_at_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![id, next.as_str(), change.reason, at_ms])?;
    if current != next {
        conn.prepare_cached(
            "INSERT INTO booking_history (booking_id, at_ms, from_state, to_state, by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id,
            at_ms,
            current.as_str(),
            next.as_str(),
            change.by
        ])?;
    }
    Ok(())
}

/// What an event says about a change besides the new state.
#[derive(Debug, Clone, Copy, Default)]
struct Change<'a> {
    reason: Option<&'a str>,
    by: Option<&'a str>,
}

impl<'a> Change<'a> {
    fn by(by: &'a Option<String>) -> Self {
        Self {
            reason: None,
            by: by.as_deref(),
        }
    }

    fn reason(reason: &'a str) -> Self {
        Self {
            reason: Some(reason),
            by: None,
        }
    }
}

/// Applies one event of `me`'s own log, written at `at_ms`.
pub fn apply(
    conn: &Connection,
    me: &ParticipantId,
    body: &EventBody,
    at_ms: i64,
) -> StoreResult<()> {
    apply_deferring(conn, me, body, at_ms, None)
}

/// Units taken from pools by new bookings and not yet written to the pools
/// table: the writer adds them up over a group commit and writes each pool
/// once, before anything else reads pools and before the commit.
pub(crate) type PoolDebts = Vec<(PoolId, i64)>;

/// Writes what `debts` holds to the pools table.
pub(crate) fn settle(conn: &Connection, debts: &PoolDebts, at_ms: i64) -> StoreResult<()> {
    for (pool, units) in debts {
        move_pool(conn, pool, 0, 0, *units, at_ms)?;
    }
    Ok(())
}

/// [`apply`], except that with `defer` the units a new booking takes from
/// pools charged to us are added there instead of written to the pools.
pub(crate) fn apply_deferring(
    conn: &Connection,
    me: &ParticipantId,
    body: &EventBody,
    at_ms: i64,
    defer: Option<&mut PoolDebts>,
) -> StoreResult<()> {
    match body {
        EventBody::ResourceCreated {
            id,
            owner,
            name,
            kind,
        } => {
            conn.prepare_cached(
                "INSERT INTO resources (id, owner, name, kind, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id.as_str(), owner.as_str(), name, kind.as_str(), at_ms])?;
        }
        EventBody::PoolCreated {
            id,
            resource_id,
            owner,
            capacity,
            starts_at_ms,
            ends_at_ms,
        } => {
            let allotted = if owner == me { *capacity } else { 0 };
            conn.prepare_cached(
                "INSERT INTO pools (id, resource_id, owner, capacity, starts_at_ms, ends_at_ms,
                                    allotted, used, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)",
            )?
            .execute(params![
                id.as_str(),
                resource_id.as_str(),
                owner.as_str(),
                capacity,
                starts_at_ms,
                ends_at_ms,
                allotted,
                at_ms
            ])?;
        }
        EventBody::PoolAdjusted { pool, delta } => move_pool(conn, pool, *delta, *delta, 0, at_ms)?,
        EventBody::AllotmentGranted { pool, to, units } => {
            move_pool(conn, pool, 0, -units, 0, at_ms)?;
            move_allotment(conn, pool, to, *units)?;
        }
        EventBody::AllotmentReturned {
            pool,
            units,
            hub_seq,
        } => {
            move_pool(conn, pool, 0, -units, 0, at_ms)?;
            if let Some(hub_seq) = hub_seq {
                conn.prepare_cached(
                    "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1) WHERE id = 1",
                )?
                .execute([*hub_seq as i64])?;
            }
        }
        EventBody::AllotmentCredited {
            pool,
            from,
            units,
            hub_seq,
        } => {
            move_pool(conn, pool, 0, *units, 0, at_ms)?;
            if pool_owner(conn, pool)? == *me {
                move_allotment(conn, pool, from, -units)?;
            }
            conn.prepare_cached(
                "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1) WHERE id = 1",
            )?
            .execute([*hub_seq as i64])?;
        }
        EventBody::BookingCreated {
            id,
            owner,
            requested_by,
            charged_to,
            channel,
            lines,
            customer,
            state,
            expires_at_ms,
            reason,
            ..
        } => {
            let mut key = Uuid::encode_buffer();
            conn.prepare_cached(
                "INSERT INTO bookings (id, code, owner, requested_by, charged_to, channel, state,
                    lines, customer_name, customer_phone, customer_email, expires_at_ms, reason,
                    created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14, ?13, ?13)",
            )?
            .execute(params![
                &*id.uuid().hyphenated().encode_lower(&mut key),
                id.short_code(),
                owner.as_str(),
                requested_by.as_str(),
                charged_to.as_str(),
                channel.as_str(),
                state.as_str(),
                queries::lines_json(lines)?,
                customer.name,
                customer.phone,
                customer.email,
                expires_at_ms,
                at_ms,
                reason
            ])?;
            if state.consumes_units() && charged_to == me {
                match defer {
                    Some(debts) => {
                        for line in lines {
                            match debts.iter_mut().find(|(pool, _)| *pool == line.pool_id) {
                                Some((_, units)) => *units += line.quantity,
                                None => debts.push((line.pool_id.clone(), line.quantity)),
                            }
                        }
                    }
                    None => {
                        for line in lines {
                            move_pool(conn, &line.pool_id, 0, 0, line.quantity, at_ms)?;
                        }
                    }
                }
            }
        }
        EventBody::BookingConfirmed { id, by } => set_state(
            conn,
            me,
            &id.to_string(),
            BookingState::Confirmed,
            Change::by(by),
            at_ms,
        )?,
        EventBody::BookingCancelled { id, by } => set_state(
            conn,
            me,
            &id.to_string(),
            BookingState::Cancelled,
            Change::by(by),
            at_ms,
        )?,
        EventBody::BookingFulfilled { id, by } => set_state(
            conn,
            me,
            &id.to_string(),
            BookingState::Fulfilled,
            Change::by(by),
            at_ms,
        )?,
        EventBody::BookingNoShow { id, by } => set_state(
            conn,
            me,
            &id.to_string(),
            BookingState::NoShow,
            Change::by(by),
            at_ms,
        )?,
        EventBody::BookingExpired { id, reason } => set_state(
            conn,
            me,
            &id.to_string(),
            BookingState::Expired,
            Change::reason(reason),
            at_ms,
        )?,
        EventBody::Observed { hub_seq, event } => {
            observe(conn, me, event, at_ms)?;
            conn.prepare_cached(
                "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1) WHERE id = 1",
            )?
            .execute([*hub_seq as i64])?;
        }
        EventBody::InboxSetAside {
            hub_seq,
            origin,
            kind,
            reason,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO inbox_set_aside (hub_seq, origin, kind, reason, set_aside_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![*hub_seq as i64, origin, kind, reason, at_ms])?;
            conn.prepare_cached(
                "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1) WHERE id = 1",
            )?
            .execute([*hub_seq as i64])?;
        }
        // Requests to others and hub relays change nothing here by themselves.
        EventBody::BookingCancelRequested { .. }
        | EventBody::Relayed { .. }
        | EventBody::AllotmentRecalled { .. }
        | EventBody::LocationJoined { .. } => {}
    }
    Ok(())
}

/// Takes in another participant's resource or pool, or a location
/// joining, as observing it would, but keeps a catalog event with its row
/// (`learned`, migration 0008) instead of in our log: [`log_learned`] puts
/// it there when our log first names the pool.
pub(crate) fn learn(
    conn: &Connection,
    me: &ParticipantId,
    hub_seq: u64,
    event: &shared::Event,
    at_ms: i64,
) -> StoreResult<()> {
    let body = event
        .typed()
        .map_err(|e| StoreError::Corrupt(format!("learned event: {e}")))?;
    take_in(conn, me, &body, at_ms)?;
    let (table, id) = match &body {
        EventBody::ResourceCreated { id, .. } => ("resources", id.as_str()),
        EventBody::PoolCreated { id, .. } => ("pools", id.as_str()),
        _ => return Ok(()),
    };
    let json = serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("learned event: {e}")))?;
    conn.prepare_cached(&format!(
        "UPDATE {table} SET learned = ?2, learned_event = ?3 WHERE id = ?1"
    ))?
    .execute(params![id, hub_seq as i64, json])?;
    Ok(())
}

/// The pools `body` names as already existing (not those it creates).
pub(crate) fn named_pools(body: &EventBody) -> Vec<PoolId> {
    match body {
        EventBody::PoolAdjusted { pool, .. }
        | EventBody::AllotmentGranted { pool, .. }
        | EventBody::AllotmentReturned { pool, .. }
        | EventBody::AllotmentCredited { pool, .. }
        | EventBody::AllotmentRecalled { pool, .. } => vec![pool.clone()],
        EventBody::BookingCreated { lines, .. } => {
            lines.iter().map(|line| line.pool_id.clone()).collect()
        }
        EventBody::Observed { event, .. } => event
            .typed()
            .map(|body| named_pools(&body))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A row's `learned` hub seq and `learned_event`, both NULL once logged.
type Learned = (Option<i64>, Option<String>);

/// The learned catalog events a new event of ours naming `pools` needs in
/// our log first, in the order to write them (a resource before its pool),
/// each as (hub seq, event); their rows no longer count as learned.
pub(crate) fn take_learned(
    conn: &Connection,
    pools: &[PoolId],
) -> StoreResult<Vec<(u64, shared::Event)>> {
    let mut events = Vec::new();
    for pool in pools {
        let row: Option<(String, Learned, Learned)> = conn
            .prepare_cached(
                "SELECT p.resource_id, r.learned, r.learned_event, p.learned, p.learned_event
                 FROM pools p JOIN resources r ON r.id = p.resource_id
                 WHERE p.id = ?1 AND (p.learned IS NOT NULL OR r.learned IS NOT NULL)",
            )?
            .query_row([pool.as_str()], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?)))
            })
            .optional()?;
        let Some((resource, (resource_seq, resource_event), (pool_seq, pool_event))) = row else {
            continue;
        };
        for (table, id, seq, event) in [
            ("resources", resource.as_str(), resource_seq, resource_event),
            ("pools", pool.as_str(), pool_seq, pool_event),
        ] {
            let (Some(seq), Some(event)) = (seq, event) else {
                continue;
            };
            let event: shared::Event = serde_json::from_str(&event)
                .map_err(|e| StoreError::Corrupt(format!("learned event of {id}: {e}")))?;
            conn.prepare_cached(&format!(
                "UPDATE {table} SET learned = NULL, learned_event = NULL WHERE id = ?1"
            ))?
            .execute([id])?;
            events.push((seq as u64, event));
        }
    }
    Ok(events)
}

/// Takes in what another participant did, as far as it concerns us.
fn observe(
    conn: &Connection,
    me: &ParticipantId,
    event: &shared::Event,
    at_ms: i64,
) -> StoreResult<()> {
    let body = event
        .typed()
        .map_err(|e| StoreError::Corrupt(format!("observed event: {e}")))?;
    take_in(conn, me, &body, at_ms)
}

/// What [`observe`] and [`learn`] do with another participant's event.
fn take_in(conn: &Connection, me: &ParticipantId, body: &EventBody, at_ms: i64) -> StoreResult<()> {
    match body {
        EventBody::LocationJoined { location, name } => {
            conn.prepare_cached(
                "INSERT INTO known_locations (id, name, joined_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            )?
            .execute(params![location.as_str(), name, at_ms])?;
        }
        // Another location's catalog, taken in once (it can arrive again
        // after a reset): the same rows its own events would make here.
        EventBody::ResourceCreated { id, .. } => {
            let known = conn
                .prepare_cached("SELECT 1 FROM resources WHERE id = ?1")?
                .exists([id.as_str()])?;
            if !known {
                apply(conn, me, body, at_ms)?;
            }
        }
        EventBody::PoolCreated { id, .. } => {
            let known = conn
                .prepare_cached("SELECT 1 FROM pools WHERE id = ?1")?
                .exists([id.as_str()])?;
            if !known {
                apply(conn, me, body, at_ms)?;
            }
        }
        EventBody::BookingCreated {
            id,
            state,
            expires_at_ms,
            reason,
            ..
        } => {
            let key = id.to_string();
            let known = conn
                .prepare_cached("SELECT 1 FROM bookings WHERE id = ?1")?
                .exists([&key])?;
            if known {
                adopt(
                    conn,
                    me,
                    &key,
                    *state,
                    Change {
                        reason: reason.as_deref(),
                        by: None,
                    },
                    *expires_at_ms,
                    at_ms,
                )?;
            } else {
                // A booking on our pool charged to someone else (the hub's
                // web sales, a grantee's): ours to see and hand over.
                apply(conn, me, body, at_ms)?;
            }
        }
        EventBody::BookingConfirmed { id, by } => adopt(
            conn,
            me,
            &id.to_string(),
            BookingState::Confirmed,
            Change::by(by),
            None,
            at_ms,
        )?,
        EventBody::BookingCancelled { id, by } => adopt(
            conn,
            me,
            &id.to_string(),
            BookingState::Cancelled,
            Change::by(by),
            None,
            at_ms,
        )?,
        EventBody::BookingFulfilled { id, by } => adopt(
            conn,
            me,
            &id.to_string(),
            BookingState::Fulfilled,
            Change::by(by),
            None,
            at_ms,
        )?,
        EventBody::BookingNoShow { id, by } => adopt(
            conn,
            me,
            &id.to_string(),
            BookingState::NoShow,
            Change::by(by),
            None,
            at_ms,
        )?,
        EventBody::BookingExpired { id, reason } => adopt(
            conn,
            me,
            &id.to_string(),
            BookingState::Expired,
            Change::reason(reason),
            None,
            at_ms,
        )?,
        _ => {}
    }
    Ok(())
}

/// Moves our copy of someone else's booking to what they say it is, by the
/// requester's rules: until we gave up we adopt their word; after, only
/// fulfilment.
fn adopt(
    conn: &Connection,
    me: &ParticipantId,
    id: &str,
    remote: BookingState,
    change: Change<'_>,
    expires_at_ms: Option<i64>,
    at_ms: i64,
) -> StoreResult<()> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM bookings WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(state) = state else { return Ok(()) };
    let local = BookingState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?;
    let Some(next) = shared::booking::requester_adopts(local, remote) else {
        return Ok(());
    };
    set_state(conn, me, id, next, change, at_ms)?;
    if let Some(at) = expires_at_ms {
        conn.prepare_cached("UPDATE bookings SET expires_at_ms = ?2 WHERE id = ?1")?
            .execute(params![id, at])?;
    }
    Ok(())
}
