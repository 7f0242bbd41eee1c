//! The embedded SQLite backend: one file in WAL mode with
//! `synchronous = FULL`, one write connection (SQLite allows one writer
//! anyway), and a few read connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use rusqlite_migration::{M, Migrations};
use shared::event::ChainHead;
use shared::protocol::{EnrollRequest, HeadRef, InboxEvent};
use shared::{BookingId, BookingState, Event, EventBody, Hash, LocationId, ParticipantId, PoolId};

use super::recent::Recent;
use super::{
    Delivery, Device, DeviceStatus, Enrolled, HubBooking, HubStorage, LocationHealth, Placed,
    PoolSummary, Pushed, Seen, StorageError, StorageResult, WebOrder,
};
use crate::ledger::{self, Entry};
use crate::notify::{Inboxes, Published, Recipient};
use crate::plan::{self, DeviceLog, Refusal};
use shared::authz::{self, BookingFacts, Denied, Facts, PoolFacts, ResourceFacts};

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
];

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
        return Err(StorageError::Backend(format!(
            "SQLite refused WAL mode ({mode})"
        )));
    }
    // Durable at every commit: an acknowledged push survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        return Err(StorageError::Backend(format!(
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
        return Err(StorageError::Backend(format!(
            "this hub database has schema version {version}, but this sync-hub binary only knows \
             versions up to {known}: it was written by a newer sync-hub; the database was left untouched"
        )));
    }
    Migrations::from_slice(MIGRATIONS)
        .to_latest(conn)
        .map_err(|e| StorageError::Backend(format!("migrating the hub database failed: {e}")))
}

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX)
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(format!("stored {what} {value} does not parse"))
}

fn participant(value: &str) -> StorageResult<ParticipantId> {
    ParticipantId::parse(value).map_err(|_| corrupt("participant", value))
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
        Ok((event_from_row("hub", r)?, r.get::<_, Option<String>>(7)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (raw, recipient) = row?;
        let seq = raw.0 as u64;
        match recipient.as_deref() {
            Some(EVERYONE) => {
                let event = build_event(&ParticipantId::Hub, raw)?;
                out.push(Published {
                    seq,
                    to: Recipient::Everyone,
                    event: Some(InboxEvent {
                        hub_seq: seq,
                        event,
                    }),
                });
            }
            Some(location) => out.push(Published {
                seq,
                to: Recipient::Location(
                    LocationId::parse(location).map_err(|_| corrupt("recipient", location))?,
                ),
                event: None,
            }),
            None => {}
        }
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

impl SqliteStorage {
    /// Opens (creating if needed) the hub database in `data_dir`.
    pub fn open(data_dir: &Path) -> StorageResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StorageError::Backend(format!("cannot create {}: {e}", data_dir.display()))
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
        .map_err(|e| StorageError::Backend(format!("write task failed: {e}")))?
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
        .map_err(|e| StorageError::Backend(format!("read task failed: {e}")))?
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
        .map_err(|e| StorageError::Backend(format!("storage closed: {e}")))
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
            status: DeviceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            head: HeadRef {
                seq: seq as u64,
                hash: Hash::parse_hex(&hash).ok_or_else(|| corrupt("head hash", &hash))?,
            },
        })
    })
    .transpose()
}

fn event_from_row(
    origin: &str,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, u32, String, String, i64, String, String)> {
    let _ = origin;
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

fn build_event(
    origin: &ParticipantId,
    raw: (i64, u32, String, String, i64, String, String),
) -> StorageResult<Event> {
    let (seq, epoch, id, prev, at_ms, kind, body) = raw;
    Ok(Event {
        origin: origin.clone(),
        epoch,
        seq: seq as u64,
        id: id.parse().map_err(|_| corrupt("event id", &id))?,
        prev: Hash::parse_hex(&prev).ok_or_else(|| corrupt("prev", &prev))?,
        at_ms,
        kind,
        body: serde_json::from_str(&body).map_err(|_| corrupt("event body", seq))?,
    })
}

/// Stores an event of any log; returns its hash.
fn insert_event(
    conn: &Connection,
    event: &Event,
    recipient: Option<&str>,
    now_ms: i64,
) -> StorageResult<Hash> {
    let (hash, body) = event.sealed();
    insert_sealed(conn, event, &hash, &body, recipient, now_ms)?;
    Ok(hash)
}

/// Stores an event whose hash and canonical body are already known.
fn insert_sealed(
    conn: &Connection,
    event: &Event,
    hash: &Hash,
    body: &str,
    recipient: Option<&str>,
    now_ms: i64,
) -> StorageResult<()> {
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
        hash.to_hex(),
        event.at_ms,
        event.kind,
        body,
        recipient,
        now_ms
    ])?;
    Ok(())
}

fn hub_head(conn: &Connection) -> StorageResult<ChainHead> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM events WHERE origin = 'hub' ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        None => ChainHead::EMPTY,
        Some((seq, hash)) => ChainHead {
            seq: seq as u64,
            hash: Hash::parse_hex(&hash).ok_or_else(|| corrupt("hub head", &hash))?,
        },
    })
}

/// Appends to the hub's own log inside `tx`.
fn append_hub(
    conn: &Connection,
    recipient: Option<&LocationId>,
    body: EventBody,
    now_ms: i64,
) -> StorageResult<Event> {
    let head = hub_head(conn)?;
    let event = Event::next(head, ParticipantId::Hub, 0, now_ms, body);
    insert_event(conn, &event, recipient.map(LocationId::as_str), now_ms)?;
    Ok(event)
}

/// The `recipient` of hub events addressed to every location (locations
/// joining, catalog): one copy that each store reads, instead of one per
/// store. Location ids cannot contain it.
pub const EVERYONE: &str = "*";

/// Appends to the hub's own log, addressed to every location.
fn append_everyone(conn: &Connection, body: EventBody, now_ms: i64) -> StorageResult<Event> {
    let head = hub_head(conn)?;
    let event = Event::next(head, ParticipantId::Hub, 0, now_ms, body);
    insert_event(conn, &event, Some(EVERYONE), now_ms)?;
    Ok(event)
}

