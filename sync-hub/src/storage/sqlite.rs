//! The embedded SQLite backend: one file in WAL mode with
//! `synchronous = FULL`, one write connection (SQLite allows one writer
//! anyway, which is the hub's write lock), and a few read connections. It
//! stores, reads and locks; the rules are the caller's.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use rusqlite_migration::{M, Migrations};
use shared::event::ChainHead;
use shared::protocol::{HeadRef, InboxEvent};
use shared::{BookingId, Event, EventBody, LocationId, ParticipantId};

use super::columns::{self, BOOKING_COLUMNS, LOCATION_COLUMNS, POOL_COLUMNS};
use super::recent::Recent;
use super::{
    Delivery, Device, HubBooking, HubStorage, LocationHealth, PoolsRead, Seen, StorageError,
    StorageResult, Work,
};
use crate::fleet::{
    Alert, FailingWebhook, FleetRead, OpenAlert, Operator, OperatorSession, OverbookedPool,
};
use crate::notify::Inboxes;
use crate::working::{
    BookingRow, EVERYONE, EXPIRED_PER_SWEEP, HoldingRow, IdempotencyRow, LocationRow, NewEvent,
    PoolRow, ResourceRow, TokenRow, Working,
};

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0001_initial.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0002_bookings.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0003_ledgers.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0004_everyone.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0005_operations.sql"
    )),
    M::up(include_str!(
        "../../../migrations/sync-hub/sqlite/0006_fenced.sql"
    )),
];

/// The alerts raised and not cleared, oldest first.
fn open_alerts(conn: &Connection) -> StorageResult<Vec<OpenAlert>> {
    Ok(conn
        .prepare_cached(
            "SELECT key, kind, subject, message, raised_at_ms FROM alerts
             WHERE cleared_at_ms IS NULL ORDER BY raised_at_ms, id",
        )?
        .query_map([], |r| {
            Ok(OpenAlert {
                key: r.get(0)?,
                kind: r.get(1)?,
                subject: r.get(2)?,
                message: r.get(3)?,
                raised_at_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// One recipient's inbox after a seq: a range of the inbox index (and the
/// index alone: `INDEXED BY` makes a plan without it an error, and a test
/// checks the plan).
pub const INBOX_QUERY: &str = "SELECT seq, epoch, id, prev, at_ms, kind, body FROM events
     INDEXED BY events_inbox
     WHERE recipient = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Read connections kept open.
const READERS: usize = 4;
/// Prepared statements kept per connection. rusqlite keeps 16 by default;
/// applying one event runs more distinct statements than that (checks,
/// insert, view and ledger updates), and a cache smaller than the working
/// set evicts each statement just before it is needed again, so every
/// event would parse its SQL afresh.
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DB_FILE: &str = "hub.db";

fn open_connection(path: &Path, flags: OpenFlags) -> StorageResult<Connection> {
    // No mutex of SQLite's own around each call: a connection is used by
    // one thread at a time (rusqlite's `Connection` is not `Sync`), as
    // rusqlite's own default flags assume.
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::backend(format!(
            "SQLite refused WAL mode ({mode})"
        )));
    }
    // Durable at every commit: an acknowledged push survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        return Err(StorageError::backend(format!(
            "SQLite refused synchronous = FULL ({sync})"
        )));
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StorageResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StorageError::backend(format!(
            "this hub database has schema version {version}, but this sync-hub binary only knows \
             versions up to {known}: it was written by a newer sync-hub; the database was left untouched"
        )));
    }
    Migrations::from_slice(MIGRATIONS)
        .to_latest(conn)
        .map_err(|e| StorageError::backend(format!("migrating the hub database failed: {e}")))
}

#[derive(Debug)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<Connection>,
    /// One permit: a write waits for the writer here, as a task, not as a
    /// blocking thread parked on the mutex (a burst of pushes or
    /// enrollments would otherwise hold a thread each).
    write_turn: Arc<tokio::sync::Semaphore>,
    readers: Mutex<Vec<Connection>>,
    /// [`READERS`] permits: at most that many reads run at once, each on a
    /// pooled connection, whatever the number of requests waiting.
    read_turns: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    inboxes: Arc<Inboxes>,
    decisions: tokio::sync::broadcast::Sender<BookingId>,
    /// The last hub seq published to `inboxes`.
    published: Mutex<u64>,
    recent: Recent,
    /// Whether the task writing `recent`'s readings runs.
    writing_readings: std::sync::atomic::AtomicBool,
}

/// How often devices' health readings are written: one transaction for all
/// of them. Well under the 5 s after which a store counts as unreachable,
/// and reads that judge reachability look at the readings in memory first.
const READINGS_WRITTEN_EVERY: Duration = Duration::from_secs(1);

/// Readings written per transaction. A fleet of 10,000 stores long-polling
/// every 4 s brings 2,500 readings a second; in one transaction they would
/// hold the writer for tens of milliseconds. A few hundred rows take about
/// a millisecond.
const READINGS_PER_TRANSACTION: usize = 256;

