//! Reads, and the views the API returns. Every function here takes a plain
//! connection, so it runs on a read connection or inside the writer's
//! transaction alike.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;
use shared::event::ResourceKind;
use shared::{
    BookingId, BookingState, Channel, Customer, Line, LocationId, ParticipantId, PoolId, ResourceId,
};

use super::{StoreError, StoreResult};

/// Milliseconds to the timestamp the API shows; out-of-range values (which
/// the store never writes) are clamped rather than trusted.
pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} {value:?} does not parse"))
}

fn participant(value: &str) -> StoreResult<ParticipantId> {
    ParticipantId::parse(value).map_err(|_| corrupt("participant", value))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ResourceView {
    pub id: ResourceId,
    pub owner: ParticipantId,
    pub name: String,
    pub kind: ResourceKind,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AllotmentView {
    pub to: ParticipantId,
    pub units: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PoolView {
    pub id: PoolId,
    pub resource_id: ResourceId,
    pub owner: ParticipantId,
    pub capacity: i64,
    /// Units this node may still book: its allotment minus what its own
    /// bookings use. Negative only after a stock decrease (see `overbooked`).
    pub available: i64,
    /// Units charged to this node.
    pub allotted: i64,
    /// Units this node's held, confirmed and fulfilled bookings consume.
    pub used: i64,
    pub overbooked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// Units granted out by this node as owner and not yet returned.
    pub allotments: Vec<AllotmentView>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BookingView {
    pub id: BookingId,
    pub code: String,
    pub state: BookingState,
    pub lines: Vec<Line>,
    pub customer: Customer,
    pub channel: Channel,
    pub owner: ParticipantId,
    pub requested_by: ParticipantId,
    pub charged_to: ParticipantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl BookingView {
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at.map(|t| t.as_millisecond())
    }
}

macro_rules! resource_columns {
    () => {
        "id, owner, name, kind, created_at_ms"
    };
}

fn resource_from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn resource_view(raw: (String, String, String, String, i64)) -> StoreResult<ResourceView> {
    let (id, owner, name, kind, created) = raw;
    Ok(ResourceView {
        id: ResourceId::parse(&id).map_err(|_| corrupt("resource id", &id))?,
        owner: participant(&owner)?,
        name,
        kind: ResourceKind::parse(&kind).ok_or_else(|| corrupt("resource kind", &kind))?,
        created_at: ts(created),
    })
}

pub fn resource(conn: &Connection, id: &ResourceId) -> StoreResult<Option<ResourceView>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        resource_columns!(),
        " FROM resources WHERE id = ?1"
    ))?
    .query_row([id.as_str()], resource_from_row)
    .optional()?
    .map(resource_view)
    .transpose()
}

pub fn resources(conn: &Connection) -> StoreResult<Vec<ResourceView>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        resource_columns!(),
        " FROM resources ORDER BY name, id"
    ))?;
    let rows = stmt.query_map([], resource_from_row)?;
    rows.map(|r| resource_view(r?)).collect()
}

/// The stored numbers of a pool, as the writer needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub id: PoolId,
    pub resource_id: ResourceId,
    pub owner: ParticipantId,
    pub capacity: i64,
    pub allotted: i64,
    pub used: i64,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl PoolRow {
    pub fn holding(&self) -> shared::Holding {
        shared::Holding {
            allotted: self.allotted,
            used: self.used,
        }
    }
}

macro_rules! pool_columns {
    () => {
        "id, resource_id, owner, capacity, allotted, used, starts_at_ms, ends_at_ms, updated_at_ms"
    };
}

type RawPool = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

