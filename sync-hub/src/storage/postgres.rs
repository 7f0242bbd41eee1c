//! The PostgreSQL backend, for a fleet served by several hub processes on
//! one database. It stores, reads and locks; the rules are the caller's.
//!
//! - Every write transaction of the rules holds one transaction-scoped
//!   advisory lock ([`WRITE_LOCK`]): the same one writer at a time SQLite
//!   has, across every process. The rules then read everything committed
//!   before them, `(origin, seq)` is applied once however many processes
//!   receive the same push, and the hub's log gets gap-free seqs in commit
//!   order. Reads take no lock (each statement reads one committed
//!   snapshot).
//! - A commit that appended hub events or changed bookings says so with
//!   `NOTIFY` (delivered at commit); every process listens, reads the log's
//!   new end once and wakes its own long polls and waiting web orders.
//! - Nonces are rows, written without waiting for the WAL flush (a lost
//!   nonce lets at most the requests of the last moment before a database
//!   crash be replayed within their freshness window); health readings are
//!   kept in memory and written once a second, as in SQLite.

use std::any::Any;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use futures_util::StreamExt;
use shared::event::ChainHead;
use shared::protocol::{HeadRef, InboxEvent};
use shared::{BookingId, Event, LocationId, ParticipantId, PoolId};
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::columns::{self, BOOKING_COLUMNS, LOCATION_COLUMNS, POOL_COLUMNS};
use super::pg_schema;
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
    BookingRow, EXPIRED_PER_SWEEP, HoldingRow, IdempotencyRow, LocationRow, PoolRow, ResourceRow,
    TokenRow, Working,
};

/// The advisory lock alert recording holds, apart from [`WRITE_LOCK`] so
/// that a look at the fleet never waits behind sync traffic.
const ALERT_LOCK: i64 = WRITE_LOCK + 1;

/// The alerts raised and not cleared, oldest first.
async fn pg_open_alerts(client: &impl GenericClient) -> StorageResult<Vec<OpenAlert>> {
    client
        .query(
            "SELECT key, kind, subject, message, raised_at_ms FROM alerts
             WHERE cleared_at_ms IS NULL ORDER BY raised_at_ms, id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(OpenAlert {
                key: r.try_get(0)?,
                kind: r.try_get(1)?,
                subject: r.try_get(2)?,
                message: r.try_get(3)?,
                raised_at_ms: r.try_get(4)?,
            })
        })
        .collect()
}

/// The advisory lock every write transaction of the rules holds: a fixed
/// key spelling `hubwrite` in ASCII, distinct from the migration lock.
const WRITE_LOCK: i64 = i64::from_be_bytes(*b"hubwrite");

/// Connections each process keeps: the writer's turn, reads of long
/// polls woken together, and the CLI. One more is held for `LISTEN`.
const POOL_SIZE: usize = 16;

/// Connections for nonces, written without waiting for the WAL flush.
const NONCE_POOL_SIZE: usize = 4;

/// The channel of commits that appended hub events; the payload is the
/// last seq appended.
const HUB_LOG_CHANNEL: &str = "hub_log";
/// The channel of commits that changed bookings; the payload is their ids,
/// comma-separated.
const DECISIONS_CHANNEL: &str = "hub_decisions";
/// Booking ids per notification: well under PostgreSQL's 8000-byte
/// payload limit (36 bytes and a comma each).
const IDS_PER_NOTIFICATION: usize = 100;

/// How often health readings are written, and expired nonces swept.
const READINGS_WRITTEN_EVERY: Duration = Duration::from_secs(1);
/// How long the listener waits before connecting again after losing its
/// connection.
const LISTEN_RETRY: Duration = Duration::from_millis(500);

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Backend(Box::new(e))
    }
}

impl From<pg_schema::PgSchemaError> for StorageError {
    fn from(e: pg_schema::PgSchemaError) -> Self {
        Self::Backend(Box::new(e))
    }
}

#[derive(Debug)]
pub struct PostgresStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    nonces: Pool,
    inboxes: Arc<Inboxes>,
    decisions: tokio::sync::broadcast::Sender<BookingId>,
    /// The last hub seq published to `inboxes`; held while publishing, so
    /// events are published once and in order.
    published: tokio::sync::Mutex<u64>,
    /// Health readings of the devices this process heard (nonces are rows).
    recent: Recent,
}

impl PostgresStorage {
    /// Connects to `url` and migrates the schema. A server passes its
    /// `hub_public_key`: the first one is recorded, and a database that
    /// belongs to a hub with another key is refused. Administration passes
    /// `None`.
    pub async fn connect(url: &str, hub_public_key: Option<&str>) -> StorageResult<Self> {
        let pool = pg_schema::pool(url, POOL_SIZE).await?;
        let nonces = nonce_pool(url)?;
        {
            let mut client = pool.get().await?;
            pg_schema::migrate(&mut client).await?;
            if let Some(key) = hub_public_key {
                pg_schema::check_hub_key(&client, key).await?;
            }
        }
        let client = pool.get().await?;
        let head = hub_head(&client).await?.seq;
        drop(client);
        let inner = Arc::new(Inner {
            pool,
            nonces,
            inboxes: Arc::new(Inboxes::new(head)),
            decisions: tokio::sync::broadcast::channel(crate::notify::DECISIONS_BUFFERED).0,
            published: tokio::sync::Mutex::new(head),
            recent: Recent::new(0),
        });
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StorageError::backend(format!("bad database URL: {e}")))?;
        tokio::spawn(listen(Arc::downgrade(&inner), config));
        tokio::spawn(write_readings(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }
}

fn nonce_pool(url: &str) -> StorageResult<Pool> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StorageError::backend(format!("bad database URL: {e}")))?;
    config.options("-c synchronous_commit=off");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(NONCE_POOL_SIZE)
        .build()
        .map_err(|e| StorageError::backend(format!("cannot build the nonce pool: {e}")))
}