/// The view as the authorization rules look at it, inside a transaction:
/// what earlier events of the same batch did is already in it.
struct TxView<'a>(&'a Connection);

impl Facts for TxView<'_> {
    type Error = StorageError;

    fn resource(&self, id: &shared::ResourceId) -> StorageResult<Option<ResourceFacts>> {
        let row: Option<(String, String, bool)> = self
            .0
            .prepare_cached(
                "SELECT owner, kind, EXISTS (SELECT 1 FROM view_pools WHERE resource_id = ?1)
                 FROM view_resources WHERE id = ?1",
            )?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        row.map(|(owner, kind, has_pools)| {
            Ok(ResourceFacts {
                owner: participant(&owner)?,
                kind: shared::ResourceKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
                has_pools,
            })
        })
        .transpose()
    }

    fn pool(&self, id: &PoolId) -> StorageResult<Option<PoolFacts>> {
        let row: Option<(String, i64)> = self
            .0
            .prepare_cached("SELECT owner, capacity FROM view_pools WHERE id = ?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(owner, capacity)| {
            Ok(PoolFacts {
                owner: participant(&owner)?,
                capacity,
            })
        })
        .transpose()
    }

    fn booking(&self, id: &BookingId) -> StorageResult<Option<BookingFacts>> {
        booking_facts(self.0, id)
    }

    fn available(&self, pool: &PoolId, holder: &ParticipantId) -> StorageResult<Option<i64>> {
        let sql = match holder {
            ParticipantId::Hub => {
                "SELECT hub_allotted - hub_used FROM view_pools WHERE id = ?1 AND ?2 = 'hub'"
            }
            ParticipantId::Location(_) => {
                "SELECT allotted - used FROM view_holdings WHERE pool_id = ?1 AND holder = ?2"
            }
        };
        let units: Option<i64> = self
            .0
            .prepare_cached(sql)?
            .query_row(params![pool.as_str(), holder.as_str()], |r| r.get(0))
            .optional()?;
        Ok(Some(units.unwrap_or(0)))
    }

    fn in_flight(
        &self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> StorageResult<Option<i64>> {
        let units: Option<i64> = self
            .0
            .prepare_cached(
                "SELECT units FROM view_in_flight WHERE pool_id = ?1 AND sender = ?2 AND receiver = ?3",
            )?
            .query_row(params![pool.as_str(), from.as_str(), to.as_str()], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(Some(units.unwrap_or(0)))
    }

    fn may_receive(&self, participant: &ParticipantId) -> StorageResult<Option<bool>> {
        Ok(Some(match participant {
            ParticipantId::Hub => true,
            ParticipantId::Location(id) => self
                .0
                .prepare_cached("SELECT 1 FROM locations WHERE id = ?1 AND public_key IS NOT NULL")?
                .exists([id.as_str()])?,
        }))
    }
}

fn booking_facts(conn: &Connection, id: &BookingId) -> StorageResult<Option<BookingFacts>> {
    let row: Option<(String, String, String, String, String, String, String)> = conn
        .prepare_cached(
            "SELECT owner, requested_by, charged_to, charged_state, channel, lines, customer
             FROM view_bookings WHERE id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .optional()?;
    row.map(
        |(owner, requested_by, charged_to, charged_state, channel, lines, customer)| {
            Ok(BookingFacts {
                owner: participant(&owner)?,
                requested_by: participant(&requested_by)?,
                charged_to: participant(&charged_to)?,
                charged_state: Some(
                    BookingState::parse(&charged_state)
                        .ok_or_else(|| corrupt("state", &charged_state))?,
                ),
                channel: shared::Channel::parse(&channel)
                    .ok_or_else(|| corrupt("channel", &channel))?,
                lines: serde_json::from_str(&lines).map_err(|_| corrupt("lines", id))?,
                customer: serde_json::from_str(&customer).map_err(|_| corrupt("customer", id))?,
            })
        },
    )
    .transpose()
}

/// Writes what an event changes in the ledgers.
fn apply_ledger(conn: &Connection, entries: &[Entry]) -> StorageResult<()> {
    for entry in entries {
        match entry {
            Entry::Allotted {
                pool,
                holder,
                units,
            } => conn
                .prepare_cached(
                    "INSERT INTO view_holdings (pool_id, holder, allotted) VALUES (?1, ?2, ?3)
                     ON CONFLICT (pool_id, holder) DO UPDATE SET allotted = allotted + excluded.allotted",
                )?
                .execute(params![pool.as_str(), holder.as_str(), units])?,
            Entry::Used {
                pool,
                holder,
                units,
            } => conn
                .prepare_cached(
                    "INSERT INTO view_holdings (pool_id, holder, used) VALUES (?1, ?2, ?3)
                     ON CONFLICT (pool_id, holder) DO UPDATE SET used = used + excluded.used",
                )?
                .execute(params![pool.as_str(), holder.as_str(), units])?,
            Entry::InFlight {
                pool,
                from,
                to,
                units,
            } => conn
                .prepare_cached(
                    "INSERT INTO view_in_flight (pool_id, sender, receiver, units) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (pool_id, sender, receiver) DO UPDATE SET units = units + excluded.units",
                )?
                .execute(params![pool.as_str(), from.as_str(), to.as_str(), units])?,
            Entry::ChargedState { booking, state } => conn
                .prepare_cached("UPDATE view_bookings SET charged_state = ?2 WHERE id = ?1")?
                .execute(params![booking.to_string(), state.as_str()])?,
        };
    }
    Ok(())
}

/// What applying one event to the view set in motion: events to relay to
/// locations, and bookings whose state changed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub relays: Vec<(LocationId, Event)>,
    /// Events every location takes in (catalog), relayed once to everyone.
    pub everyone: Vec<Event>,
    pub changed: Vec<BookingId>,
    /// Units the hub gives back to a pool's owner, who asked for them.
    pub hub_returns: Vec<(PoolId, i64, LocationId)>,
}

impl Effects {
    fn relay(&mut self, to: &ParticipantId, origin: &ParticipantId, event: &Event) {
        if let ParticipantId::Location(location) = to
            && to != origin
            && !self
                .relays
                .iter()
                .any(|(l, e)| l == location && e.id == event.id)
        {
            self.relays.push((location.clone(), event.clone()));
        }
    }
}

fn view_used(conn: &Connection, booking: &str, sign: i64, hub_charged: bool) -> StorageResult<()> {
    let lines: String = conn
        .prepare_cached("SELECT lines FROM view_bookings WHERE id = ?1")?
        .query_row([booking], |r| r.get(0))?;
    let lines: Vec<shared::Line> =
        serde_json::from_str(&lines).map_err(|_| corrupt("booking lines", booking))?;
    for line in lines {
        conn.prepare_cached(
            "UPDATE view_pools SET used = used + ?2, hub_used = hub_used + ?3 WHERE id = ?1",
        )?
        .execute(params![
            line.pool_id.as_str(),
            sign * line.quantity,
            if hub_charged { sign * line.quantity } else { 0 }
        ])?;
    }
    Ok(())
}

/// The parties of a booking as the view holds them.
struct Parties {
    state: BookingState,
    owner: ParticipantId,
    requested_by: ParticipantId,
    charged_to: ParticipantId,
}

fn parties(conn: &Connection, id: &BookingId) -> StorageResult<Option<Parties>> {
    let row: Option<(String, String, String, String)> = conn
        .prepare_cached(
            "SELECT state, owner, requested_by, charged_to FROM view_bookings WHERE id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    row.map(|(state, owner, requested_by, charged_to)| {
        Ok(Parties {
            state: BookingState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
            owner: participant(&owner)?,
            requested_by: participant(&requested_by)?,
            charged_to: participant(&charged_to)?,
        })
    })
    .transpose()
}