fn pool_from_row(r: &Row<'_>) -> rusqlite::Result<RawPool> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn pool_row(raw: RawPool) -> StoreResult<PoolRow> {
    let (id, resource_id, owner, capacity, allotted, used, starts, ends, updated) = raw;
    Ok(PoolRow {
        id: PoolId::parse(&id).map_err(|_| corrupt("pool id", &id))?,
        resource_id: ResourceId::parse(&resource_id)
            .map_err(|_| corrupt("resource id", &resource_id))?,
        owner: participant(&owner)?,
        capacity,
        allotted,
        used,
        starts_at_ms: starts,
        ends_at_ms: ends,
        updated_at_ms: updated,
    })
}

pub fn pool_row_of(conn: &Connection, id: &PoolId) -> StoreResult<Option<PoolRow>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        pool_columns!(),
        " FROM pools WHERE id = ?1"
    ))?
    .query_row([id.as_str()], pool_from_row)
    .optional()?
    .map(pool_row)
    .transpose()
}

/// What placing a booking needs to know of a pool: who owns it, when it
/// ends, and what is charged to this node. Lighter than [`pool_row_of`] on
/// the hottest path there is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStanding {
    pub owner: ParticipantId,
    pub ends_at_ms: Option<i64>,
    pub holding: shared::Holding,
}

pub fn pool_standing_of(conn: &Connection, id: &PoolId) -> StoreResult<Option<PoolStanding>> {
    conn.prepare_cached("SELECT owner, ends_at_ms, allotted, used FROM pools WHERE id = ?1")?
        .query_row([id.as_str()], |r| {
            Ok((
                r.get_ref(0)?.as_str()?.parse::<ParticipantId>(),
                r.get(1)?,
                shared::Holding {
                    allotted: r.get(2)?,
                    used: r.get(3)?,
                },
            ))
        })
        .optional()?
        .map(|(owner, ends_at_ms, holding)| {
            Ok(PoolStanding {
                owner: owner.map_err(|e| StoreError::Corrupt(format!("pool owner: {e}")))?,
                ends_at_ms,
                holding,
            })
        })
        .transpose()
}

fn allotments_of(conn: &Connection, id: &PoolId) -> StoreResult<Vec<AllotmentView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT grantee, units FROM allotments WHERE pool_id = ?1 AND units > 0 ORDER BY grantee",
    )?;
    let rows = stmt.query_map([id.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
    rows.map(|r| {
        let (to, units) = r?;
        Ok(AllotmentView {
            to: participant(&to)?,
            units,
        })
    })
    .collect()
}

pub fn pool_view_of(conn: &Connection, row: PoolRow) -> StoreResult<PoolView> {
    let holding = row.holding();
    Ok(PoolView {
        allotments: allotments_of(conn, &row.id)?,
        available: holding.available(),
        overbooked: holding.overbooked(),
        id: row.id,
        resource_id: row.resource_id,
        owner: row.owner,
        capacity: row.capacity,
        allotted: row.allotted,
        used: row.used,
        starts_at: row.starts_at_ms.map(ts),
        ends_at: row.ends_at_ms.map(ts),
        updated_at: ts(row.updated_at_ms),
    })
}

pub fn pool(conn: &Connection, id: &PoolId) -> StoreResult<Option<PoolView>> {
    pool_row_of(conn, id)?
        .map(|row| pool_view_of(conn, row))
        .transpose()
}

/// The pools `ids` name that exist, each once: what a page needs to show
/// a list of bookings, whatever their age.
pub fn pools_named<'a>(
    conn: &Connection,
    ids: impl IntoIterator<Item = &'a PoolId>,
) -> StoreResult<Vec<PoolView>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if seen.insert(id.clone())
            && let Some(pool) = pool(conn, id)?
        {
            out.push(pool);
        }
    }
    Ok(out)
}

/// Pools, optionally of one resource, optionally only slots overlapping
/// `[from_ms, to_ms)`; stock pools (no time) always qualify.
#[derive(Debug, Clone, Default)]
pub struct PoolFilter {
    pub resource_id: Option<ResourceId>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
}