/// Publishes the hub events committed since the last call, by any process:
/// one read of the log's end, whatever the number of stores.
async fn catch_up(inner: &Inner) -> StorageResult<()> {
    let mut published = inner.published.lock().await;
    let client = inner.pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT seq, epoch, id, prev, at_ms, kind, body, recipient FROM events
             WHERE origin = 'hub' AND seq > $1 ORDER BY seq",
        )
        .await?;
    let rows = client.query(&stmt, &[&(*published as i64)]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq = row.try_get::<_, i64>(0)? as u64;
        let recipient: Option<String> = row.try_get(7)?;
        out.extend(columns::published(seq, recipient.as_deref(), || {
            build_event(&ParticipantId::Hub, row)
        })?);
        *published = seq;
    }
    if !out.is_empty() {
        inner.inboxes.publish(out);
    }
    Ok(())
}

/// Listens for other processes' commits until the storage goes; after
/// losing the connection, connects again and catches up.
async fn listen(inner: std::sync::Weak<Inner>, config: tokio_postgres::Config) {
    loop {
        let connected = config.connect(NoTls).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match connected {
            Err(e) => tracing::warn!(error = %e, "cannot listen for other hub processes; retrying"),
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the connection that listens for other hub processes");
                                return;
                            }
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!(
                        "LISTEN {HUB_LOG_CHANNEL}; LISTEN {DECISIONS_CHANNEL}"
                    ))
                    .await;
                if let Err(e) = listening {
                    tracing::warn!(error = %e, "cannot listen for other hub processes; retrying");
                } else {
                    // What was committed while nobody listened.
                    if let Err(e) = catch_up(&strong).await {
                        tracing::error!(error = %e, "cannot read the hub's log");
                    }
                    drop(strong);
                    while let Some(notification) = rx.recv().await {
                        let Some(inner) = inner.upgrade() else { return };
                        match notification.channel() {
                            HUB_LOG_CHANNEL => {
                                let seq = notification.payload().parse::<u64>().unwrap_or(u64::MAX);
                                if seq > *inner.published.lock().await
                                    && let Err(e) = catch_up(&inner).await
                                {
                                    tracing::error!(error = %e, "cannot read the hub's log");
                                }
                            }
                            DECISIONS_CHANNEL => {
                                for id in notification.payload().split(',') {
                                    if let Ok(id) = BookingId::parse(id) {
                                        let _ = inner.decisions.send(id);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                driver.abort();
            }
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// Writes the readings taken since the last time and sweeps expired
/// nonces, until the storage goes.
async fn write_readings(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(READINGS_WRITTEN_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let readings = inner.recent.unwritten();
        if let Err(e) = write_these(&inner, &readings).await {
            tracing::error!(error = %e, "writing devices' health readings failed; trying again");
            inner.recent.unwritten_again(readings);
        }
    }
}

async fn write_these(inner: &Inner, readings: &[(LocationId, Seen)]) -> StorageResult<()> {
    let mut client = inner.pool.get().await?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    client
        .execute("DELETE FROM nonces WHERE expires_at_ms < $1", &[&now_ms])
        .await?;
    if readings.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = readings.iter().map(|(id, _)| id.as_str()).collect();
    let at: Vec<i64> = readings.iter().map(|(_, s)| s.at_ms).collect();
    let offset: Vec<i64> = readings.iter().map(|(_, s)| s.clock_offset_ms).collect();
    let backlog: Vec<Option<i64>> = readings
        .iter()
        .map(|(_, s)| s.backlog_events.map(|b| b as i64))
        .collect();
    let synced: Vec<Option<i64>> = readings.iter().map(|(_, s)| s.synced_at_ms).collect();
    // Under the write lock: a transaction of the rules saves the backlog
    // it loaded, and must not write over readings newer than its load.
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    tx.execute(
        "UPDATE locations AS l SET last_seen_at_ms = r.at, clock_offset_ms = r.offset_ms,
                backlog_events = coalesce(r.backlog, l.backlog_events),
                synced_at_ms = coalesce(r.synced, l.synced_at_ms)
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
              AS r (id, at, offset_ms, backlog, synced)
         WHERE l.id = r.id",
        &[&ids, &at, &offset, &backlog, &synced],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn build_event(origin: &ParticipantId, row: &Row) -> StorageResult<Event> {
    let seq: i64 = row.try_get(0)?;
    let id: String = row.try_get(2)?;
    let prev: String = row.try_get(3)?;
    let body: String = row.try_get(6)?;
    Ok(Event {
        origin: origin.clone(),
        epoch: epoch(row.try_get(1)?)?,
        seq: seq as u64,
        id: id
            .parse()
            .map_err(|_| StorageError::corrupt("event id", &id))?,
        prev: columns::hash(&prev)?,
        at_ms: row.try_get(4)?,
        kind: row.try_get(5)?,
        body: serde_json::from_str(&body).map_err(|_| StorageError::corrupt("event body", seq))?,
    })
}

fn epoch(value: i64) -> StorageResult<u32> {
    u32::try_from(value).map_err(|_| StorageError::corrupt("epoch", value))
}

async fn hub_head(client: &impl GenericClient) -> StorageResult<ChainHead> {
    let row = client
        .query_opt(
            "SELECT seq, hash FROM events WHERE origin = 'hub' ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some(row) => columns::head(row.try_get(0)?, &row.try_get::<_, String>(1)?),
    }
}

fn location_row(row: &Row, recent: &Recent, id: &LocationId) -> StorageResult<LocationRow> {
    // Column 0 is the id.
    let heard = recent.seen(id).map(|s| s.at_ms);
    let last_seen: Option<i64> = row.try_get(11)?;
    Ok(LocationRow {
        name: row.try_get(1)?,
        timezone: row.try_get(2)?,
        public_key: row.try_get(3)?,
        epoch: epoch(row.try_get(4)?)?,
        epoch_start_seq: row.try_get::<_, i64>(5)? as u64,
        status: columns::status(&row.try_get::<_, String>(6)?)?,
        quarantine_reason: row.try_get(7)?,
        head: columns::head(row.try_get(8)?, &row.try_get::<_, String>(9)?)?,
        head_signature: row.try_get(10)?,
        last_seen_at_ms: last_seen.max(heard),
        backlog_events: row.try_get::<_, Option<i64>>(12)?.map(|b| b as u64),
        synced_at_ms: row.try_get(13)?,
        enrolled_at_ms: row.try_get(14)?,
    })
}

/// A pool row from `id, POOL_COLUMNS`.
fn pool_row(row: &Row) -> StorageResult<PoolRow> {
    Ok(PoolRow {
        resource_id: columns::resource(&row.try_get::<_, String>(1)?)?,
        owner: columns::participant(&row.try_get::<_, String>(2)?)?,
        capacity: row.try_get(3)?,
        starts_at_ms: row.try_get(4)?,
        ends_at_ms: row.try_get(5)?,
        used: row.try_get(6)?,
        hub_allotted: row.try_get(7)?,
        hub_used: row.try_get(8)?,
        updated_at_ms: row.try_get(9)?,
    })
}

/// A booking row from `id, BOOKING_COLUMNS`.
fn booking_row(row: &Row) -> StorageResult<BookingRow> {
    let text = |i: usize| row.try_get::<_, String>(i);
    columns::booking_row(
        &text(0)?,
        &text(1)?,
        &text(2)?,
        &text(3)?,
        &text(4)?,
        &text(5)?,
        &text(6)?,
        &text(7)?,
        &text(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get::<_, Option<String>>(11)?.as_deref(),
        row.try_get(12)?,
        row.try_get(13)?,
    )
}

/// Reads what `w` wants until it wants nothing more: one statement per
/// kind of row and round, whatever the number of rows.
async fn load(
    tx: &deadpool_postgres::Transaction<'_>,
    recent: &Recent,
    w: &mut Working,
) -> StorageResult<()> {
    loop {
        let wanted = w.wanted();
        if wanted.is_empty() {
            return Ok(());
        }
        if !wanted.locations.is_empty() {
            let ids: Vec<&str> = wanted.locations.iter().map(LocationId::as_str).collect();
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT id, {LOCATION_COLUMNS} FROM locations WHERE id = ANY($1)"
                ))
                .await?;
            let mut found = HashMap::new();
            for row in tx.query(&stmt, &[&ids]).await? {
                let id = columns::location(&row.try_get::<_, String>(0)?)?;
                let parsed = location_row(&row, recent, &id)?;
                found.insert(id, parsed);
            }
            for id in &wanted.locations {
                w.locations.insert(id.clone(), found.remove(id));
            }
        }
        if !wanted.resources.is_empty() {
            let ids: Vec<&str> = wanted.resources.iter().map(|r| r.as_str()).collect();
            let stmt = tx
                .prepare_cached(
                    "SELECT r.id, r.owner, r.name, r.kind, r.created_at_ms,
                            EXISTS (SELECT 1 FROM view_pools AS p WHERE p.resource_id = r.id)
                     FROM view_resources AS r WHERE r.id = ANY($1)",
                )
                .await?;
            let mut found = HashMap::new();
            for row in tx.query(&stmt, &[&ids]).await? {
                let id: String = row.try_get(0)?;
                found.insert(
                    id,
                    ResourceRow {
                        owner: columns::participant(&row.try_get::<_, String>(1)?)?,
                        name: row.try_get(2)?,
                        kind: columns::kind(&row.try_get::<_, String>(3)?)?,
                        created_at_ms: row.try_get(4)?,
                        has_pools: row.try_get(5)?,
                    },
                );
            }
            for id in &wanted.resources {
                w.resources.insert(id.clone(), found.remove(id.as_str()));
            }
        }
        if !wanted.pools.is_empty() {
            let ids: Vec<&str> = wanted.pools.iter().map(PoolId::as_str).collect();
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT id, {POOL_COLUMNS} FROM view_pools WHERE id = ANY($1)"
                ))
                .await?;
            let mut found = HashMap::new();
            for row in tx.query(&stmt, &[&ids]).await? {
                found.insert(row.try_get::<_, String>(0)?, pool_row(&row)?);
            }
            for id in &wanted.pools {
                w.pools.insert(id.clone(), found.remove(id.as_str()));
            }
        }
        if !wanted.bookings.is_empty() {
            let ids: Vec<String> = wanted.bookings.iter().map(ToString::to_string).collect();
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT id, {BOOKING_COLUMNS} FROM view_bookings WHERE id = ANY($1)"
                ))
                .await?;
            let mut found = HashMap::new();
            for row in tx.query(&stmt, &[&ids]).await? {
                found.insert(row.try_get::<_, String>(0)?, booking_row(&row)?);
            }
            for id in &wanted.bookings {
                w.bookings.insert(*id, found.remove(&id.to_string()));
            }
        }
        if !wanted.units_of.is_empty() {
            let ids: Vec<&str> = wanted.units_of.iter().map(PoolId::as_str).collect();
            let stmt = tx
                .prepare_cached(
                    "SELECT pool_id, holder, allotted, used FROM view_holdings WHERE pool_id = ANY($1)",
                )
                .await?;
            for row in tx.query(&stmt, &[&ids]).await? {
                w.holdings.insert(
                    (
                        columns::pool(&row.try_get::<_, String>(0)?)?,
                        columns::location(&row.try_get::<_, String>(1)?)?,
                    ),
                    HoldingRow {
                        allotted: row.try_get(2)?,
                        used: row.try_get(3)?,
                    },
                );
            }
            let stmt = tx
                .prepare_cached(
                    "SELECT pool_id, sender, receiver, units FROM view_in_flight WHERE pool_id = ANY($1)",
                )
                .await?;
            for row in tx.query(&stmt, &[&ids]).await? {
                w.in_flight.insert(
                    (
                        columns::pool(&row.try_get::<_, String>(0)?)?,
                        columns::participant(&row.try_get::<_, String>(1)?)?,
                        columns::participant(&row.try_get::<_, String>(2)?)?,
                    ),
                    row.try_get(3)?,
                );
            }
            w.units_loaded.extend(wanted.units_of.iter().cloned());
        }
        for token in &wanted.tokens {
            let row = tx
                .query_opt(
                    "SELECT location_id, expires_at_ms, used_at_ms FROM enrollment_tokens WHERE token_hash = $1",
                    &[token],
                )
                .await?;
            let row = row
                .map(|row| {
                    Ok::<_, StorageError>(TokenRow {
                        location: columns::location(&row.try_get::<_, String>(0)?)?,
                        expires_at_ms: row.try_get(1)?,
                        used_at_ms: row.try_get(2)?,
                    })
                })
                .transpose()?;
            w.tokens.insert(token.clone(), row);
        }
        for key in &wanted.idempotency {
            let row = tx
                .query_opt(
                    "SELECT request_hash, booking_id, created_at_ms FROM idempotency_keys WHERE key = $1",
                    &[key],
                )
                .await?;
            let row = row
                .map(|row| {
                    Ok::<_, StorageError>(IdempotencyRow {
                        request_hash: row.try_get(0)?,
                        booking: columns::booking(&row.try_get::<_, String>(1)?)?,
                        created_at_ms: row.try_get(2)?,
                    })
                })
                .transpose()?;
            w.idempotency.insert(key.clone(), row);
        }
        if wanted.hub_head {
            w.hub_head = Some(hub_head(tx).await?);
        }
        if wanted.webhooks {
            let stmt = tx
                .prepare_cached("SELECT id FROM webhooks ORDER BY id")
                .await?;
            let rows = tx.query(&stmt, &[]).await?;
            w.webhooks = Some(
                rows.iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some((location, from, to)) = &wanted.hashes {
            let stmt = tx
                .prepare_cached(
                    "SELECT seq, hash FROM events WHERE origin = $1 AND seq BETWEEN $2 AND $3",
                )
                .await?;
            for row in tx
                .query(&stmt, &[&location.as_str(), &(*from as i64), &(*to as i64)])
                .await?
            {
                w.stored_hashes.insert(
                    row.try_get::<_, i64>(0)? as u64,
                    columns::hash(&row.try_get::<_, String>(1)?)?,
                );
            }
        }
        if let Some((now_ms, skew_margin_ms)) = wanted.due {
            let stmt = tx
                .prepare_cached(
                    "SELECT id FROM view_bookings
                     WHERE state IN ('requested', 'held')
                       AND ((state = 'requested' AND requested_by = 'hub' AND expires_at_ms < $1::BIGINT - $2::BIGINT)
                         OR (state = 'held' AND charged_to = 'hub' AND expires_at_ms <= $1))
                     LIMIT $3",
                )
                .await?;
            let rows = tx
                .query(
                    &stmt,
                    &[&now_ms, &skew_margin_ms, &(EXPIRED_PER_SWEEP as i64)],
                )
                .await?;
            let due = rows
                .iter()
                .map(|r| columns::booking(&r.try_get::<_, String>(0)?))
                .collect::<StorageResult<Vec<_>>>()?;
            w.due = Some(due);
        }
    }
}

/// Writes what `w` changed: one statement per kind of row.
async fn save(tx: &deadpool_postgres::Transaction<'_>, w: &Working) -> StorageResult<()> {
    if !w.new_events.is_empty() {
        let e = &w.new_events;
        let origin: Vec<&str> = e.iter().map(|s| s.event.origin.as_str()).collect();
        let seq: Vec<i64> = e.iter().map(|s| s.event.seq as i64).collect();
        let epoch: Vec<i64> = e.iter().map(|s| i64::from(s.event.epoch)).collect();
        let id: Vec<String> = e.iter().map(|s| s.event.id.to_string()).collect();
        let prev: Vec<String> = e.iter().map(|s| s.event.prev.to_hex()).collect();
        let hash: Vec<String> = e.iter().map(|s| s.hash.to_hex()).collect();
        let at: Vec<i64> = e.iter().map(|s| s.event.at_ms).collect();
        let kind: Vec<&str> = e.iter().map(|s| s.event.kind.as_str()).collect();
        let body: Vec<&str> = e.iter().map(|s| s.body.as_str()).collect();
        let recipient: Vec<Option<&str>> = e.iter().map(|s| s.recipient.as_deref()).collect();
        let received: Vec<i64> = e.iter().map(|s| s.received_at_ms).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO events (origin, seq, epoch, id, prev, hash, at_ms, kind, body, recipient, received_at_ms)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                                      $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[])",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &origin, &seq, &epoch, &id, &prev, &hash, &at, &kind, &body, &recipient, &received,
            ],
        )
        .await?;
    }
    for id in &w.dirty_locations {
        let Some(Some(row)) = w.locations.get(id) else {
            continue;
        };
        let stmt = tx
            .prepare_cached(
                "UPDATE locations SET public_key = $2, epoch = $3, epoch_start_seq = $4, status = $5,
                        quarantine_reason = $6, head_seq = $7, head_hash = $8, head_signature = $9,
                        backlog_events = $10, synced_at_ms = $11, enrolled_at_ms = $12
                 WHERE id = $1",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &id.as_str(),
                &row.public_key,
                &i64::from(row.epoch),
                &(row.epoch_start_seq as i64),
                &row.status.as_str(),
                &row.quarantine_reason,
                &(row.head.seq as i64),
                &row.head.hash.to_hex(),
                &row.head_signature,
                &row.backlog_events.map(|b| b as i64),
                &row.synced_at_ms,
                &row.enrolled_at_ms,
            ],
        )
        .await?;
    }
    for id in &w.dirty_resources {
        let Some(Some(row)) = w.resources.get(id) else {
            continue;
        };
        let stmt = tx
            .prepare_cached(
                "INSERT INTO view_resources (id, owner, name, kind, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &id.as_str(),
                &row.owner.as_str(),
                &row.name,
                &row.kind.as_str(),
                &row.created_at_ms,
            ],
        )
        .await?;
    }
    for id in &w.dirty_pools {
        let Some(Some(row)) = w.pools.get(id) else {
            continue;
        };
        let stmt = tx
            .prepare_cached(
                "INSERT INTO view_pools (id, resource_id, owner, capacity, starts_at_ms, ends_at_ms, used,
                                         hub_allotted, hub_used, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, used = excluded.used,
                     hub_allotted = excluded.hub_allotted, hub_used = excluded.hub_used,
                     updated_at_ms = excluded.updated_at_ms",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &id.as_str(),
                &row.resource_id.as_str(),
                &row.owner.as_str(),
                &row.capacity,
                &row.starts_at_ms,
                &row.ends_at_ms,
                &row.used,
                &row.hub_allotted,
                &row.hub_used,
                &row.updated_at_ms,
            ],
        )
        .await?;
    }
    // One statement for every booking changed: a batch of a store's log
    // is mostly bookings, and a round trip per row would be most of its
    // time.
    let rows: Vec<(&BookingId, &BookingRow)> = w
        .dirty_bookings
        .iter()
        .filter_map(|id| match w.bookings.get(id) {
            Some(Some(row)) => Some((id, row)),
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        let id: Vec<String> = rows.iter().map(|(id, _)| id.to_string()).collect();
        let owner: Vec<&str> = rows.iter().map(|(_, r)| r.owner.as_str()).collect();
        let requested_by: Vec<&str> = rows.iter().map(|(_, r)| r.requested_by.as_str()).collect();
        let charged_to: Vec<&str> = rows.iter().map(|(_, r)| r.charged_to.as_str()).collect();
        let charged_state: Vec<&str> = rows.iter().map(|(_, r)| r.charged_state.as_str()).collect();
        let channel: Vec<&str> = rows.iter().map(|(_, r)| r.channel.as_str()).collect();
        let state: Vec<&str> = rows.iter().map(|(_, r)| r.state.as_str()).collect();
        let lines: Vec<String> = rows
            .iter()
            .map(|(_, r)| columns::json(&r.lines))
            .collect::<StorageResult<_>>()?;
        let customer: Vec<String> = rows
            .iter()
            .map(|(_, r)| columns::json(&r.customer))
            .collect::<StorageResult<_>>()?;
        let expires: Vec<Option<i64>> = rows.iter().map(|(_, r)| r.expires_at_ms).collect();
        let reason: Vec<Option<&str>> = rows.iter().map(|(_, r)| r.reason.as_deref()).collect();
        let decided_by: Vec<Option<&str>> = rows
            .iter()
            .map(|(_, r)| r.decided_by.as_ref().map(ParticipantId::as_str))
            .collect();
        let created: Vec<i64> = rows.iter().map(|(_, r)| r.created_at_ms).collect();
        let updated: Vec<i64> = rows.iter().map(|(_, r)| r.updated_at_ms).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO view_bookings (id, owner, requested_by, charged_to, charged_state, channel, state,
                                            lines, customer, expires_at_ms, reason, decided_by,
                                            created_at_ms, updated_at_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[],
                                      $11::text[], $12::text[], $13::bigint[], $14::bigint[])
                 ON CONFLICT (id) DO UPDATE SET charged_state = excluded.charged_state,
                     state = excluded.state, expires_at_ms = excluded.expires_at_ms,
                     reason = excluded.reason, decided_by = excluded.decided_by,
                     updated_at_ms = excluded.updated_at_ms",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &id,
                &owner,
                &requested_by,
                &charged_to,
                &charged_state,
                &channel,
                &state,
                &lines,
                &customer,
                &expires,
                &reason,
                &decided_by,
                &created,
                &updated,
            ],
        )
        .await?;
    }
    for key in &w.dirty_holdings {
        let row = w.holdings.get(key).copied().unwrap_or_default();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO view_holdings (pool_id, holder, allotted, used) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (pool_id, holder) DO UPDATE SET allotted = excluded.allotted, used = excluded.used",
            )
            .await?;
        tx.execute(
            &stmt,
            &[&key.0.as_str(), &key.1.as_str(), &row.allotted, &row.used],
        )
        .await?;
    }
    for key in &w.dirty_in_flight {
        let units = w.in_flight.get(key).copied().unwrap_or(0);
        let stmt = tx
            .prepare_cached(
                "INSERT INTO view_in_flight (pool_id, sender, receiver, units) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (pool_id, sender, receiver) DO UPDATE SET units = excluded.units",
            )
            .await?;
        tx.execute(
            &stmt,
            &[&key.0.as_str(), &key.1.as_str(), &key.2.as_str(), &units],
        )
        .await?;
    }
    for (token, at_ms) in &w.used_tokens {
        tx.execute(
            "UPDATE enrollment_tokens SET used_at_ms = $2 WHERE token_hash = $1 AND used_at_ms IS NULL",
            &[token, at_ms],
        )
        .await?;
    }
    for (key, row) in &w.new_idempotency {
        tx.execute(
            "INSERT INTO idempotency_keys (key, request_hash, booking_id, created_at_ms) VALUES ($1, $2, $3, $4)",
            &[key, &row.request_hash, &row.booking.to_string(), &row.created_at_ms],
        )
        .await?;
    }
    for s in &w.set_aside {
        tx.execute(
            "INSERT INTO view_set_aside (location, hub_seq, origin, kind, reason, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &s.location.as_str(),
                &(s.hub_seq as i64),
                &s.origin,
                &s.kind,
                &s.reason,
                &s.at_ms,
            ],
        )
        .await?;
    }
    if let Some(before) = w.forget_idempotency_before {
        tx.execute(
            "DELETE FROM idempotency_keys WHERE created_at_ms < $1",
            &[&before],
        )
        .await?;
    }
    for d in &w.deliveries {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, booking_id, payload, next_attempt_at_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &d.webhook,
                &d.event_id,
                &d.booking.to_string(),
                &d.payload,
                &d.due_at_ms,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Tells every process what `w` committed: delivered with the commit.
async fn announce(tx: &deadpool_postgres::Transaction<'_>, w: &Working) -> StorageResult<()> {
    if let Some(last) = w.hub_events().last() {
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&HUB_LOG_CHANNEL, &last.event.seq.to_string()],
        )
        .await?;
    }
    for ids in w.changed.chunks(IDS_PER_NOTIFICATION) {
        let payload = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        tx.execute("SELECT pg_notify($1, $2)", &[&DECISIONS_CHANNEL, &payload])
            .await?;
    }
    Ok(())
}