/// Moves the view's copy of a booking to `incoming`, by the same rule a
/// requester follows (the requester's expiry wins over anything but
/// fulfilment), so the view and webhooks never flip back and forth.
/// Returns whether the state changed.
fn view_merge_state(
    conn: &Connection,
    id: &BookingId,
    incoming: BookingState,
    reason: Option<&str>,
    expires_at_ms: Option<i64>,
    decided_by: Option<&ParticipantId>,
    at_ms: i64,
) -> StorageResult<bool> {
    let Some(current) = parties(conn, id)? else {
        return Ok(false);
    };
    let Some(next) = shared::booking::requester_adopts(current.state, incoming) else {
        return Ok(false);
    };
    let key = id.to_string();
    let hub_charged = current.charged_to == ParticipantId::Hub;
    match (current.state.consumes_units(), next.consumes_units()) {
        (true, false) => view_used(conn, &key, -1, hub_charged)?,
        (false, true) => view_used(conn, &key, 1, hub_charged)?,
        _ => {}
    }
    conn.prepare_cached(
        "UPDATE view_bookings SET state = ?2, reason = coalesce(?3, reason),
                expires_at_ms = coalesce(?4, expires_at_ms), decided_by = coalesce(?5, decided_by),
                updated_at_ms = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        key,
        next.as_str(),
        reason,
        expires_at_ms,
        decided_by.map(ParticipantId::as_str),
        at_ms
    ])?;
    Ok(true)
}

/// Tells every location that `joined` enrolled: a participant each may
/// grant units to. One event, whatever the size of the fleet; a new store
/// learns of the others (and their catalog) from the same stream.
fn introduce(conn: &Connection, joined: &LocationId, now_ms: i64) -> StorageResult<()> {
    let name: String = conn
        .prepare_cached("SELECT name FROM locations WHERE id = ?1")?
        .query_row([joined.as_str()], |r| r.get(0))?;
    append_everyone(
        conn,
        EventBody::LocationJoined {
            location: joined.clone(),
            name,
        },
        now_ms,
    )?;
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
    for (id, name) in &joined {
        let location = LocationId::parse(id).map_err(|_| corrupt("location", id))?;
        append_everyone(
            conn,
            EventBody::LocationJoined {
                location,
                name: name.clone(),
            },
            now_ms,
        )?;
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
            |r| event_from_row(origin, r),
        )?;
        let event = build_event(&participant(origin)?, raw)?;
        append_everyone(
            conn,
            EventBody::Relayed {
                event: Box::new(event),
            },
            now_ms,
        )?;
    }
    Ok(joined.len() + catalog.len())
}

fn pool_owner(conn: &Connection, pool: &PoolId) -> StorageResult<Option<ParticipantId>> {
    conn.prepare_cached("SELECT owner FROM view_pools WHERE id = ?1")?
        .query_row([pool.as_str()], |r| r.get::<_, String>(0))
        .optional()?
        .map(|o| participant(&o))
        .transpose()
}