/// Writes the readings taken since the last time, until the storage goes.
async fn write_readings(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(READINGS_WRITTEN_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let readings = inner.recent.unwritten();
        if readings.is_empty() {
            continue;
        }
        let storage = SqliteStorage {
            inner: inner.clone(),
        };
        // In turns of a bounded size: the single writer is free between
        // two, so a web order or a push waits for one turn at most, not for
        // the readings of the whole fleet.
        let mut failed = Vec::new();
        for turn in readings.chunks(READINGS_PER_TRANSACTION) {
            let written = turn.to_vec();
            let outcome = storage
                .write(move |tx| {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE locations SET last_seen_at_ms = ?2, clock_offset_ms = ?3,
                                backlog_events = coalesce(?4, backlog_events),
                                synced_at_ms = coalesce(?5, synced_at_ms)
                         WHERE id = ?1",
                    )?;
                    for (id, seen) in &written {
                        stmt.execute(params![
                            id.as_str(),
                            seen.at_ms,
                            seen.clock_offset_ms,
                            seen.backlog_events.map(|b| b as i64),
                            seen.synced_at_ms
                        ])?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = outcome {
                tracing::error!(error = %e, "writing devices' health readings failed; trying again");
                failed.extend_from_slice(turn);
            }
        }
        if !failed.is_empty() {
            inner.recent.unwritten_again(failed);
        }
    }
}

/// Publishes the hub events committed since the last call (the writer's
/// lock held): one read of the log's end, whatever the number of stores.
fn publish_committed(conn: &Connection, inner: &Inner) -> StorageResult<()> {
    let mut published = inner.published.lock().unwrap_or_else(|p| p.into_inner());
    let mut stmt = conn.prepare_cached(
        "SELECT seq, epoch, id, prev, at_ms, kind, body, recipient FROM events
         WHERE origin = 'hub' AND seq > ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([*published as i64], |r| {
        Ok((event_from_row(r)?, r.get::<_, Option<String>>(7)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (raw, recipient) = row?;
        let seq = raw.0 as u64;
        out.extend(columns::published(seq, recipient.as_deref(), || {
            build_event(&ParticipantId::Hub, raw)
        })?);
        *published = seq;
    }
    inner.inboxes.publish(out);
    Ok(())
}

/// Runs [`address_to_everyone`] if a migration asked for it.
fn readdress_once(conn: &mut Connection) -> StorageResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pending = tx
        .prepare("SELECT 1 FROM hub_meta WHERE key = 'address_to_everyone'")?
        .exists([])?;
    if pending {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let readdressed = address_to_everyone(&tx, now_ms)?;
        tx.execute("DELETE FROM hub_meta WHERE key = 'address_to_everyone'", [])?;
        tracing::info!(
            readdressed,
            "addressed locations and catalog to every location once"
        );
    }
    tx.commit()?;
    Ok(())
}

/// Addresses to everyone what a hub from before the everyone stream had
/// copied to each location separately: every enrolled location, and the
/// catalog the view holds (so a pool naming a resource the hub never had,
/// accepted before such events were refused, is left behind). Run once,
/// when the migration that brought the stream asks for it; stores that
/// had these already take them in again without effect.
fn address_to_everyone(conn: &Connection, now_ms: i64) -> StorageResult<usize> {
    let joined: Vec<(String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT id, name FROM locations WHERE public_key IS NOT NULL ORDER BY enrolled_at_ms, id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut w = Working::new();
    w.hub_head = Some(hub_head(conn)?);
    for (id, name) in &joined {
        let body = EventBody::LocationJoined {
            location: columns::location(id)?,
            name: name.clone(),
        };
        crate::view::append_hub(&mut w, Some(EVERYONE), body, now_ms)?;
    }
    let catalog: Vec<(String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT e.origin, e.seq FROM events AS e
             WHERE e.kind IN ('resource_created', 'pool_created') AND e.origin != 'hub'
               AND (e.kind = 'resource_created' OR EXISTS (
                    SELECT 1 FROM view_resources AS r
                    WHERE r.id = e.body ->> 'resource_id' AND r.owner = e.origin))
             ORDER BY e.origin, e.seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (origin, seq) in &catalog {
        let raw = conn.query_row(
            "SELECT seq, epoch, id, prev, at_ms, kind, body FROM events WHERE origin = ?1 AND seq = ?2",
            params![origin, seq],
            event_from_row,
        )?;
        let event = build_event(&columns::participant(origin)?, raw)?;
        let body = EventBody::Relayed {
            event: Box::new(event),
        };
        crate::view::append_hub(&mut w, Some(EVERYONE), body, now_ms)?;
    }
    save(conn, &w)?;
    Ok(joined.len() + catalog.len())
}

impl SqliteStorage {
    /// Opens (creating if needed) the hub database in `data_dir`.
    pub fn open(data_dir: &Path) -> StorageResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StorageError::backend(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut writer = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        migrate(&mut writer)?;
        readdress_once(&mut writer)?;
        let head = hub_head(&writer)?.seq;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY))
            .collect::<StorageResult<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                write_turn: Arc::new(tokio::sync::Semaphore::new(1)),
                readers: Mutex::new(readers),
                read_turns: Arc::new(tokio::sync::Semaphore::new(READERS)),
                path,
                inboxes: Arc::new(Inboxes::new(head)),
                decisions: tokio::sync::broadcast::channel(crate::notify::DECISIONS_BUFFERED).0,
                published: Mutex::new(head),
                recent: Recent::new(jiff::Timestamp::now().as_millisecond()),
                writing_readings: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    async fn write<T, F>(&self, work: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StorageResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let turn = turn(&inner.write_turn).await?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = work(&tx)?;
            tx.commit()?;
            // Still the only writer: what this commit appended to the hub's
            // log is published in commit order.
            publish_committed(&conn, &inner)?;
            Ok(out)
        })
        .await
        .map_err(|e| StorageError::backend(format!("write task failed: {e}")))?
    }

    async fn read<T, F>(&self, query: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let turn = turn(&inner.read_turns).await?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
            };
            let out = query(&conn);
            let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StorageError::backend(format!("read task failed: {e}")))?
    }
}

/// Waits for a permit of `turns`.
async fn turn(
    turns: &Arc<tokio::sync::Semaphore>,
) -> StorageResult<tokio::sync::OwnedSemaphorePermit> {
    turns
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| StorageError::backend(format!("storage closed: {e}")))
}

type RawEvent = (i64, u32, String, String, i64, String, String);

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn build_event(origin: &ParticipantId, raw: RawEvent) -> StorageResult<Event> {
    let (seq, epoch, id, prev, at_ms, kind, body) = raw;
    Ok(Event {
        origin: origin.clone(),
        epoch,
        seq: seq as u64,
        id: id
            .parse()
            .map_err(|_| StorageError::corrupt("event id", &id))?,
        prev: columns::hash(&prev)?,
        at_ms,
        kind,
        body: serde_json::from_str(&body).map_err(|_| StorageError::corrupt("event body", seq))?,
    })
}

fn hub_head(conn: &Connection) -> StorageResult<ChainHead> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM events WHERE origin = 'hub' ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some((seq, hash)) => columns::head(seq, &hash),
    }
}