fn device_from(row: &Row, location: &LocationId) -> StorageResult<Device> {
    Ok(Device {
        location: location.clone(),
        public_key: row.try_get(0)?,
        epoch: epoch(row.try_get(1)?)?,
        epoch_start_seq: row.try_get::<_, i64>(2)? as u64,
        status: columns::status(&row.try_get::<_, String>(3)?)?,
        head: columns::head(row.try_get(4)?, &row.try_get::<_, String>(5)?)?.into(),
    })
}

const DEVICE_QUERY: &str = "SELECT public_key, epoch, epoch_start_seq, status, head_seq, head_hash
     FROM locations WHERE id = $1";

#[async_trait]
impl HubStorage for PostgresStorage {
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
        let mut client = self.inner.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await?;
        load(&tx, &self.inner.recent, &mut working).await?;
        let out = work(&mut working)?;
        save(&tx, &working).await?;
        announce(&tx, &working).await?;
        tx.commit().await?;
        drop(client);
        // This process's own waiters need not wait for the notification.
        if working.hub_events().next().is_some() {
            catch_up(&self.inner).await?;
        }
        for id in &working.changed {
            let _ = self.inner.decisions.send(*id);
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
        let mut client = self.inner.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO locations (id, name, timezone, created_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone",
            &[&id.as_str(), &name, &timezone, &now_ms],
        )
        .await?;
        tx.execute(
            "INSERT INTO enrollment_tokens (token_hash, location_id, expires_at_ms) VALUES ($1, $2, $3)",
            &[&token_hash, &id.as_str(), &expires_at_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_api_key(&self, name: &str, key_hash: &str, now_ms: i64) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "INSERT INTO api_keys (key_hash, name, created_at_ms) VALUES ($1, $2, $3)",
                &[&key_hash, &name, &now_ms],
            )
            .await?;
        Ok(())
    }

    async fn ready(&self) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        let version: i64 = client
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if version != pg_schema::SCHEMA_VERSION {
            return Err(StorageError::backend(format!(
                "the database has schema version {version}, this binary {}",
                pg_schema::SCHEMA_VERSION
            )));
        }
        Ok(())
    }

