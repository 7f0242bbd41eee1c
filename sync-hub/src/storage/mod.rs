//! The hub's storage: one trait, chosen once at start-up, that stores,
//! reads and locks, and decides nothing. The rules every backend runs
//! (docs/ARCHITECTURE.md, section 7) are in [`crate::view`],
//! [`crate::routing`] and [`crate::enrollment`]; [`crate::service`] runs
//! them in a backend's write transaction. The embedded SQLite backend is
//! the default; PostgreSQL serves one fleet from several processes.

pub mod columns;
pub mod pg_schema;
pub mod postgres;
mod recent;
pub mod sqlite;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use shared::protocol::{HeadRef, InboxEvent};
use shared::{BookingId, Event, LocationId, ParticipantId, PoolId};

pub use crate::enrollment::Enrolled;
pub use crate::error::{StorageError, StorageResult};
pub use crate::fleet::{Alert, FleetRead, LocationHealth, OpenAlert};
pub use crate::routing::{Placed, WebOrder};
pub use crate::view::Pushed;
pub use crate::working::{DeviceStatus, HubBooking, PoolRow, Working};

/// The rules of one write transaction, run over the rows it loaded; what
/// they return comes back out of [`HubStorage::transact`].
pub type Work = Box<dyn FnOnce(&mut Working) -> StorageResult<Box<dyn Any + Send>> + Send>;

/// A location's device as the signature check needs it.
#[derive(Debug, Clone)]
pub struct Device {
    pub location: LocationId,
    pub public_key: Option<String>,
    pub epoch: u32,
    pub epoch_start_seq: u64,
    pub status: DeviceStatus,
    pub head: HeadRef,
}

/// A webhook delivery due now.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub event_id: String,
    pub payload: String,
    pub attempts: u32,
}

/// How often a fenced location's refusal time is written: an old copy
/// retrying every second costs one write in this time, and the alert it
/// raises is as late as this at most.
pub const FENCED_NOTED_EVERY_MS: i64 = 10_000;

/// Health readings a device reports with every signed request.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub at_ms: i64,
    pub clock_offset_ms: i64,
    pub backlog_events: Option<u64>,
    /// When the device last reported nothing waiting to sync (kept by the
    /// backend from the readings; `None` as a device reports them).
    pub synced_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolSummary {
    pub id: PoolId,
    pub resource_id: String,
    pub owner: ParticipantId,
    pub capacity: i64,
    /// Units not consumed by any participant's bookings, as of the logs the
    /// hub holds.
    pub available: i64,
    /// Units the hub itself may still sell from its allotment.
    pub hub_available: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<jiff::Timestamp>,
    pub as_of: Option<jiff::Timestamp>,
    pub stale: bool,
    /// When the hub last heard from the owner, for the handler to judge
    /// `stale` by its own threshold.
    #[serde(skip)]
    pub owner_last_seen_at_ms: Option<i64>,
    #[serde(skip)]
    pub owner_backlog_events: Option<u64>,
}

/// What the hub knows of a location's pools, as one read.
#[derive(Debug, Clone)]
pub struct PoolsRead {
    /// When the hub last heard from the owner (the newer of the database
    /// and this process's readings).
    pub last_seen_at_ms: Option<i64>,
    /// When the owner last reported nothing waiting to sync.
    pub synced_at_ms: Option<i64>,
    pub backlog_events: Option<u64>,
    /// The owner's clock at the newest event of its log the hub holds.
    pub last_event_at_ms: Option<i64>,
    pub pools: Vec<(PoolId, PoolRow)>,
}