pub fn pools(conn: &Connection, filter: &PoolFilter) -> StoreResult<Vec<PoolView>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        pool_columns!(),
        " FROM pools
         WHERE (?1 IS NULL OR resource_id = ?1)
           AND (starts_at_ms IS NULL OR ?2 IS NULL OR ends_at_ms > ?2)
           AND (starts_at_ms IS NULL OR ?3 IS NULL OR starts_at_ms < ?3)
         ORDER BY resource_id, starts_at_ms, id
         LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        rusqlite::params![
            filter.resource_id.as_ref().map(|r| r.as_str()),
            filter.from_ms,
            filter.to_ms,
            filter.limit as i64
        ],
        pool_from_row,
    )?;
    let rows: Vec<PoolRow> = rows.map(|r| pool_row(r?)).collect::<StoreResult<_>>()?;
    rows.into_iter()
        .map(|row| pool_view_of(conn, row))
        .collect()
}

macro_rules! booking_columns {
    () => {
        "id, code, owner, requested_by, charged_to, channel, state, customer_name, customer_phone, \
         customer_email, expires_at_ms, reason, created_at_ms, updated_at_ms, lines"
    };
}

struct RawBooking {
    id: String,
    code: String,
    owner: String,
    requested_by: String,
    charged_to: String,
    channel: String,
    state: String,
    name: String,
    phone: Option<String>,
    email: Option<String>,
    expires_at_ms: Option<i64>,
    reason: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    lines: String,
}

fn booking_from_row(r: &Row<'_>) -> rusqlite::Result<RawBooking> {
    Ok(RawBooking {
        id: r.get(0)?,
        code: r.get(1)?,
        owner: r.get(2)?,
        requested_by: r.get(3)?,
        charged_to: r.get(4)?,
        channel: r.get(5)?,
        state: r.get(6)?,
        name: r.get(7)?,
        phone: r.get(8)?,
        email: r.get(9)?,
        expires_at_ms: r.get(10)?,
        reason: r.get(11)?,
        created_at_ms: r.get(12)?,
        updated_at_ms: r.get(13)?,
        lines: r.get(14)?,
    })
}

/// A booking's lines as its row holds them: a JSON array sorted by pool.
pub(crate) fn lines_json(lines: &[Line]) -> StoreResult<String> {
    let json = if lines.is_sorted_by(|a, b| a.pool_id <= b.pool_id) {
        serde_json::to_string(lines)
    } else {
        let mut sorted = lines.to_vec();
        sorted.sort_by(|a, b| a.pool_id.cmp(&b.pool_id));
        serde_json::to_string(&sorted)
    };
    json.map_err(|e| StoreError::Internal(format!("booking lines: {e}")))
}

/// The lines of a booking row.
pub(crate) fn parse_lines(json: &str) -> StoreResult<Vec<Line>> {
    serde_json::from_str(json).map_err(|_| corrupt("booking lines", json))
}

fn booking_view(raw: RawBooking) -> StoreResult<BookingView> {
    Ok(BookingView {
        lines: parse_lines(&raw.lines)?,
        id: BookingId::parse(&raw.id).map_err(|_| corrupt("booking id", &raw.id))?,
        code: raw.code,
        state: BookingState::parse(&raw.state).ok_or_else(|| corrupt("state", &raw.state))?,
        customer: Customer {
            name: raw.name,
            phone: raw.phone,
            email: raw.email,
        },
        channel: Channel::parse(&raw.channel).ok_or_else(|| corrupt("channel", &raw.channel))?,
        owner: participant(&raw.owner)?,
        requested_by: participant(&raw.requested_by)?,
        charged_to: participant(&raw.charged_to)?,
        expires_at: raw.expires_at_ms.map(ts),
        reason: raw.reason,
        created_at: ts(raw.created_at_ms),
        updated_at: ts(raw.updated_at_ms),
    })
}

pub fn booking(conn: &Connection, id: &BookingId) -> StoreResult<Option<BookingView>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings WHERE id = ?1"
    ))?
    .query_row([id.to_string()], booking_from_row)
    .optional()?
    .map(booking_view)
    .transpose()
}