fn load_location(
    conn: &Connection,
    recent: &Recent,
    id: &LocationId,
) -> StorageResult<Option<LocationRow>> {
    type Raw = (
        String,
        String,
        Option<String>,
        u32,
        i64,
        String,
        Option<String>,
        i64,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let row: Option<Raw> = conn
        .prepare_cached(&format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE id = ?1"
        ))?
        .query_row([id.as_str()], |r| {
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
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
            ))
        })
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let (name, timezone, public_key, epoch, start, status, reason, seq, hash, signature) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    );
    // The readings in memory are newer than those written.
    let heard = recent.seen(id).map(|s| s.at_ms);
    Ok(Some(LocationRow {
        name,
        timezone,
        public_key,
        epoch,
        epoch_start_seq: start as u64,
        status: columns::status(&status)?,
        quarantine_reason: reason,
        head: columns::head(seq, &hash)?,
        head_signature: signature,
        last_seen_at_ms: row.10.max(heard),
        backlog_events: row.11.map(|b| b as u64),
        synced_at_ms: row.12,
        enrolled_at_ms: row.13,
    }))
}

fn load_pool(conn: &Connection, id: &shared::PoolId) -> StorageResult<Option<PoolRow>> {
    type Raw = (
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        i64,
        i64,
        i64,
    );
    let row: Option<Raw> = conn
        .prepare_cached(&format!(
            "SELECT {POOL_COLUMNS} FROM view_pools WHERE id = ?1"
        ))?
        .query_row([id.as_str()], |r| {
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
        })
        .optional()?;
    row.map(|r| pool_row(r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8))
        .transpose()
}

#[allow(clippy::too_many_arguments)]
fn pool_row(
    resource_id: String,
    owner: String,
    capacity: i64,
    starts_at_ms: Option<i64>,
    ends_at_ms: Option<i64>,
    used: i64,
    hub_allotted: i64,
    hub_used: i64,
    updated_at_ms: i64,
) -> StorageResult<PoolRow> {
    Ok(PoolRow {
        resource_id: columns::resource(&resource_id)?,
        owner: columns::participant(&owner)?,
        capacity,
        starts_at_ms,
        ends_at_ms,
        used,
        hub_allotted,
        hub_used,
        updated_at_ms,
    })
}