/// Applies one event of `event.origin`'s log to the materialized view and
/// says what it sets in motion.
fn apply_to_view(conn: &Connection, event: &Event, body: &EventBody) -> StorageResult<Effects> {
    let origin = &event.origin;
    let at_ms = event.at_ms;
    let mut effects = Effects::default();
    // Read before the view changes: the ledgers move from what was.
    let entries = ledger::entries(origin, body, &TxView(conn))?;
    match body {
        EventBody::ResourceCreated {
            id,
            owner,
            name,
            kind,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO view_resources (id, owner, name, kind, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id.as_str(),
                owner.as_str(),
                name,
                kind.as_str(),
                at_ms
            ])?;
            effects.everyone.push(event.clone());
        }
        EventBody::PoolCreated {
            id,
            resource_id,
            owner,
            capacity,
            starts_at_ms,
            ends_at_ms,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO view_pools (id, resource_id, owner, capacity, starts_at_ms, ends_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id.as_str(),
                resource_id.as_str(),
                owner.as_str(),
                capacity,
                starts_at_ms,
                ends_at_ms,
                at_ms
            ])?;
            effects.everyone.push(event.clone());
        }
        EventBody::PoolAdjusted { pool, delta } => {
            conn.prepare_cached(
                "UPDATE view_pools SET capacity = capacity + ?2, updated_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![pool.as_str(), delta, at_ms])?;
        }
        EventBody::AllotmentGranted { pool, to, units } => {
            if *to == ParticipantId::Hub {
                // The grant reached its grantee: the hub credits its own holding.
                conn.prepare_cached(
                    "UPDATE view_pools SET hub_allotted = hub_allotted + ?2, updated_at_ms = ?3 WHERE id = ?1",
                )?
                .execute(params![pool.as_str(), units, at_ms])?;
            }
            effects.relay(to, origin, event);
        }
        EventBody::AllotmentReturned { pool, .. } => {
            if let Some(owner) = pool_owner(conn, pool)? {
                effects.relay(&owner, origin, event);
            }
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
            let key = id.to_string();
            match parties(conn, id)? {
                None => {
                    conn.prepare_cached(
                        "INSERT INTO view_bookings (id, owner, requested_by, charged_to, channel, state,
                            lines, customer, expires_at_ms, reason, decided_by, created_at_ms, updated_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
                    )?
                    .execute(params![
                        key,
                        owner.as_str(),
                        requested_by.as_str(),
                        charged_to.as_str(),
                        channel.as_str(),
                        state.as_str(),
                        serde_json::to_string(lines).map_err(|e| StorageError::Backend(e.to_string()))?,
                        serde_json::to_string(customer).map_err(|e| StorageError::Backend(e.to_string()))?,
                        expires_at_ms,
                        reason,
                        (*state != BookingState::Requested).then(|| origin.as_str()),
                        at_ms
                    ])?;
                    if state.consumes_units() {
                        view_used(conn, &key, 1, *charged_to == ParticipantId::Hub)?;
                    }
                    effects.changed.push(*id);
                    // A request goes to the owner; a sale from an allotment
                    // is news for the owner, whose staff hand the goods over.
                    effects.relay(owner, origin, event);
                }
                Some(known) => {
                    // The owner's decision on a request.
                    if view_merge_state(
                        conn,
                        id,
                        *state,
                        reason.as_deref(),
                        *expires_at_ms,
                        Some(origin),
                        at_ms,
                    )? {
                        effects.changed.push(*id);
                    }
                    effects.relay(&known.requested_by, origin, event);
                }
            }
        }
        EventBody::BookingConfirmed { id }
        | EventBody::BookingCancelled { id }
        | EventBody::BookingFulfilled { id }
        | EventBody::BookingExpired { id, .. } => {
            let (incoming, reason) = match body {
                EventBody::BookingConfirmed { .. } => (BookingState::Confirmed, None),
                EventBody::BookingCancelled { .. } => (BookingState::Cancelled, None),
                EventBody::BookingFulfilled { .. } => (BookingState::Fulfilled, None),
                EventBody::BookingExpired { reason, .. } => {
                    (BookingState::Expired, Some(reason.as_str()))
                }
                _ => unreachable!("matched above"),
            };
            let known = parties(conn, id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
            if view_merge_state(conn, id, incoming, reason, None, None, at_ms)? {
                effects.changed.push(*id);
            }
            for party in [&known.owner, &known.requested_by, &known.charged_to] {
                effects.relay(party, origin, event);
            }
        }
        EventBody::BookingCancelRequested { id } => {
            if let Some(known) = parties(conn, id)? {
                effects.relay(&known.charged_to, origin, event);
            }
        }
        EventBody::AllotmentRecalled { pool, from, units } => match (from, origin) {
            (ParticipantId::Hub, ParticipantId::Location(owner)) => {
                let (allotted, used): (i64, i64) = conn
                    .prepare_cached("SELECT hub_allotted, hub_used FROM view_pools WHERE id = ?1")?
                    .query_row([pool.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let give = (*units).min(allotted - used);
                if give > 0 {
                    effects
                        .hub_returns
                        .push((pool.clone(), give, owner.clone()));
                }
            }
            _ => effects.relay(from, origin, event),
        },
        EventBody::InboxSetAside {
            hub_seq,
            origin: author,
            kind,
            reason,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO view_set_aside (location, hub_seq, origin, kind, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                origin.as_str(),
                *hub_seq as i64,
                author,
                kind,
                reason,
                at_ms
            ])?;
            tracing::warn!(
                location = %origin,
                event.hub_seq = hub_seq,
                event.kind = %kind,
                reason = %reason,
                "a store set an inbox event aside"
            );
        }
        // A participant's records of what reached it: the view has it
        // from the source already (credits move only the ledgers).
        EventBody::AllotmentCredited { .. }
        | EventBody::Observed { .. }
        | EventBody::Relayed { .. }
        | EventBody::LocationJoined { .. } => {}
    }
    apply_ledger(conn, &entries)?;
    Ok(effects)
}

/// Appends the relays and webhook deliveries `effects` call for; returns
/// the locations to wake.
fn settle(conn: &Connection, effects: Effects, now_ms: i64) -> StorageResult<Vec<LocationId>> {
    let mut wake = Vec::new();
    for (pool, units, owner) in effects.hub_returns {
        conn.prepare_cached(
            "UPDATE view_pools SET hub_allotted = hub_allotted - ?2, updated_at_ms = ?3 WHERE id = ?1",
        )?
        .execute(params![pool.as_str(), units, now_ms])?;
        hub_act(
            conn,
            Some(&owner),
            EventBody::AllotmentReturned {
                pool,
                units,
                hub_seq: None,
            },
            now_ms,
        )?;
        if !wake.contains(&owner) {
            wake.push(owner);
        }
    }
    for event in effects.everyone {
        append_everyone(
            conn,
            EventBody::Relayed {
                event: Box::new(event),
            },
            now_ms,
        )?;
    }
    for (to, event) in effects.relays {
        append_hub(
            conn,
            Some(&to),
            EventBody::Relayed {
                event: Box::new(event),
            },
            now_ms,
        )?;
        if !wake.contains(&to) {
            wake.push(to);
        }
    }
    for id in effects.changed {
        enqueue_webhooks(conn, &id, now_ms)?;
    }
    Ok(wake)
}

fn enqueue_webhooks(conn: &Connection, id: &BookingId, now_ms: i64) -> StorageResult<()> {
    let hooks: Vec<i64> = {
        let mut stmt = conn.prepare_cached("SELECT id FROM webhooks ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if hooks.is_empty() {
        return Ok(());
    }
    let booking = load_booking(conn, id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
    for hook in hooks {
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = serde_json::json!({
            "event_id": event_id,
            "type": "booking.state_changed",
            "at": ts(now_ms),
            "booking": booking,
        });
        conn.prepare_cached(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, booking_id, payload, next_attempt_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![hook, event_id, id.to_string(), payload.to_string(), now_ms])?;
    }
    Ok(())
}

fn push_in_tx(
    tx: &Transaction<'_>,
    location: &LocationId,
    events: &[Event],
    head_signature: &str,
    now_ms: i64,
) -> StorageResult<Pushed> {
    let device =
        load_device(tx, location)?.ok_or_else(|| StorageError::not_found("location", location))?;
    if device.status == DeviceStatus::Quarantined {
        let reason: Option<String> = tx.query_row(
            "SELECT quarantine_reason FROM locations WHERE id = ?1",
            [location.as_str()],
            |r| r.get(0),
        )?;
        return Err(Refusal::Quarantined(reason.unwrap_or_default()).into());
    }
    let public_key = device
        .public_key
        .as_deref()
        .ok_or_else(|| StorageError::Unauthorized(format!("{location} is not enrolled")))?;
    let last = events
        .last()
        .ok_or_else(|| StorageError::Invalid("a push carries at least one event".into()))?;
    let last_hash = last.hash();
    shared::signing::verify_b64(
        public_key,
        &shared::signing::head_message(location.as_str(), last.epoch, last.seq, &last_hash),
        head_signature,
    )
    .map_err(|_| Refusal::BadHeadSignature)?;
    let log = DeviceLog {
        origin: location.clone(),
        head: device.head.into(),
        epoch: device.epoch,
        epoch_start_seq: device.epoch_start_seq,
    };
    let planned = {
        let mut stmt =
            tx.prepare_cached("SELECT hash FROM events WHERE origin = ?1 AND seq = ?2")?;
        plan::plan_batch(&log, events, |seq| {
            stmt.query_row(params![location.as_str(), seq as i64], |r| {
                r.get::<_, String>(0)
            })
            .ok()
            .and_then(|h| Hash::parse_hex(&h))
        })?
    };
    let first_new = planned.first_new;
    let mut head = log.head;
    let mut changed = Vec::new();
    for (event, checked) in events[first_new..].iter().zip(planned.new) {
        let body = checked.body;
        if let Err(denied) = authz::check(event, &body, &TxView(tx))? {
            tracing::warn!(%location, event.seq = event.seq, event.kind = %event.kind, %denied, "refused an event");
            return Err(match denied {
                Denied::Forbidden(why) => Refusal::Forbidden(format!("event {}: {why}", event.seq)),
                Denied::Invalid(why) => Refusal::BadEvent(format!("event {}: {why}", event.seq)),
            }
            .into());
        }
        let hash = checked.hash;
        insert_sealed(tx, event, &hash, &checked.canonical_body, None, now_ms)?;
        let effects = apply_to_view(tx, event, &body)?;
        changed.extend(effects.changed.iter().copied());
        settle(tx, effects, now_ms)?;
        head = ChainHead {
            seq: event.seq,
            hash,
        };
    }
    if first_new < events.len() {
        tx.prepare_cached(
            "UPDATE locations SET head_seq = ?2, head_hash = ?3, head_signature = ?4 WHERE id = ?1",
        )?
        .execute(params![
            location.as_str(),
            head.seq as i64,
            head.hash.to_hex(),
            head_signature
        ])?;
    }
    Ok(Pushed {
        acked: head.into(),
        applied: events.len() - first_new,
        changed,
    })
}

/// The hub's own act: appends `body` to its log addressed to `recipient`,
/// applies it to the view, and settles its effects.
fn hub_act(
    conn: &Connection,
    recipient: Option<&LocationId>,
    body: EventBody,
    now_ms: i64,
) -> StorageResult<(Event, Vec<BookingId>)> {
    let event = append_hub(conn, recipient, body.clone(), now_ms)?;
    let mut effects = apply_to_view(conn, &event, &body)?;
    // The hub addresses its own events itself.
    effects.relays.clear();
    let changed = effects.changed.clone();
    settle(conn, effects, now_ms)?;
    Ok((event, changed))
}

fn load_booking(conn: &Connection, id: &BookingId) -> StorageResult<Option<HubBooking>> {
    let id = *id;
    let row = conn
        .prepare_cached(
            "SELECT owner, requested_by, charged_to, channel, state, lines, customer, expires_at_ms,
                    reason, decided_by, created_at_ms, updated_at_ms
             FROM view_bookings WHERE id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
            ))
        })
        .optional()?;
    row.map(
        |(
            owner,
            requested_by,
            charged_to,
            channel,
            state,
            lines,
            customer,
            expires,
            reason,
            decided_by,
            created,
            updated,
        )| {
            Ok(HubBooking {
                id,
                code: id.short_code(),
                state: BookingState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
                lines: serde_json::from_str(&lines).map_err(|_| corrupt("lines", id))?,
                customer: serde_json::from_str(&customer).map_err(|_| corrupt("customer", id))?,
                channel: shared::Channel::parse(&channel)
                    .ok_or_else(|| corrupt("channel", &channel))?,
                owner: participant(&owner)?,
                requested_by: participant(&requested_by)?,
                charged_to: participant(&charged_to)?,
                decided_by: decided_by.as_deref().map(participant).transpose()?,
                expires_at: expires.map(ts),
                reason,
                created_at: ts(created),
                updated_at: ts(updated),
            })
        },
    )
    .transpose()
}