/// Longest search text: longer than any name, phone or code.
pub const SEARCH_MAX_CHARS: usize = 100;

/// What staff typed to find a booking: its code, part of the customer's
/// name, or some digits of their phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The text as a code would be written (codes are upper case).
    code: String,
    /// Lower-cased, for a part of the name.
    name: String,
    /// Its digits, when there are enough to mean a phone number.
    digits: Option<String>,
}

/// Fewer digits than this match too many phone numbers to be a search.
const PHONE_DIGITS_MIN: usize = 3;

impl Search {
    pub fn new(text: &str) -> Self {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        Self {
            code: text.to_uppercase(),
            name: text.to_lowercase(),
            digits: (digits.len() >= PHONE_DIGITS_MIN).then_some(digits),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    pub state: Option<BookingState>,
    pub search: Option<Search>,
    /// Only bookings older than this one (the previous page's last).
    pub after: Option<BookingId>,
    pub limit: usize,
}

/// One page of bookings, and where the next begins.
#[derive(Debug, Clone)]
pub struct BookingPage {
    pub bookings: Vec<BookingView>,
    /// The last booking of this page, when more follow.
    pub next: Option<BookingId>,
}

/// Bookings, newest first (ids are time-ordered), one page at a time. A
/// search reads the bookings newest first until the page is full: names
/// and phones are matched anywhere in the text, which no index serves.
pub fn bookings(conn: &Connection, filter: &BookingFilter) -> StoreResult<BookingPage> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE (?1 IS NULL OR state = ?1)
           AND (?2 IS NULL OR id < ?2)
           AND (?3 IS NULL
                OR code = ?3
                OR instr(lower(customer_name), ?4) > 0
                OR (?5 IS NOT NULL AND instr(replace(replace(replace(replace(replace(replace(
                       coalesce(customer_phone, ''), ' ', ''), '-', ''), '+', ''), '(', ''), ')', ''), '/', ''),
                     ?5) > 0))
         ORDER BY id DESC
         LIMIT ?6"
    ))?;
    let search = filter.search.as_ref();
    let rows = stmt.query_map(
        rusqlite::params![
            filter.state.map(|s| s.as_str()),
            filter.after.map(|a| a.to_string()),
            search.map(|s| s.code.as_str()),
            search.map(|s| s.name.as_str()),
            search.and_then(|s| s.digits.as_deref()),
            filter.limit as i64 + 1
        ],
        booking_from_row,
    )?;
    let mut bookings: Vec<BookingView> = rows
        .map(|row| booking_view(row?))
        .collect::<StoreResult<_>>()?;
    let next = if bookings.len() > filter.limit {
        bookings.truncate(filter.limit);
        bookings.last().map(|b| b.id)
    } else {
        None
    };
    Ok(BookingPage { bookings, next })
}

/// One step of a booking's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryStep {
    pub at: Timestamp,
    pub state: BookingState,
    /// The staff member who made the change, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Every state `booking` has been in, oldest first, from when it was made.
pub fn booking_history(conn: &Connection, booking: &BookingView) -> StoreResult<Vec<HistoryStep>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, from_state, to_state, by FROM booking_history
         WHERE booking_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([booking.id.to_string()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let state = |s: &str| BookingState::parse(s).ok_or_else(|| corrupt("history state", s));
    let mut steps = Vec::new();
    for row in rows {
        let (at_ms, from, to, by) = row?;
        if steps.is_empty() {
            steps.push(HistoryStep {
                at: booking.created_at,
                state: state(&from)?,
                by: None,
            });
        }
        steps.push(HistoryStep {
            at: ts(at_ms),
            state: state(&to)?,
            by,
        });
    }
    if steps.is_empty() {
        steps.push(HistoryStep {
            at: booking.created_at,
            state: booking.state,
            by: None,
        });
    }
    Ok(steps)
}

/// Every booking waiting for something (a request without a decision, a
/// hold not yet confirmed), soonest to run out first, with no cap: a hold
/// left off the staff page would run out unseen. Read through the partial
/// index of pending bookings, so the cost is the number waiting, not the
/// number ever made.
pub fn pending_bookings(conn: &Connection) -> StoreResult<Vec<BookingView>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE state IN ('requested', 'held')
         ORDER BY expires_at_ms, id"
    ))?;
    let rows = stmt.query_map([], booking_from_row)?;
    rows.map(|row| booking_view(row?)).collect()
}