    async fn api_key_exists(&self, key_hash: &str) -> StorageResult<bool> {
        let client = self.inner.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT 1 FROM api_keys WHERE key_hash = $1")
            .await?;
        Ok(client.query_opt(&stmt, &[&key_hash]).await?.is_some())
    }

    async fn note_fenced(&self, location: &LocationId, at_ms: i64) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE locations SET fenced_at_ms = $2
                 WHERE id = $1 AND (fenced_at_ms IS NULL OR fenced_at_ms < $2 - $3)",
                &[&location.as_str(), &at_ms, &super::FENCED_NOTED_EVERY_MS],
            )
            .await?;
        Ok(())
    }

    async fn add_webhook(&self, url: &str, secret: &str, now_ms: i64) -> StorageResult<i64> {
        let client = self.inner.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO webhooks (url, secret, created_at_ms) VALUES ($1, $2, $3) RETURNING id",
                &[&url, &secret, &now_ms],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn device(&self, location: &LocationId) -> StorageResult<Option<Device>> {
        let client = self.inner.pool.get().await?;
        let stmt = client.prepare_cached(DEVICE_QUERY).await?;
        client
            .query_opt(&stmt, &[&location.as_str()])
            .await?
            .map(|row| device_from(&row, location))
            .transpose()
    }

    async fn admit(
        &self,
        location: &LocationId,
        nonce: &str,
        signed_at_ms: i64,
        expires_at_ms: i64,
        seen: Seen,
    ) -> StorageResult<bool> {
        let client = self.inner.nonces.get().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO nonces (location, nonce, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let taken = client
            .execute(&stmt, &[&location.as_str(), &nonce, &expires_at_ms])
            .await?;
        if taken == 0 {
            return Ok(false);
        }
        // The nonce is the database's; only the readings are kept here.
        self.inner.recent.note(location, signed_at_ms, seen);
        Ok(true)
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
        let client = self.inner.pool.get().await?;
        // What is addressed to the location and what is addressed to
        // everyone: two ranges of the inbox index, merged by seq.
        let stmt = client
            .prepare_cached(
                "(SELECT seq, epoch, id, prev, at_ms, kind, body FROM events
                  WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3)
                 UNION ALL
                 (SELECT seq, epoch, id, prev, at_ms, kind, body FROM events
                  WHERE recipient = '*' AND seq > $2 ORDER BY seq LIMIT $3)
                 ORDER BY seq LIMIT $3",
            )
            .await?;
        let rows = client
            .query(
                &stmt,
                &[&location.as_str(), &(after as i64), &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let event = build_event(&ParticipantId::Hub, row)?;
                Ok(InboxEvent {
                    hub_seq: event.seq,
                    event,
                })
            })
            .collect()
    }

    async fn own_log(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<(Vec<Event>, HeadRef)> {
        let mut client = self.inner.pool.get().await?;
        // One snapshot for the events and the head.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let device = tx
            .query_opt(DEVICE_QUERY, &[&location.as_str()])
            .await?
            .map(|row| device_from(&row, location))
            .transpose()?
            .ok_or_else(|| StorageError::not_found("location", location))?;
        let stmt = tx
            .prepare_cached(
                "SELECT seq, epoch, id, prev, at_ms, kind, body FROM events
                 WHERE origin = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await?;
        let origin = ParticipantId::Location(location.clone());
        let events = tx
            .query(
                &stmt,
                &[&location.as_str(), &(after as i64), &(limit as i64)],
            )
            .await?
            .iter()
            .map(|row| build_event(&origin, row))
            .collect::<StorageResult<Vec<_>>>()?;
        tx.commit().await?;
        Ok((events, device.head))
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>> {
        let client = self.inner.pool.get().await?;
        // Rows another process is claiming right now are skipped, not
        // waited for; a claimed row is leased by moving its next attempt.
        let rows = client
            .query(
                "WITH due AS (
                     SELECT d.id FROM webhook_deliveries d
                     WHERE d.delivered_at_ms IS NULL AND d.next_attempt_at_ms <= $1
                       AND d.id = (SELECT min(e.id) FROM webhook_deliveries e
                                   WHERE e.webhook_id = d.webhook_id AND e.booking_id = d.booking_id
                                     AND e.delivered_at_ms IS NULL)
                     ORDER BY d.id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE webhook_deliveries AS d SET next_attempt_at_ms = $1::BIGINT + $2::BIGINT
                 FROM due, webhooks AS w
                 WHERE d.id = due.id AND w.id = d.webhook_id
                 RETURNING d.id, w.url, w.secret, d.event_id, d.payload, d.attempts",
                &[&now_ms, &lease_ms, &(limit as i64)],
            )
            .await?;
        let mut due = rows
            .iter()
            .map(|row| {
                Ok(Delivery {
                    id: row.try_get(0)?,
                    url: row.try_get(1)?,
                    secret: row.try_get(2)?,
                    event_id: row.try_get(3)?,
                    payload: row.try_get(4)?,
                    attempts: u32::try_from(row.try_get::<_, i64>(5)?).unwrap_or(u32::MAX),
                })
            })
            .collect::<StorageResult<Vec<_>>>()?;
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    async fn delivery_done(&self, id: i64, now_ms: i64) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE webhook_deliveries SET delivered_at_ms = $2, attempts = attempts + 1 WHERE id = $1",
                &[&id, &now_ms],
            )
            .await?;
        Ok(())
    }

    async fn delivery_failed(&self, id: i64, error: &str, retry_at_ms: i64) -> StorageResult<()> {
        let error: String = error.chars().take(500).collect();
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at_ms = $2, last_error = $3
                 WHERE id = $1",
                &[&id, &retry_at_ms, &error],
            )
            .await?;
        Ok(())
    }

    async fn pools(&self, location: &LocationId) -> StorageResult<PoolsRead> {
        let mut client = self.inner.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let row = tx
            .query_opt(
                "SELECT l.last_seen_at_ms, l.synced_at_ms, l.backlog_events,
                        (SELECT e.at_ms FROM events AS e WHERE e.origin = l.id AND e.seq = l.head_seq)
                 FROM locations AS l WHERE l.id = $1",
                &[&location.as_str()],
            )
            .await?
            .ok_or_else(|| StorageError::not_found("location", location))?;
        let (last_seen, synced_at, backlog, last_event_at): (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        let (last_seen, synced_at, backlog) = match self.inner.recent.seen(location) {
            Some(seen) => (
                Some(seen.at_ms).max(last_seen),
                seen.synced_at_ms.or(synced_at),
                seen.backlog_events.map(|b| b as i64).or(backlog),
            ),
            None => (last_seen, synced_at, backlog),
        };
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT id, {POOL_COLUMNS} FROM view_pools WHERE owner = $1
                 ORDER BY resource_id, starts_at_ms NULLS FIRST, id"
            ))
            .await?;
        let pools = tx
            .query(&stmt, &[&location.as_str()])
            .await?
            .iter()
            .map(|row| {
                Ok((
                    columns::pool(&row.try_get::<_, String>(0)?)?,
                    pool_row(row)?,
                ))
            })
            .collect::<StorageResult<Vec<_>>>()?;
        tx.commit().await?;
        Ok(PoolsRead {
            last_seen_at_ms: last_seen,
            synced_at_ms: synced_at,
            backlog_events: backlog.map(|b| b as u64),
            last_event_at_ms: last_event_at,
            pools,
        })
    }

    async fn booking(&self, id: &BookingId) -> StorageResult<Option<HubBooking>> {
        let client = self.inner.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT id, {BOOKING_COLUMNS} FROM view_bookings WHERE id = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&id.to_string()])
            .await?
            .map(|row| Ok(booking_row(&row)?.public(*id)))
            .transpose()
    }

    async fn locations(&self) -> StorageResult<Vec<LocationHealth>> {
        let client = self.inner.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, name, timezone, status, epoch, head_seq, last_seen_at_ms, backlog_events,
                        clock_offset_ms,
                        (SELECT count(*) FROM view_set_aside AS s WHERE s.location = locations.id),
                        fenced_at_ms
                 FROM locations ORDER BY id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id = columns::location(&row.try_get::<_, String>(0)?)?;
                let (last_seen, backlog, offset): (Option<i64>, Option<i64>, Option<i64>) =
                    (row.try_get(6)?, row.try_get(7)?, row.try_get(8)?);
                // Readings in memory are newer than those written.
                let (last_seen, backlog, offset) = match self.inner.recent.seen(&id) {
                    Some(seen) => (
                        Some(seen.at_ms).max(last_seen),
                        seen.backlog_events.map(|b| b as i64).or(backlog),
                        Some(seen.clock_offset_ms),
                    ),
                    None => (last_seen, backlog, offset),
                };
                Ok(LocationHealth {
                    id,
                    name: row.try_get(1)?,
                    timezone: row.try_get(2)?,
                    status: columns::status(&row.try_get::<_, String>(3)?)?,
                    epoch: epoch(row.try_get(4)?)?,
                    head_seq: row.try_get::<_, i64>(5)? as u64,
                    last_seen_at: last_seen.map(crate::working::timestamp),
                    backlog_events: backlog.map(|b| b as u64),
                    clock_offset_ms: offset,
                    set_aside_events: row.try_get::<_, i64>(9)? as u64,
                    fenced_at: row
                        .try_get::<_, Option<i64>>(10)?
                        .map(crate::working::timestamp),
                })
            })
            .collect()
    }

    async fn fleet(&self, _now_ms: i64) -> StorageResult<FleetRead> {
        let locations = self.locations().await?;
        let client = self.inner.pool.get().await?;
        let waiting_requests = client
            .query(
                "SELECT owner, count(*) FROM view_bookings WHERE state = 'requested'
                 GROUP BY owner ORDER BY owner",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)? as u64)))
            .collect::<StorageResult<Vec<_>>>()?;
        let overbooked_pools = client
            .query(
                "SELECT id, owner, capacity, used FROM view_pools WHERE used > capacity
                 ORDER BY id LIMIT $1",
                &[&(crate::alerts::LISTED_MAX as i64)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(OverbookedPool {
                    id: r.try_get(0)?,
                    owner: r.try_get(1)?,
                    capacity: r.try_get(2)?,
                    used: r.try_get(3)?,
                })
            })
            .collect::<StorageResult<Vec<_>>>()?;
        let failing_webhooks = client
            .query(
                "SELECT w.id, w.url, max(d.attempts), count(*),
                        (SELECT e.last_error FROM webhook_deliveries e
                          WHERE e.webhook_id = w.id AND e.delivered_at_ms IS NULL
                          ORDER BY e.attempts DESC, e.id LIMIT 1)
                 FROM webhooks w JOIN webhook_deliveries d ON d.webhook_id = w.id
                 WHERE d.delivered_at_ms IS NULL
                 GROUP BY w.id, w.url HAVING max(d.attempts) > 0 ORDER BY w.id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(FailingWebhook {
                    id: r.try_get(0)?,
                    url: r.try_get(1)?,
                    attempts: u32::try_from(r.try_get::<_, i32>(2)?).unwrap_or(0),
                    pending: r.try_get::<_, i64>(3)? as u64,
                    last_error: r.try_get(4)?,
                })
            })
            .collect::<StorageResult<Vec<_>>>()?;
        let open_alerts = pg_open_alerts(&client).await?;
        Ok(FleetRead {
            locations,
            waiting_requests,
            overbooked_pools,
            failing_webhooks,
            open_alerts,
        })
    }

    async fn booking_counts(&self) -> StorageResult<Vec<(String, String, u64)>> {
        let client = self.inner.pool.get().await?;
        client
            .query(
                "SELECT state, channel, count(*) FROM view_bookings GROUP BY state, channel",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as u64)))
            .collect()
    }

    async fn record_alerts(
        &self,
        current: Vec<Alert>,
        now_ms: i64,
    ) -> StorageResult<crate::alerts::Changes> {
        let mut client = self.inner.pool.get().await?;
        let tx = client.transaction().await?;
        // One recorder at a time across processes: each change is made
        // (and its webhook queued) by exactly one of them.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ALERT_LOCK])
            .await?;
        let open = pg_open_alerts(&tx).await?;
        let changes = crate::alerts::diff(&open, &current);
        if changes == crate::alerts::Changes::default() {
            return Ok(changes);
        }
        let hooks: Vec<i64> = tx
            .query("SELECT id FROM webhooks ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut queued: Vec<(OpenAlert, bool)> = Vec::new();
        for alert in &changes.raised {
            tx.execute(
                "INSERT INTO alerts (key, kind, subject, message, raised_at_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&alert.key, &alert.kind, &alert.subject, &alert.message, &now_ms],
            )
            .await?;
            queued.push((alert.opened(now_ms), true));
        }
        for alert in &changes.cleared {
            tx.execute(
                "UPDATE alerts SET cleared_at_ms = $2 WHERE key = $1 AND cleared_at_ms IS NULL",
                &[&alert.key, &now_ms],
            )
            .await?;
            queued.push((alert.clone(), false));
        }
        for (alert, raised) in &queued {
            for hook in &hooks {
                let event_id = uuid::Uuid::now_v7().to_string();
                let payload = crate::alerts::payload(&event_id, *raised, alert, now_ms).to_string();
                tx.execute(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, booking_id, payload, next_attempt_at_ms)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[hook, &event_id, &format!("alert:{}", alert.key), &payload, &now_ms],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changes)
    }

    async fn add_operator(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        let added = client
            .execute(
                "INSERT INTO operators (name, password_hash, created_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &password_hash, &now_ms],
            )
            .await?;
        if added == 0 {
            return Err(StorageError::Conflict(format!(
                "an operator named {name:?} exists already"
            )));
        }
        Ok(())
    }

    async fn operator(&self, name: &str) -> StorageResult<Option<Operator>> {
        let client = self.inner.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT name, password_hash, failed_attempts, locked_until_ms FROM operators WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| {
            Ok(Operator {
                name: r.try_get(0)?,
                password_hash: r.try_get(1)?,
                failed_attempts: u32::try_from(r.try_get::<_, i32>(2)?).unwrap_or(0),
                locked_until_ms: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn operator_failed(&self, name: &str, lock_until_ms: Option<i64>) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "UPDATE operators SET failed_attempts = failed_attempts + 1,
                        locked_until_ms = coalesce($2, locked_until_ms)
                 WHERE name = $1",
                &[&name, &lock_until_ms],
            )
            .await?;
        Ok(())
    }

    async fn start_operator_session(
        &self,
        name: &str,
        token_hash: &str,
        csrf: &str,
        now_ms: i64,
    ) -> StorageResult<()> {
        let mut client = self.inner.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE operators SET failed_attempts = 0, locked_until_ms = NULL WHERE name = $1",
            &[&name],
        )
        .await?;
        tx.execute(
            "DELETE FROM operator_sessions WHERE last_seen_ms < $1",
            &[&(now_ms - 24 * 3600 * 1000)],
        )
        .await?;
        tx.execute(
            "INSERT INTO operator_sessions (token_hash, operator, csrf, created_at_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $4)",
            &[&token_hash, &name, &csrf, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn operator_session(
        &self,
        token_hash: &str,
        idle_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Option<OperatorSession>> {
        let client = self.inner.pool.get().await?;
        let Some(row) = client
            .query_opt(
                "SELECT operator, csrf, last_seen_ms FROM operator_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?
        else {
            return Ok(None);
        };
        let last_seen: i64 = row.try_get(2)?;
        if now_ms - last_seen > idle_ms {
            client
                .execute(
                    "DELETE FROM operator_sessions WHERE token_hash = $1",
                    &[&token_hash],
                )
                .await?;
            return Ok(None);
        }
        if now_ms - last_seen > crate::alerts::SESSION_TOUCH_EVERY_MS {
            client
                .execute(
                    "UPDATE operator_sessions SET last_seen_ms = $2 WHERE token_hash = $1",
                    &[&token_hash, &now_ms],
                )
                .await?;
        }
        Ok(Some(OperatorSession {
            operator: row.try_get(0)?,
            csrf: row.try_get(1)?,
        }))
    }

    async fn end_operator_session(&self, token_hash: &str) -> StorageResult<()> {
        let client = self.inner.pool.get().await?;
        client
            .execute(
                "DELETE FROM operator_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
        Ok(())
    }
}
