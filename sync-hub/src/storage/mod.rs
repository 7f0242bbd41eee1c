//! The hub's storage: one trait, chosen once at start-up. Handlers see only
//! [`HubStorage`]; the embedded SQLite backend is the default.

mod recent;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use shared::protocol::{EnrollRequest, HeadRef, InboxEvent};
use shared::{BookingId, Event, LocationId, ParticipantId, PoolId};

use crate::plan::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("insufficient capacity: {0}")]
    InsufficientCapacity(String),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("{0}")]
    InvalidState(String),
    #[error("storage error: {0}")]
    Backend(String),
}

impl StorageError {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Where an enrolled device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Pending,
    Active,
    Quarantined,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "quarantined" => Some(Self::Quarantined),
            _ => None,
        }
    }
}

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

/// What a successful enrollment binds.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub location: LocationId,
    pub name: String,
    pub timezone: String,
    pub epoch: u32,
    pub epoch_start_seq: u64,
    pub hub_head: HeadRef,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub acked: HeadRef,
    pub applied: usize,
    /// Bookings whose state changed in the view.
    pub changed: Vec<BookingId>,
}

/// A web order as the public API took it.
#[derive(Debug, Clone)]
pub struct WebOrder {
    pub lines: Vec<shared::Line>,
    pub customer: shared::Customer,
    pub hold_seconds: Option<i64>,
    pub ttl_ms: i64,
    /// `(key, hash of the request)` when the caller sent an Idempotency-Key.
    pub idempotency: Option<(String, String)>,
}

/// What the hub did with a web order or a cancellation.
#[derive(Debug, Clone)]
pub struct Placed {
    pub booking: HubBooking,
    /// Whether this answers an earlier request with the same key.
    pub replayed: bool,
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

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct HubBooking {
    pub id: BookingId,
    pub code: String,
    pub state: shared::BookingState,
    pub lines: Vec<shared::Line>,
    pub customer: shared::Customer,
    pub channel: shared::Channel,
    pub owner: ParticipantId,
    pub requested_by: ParticipantId,
    pub charged_to: ParticipantId,
    pub decided_by: Option<ParticipantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationHealth {
    pub id: LocationId,
    pub name: String,
    pub timezone: String,
    pub status: DeviceStatus,
    pub epoch: u32,
    pub head_seq: u64,
    pub last_seen_at: Option<jiff::Timestamp>,
    pub backlog_events: Option<u64>,
    pub clock_offset_ms: Option<i64>,
    /// Inbox events the location could not apply and set aside.
    pub set_aside_events: u64,
}

#[async_trait]
pub trait HubStorage: Send + Sync + std::fmt::Debug + 'static {
    /// Where this backend publishes the hub events it commits, in commit
    /// order, for long polls to wait on.
    fn inboxes(&self) -> std::sync::Arc<crate::notify::Inboxes>;

    // Administration (the CLI, while the server may be running).
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
    async fn api_key_exists(&self, key_hash: &str) -> StorageResult<bool>;

    // Devices.
    async fn enroll(
        &self,
        request: &EnrollRequest,
        token_hash: &str,
        now_ms: i64,
    ) -> StorageResult<Enrolled>;
    async fn device(&self, location: &LocationId) -> StorageResult<Option<Device>>;
    /// Takes a signed, fresh request's nonce and the device's health
    /// readings; `false` (and nothing taken) if the nonce was seen before,
    /// or if the request cannot be told apart from a replay (signed at
    /// `signed_at_ms`, before the backend could remember its nonce). Runs
    /// for every signed request: it must not cost a durable write each.
    async fn admit(
        &self,
        location: &LocationId,
        nonce: &str,
        signed_at_ms: i64,
        expires_at_ms: i64,
        seen: Seen,
    ) -> StorageResult<bool>;

    // Sync.
    /// Applies a batch of the location's own log. `backlog_before` is what
    /// the device said it had waiting before this batch, so the hub can
    /// record what remains.
    async fn push(
        &self,
        location: &LocationId,
        events: Vec<Event>,
        head_signature: &str,
        backlog_before: Option<u64>,
        now_ms: i64,
    ) -> StorageResult<Pushed>;
    /// Hub events addressed to `location` after `after`.
    async fn inbox(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<InboxEvent>>;
    /// The location's own log as the hub holds it, after `after`.
    async fn own_log(
        &self,
        location: &LocationId,
        after: u64,
        limit: usize,
    ) -> StorageResult<(Vec<Event>, HeadRef)>;
    /// Starts a new epoch after the hub's head and lifts a quarantine.
    async fn reset(&self, location: &LocationId, now_ms: i64)
    -> StorageResult<(u32, u64, HeadRef)>;

    // The hub's own acts.
    /// The hub gives back `units` of its allotment of `pool` to the owner.
    async fn return_hub_allotment(
        &self,
        pool: &PoolId,
        units: i64,
        now_ms: i64,
    ) -> StorageResult<LocationId>;

    // Bookings through the hub.
    /// Takes a web order: routed to its owner when the owner is reachable,
    /// else confirmed from the hub's own allotment, else routed to wait for
    /// the owner until it expires (docs/ARCHITECTURE.md, section 4).
    async fn place_web_order(
        &self,
        order: WebOrder,
        unreachable_after_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Placed>;
    async fn cancel_booking(&self, id: &BookingId, now_ms: i64) -> StorageResult<Placed>;
    /// Gives up on the hub's requests without a decision by `expires_at +
    /// skew_margin_ms` and expires the hub's holds; returns locations to wake.
    async fn expire_due(&self, skew_margin_ms: i64, now_ms: i64) -> StorageResult<Vec<BookingId>>;

    // Webhooks.
    async fn add_webhook(&self, url: &str, secret: &str, now_ms: i64) -> StorageResult<i64>;
    /// The next undelivered change of each (webhook, booking), if due.
    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> StorageResult<Vec<Delivery>>;
    async fn delivery_done(&self, id: i64, now_ms: i64) -> StorageResult<()>;
    async fn delivery_failed(&self, id: i64, error: &str, retry_at_ms: i64) -> StorageResult<()>;

    // Public reads.
    async fn pools(&self, location: &LocationId) -> StorageResult<Vec<PoolSummary>>;
    async fn booking(&self, id: &BookingId) -> StorageResult<Option<HubBooking>>;
    async fn locations(&self) -> StorageResult<Vec<LocationHealth>>;
}