/// Every confirmed booking not yet handed over or past, newest first,
/// read through its partial index.
pub fn confirmed_bookings(conn: &Connection) -> StoreResult<Vec<BookingView>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings INDEXED BY bookings_confirmed
         WHERE state = 'confirmed'
         ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([], booking_from_row)?;
    rows.map(|row| booking_view(row?)).collect()
}

/// Who is booked into slot `pool`: every booking with a line on it that
/// holds or held units there (waiting, confirmed, arrived, no-show), in the
/// order they were made. Reads the bookings table through (no index knows
/// a booking's pools); only a roster page asks.
pub fn roster(conn: &Connection, pool: &PoolId) -> StoreResult<Vec<BookingView>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE instr(lines, ?1) > 0
           AND (state = 'requested' OR state = 'held' OR state = 'confirmed'
                OR state = 'fulfilled' OR state = 'no_show')
         ORDER BY id"
    ))?;
    // Lines are stored as `{"pool_id":"..","quantity":..}`: matching the
    // whole member keeps pool `a` from matching pool `ab`.
    let needle = format!("\"pool_id\":{}", serde_json::Value::from(pool.as_str()));
    let rows = stmt.query_map([needle], booking_from_row)?;
    let bookings: Vec<BookingView> = rows
        .map(|row| booking_view(row?))
        .collect::<StoreResult<_>>()?;
    Ok(bookings
        .into_iter()
        .filter(|b| b.lines.iter().any(|l| l.pool_id == *pool))
        .collect())
}

/// Whether a change to `booking` made here has not reached the hub yet:
/// one of the events past the acknowledged head names it. Reads only the
/// backlog, which is empty when the node is in sync.
pub fn booking_unsynced(conn: &Connection, booking: &BookingId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE seq > (SELECT acked_seq FROM sync_state WHERE id = 1)
                               AND body ->> 'id' = ?1)",
        )?
        .query_row([booking.to_string()], |r| r.get(0))?)
}

/// The name the hub gave this location, or its id when it has none (a
/// standalone node, or before the first pull).
pub fn store_name(conn: &Connection, me: &LocationId) -> StoreResult<String> {
    let name: Option<String> = conn
        .prepare_cached("SELECT name FROM known_locations WHERE id = ?1")?
        .query_row([me.as_str()], |r| r.get(0))
        .optional()?;
    Ok(name.unwrap_or_else(|| me.to_string()))
}

/// When this node must next expire something itself: a hold charged to it,
/// or a request of its own that had no decision by `expires_at` plus the
/// skew margin. The `state IN (...)` term repeats the partial index's
/// condition word for word, which is how SQLite recognises that it applies.
pub fn next_expiry_ms(
    conn: &Connection,
    me: &ParticipantId,
    skew_margin_ms: i64,
) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT min(CASE WHEN state = 'held' THEN expires_at_ms ELSE expires_at_ms + ?2 END)
             FROM bookings
             WHERE state IN ('requested', 'held')
               AND ((state = 'held' AND charged_to = ?1)
                 OR (state = 'requested' AND requested_by = ?1 AND charged_to != ?1))",
        )?
        .query_row(rusqlite::params![me.as_str(), skew_margin_ms], |r| r.get(0))?)
}

/// Counts for `edge-node status` and the sync status endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub events: u64,
    pub head_seq: u64,
}