#[async_trait]
pub trait HubStorage: Send + Sync + std::fmt::Debug + 'static {
    /// Where the hub events committed on this database (by any process)
    /// are published, in commit order, for long polls to wait on.
    fn inboxes(&self) -> Arc<crate::notify::Inboxes>;
    /// Bookings whose state a commit on this database (by any process)
    /// changed, for web orders waiting on a decision.
    fn decisions(&self) -> tokio::sync::broadcast::Sender<BookingId>;

    /// One write transaction: holding the hub's write lock (one such
    /// transaction at a time on the database, across every process, so the
    /// rules read everything committed before and the hub's log gets its
    /// seqs in commit order), reads what `working` wants until it wants
    /// nothing more, runs `work`, writes what the working set says changed
    /// and commits; then publishes the hub events and changed bookings.
    /// When `work` fails, nothing is written.
    async fn transact(&self, working: Working, work: Work) -> StorageResult<Box<dyn Any + Send>>;

    // Administration (the CLI, while servers may be running). Each is one
    // transaction of its own.
    /// Adds a location, or renames a known one, with a fresh enrollment
    /// token (how an operator replaces a store PC).
    async fn add_location(
        &self,
        id: &LocationId,
        name: &str,
        timezone: &str,
        token_hash: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StorageResult<()>;
    async fn add_api_key(&self, name: &str, key_hash: &str, now_ms: i64) -> StorageResult<()>;
    /// Whether the database answers and holds the schema this binary
    /// migrates to (`GET /readyz`): an error says what is wrong.
    async fn ready(&self) -> StorageResult<()>;
    /// A committed read.
    async fn api_key_exists(&self, key_hash: &str) -> StorageResult<bool>;
    /// Records that a push of `location` was refused as fenced at `at_ms`,
    /// at most one write per [`FENCED_NOTED_EVERY_MS`] however often the old
    /// copy retries.
    async fn note_fenced(&self, location: &LocationId, at_ms: i64) -> StorageResult<()>;
    async fn add_webhook(&self, url: &str, secret: &str, now_ms: i64) -> StorageResult<i64>;

    // Devices.
    /// A committed read of the location's device.
    async fn device(&self, location: &LocationId) -> StorageResult<Option<Device>>;
    /// Takes a signed, fresh request's nonce and the device's health
    /// readings; `false` (and nothing taken) if the nonce was seen before
    /// on this database, or if the request cannot be told apart from a
    /// replay (signed at `signed_at_ms`, before the backend could remember
    /// its nonce). Runs for every signed request: it must not cost a
    /// durable write each.
    async fn admit(
        &self,
        location: &LocationId,
        nonce: &str,
        signed_at_ms: i64,
        expires_at_ms: i64,
        seen: Seen,
    ) -> StorageResult<bool>;
    /// What a push left waiting at the device, as of `at_ms`, for the
    /// readings this process keeps (the database has it from the push).
    fn pushed(&self, location: &LocationId, remaining: u64, at_ms: i64);

    // Sync reads, each one committed snapshot.
    /// Hub events addressed to `location` or to everyone after `after`, in
    /// seq order.
    async fn inbox(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<InboxEvent>>;
    /// The location's own log as the hub holds it, after `after`, and its
    /// head.
    async fn own_log(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<(Vec<Event>, HeadRef)>;

    // Webhooks and housekeeping.
    /// Claims up to `limit` deliveries due at `now_ms`: the next
    /// undelivered change of each (webhook, booking). A claimed delivery is
    /// not handed out again (to this or any process) before
    /// `now_ms + lease_ms`, so each attempt happens once; one whose
    /// attempt never reports back is due again after the lease.
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StorageResult<Vec<Delivery>>;
    async fn delivery_done(&self, id: i64, now_ms: i64) -> StorageResult<()>;
    async fn delivery_failed(&self, id: i64, error: &str, retry_at_ms: i64) -> StorageResult<()>;

    // Public reads, each one committed snapshot.
    async fn pools(&self, location: &LocationId) -> StorageResult<PoolsRead>;
    async fn booking(&self, id: &BookingId) -> StorageResult<Option<HubBooking>>;
    async fn locations(&self) -> StorageResult<Vec<LocationHealth>>;

    // Operations: the fleet as one read, alerts, operators.
    /// Everything the dashboard, the alerts and the metrics read, as of now.
    async fn fleet(&self, now_ms: i64) -> StorageResult<FleetRead>;
    /// Bookings by (state, channel), for the metrics.
    async fn booking_counts(&self) -> StorageResult<Vec<(String, String, u64)>>;
    /// Makes the open alerts `current` (the conditions true now) in one
    /// transaction: raises what is new and clears what healed, as
    /// [`crate::alerts::diff`] says, and queues each change's webhook.
    /// Several processes may call it at once; each change happens once.
    async fn record_alerts(
        &self,
        current: Vec<Alert>,
        now_ms: i64,
    ) -> StorageResult<crate::alerts::Changes>;
    async fn add_operator(&self, name: &str, password_hash: &str, now_ms: i64)
    -> StorageResult<()>;
    async fn operator(&self, name: &str) -> StorageResult<Option<crate::fleet::Operator>>;
    /// Records a failed sign-in; locks the account until `lock_until_ms`
    /// when `lock` is set.
    async fn operator_failed(&self, name: &str, lock_until_ms: Option<i64>) -> StorageResult<()>;
    /// A good sign-in: clears the failures and starts a session.
    async fn start_operator_session(
        &self,
        name: &str,
        token_hash: &str,
        csrf: &str,
        now_ms: i64,
    ) -> StorageResult<()>;
    /// The session of `token_hash` if it was used within `idle_ms`; marks
    /// it used now.
    async fn operator_session(
        &self,
        token_hash: &str,
        idle_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Option<crate::fleet::OperatorSession>>;
    async fn end_operator_session(&self, token_hash: &str) -> StorageResult<()>;
}