fn load_booking(conn: &Connection, id: &BookingId) -> StorageResult<Option<BookingRow>> {
    let key = id.to_string();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {BOOKING_COLUMNS} FROM view_bookings WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([&key])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    columns::booking_row(
        &key,
        &r.get::<_, String>(0)?,
        &r.get::<_, String>(1)?,
        &r.get::<_, String>(2)?,
        &r.get::<_, String>(3)?,
        &r.get::<_, String>(4)?,
        &r.get::<_, String>(5)?,
        &r.get::<_, String>(6)?,
        &r.get::<_, String>(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get::<_, Option<String>>(10)?.as_deref(),
        r.get(11)?,
        r.get(12)?,
    )
    .map(Some)
}

/// Reads what `w` wants until it wants nothing more.
fn load(conn: &Connection, recent: &Recent, w: &mut Working) -> StorageResult<()> {
    loop {
        let wanted = w.wanted();
        if wanted.is_empty() {
            return Ok(());
        }
        for id in &wanted.locations {
            let row = load_location(conn, recent, id)?;
            w.locations.insert(id.clone(), row);
        }
        for id in &wanted.resources {
            let row: Option<(String, String, String, i64, bool)> = conn
                .prepare_cached(
                    "SELECT owner, name, kind, created_at_ms,
                            EXISTS (SELECT 1 FROM view_pools WHERE resource_id = ?1)
                     FROM view_resources WHERE id = ?1",
                )?
                .query_row([id.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            let row = row
                .map(|(owner, name, kind, created_at_ms, has_pools)| {
                    Ok::<_, StorageError>(ResourceRow {
                        owner: columns::participant(&owner)?,
                        name,
                        kind: columns::kind(&kind)?,
                        has_pools,
                        created_at_ms,
                    })
                })
                .transpose()?;
            w.resources.insert(id.clone(), row);
        }
        for id in &wanted.pools {
            let row = load_pool(conn, id)?;
            w.pools.insert(id.clone(), row);
        }
        for id in &wanted.bookings {
            let row = load_booking(conn, id)?;
            w.bookings.insert(*id, row);
        }
        for pool in &wanted.units_of {
            let mut stmt = conn.prepare_cached(
                "SELECT holder, allotted, used FROM view_holdings WHERE pool_id = ?1",
            )?;
            let rows = stmt.query_map([pool.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (holder, allotted, used) = row?;
                w.holdings.insert(
                    (pool.clone(), columns::location(&holder)?),
                    HoldingRow { allotted, used },
                );
            }
            let mut stmt = conn.prepare_cached(
                "SELECT sender, receiver, units FROM view_in_flight WHERE pool_id = ?1",
            )?;
            let rows = stmt.query_map([pool.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (from, to, units) = row?;
                w.in_flight.insert(
                    (
                        pool.clone(),
                        columns::participant(&from)?,
                        columns::participant(&to)?,
                    ),
                    units,
                );
            }
            w.units_loaded.insert(pool.clone());
        }
        for token in &wanted.tokens {
            let row: Option<(String, i64, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT location_id, expires_at_ms, used_at_ms FROM enrollment_tokens WHERE token_hash = ?1",
                )?
                .query_row([token], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let row = row
                .map(|(location, expires_at_ms, used_at_ms)| {
                    Ok::<_, StorageError>(TokenRow {
                        location: columns::location(&location)?,
                        expires_at_ms,
                        used_at_ms,
                    })
                })
                .transpose()?;
            w.tokens.insert(token.clone(), row);
        }
        for key in &wanted.idempotency {
            let row: Option<(String, String, i64)> = conn
                .prepare_cached(
                    "SELECT request_hash, booking_id, created_at_ms FROM idempotency_keys WHERE key = ?1",
                )?
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let row = row
                .map(|(request_hash, booking, created_at_ms)| {
                    Ok::<_, StorageError>(IdempotencyRow {
                        request_hash,
                        booking: columns::booking(&booking)?,
                        created_at_ms,
                    })
                })
                .transpose()?;
            w.idempotency.insert(key.clone(), row);
        }
        if wanted.hub_head {
            w.hub_head = Some(hub_head(conn)?);
        }
        if wanted.webhooks {
            let mut stmt = conn.prepare_cached("SELECT id FROM webhooks ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            w.webhooks = Some(rows.collect::<rusqlite::Result<_>>()?);
        }
        if let Some((location, from, to)) = &wanted.hashes {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, hash FROM events WHERE origin = ?1 AND seq BETWEEN ?2 AND ?3",
            )?;
            let rows = stmt
                .query_map(params![location.as_str(), *from as i64, *to as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
            for row in rows {
                let (seq, hash) = row?;
                w.stored_hashes.insert(seq as u64, columns::hash(&hash)?);
            }
        }
        if let Some((now_ms, skew_margin_ms)) = wanted.due {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM view_bookings
                 WHERE state IN ('requested', 'held')
                   AND ((state = 'requested' AND requested_by = 'hub' AND expires_at_ms < ?1 - ?2)
                     OR (state = 'held' AND charged_to = 'hub' AND expires_at_ms <= ?1))
                 LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![now_ms, skew_margin_ms, EXPIRED_PER_SWEEP as i64],
                |r| r.get::<_, String>(0),
            )?;
            let due = rows
                .map(|id| columns::booking(&id?))
                .collect::<StorageResult<Vec<_>>>()?;
            w.due = Some(due);
        }
    }
}

fn insert_event(conn: &Connection, stored: &NewEvent) -> StorageResult<()> {
    let event = &stored.event;
    conn.prepare_cached(
        "INSERT INTO events (origin, seq, epoch, id, prev, hash, at_ms, kind, body, recipient, received_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        event.origin.as_str(),
        event.seq as i64,
        event.epoch,
        event.id.to_string(),
        event.prev.to_hex(),
        stored.hash.to_hex(),
        event.at_ms,
        event.kind,
        stored.body,
        stored.recipient,
        stored.received_at_ms
    ])?;
    Ok(())
}

/// Writes what `w` changed.
fn save(conn: &Connection, w: &Working) -> StorageResult<()> {
    for stored in &w.new_events {
        insert_event(conn, stored)?;
    }
    for id in &w.dirty_locations {
        let Some(Some(row)) = w.locations.get(id) else {
            continue;
        };
        conn.prepare_cached(
            "UPDATE locations SET public_key = ?2, epoch = ?3, epoch_start_seq = ?4, status = ?5,
                    quarantine_reason = ?6, head_seq = ?7, head_hash = ?8, head_signature = ?9,
                    backlog_events = ?10, synced_at_ms = ?11, enrolled_at_ms = ?12
             WHERE id = ?1",
        )?
        .execute(params![
            id.as_str(),
            row.public_key,
            row.epoch,
            row.epoch_start_seq as i64,
            row.status.as_str(),
            row.quarantine_reason,
            row.head.seq as i64,
            row.head.hash.to_hex(),
            row.head_signature,
            row.backlog_events.map(|b| b as i64),
            row.synced_at_ms,
            row.enrolled_at_ms
        ])?;
    }
    for id in &w.dirty_resources {
        let Some(Some(row)) = w.resources.get(id) else {
            continue;
        };
        conn.prepare_cached(
            "INSERT OR IGNORE INTO view_resources (id, owner, name, kind, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id.as_str(),
            row.owner.as_str(),
            row.name,
            row.kind.as_str(),
            row.created_at_ms
        ])?;
    }
    for id in &w.dirty_pools {
        let Some(Some(row)) = w.pools.get(id) else {
            continue;
        };
        conn.prepare_cached(
            "INSERT INTO view_pools (id, resource_id, owner, capacity, starts_at_ms, ends_at_ms, used,
                                     hub_allotted, hub_used, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, used = excluded.used,
                 hub_allotted = excluded.hub_allotted, hub_used = excluded.hub_used,
                 updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(params![
            id.as_str(),
            row.resource_id.as_str(),
            row.owner.as_str(),
            row.capacity,
            row.starts_at_ms,
            row.ends_at_ms,
            row.used,
            row.hub_allotted,
            row.hub_used,
            row.updated_at_ms
        ])?;
    }
    for id in &w.dirty_bookings {
        let Some(Some(row)) = w.bookings.get(id) else {
            continue;
        };
        conn.prepare_cached(
            "INSERT INTO view_bookings (id, owner, requested_by, charged_to, charged_state, channel, state,
                                        lines, customer, expires_at_ms, reason, decided_by,
                                        created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO UPDATE SET charged_state = excluded.charged_state,
                 state = excluded.state, expires_at_ms = excluded.expires_at_ms,
                 reason = excluded.reason, decided_by = excluded.decided_by,
                 updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(params![
            id.to_string(),
            row.owner.as_str(),
            row.requested_by.as_str(),
            row.charged_to.as_str(),
            row.charged_state.as_str(),
            row.channel.as_str(),
            row.state.as_str(),
            columns::json(&row.lines)?,
            columns::json(&row.customer)?,
            row.expires_at_ms,
            row.reason,
            row.decided_by.as_ref().map(ParticipantId::as_str),
            row.created_at_ms,
            row.updated_at_ms
        ])?;
    }
    for key in &w.dirty_holdings {
        let row = w.holdings.get(key).copied().unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO view_holdings (pool_id, holder, allotted, used) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pool_id, holder) DO UPDATE SET allotted = excluded.allotted, used = excluded.used",
        )?
        .execute(params![key.0.as_str(), key.1.as_str(), row.allotted, row.used])?;
    }
    for key in &w.dirty_in_flight {
        let units = w.in_flight.get(key).copied().unwrap_or(0);
        conn.prepare_cached(
            "INSERT INTO view_in_flight (pool_id, sender, receiver, units) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pool_id, sender, receiver) DO UPDATE SET units = excluded.units",
        )?
        .execute(params![
            key.0.as_str(),
            key.1.as_str(),
            key.2.as_str(),
            units
        ])?;
    }
    for (token, at_ms) in &w.used_tokens {
        conn.prepare_cached(
            "UPDATE enrollment_tokens SET used_at_ms = ?2 WHERE token_hash = ?1 AND used_at_ms IS NULL",
        )?
        .execute(params![token, at_ms])?;
    }
    for (key, row) in &w.new_idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (key, request_hash, booking_id, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![key, row.request_hash, row.booking.to_string(), row.created_at_ms])?;
    }
    for set_aside in &w.set_aside {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO view_set_aside (location, hub_seq, origin, kind, reason, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            set_aside.location.as_str(),
            set_aside.hub_seq as i64,
            set_aside.origin,
            set_aside.kind,
            set_aside.reason,
            set_aside.at_ms
        ])?;
    }
    if let Some(before) = w.forget_idempotency_before {
        conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at_ms < ?1")?
            .execute([before])?;
    }
    for delivery in &w.deliveries {
        conn.prepare_cached(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, booking_id, payload, next_attempt_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            delivery.webhook,
            delivery.event_id,
            delivery.booking.to_string(),
            delivery.payload,
            delivery.due_at_ms
        ])?;
    }
    Ok(())
}

fn load_device(conn: &Connection, location: &LocationId) -> StorageResult<Option<Device>> {
    let row: Option<(Option<String>, u32, i64, String, i64, String)> = conn
        .prepare_cached(
            "SELECT public_key, epoch, epoch_start_seq, status, head_seq, head_hash
             FROM locations WHERE id = ?1",
        )?
        .query_row([location.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    row.map(|(public_key, epoch, start, status, seq, hash)| {
        Ok(Device {
            location: location.clone(),
            public_key,
            epoch,
            epoch_start_seq: start as u64,
            status: columns::status(&status)?,
            head: columns::head(seq, &hash)?.into(),
        })
    })
    .transpose()
}

#[async_trait]
impl HubStorage for SqliteStorage {
    fn inboxes(&self) -> Arc<Inboxes> {
        self.inner.inboxes.clone()
    }

    fn decisions(&self) -> tokio::sync::broadcast::Sender<BookingId> {
        self.inner.decisions.clone()
    }

    async fn transact(
        &self,
        mut working: Working,
        work: Work,
    ) -> StorageResult<Box<dyn Any + Send>> {
        let inner = self.inner.clone();
        let (out, changed) = self
            .write(move |tx| {
                load(tx, &inner.recent, &mut working)?;
                let out = work(&mut working)?;
                save(tx, &working)?;
                Ok((out, working.changed))
            })
            .await?;
        for id in changed {
            let _ = self.inner.decisions.send(id);
        }
        Ok(out)
    }

    async fn add_location(
        &self,
        id: &LocationId,
        name: &str,
        timezone: &str,
        token_hash: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StorageResult<()> {
        let (id, name, timezone, token_hash) = (
            id.clone(),
            name.to_owned(),
            timezone.to_owned(),
            token_hash.to_owned(),
        );
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO locations (id, name, timezone, created_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone",
                params![id.as_str(), name, timezone, now_ms],
            )?;
            tx.execute(
                "INSERT INTO enrollment_tokens (token_hash, location_id, expires_at_ms) VALUES (?1, ?2, ?3)",
                params![token_hash, id.as_str(), expires_at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_api_key(&self, name: &str, key_hash: &str, now_ms: i64) -> StorageResult<()> {
        let (name, key_hash) = (name.to_owned(), key_hash.to_owned());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO api_keys (key_hash, name, created_at_ms) VALUES (?1, ?2, ?3)",
                params![key_hash, name, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn ready(&self) -> StorageResult<()> {
        self.read(|conn| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != SCHEMA_VERSION as i64 {
                return Err(StorageError::backend(format!(
                    "the database has schema version {version}, this binary {SCHEMA_VERSION}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn api_key_exists(&self, key_hash: &str) -> StorageResult<bool> {
        let key_hash = key_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM api_keys WHERE key_hash = ?1")?
                .exists([key_hash])?)
        })
        .await
    }

    async fn note_fenced(&self, location: &LocationId, at_ms: i64) -> StorageResult<()> {
        let location = location.as_str().to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE locations SET fenced_at_ms = ?2
                 WHERE id = ?1 AND (fenced_at_ms IS NULL OR fenced_at_ms < ?2 - ?3)",
            )?
            .execute(params![location, at_ms, super::FENCED_NOTED_EVERY_MS])?;
            Ok(())
        })
        .await
    }

    async fn add_webhook(&self, url: &str, secret: &str, now_ms: i64) -> StorageResult<i64> {
        let (url, secret) = (url.to_owned(), secret.to_owned());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO webhooks (url, secret, created_at_ms) VALUES (?1, ?2, ?3)",
                params![url, secret, now_ms],
            )?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn device(&self, location: &LocationId) -> StorageResult<Option<Device>> {
        let location = location.clone();
        self.read(move |conn| load_device(conn, &location)).await
    }

    async fn admit(
        &self,
        location: &LocationId,
        nonce: &str,
        signed_at_ms: i64,
        expires_at_ms: i64,
        seen: Seen,
    ) -> StorageResult<bool> {
        use std::sync::atomic::Ordering;
        if !self.inner.writing_readings.swap(true, Ordering::AcqRel) {
            tokio::spawn(write_readings(Arc::downgrade(&self.inner)));
        }
        Ok(self
            .inner
            .recent
            .admit(location, nonce, signed_at_ms, expires_at_ms, seen))
    }

    fn pushed(&self, location: &LocationId, remaining: u64, at_ms: i64) {
        self.inner.recent.pushed(location, remaining, at_ms);
    }

    async fn inbox(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<InboxEvent>> {
        let location = location.clone();
        self.read(move |conn| {
            // What is addressed to the location and what is addressed to
            // everyone: each a range of the inbox index, merged by seq.
            // The cost is the page asked for, not the hub's log.
            let mut events = Vec::with_capacity(limit);
            for recipient in [location.as_str(), EVERYONE] {
                let mut stmt = conn.prepare_cached(INBOX_QUERY)?;
                let rows = stmt.query_map(
                    params![recipient, after as i64, limit as i64],
                    event_from_row,
                )?;
                for raw in rows {
                    let event = build_event(&ParticipantId::Hub, raw?)?;
                    events.push(InboxEvent {
                        hub_seq: event.seq,
                        event,
                    });
                }
            }
            events.sort_by_key(|e| e.hub_seq);
            events.truncate(limit);
            Ok(events)
        })
        .await
    }

    async fn own_log(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<(Vec<Event>, HeadRef)> {
        let location = location.clone();
        self.read(move |conn| {
            let device = load_device(conn, &location)?
                .ok_or_else(|| StorageError::not_found("location", &location))?;
            let origin = ParticipantId::Location(location.clone());
            let mut stmt = conn.prepare_cached(
                "SELECT seq, epoch, id, prev, at_ms, kind, body FROM events
                 WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![location.as_str(), after as i64, limit as i64],
                event_from_row,
            )?;
            let events = rows
                .map(|raw| build_event(&origin, raw?))
                .collect::<StorageResult<Vec<_>>>()?;
            Ok((events, device.head))
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>> {
        self.write(move |tx| {
            let due: Vec<Delivery> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT d.id, w.url, w.secret, d.event_id, d.payload, d.attempts
                     FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                     WHERE d.delivered_at_ms IS NULL AND d.next_attempt_at_ms <= ?1
                       AND d.id = (SELECT min(e.id) FROM webhook_deliveries e
                                   WHERE e.webhook_id = d.webhook_id AND e.booking_id = d.booking_id
                                     AND e.delivered_at_ms IS NULL)
                     ORDER BY d.id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
                    Ok(Delivery {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        secret: r.get(2)?,
                        event_id: r.get(3)?,
                        payload: r.get(4)?,
                        attempts: r.get(5)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut lease = tx.prepare_cached(
                "UPDATE webhook_deliveries SET next_attempt_at_ms = ?2 WHERE id = ?1",
            )?;
            for delivery in &due {
                lease.execute(params![delivery.id, now_ms + lease_ms])?;
            }
            Ok(due)
        })
        .await
    }

    async fn delivery_done(&self, id: i64, now_ms: i64) -> StorageResult<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE webhook_deliveries SET delivered_at_ms = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn delivery_failed(&self, id: i64, error: &str, retry_at_ms: i64) -> StorageResult<()> {
        let error: String = error.chars().take(500).collect();
        self.write(move |tx| {
            tx.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at_ms = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, retry_at_ms, error],
            )?;
            Ok(())
        })
        .await
    }

    async fn pools(&self, location: &LocationId) -> StorageResult<PoolsRead> {
        let location = location.clone();
        let inner = self.inner.clone();
        self.read(move |conn| {
            let (last_seen, synced_at, backlog, head_seq): (Option<i64>, Option<i64>, Option<i64>, i64) = conn
                .query_row(
                    "SELECT last_seen_at_ms, synced_at_ms, backlog_events, head_seq FROM locations WHERE id = ?1",
                    [location.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?
                .ok_or_else(|| StorageError::not_found("location", &location))?;
            let (last_seen, synced_at, backlog) = match inner.recent.seen(&location) {
                Some(seen) => (
                    Some(seen.at_ms).max(last_seen),
                    seen.synced_at_ms.or(synced_at),
                    seen.backlog_events.map(|b| b as i64).or(backlog),
                ),
                None => (last_seen, synced_at, backlog),
            };
            let last_event_at: Option<i64> = conn
                .query_row(
                    "SELECT at_ms FROM events WHERE origin = ?1 AND seq = ?2",
                    params![location.as_str(), head_seq],
                    |r| r.get(0),
                )
                .optional()?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, {POOL_COLUMNS} FROM view_pools WHERE owner = ?1 ORDER BY resource_id, starts_at_ms, id"
            ))?;
            let rows = stmt.query_map([location.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ),
                ))
            })?;
            let pools = rows
                .map(|row| {
                    let (id, r) = row?;
                    Ok((
                        columns::pool(&id)?,
                        pool_row(r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8)?,
                    ))
                })
                .collect::<StorageResult<Vec<_>>>()?;
            Ok(PoolsRead {
                last_seen_at_ms: last_seen,
                synced_at_ms: synced_at,
                backlog_events: backlog.map(|b| b as u64),
                last_event_at_ms: last_event_at,
                pools,
            })
        })
        .await
    }

    async fn booking(&self, id: &BookingId) -> StorageResult<Option<HubBooking>> {
        let id = *id;
        self.read(move |conn| Ok(load_booking(conn, &id)?.map(|row| row.public(id))))
            .await
    }

    async fn locations(&self) -> StorageResult<Vec<LocationHealth>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, timezone, status, epoch, head_seq, last_seen_at_ms, backlog_events, clock_offset_ms,
                        (SELECT count(*) FROM view_set_aside WHERE location = locations.id), fenced_at_ms
                 FROM locations ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })?;
            rows.map(|row| {
                let (id, name, timezone, status, epoch, head_seq, last_seen, backlog, offset, set_aside, fenced) = row?;
                let id = columns::location(&id)?;
                // Readings in memory are newer than those written.
                let (last_seen, backlog, offset) = match inner.recent.seen(&id) {
                    Some(seen) => (
                        Some(seen.at_ms).max(last_seen),
                        seen.backlog_events.map(|b| b as i64).or(backlog),
                        Some(seen.clock_offset_ms),
                    ),
                    None => (last_seen, backlog, offset),
                };
                Ok(LocationHealth {
                    id,
                    name,
                    timezone,
                    status: columns::status(&status)?,
                    epoch,
                    head_seq: head_seq as u64,
                    last_seen_at: last_seen.map(crate::working::timestamp),
                    backlog_events: backlog.map(|b| b as u64),
                    clock_offset_ms: offset,
                    set_aside_events: set_aside as u64,
                    fenced_at: fenced.map(crate::working::timestamp),
                })
            })
            .collect()
        })
        .await
    }

    async fn fleet(&self, _now_ms: i64) -> StorageResult<FleetRead> {
        let locations = self.locations().await?;
        let mut fleet = self
            .read(|conn| {
                let waiting_requests = conn
                    .prepare_cached(
                        "SELECT owner, count(*) FROM view_bookings WHERE state = 'requested'
                         GROUP BY owner ORDER BY owner",
                    )?
                    .query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let overbooked_pools = conn
                    .prepare_cached(&format!(
                        "SELECT id, owner, capacity, used FROM view_pools WHERE used > capacity
                         ORDER BY id LIMIT {}",
                        crate::alerts::LISTED_MAX
                    ))?
                    .query_map([], |r| {
                        Ok(OverbookedPool {
                            id: r.get(0)?,
                            owner: r.get(1)?,
                            capacity: r.get(2)?,
                            used: r.get(3)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let failing_webhooks = conn
                    .prepare_cached(
                        "SELECT w.id, w.url, max(d.attempts), count(*),
                                (SELECT e.last_error FROM webhook_deliveries e
                                  WHERE e.webhook_id = w.id AND e.delivered_at_ms IS NULL
                                  ORDER BY e.attempts DESC, e.id LIMIT 1)
                         FROM webhooks w JOIN webhook_deliveries d ON d.webhook_id = w.id
                         WHERE d.delivered_at_ms IS NULL
                         GROUP BY w.id, w.url HAVING max(d.attempts) > 0 ORDER BY w.id",
                    )?
                    .query_map([], |r| {
                        Ok(FailingWebhook {
                            id: r.get(0)?,
                            url: r.get(1)?,
                            attempts: r.get(2)?,
                            pending: r.get::<_, i64>(3)? as u64,
                            last_error: r.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let open_alerts = open_alerts(conn)?;
                Ok(FleetRead {
                    locations: Vec::new(),
                    waiting_requests,
                    overbooked_pools,
                    failing_webhooks,
                    open_alerts,
                })
            })
            .await?;
        fleet.locations = locations;
        Ok(fleet)
    }

    async fn booking_counts(&self) -> StorageResult<Vec<(String, String, u64)>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT state, channel, count(*) FROM view_bookings GROUP BY state, channel",
                )?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn record_alerts(
        &self,
        current: Vec<Alert>,
        now_ms: i64,
    ) -> StorageResult<crate::alerts::Changes> {
        self.write(move |tx| {
            let open = open_alerts(tx)?;
            let changes = crate::alerts::diff(&open, &current);
            if changes == crate::alerts::Changes::default() {
                return Ok(changes);
            }
            let hooks = tx
                .prepare_cached("SELECT id FROM webhooks ORDER BY id")?
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let enqueue = |alert: &OpenAlert, raised: bool| -> StorageResult<()> {
                for hook in &hooks {
                    let event_id = uuid::Uuid::now_v7().to_string();
                    let payload = crate::alerts::payload(&event_id, raised, alert, now_ms);
                    tx.prepare_cached(
                        "INSERT INTO webhook_deliveries (webhook_id, event_id, booking_id, payload, next_attempt_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![hook, event_id, format!("alert:{}", alert.key), payload.to_string(), now_ms])?;
                }
                Ok(())
            };
            for alert in &changes.raised {
                tx.prepare_cached(
                    "INSERT INTO alerts (key, kind, subject, message, raised_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![alert.key, alert.kind, alert.subject, alert.message, now_ms])?;
                enqueue(&alert.opened(now_ms), true)?;
            }
            for alert in &changes.cleared {
                tx.prepare_cached(
                    "UPDATE alerts SET cleared_at_ms = ?2 WHERE key = ?1 AND cleared_at_ms IS NULL",
                )?
                .execute(params![alert.key, now_ms])?;
                enqueue(alert, false)?;
            }
            Ok(changes)
        })
        .await
    }

    async fn add_operator(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |tx| {
            let added = tx
                .prepare_cached(
                    "INSERT INTO operators (name, password_hash, created_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![name, hash, now_ms])?;
            if added == 0 {
                return Err(StorageError::Conflict(format!(
                    "an operator named {name:?} exists already"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn operator(&self, name: &str) -> StorageResult<Option<Operator>> {
        let name = name.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, password_hash, failed_attempts, locked_until_ms FROM operators WHERE name = ?1",
                )?
                .query_row([name], |r| {
                    Ok(Operator {
                        name: r.get(0)?,
                        password_hash: r.get(1)?,
                        failed_attempts: r.get(2)?,
                        locked_until_ms: r.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn operator_failed(&self, name: &str, lock_until_ms: Option<i64>) -> StorageResult<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE operators SET failed_attempts = failed_attempts + 1,
                        locked_until_ms = coalesce(?2, locked_until_ms)
                 WHERE name = ?1",
            )?
            .execute(params![name, lock_until_ms])?;
            Ok(())
        })
        .await
    }

    async fn start_operator_session(
        &self,
        name: &str,
        token_hash: &str,
        csrf: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let (name, token_hash, csrf) = (name.to_owned(), token_hash.to_owned(), csrf.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE operators SET failed_attempts = 0, locked_until_ms = NULL WHERE name = ?1",
            )?
            .execute([&name])?;
            // Sessions nobody used for a day are gone for good.
            tx.prepare_cached("DELETE FROM operator_sessions WHERE last_seen_ms < ?1")?
                .execute([now_ms - 24 * 3600 * 1000])?;
            tx.prepare_cached(
                "INSERT INTO operator_sessions (token_hash, operator, csrf, created_at_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![token_hash, name, csrf, now_ms])?;
            Ok(())
        })
        .await
    }

    async fn operator_session(
        &self,
        token_hash: &str,
        idle_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Option<OperatorSession>> {
        let token_hash = token_hash.to_owned();
        let found: Option<(String, String, i64)> = {
            let token_hash = token_hash.clone();
            self.read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT operator, csrf, last_seen_ms FROM operator_sessions WHERE token_hash = ?1",
                    )?
                    .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?)
            })
            .await?
        };
        let Some((operator, csrf, last_seen)) = found else {
            return Ok(None);
        };
        if now_ms - last_seen > idle_ms {
            self.end_operator_session(&token_hash).await?;
            return Ok(None);
        }
        if now_ms - last_seen > crate::alerts::SESSION_TOUCH_EVERY_MS {
            self.write(move |tx| {
                tx.prepare_cached(
                    "UPDATE operator_sessions SET last_seen_ms = ?2 WHERE token_hash = ?1",
                )?
                .execute(params![token_hash, now_ms])?;
                Ok(())
            })
            .await?;
        }
        Ok(Some(OperatorSession { operator, csrf }))
    }

    async fn end_operator_session(&self, token_hash: &str) -> StorageResult<()> {
        let token_hash = token_hash.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM operator_sessions WHERE token_hash = ?1")?
                .execute([token_hash])?;
            Ok(())
        })
        .await
    }
}