pub fn log_stats(conn: &Connection) -> StoreResult<LogStats> {
    let (events, head): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), max(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(LogStats {
        events: events as u64,
        head_seq: head.unwrap_or(0) as u64,
    })
}

/// Events of this node's own log after `after`, at most `limit` of them and
/// about `max_bytes` of canonical body (at least one event when any).
pub fn events_after(
    conn: &Connection,
    origin: &ParticipantId,
    after: u64,
    limit: usize,
    max_bytes: usize,
) -> StoreResult<Vec<shared::Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, epoch, prev, at_ms, kind, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(rusqlite::params![after as i64, limit as i64])?;
    let mut events = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let body: String = r.get(6)?;
        bytes += body.len() + 256;
        if !events.is_empty() && bytes > max_bytes {
            break;
        }
        let seq: i64 = r.get(0)?;
        let id: String = r.get(1)?;
        let prev: String = r.get(3)?;
        events.push(shared::Event {
            origin: origin.clone(),
            epoch: r.get(2)?,
            seq: seq as u64,
            id: id.parse().map_err(|_| corrupt("event id", &id))?,
            prev: shared::Hash::parse_hex(&prev).ok_or_else(|| corrupt("prev", &prev))?,
            at_ms: r.get(4)?,
            kind: r.get(5)?,
            body: serde_json::from_str(&body).map_err(|_| corrupt("event body", &body))?,
        });
    }
    Ok(events)
}

/// The stored hash of this node's event `seq`.
pub fn event_hash(conn: &Connection, seq: u64) -> StoreResult<Option<shared::Hash>> {
    let hash: Option<String> = conn
        .prepare_cached("SELECT hash FROM events WHERE seq = ?1")?
        .query_row([seq as i64], |r| r.get(0))
        .optional()?;
    hash.map(|h| shared::Hash::parse_hex(&h).ok_or_else(|| corrupt("event hash", &h)))
        .transpose()
}

/// The sync client's progress and last readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRow {
    pub acked_seq: u64,
    pub pull_cursor: u64,
    /// Inbox events up to this hub seq are only learned again (a rebuild).
    pub relearn_until: u64,
    pub state: String,
    pub error: Option<String>,
    pub last_push_at_ms: Option<i64>,
    pub last_pull_at_ms: Option<i64>,
    pub clock_offset_ms: Option<i64>,
}

pub fn sync_row(conn: &Connection) -> StoreResult<SyncRow> {
    Ok(conn
        .prepare_cached(
            "SELECT acked_seq, pull_cursor, state, error, last_push_at_ms, last_pull_at_ms, clock_offset_ms,
                    relearn_until
             FROM sync_state WHERE id = 1",
        )?
        .query_row([], |r| {
            Ok(SyncRow {
                acked_seq: r.get::<_, i64>(0)? as u64,
                pull_cursor: r.get::<_, i64>(1)? as u64,
                state: r.get(2)?,
                error: r.get(3)?,
                last_push_at_ms: r.get(4)?,
                last_pull_at_ms: r.get(5)?,
                clock_offset_ms: r.get(6)?,
                relearn_until: r.get::<_, i64>(7)? as u64,
            })
        })?)
}

/// Quarantined events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuarantinedEvent {
    pub id: String,
    pub seq: u64,
    pub epoch: u32,
    pub at: Timestamp,
    pub kind: String,
    pub body: serde_json::Value,
    pub quarantined_at: Timestamp,
    pub status: String,
}

pub fn quarantine(conn: &Connection) -> StoreResult<Vec<QuarantinedEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, epoch, at_ms, kind, body, quarantined_at_ms, status FROM quarantine
         ORDER BY quarantined_at_ms DESC, seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    rows.map(|row| {
        let (id, seq, epoch, at, kind, body, quarantined, status) = row?;
        Ok(QuarantinedEvent {
            id,
            seq: seq as u64,
            epoch,
            at: ts(at),
            kind,
            body: serde_json::from_str(&body).map_err(|_| corrupt("quarantined body", &body))?,
            quarantined_at: ts(quarantined),
            status,
        })
    })
    .collect()
}