fn location_reachable(
    conn: &Connection,
    recent: &Recent,
    location: &LocationId,
    unreachable_after_ms: i64,
    now_ms: i64,
) -> StorageResult<bool> {
    // A quarantined store still polls, but what it decides cannot reach us:
    // it does not count as reachable.
    let row: Option<(Option<i64>, String)> = conn
        .prepare_cached("SELECT last_seen_at_ms, status FROM locations WHERE id = ?1")?
        .query_row([location.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // The readings in memory are newer than those written.
    let heard = recent.seen(location).map(|s| s.at_ms);
    Ok(row.is_some_and(|(last_seen, status)| {
        status == "active"
            && last_seen
                .max(heard)
                .is_some_and(|at| now_ms - at <= unreachable_after_ms)
    }))
}

fn place_web_order_in_tx(
    tx: &Transaction<'_>,
    recent: &Recent,
    order: WebOrder,
    unreachable_after_ms: i64,
    now_ms: i64,
) -> StorageResult<Placed> {
    if let Some((key, hash)) = &order.idempotency {
        let earlier: Option<(String, String)> = tx
            .prepare_cached("SELECT request_hash, booking_id FROM idempotency_keys WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((earlier_hash, booking)) = earlier {
            if earlier_hash != *hash {
                return Err(StorageError::IdempotencyMismatch);
            }
            let id = BookingId::parse(&booking).map_err(|_| corrupt("booking id", &booking))?;
            let booking =
                load_booking(tx, &id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
            return Ok(Placed {
                booking,
                replayed: true,
            });
        }
    }
    let mut owner: Option<ParticipantId> = None;
    let mut fits_hub = true;
    for line in &order.lines {
        let row: Option<(String, Option<i64>, i64, i64)> = tx
            .prepare_cached(
                "SELECT owner, ends_at_ms, hub_allotted, hub_used FROM view_pools WHERE id = ?1",
            )?
            .query_row([line.pool_id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let (pool_owner, ends_at, allotted, used) =
            row.ok_or_else(|| StorageError::not_found("pool", &line.pool_id))?;
        let pool_owner = participant(&pool_owner)?;
        match &owner {
            None => owner = Some(pool_owner),
            Some(o) if *o != pool_owner => {
                return Err(StorageError::Invalid(
                    "a booking's pools must all have one owner".into(),
                ));
            }
            Some(_) => {}
        }
        if ends_at.is_some_and(|end| end <= now_ms) {
            return Err(StorageError::InvalidState(format!(
                "slot {} has already ended",
                line.pool_id
            )));
        }
        fits_hub &= shared::Holding { allotted, used }
            .reserve(line.quantity)
            .is_ok();
    }
    let owner =
        owner.ok_or_else(|| StorageError::Invalid("a booking needs at least one line".into()))?;
    let ParticipantId::Location(location) = owner.clone() else {
        return Err(StorageError::Invalid(
            "pools owned by the hub itself are not sold yet".into(),
        ));
    };
    let id = BookingId::generate();
    let mut lines = order.lines;
    lines.sort_by(|a, b| a.pool_id.cmp(&b.pool_id));
    let reachable = location_reachable(tx, recent, &location, unreachable_after_ms, now_ms)?;
    // The owner decides when it can; the hub sells its allotment when the
    // owner cannot; otherwise the request waits for the owner.
    let body = if !reachable && fits_hub {
        let (state, expires_at_ms) = match order.hold_seconds {
            Some(seconds) => (BookingState::Held, Some(now_ms + seconds * 1000)),
            None => (BookingState::Confirmed, None),
        };
        EventBody::BookingCreated {
            id,
            owner,
            requested_by: ParticipantId::Hub,
            charged_to: ParticipantId::Hub,
            channel: shared::Channel::Web,
            lines,
            customer: order.customer,
            state,
            expires_at_ms,
            hold_seconds: None,
            reason: None,
        }
    } else {
        EventBody::BookingCreated {
            id,
            owner: owner.clone(),
            requested_by: ParticipantId::Hub,
            charged_to: owner,
            channel: shared::Channel::Web,
            lines,
            customer: order.customer,
            state: BookingState::Requested,
            expires_at_ms: Some(now_ms + order.ttl_ms),
            hold_seconds: order.hold_seconds,
            reason: None,
        }
    };
    hub_act(tx, Some(&location), body, now_ms)?;
    if let Some((key, hash)) = &order.idempotency {
        tx.prepare_cached(
            "INSERT INTO idempotency_keys (key, request_hash, booking_id, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![key, hash, id.to_string(), now_ms])?;
    }
    let booking = load_booking(tx, &id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
    Ok(Placed {
        booking,
        replayed: false,
    })
}

#[async_trait]
impl HubStorage for SqliteStorage {
    fn inboxes(&self) -> Arc<Inboxes> {
        self.inner.inboxes.clone()
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
            // Adding a known location again issues a fresh token for it,
            // which is how an operator replaces a store PC.
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

    async fn api_key_exists(&self, key_hash: &str) -> StorageResult<bool> {
        let key_hash = key_hash.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM api_keys WHERE key_hash = ?1")?
                .exists([key_hash])?)
        })
        .await
    }

    async fn enroll(
        &self,
        request: &EnrollRequest,
        token_hash: &str,
        now_ms: i64,
    ) -> StorageResult<Enrolled> {
        let request = request.clone();
        let token_hash = token_hash.to_owned();
        self.write(move |tx| {
            let token: Option<(String, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT location_id, expires_at_ms, used_at_ms FROM enrollment_tokens WHERE token_hash = ?1",
                    [&token_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (location, expires_at_ms, used_at_ms) =
                token.ok_or_else(|| StorageError::Unauthorized("unknown enrollment token".into()))?;
            if used_at_ms.is_some() {
                return Err(StorageError::Unauthorized("this enrollment token was already used".into()));
            }
            if expires_at_ms <= now_ms {
                return Err(StorageError::Unauthorized("this enrollment token has expired".into()));
            }
            let location = LocationId::parse(&location).map_err(|_| corrupt("location", &location))?;
            if let Some(claimed) = &request.location
                && *claimed != location
            {
                return Err(StorageError::Conflict(format!(
                    "this data directory belongs to location {claimed}, but the token is for {location}"
                )));
            }
            let device = load_device(tx, &location)?.ok_or_else(|| StorageError::not_found("location", &location))?;
            let (epoch, epoch_start_seq) = if request.restore {
                if request.head_seq != 0 {
                    return Err(StorageError::Conflict(
                        "--restore rebuilds an empty data directory; this one already holds events".into(),
                    ));
                }
                (device.epoch + 1, device.head.seq + 1)
            } else if device.head.seq > 0 {
                return Err(StorageError::Conflict(format!(
                    "the hub already holds {} events of {location}; a replacement PC enrolls with --restore",
                    device.head.seq
                )));
            } else {
                (device.epoch + 1, request.head_seq + 1)
            };
            tx.execute(
                "UPDATE enrollment_tokens SET used_at_ms = ?2 WHERE token_hash = ?1 AND used_at_ms IS NULL",
                params![token_hash, now_ms],
            )?;
            tx.execute(
                "UPDATE locations SET public_key = ?2, epoch = ?3, epoch_start_seq = ?4, status = 'active',
                        quarantine_reason = NULL, enrolled_at_ms = ?5
                 WHERE id = ?1",
                params![location.as_str(), request.public_key, epoch, epoch_start_seq as i64, now_ms],
            )?;
            if !request.restore {
                introduce(tx, &location, now_ms)?;
            }
            let (name, timezone): (String, String) = tx.query_row(
                "SELECT name, timezone FROM locations WHERE id = ?1",
                [location.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Enrolled {
                location,
                name,
                timezone,
                epoch,
                epoch_start_seq,
                hub_head: device.head,
            })
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

    async fn push(
        &self,
        location: &LocationId,
        events: Vec<Event>,
        head_signature: &str,
        backlog_before: Option<u64>,
        now_ms: i64,
    ) -> StorageResult<Pushed> {
        let (location, head_signature) = (location.clone(), head_signature.to_owned());
        let quarantine_for = location.clone();
        let sent = events.len() as u64;
        let result = self
            .write(move |tx| {
                let pushed = push_in_tx(tx, &location, &events, &head_signature, now_ms)?;
                if let Some(before) = backlog_before {
                    let remaining = before.saturating_sub(sent) as i64;
                    tx.prepare_cached(
                        "UPDATE locations SET backlog_events = ?2,
                                synced_at_ms = CASE WHEN ?2 = 0 THEN ?3 ELSE synced_at_ms END
                         WHERE id = ?1",
                    )?
                    .execute(params![location.as_str(), remaining, now_ms])?;
                }
                Ok(pushed)
            })
            .await;
        if let (Ok(_), Some(before)) = (&result, backlog_before) {
            self.inner
                .recent
                .pushed(&quarantine_for, before.saturating_sub(sent), now_ms);
        }
        if let Err(StorageError::Refused(Refusal::Fork { seq })) = &result {
            // The refused batch rolled back; the quarantine must stand on its own.
            let seq = *seq;
            let location = quarantine_for.clone();
            self.write(move |tx| {
                tx.execute(
                    "UPDATE locations SET status = 'quarantined', quarantine_reason = ?2 WHERE id = ?1",
                    params![
                        location.as_str(),
                        format!("its log forked at seq {seq}; run `edge-node reset` on the store")
                    ],
                )?;
                Ok(())
            })
            .await?;
            tracing::warn!(location = %quarantine_for, seq, "fork detected; device quarantined");
        }
        result
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
                let rows = stmt.query_map(params![recipient, after as i64, limit as i64], |r| {
                    event_from_row("hub", r)
                })?;
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
                |r| event_from_row(location.as_str(), r),
            )?;
            let events = rows
                .map(|raw| build_event(&origin, raw?))
                .collect::<StorageResult<Vec<_>>>()?;
            Ok((events, device.head))
        })
        .await
    }

    async fn reset(
        &self,
        location: &LocationId,
        _now_ms: i64,
    ) -> StorageResult<(u32, u64, HeadRef)> {
        let location = location.clone();
        self.write(move |tx| {
            let device = load_device(tx, &location)?.ok_or_else(|| StorageError::not_found("location", &location))?;
            let epoch = device.epoch + 1;
            let start = device.head.seq + 1;
            tx.execute(
                "UPDATE locations SET epoch = ?2, epoch_start_seq = ?3, status = 'active', quarantine_reason = NULL
                 WHERE id = ?1",
                params![location.as_str(), epoch, start as i64],
            )?;
            Ok((epoch, start, device.head))
        })
        .await
    }

    async fn return_hub_allotment(
        &self,
        pool: &PoolId,
        units: i64,
        now_ms: i64,
    ) -> StorageResult<LocationId> {
        let pool = pool.clone();
        self.write(move |tx| {
            let row: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT owner, hub_allotted, hub_used FROM view_pools WHERE id = ?1",
                    [pool.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (owner, allotted, used) =
                row.ok_or_else(|| StorageError::not_found("pool", &pool))?;
            let mut holding = shared::Holding { allotted, used };
            holding.give(units).map_err(|e| {
                StorageError::InsufficientCapacity(format!(
                    "the hub holds {} unused units of {pool}",
                    e.available
                ))
            })?;
            let owner = LocationId::parse(&owner).map_err(|_| {
                StorageError::Conflict(format!("pool {pool} is owned by the hub itself"))
            })?;
            tx.execute(
                "UPDATE view_pools SET hub_allotted = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![pool.as_str(), holding.allotted, now_ms],
            )?;
            // The view's allotment row follows from the event itself.
            hub_act(
                tx,
                Some(&owner),
                EventBody::AllotmentReturned {
                    pool: pool.clone(),
                    units,
                    hub_seq: None,
                },
                now_ms,
            )?;
            Ok(owner)
        })
        .await
    }

    async fn place_web_order(
        &self,
        order: WebOrder,
        unreachable_after_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Placed> {
        let inner = self.inner.clone();
        self.write(move |tx| {
            place_web_order_in_tx(tx, &inner.recent, order, unreachable_after_ms, now_ms)
        })
        .await
    }

    async fn cancel_booking(&self, id: &BookingId, now_ms: i64) -> StorageResult<Placed> {
        let id = *id;
        self.write(move |tx| {
            let known = parties(tx, &id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
            if known.requested_by != ParticipantId::Hub {
                return Err(StorageError::InvalidState(format!(
                    "booking {id} was not made through the website; the store that made it cancels it"
                )));
            }
            let recipient = |p: &ParticipantId| match p {
                ParticipantId::Location(l) => Some(l.clone()),
                ParticipantId::Hub => None,
            };
            let (body, to) = if known.state == BookingState::Requested
                && known.requested_by == ParticipantId::Hub
            {
                (
                    EventBody::BookingExpired {
                        id,
                        reason: "the customer withdrew the request before the owner decided".into(),
                    },
                    recipient(&known.owner),
                )
            } else if !matches!(known.state, BookingState::Held | BookingState::Confirmed) {
                return Err(StorageError::InvalidState(format!(
                    "cannot cancel a booking that is {}",
                    known.state
                )));
            } else if known.charged_to == ParticipantId::Hub {
                (EventBody::BookingCancelled { id }, recipient(&known.owner))
            } else {
                (
                    EventBody::BookingCancelRequested { id },
                    recipient(&known.charged_to),
                )
            };
            hub_act(tx, to.as_ref(), body, now_ms)?;
            let booking =
                load_booking(tx, &id)?.ok_or_else(|| StorageError::not_found("booking", id))?;
            Ok(Placed {
                booking,
                replayed: false,
            })
        })
        .await
    }

    async fn expire_due(&self, skew_margin_ms: i64, now_ms: i64) -> StorageResult<Vec<BookingId>> {
        self.write(move |tx| {
            let due: Vec<(String, String, String)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, state, owner FROM view_bookings
                     WHERE state IN ('requested', 'held')
                       AND ((state = 'requested' AND requested_by = 'hub' AND expires_at_ms < ?1 - ?2)
                         OR (state = 'held' AND charged_to = 'hub' AND expires_at_ms <= ?1))
                     LIMIT 256",
                )?;
                let rows = stmt.query_map(params![now_ms, skew_margin_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            // Idempotency keys are promised for 24 hours; forget them after.
            tx.prepare_cached("DELETE FROM idempotency_keys WHERE created_at_ms < ?1")?
                .execute([now_ms - shared::limits::IDEMPOTENCY_RETENTION_MS])?;
            let mut changed = Vec::new();
            for (id, state, owner) in due {
                let id = BookingId::parse(&id).map_err(|_| corrupt("booking id", &id))?;
                let owner = LocationId::parse(&owner).ok();
                let reason = if state == "held" {
                    "the hold was not confirmed in time"
                } else {
                    "the owner did not decide the request in time"
                };
                let (_, moved) = hub_act(tx, owner.as_ref(), EventBody::BookingExpired { id, reason: reason.into() }, now_ms)?;
                changed.extend(moved);
            }
            Ok(changed)
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

    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> StorageResult<Vec<Delivery>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
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
            Ok(rows.collect::<rusqlite::Result<_>>()?)
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

    async fn pools(&self, location: &LocationId) -> StorageResult<Vec<PoolSummary>> {
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
                    Some(seen.at_ms),
                    seen.synced_at_ms.or(synced_at),
                    seen.backlog_events.map(|b| b as i64).or(backlog),
                ),
                None => (last_seen, synced_at, backlog),
            };
            let last_event_at: Option<i64> = conn.query_row(
                "SELECT at_ms FROM events WHERE origin = ?1 AND seq = ?2",
                params![location.as_str(), head_seq],
                |r| r.get(0),
            ).optional()?;
            let as_of = match (synced_at, last_event_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let mut stmt = conn.prepare_cached(
                "SELECT id, resource_id, owner, capacity, used, hub_allotted, hub_used, starts_at_ms, ends_at_ms
                 FROM view_pools WHERE owner = ?1 ORDER BY resource_id, starts_at_ms, id",
            )?;
            let rows = stmt.query_map([location.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            })?;
            rows.map(|row| {
                let (id, resource_id, owner, capacity, used, hub_allotted, hub_used, starts, ends) = row?;
                Ok(PoolSummary {
                    id: PoolId::parse(&id).map_err(|_| corrupt("pool id", &id))?,
                    resource_id,
                    owner: participant(&owner)?,
                    capacity,
                    available: capacity - used,
                    hub_available: hub_allotted - hub_used,
                    starts_at: starts.map(ts),
                    ends_at: ends.map(ts),
                    as_of: as_of.map(ts),
                    stale: false,
                    owner_last_seen_at_ms: last_seen,
                    owner_backlog_events: backlog.map(|b| b as u64),
                })
            })
            .collect()
        })
        .await
    }

    async fn booking(&self, id: &BookingId) -> StorageResult<Option<HubBooking>> {
        let id = *id;
        self.read(move |conn| load_booking(conn, &id)).await
    }

    async fn locations(&self) -> StorageResult<Vec<LocationHealth>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, timezone, status, epoch, head_seq, last_seen_at_ms, backlog_events, clock_offset_ms,
                        (SELECT count(*) FROM view_set_aside WHERE location = locations.id)
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
                ))
            })?;
            rows.map(|row| {
                let (id, name, timezone, status, epoch, head_seq, last_seen, backlog, offset, set_aside) = row?;
                let id = LocationId::parse(&id).map_err(|_| corrupt("location", &id))?;
                // Readings in memory are newer than those written.
                let (last_seen, backlog, offset) = match inner.recent.seen(&id) {
                    Some(seen) => (
                        Some(seen.at_ms),
                        seen.backlog_events.map(|b| b as i64).or(backlog),
                        Some(seen.clock_offset_ms),
                    ),
                    None => (last_seen, backlog, offset),
                };
                Ok(LocationHealth {
                    id,
                    name,
                    timezone,
                    status: DeviceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                    epoch,
                    head_seq: head_seq as u64,
                    last_seen_at: last_seen.map(ts),
                    backlog_events: backlog.map(|b| b as u64),
                    clock_offset_ms: offset,
                    set_aside_events: set_aside as u64,
                })
            })
            .collect()
        })
        .await
    }
}