/// Another location this node heard of through the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownLocation {
    pub id: LocationId,
    pub name: String,
}

/// The locations the hub introduced, by id.
pub fn known_locations(conn: &Connection) -> StoreResult<Vec<KnownLocation>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM known_locations ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (id, name) = row?;
        Ok(KnownLocation {
            id: LocationId::parse(&id)
                .map_err(|e| StoreError::Corrupt(format!("known location {id}: {e}")))?,
            name,
        })
    })
    .collect()
}

/// An inbox event this node could not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SetAsideEvent {
    pub hub_seq: u64,
    pub origin: String,
    pub kind: String,
    pub reason: String,
    pub set_aside_at: Timestamp,
}

/// Set-aside inbox events shown at once: the newest, which say what goes
/// wrong now; the count says how many there are in all.
pub const SET_ASIDE_SHOWN_MAX: usize = 200;

pub fn set_aside(conn: &Connection) -> StoreResult<Vec<SetAsideEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hub_seq, origin, kind, reason, set_aside_at_ms FROM inbox_set_aside
         ORDER BY hub_seq DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([SET_ASIDE_SHOWN_MAX as i64], |r| {
        Ok(SetAsideEvent {
            hub_seq: r.get::<_, i64>(0)? as u64,
            origin: r.get(1)?,
            kind: r.get(2)?,
            reason: r.get(3)?,
            set_aside_at: ts(r.get(4)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_aside_count(conn: &Connection) -> StoreResult<u64> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM inbox_set_aside")?
        .query_row([], |r| r.get(0))?;
    Ok(count as u64)
}
/// Sync health as staff and the manager see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub enrolled: bool,
    pub state: String,
    pub backlog_events: u64,
    pub last_push_at: Option<jiff::Timestamp>,
    pub last_pull_at: Option<jiff::Timestamp>,
    /// This node's clock minus the hub's.
    pub clock_offset_ms: Option<i64>,
    /// The offset is beyond half the skew margin.
    pub clock_alert: bool,
    /// Inbox events this node could not apply and set aside
    /// (`GET /api/v1/sync/set-aside` lists them).
    pub set_aside_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the sync status as the sync client last recorded it. A node that
/// is not enrolled has no hub to reach: it is `offline`, and every event of
/// its log waits to be replayed once it enrolls.
pub fn sync_status(
    conn: &rusqlite::Connection,
    enrolled: bool,
    skew_margin_ms: i64,
) -> StoreResult<SyncStatus> {
    let stats = log_stats(conn)?;
    let row = sync_row(conn)?;
    let ts = |ms: Option<i64>| ms.map(ts);
    Ok(SyncStatus {
        enrolled,
        state: if enrolled {
            row.state
        } else {
            "offline".into()
        },
        backlog_events: stats.head_seq.saturating_sub(row.acked_seq),
        last_push_at: ts(row.last_push_at_ms),
        last_pull_at: ts(row.last_pull_at_ms),
        clock_offset_ms: row.clock_offset_ms,
        clock_alert: row
            .clock_offset_ms
            .is_some_and(|o| o.abs() > skew_margin_ms / 2),
        set_aside_events: set_aside_count(conn)?,
        error: row.error,
    })
}

/// How many bookings `owner` holds in each state and channel, for the
/// metrics (`(state, channel, count)`).
pub fn booking_counts(conn: &Connection, owner: &str) -> StoreResult<Vec<(String, String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, channel, count(*) FROM bookings WHERE owner = ?1 GROUP BY state, channel",
    )?;
    let rows = stmt.query_map([owner], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, channel, n) = row?;
        counts.push((state, channel, u64::try_from(n).unwrap_or(0)));
    }
    Ok(counts)
}
