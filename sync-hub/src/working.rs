//! The rows one write transaction reads and the changes it makes: the data
//! the rules of [`crate::view`], [`crate::routing`] and
//! [`crate::enrollment`] run over. A backend fills a [`Working`] set with
//! what [`Working::wanted`] names, under its write lock, lets the rules run
//! over it, and saves what the set says changed before it commits. The rules
//! never see a database, and a backend never decides anything.
//!
//! Every row a rule may read is named before the rules run: by the
//! operation (the events of a batch name their bookings, pools, resources
//! and participants), and by the rows themselves (a booking names its pools
//! and parties, a pool its owner and resource). A rule that reads a row
//! nobody named gets an error instead of a guess.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use shared::authz::{BookingFacts, Facts, PoolFacts, ResourceFacts};
use shared::event::ChainHead;
use shared::{
    BookingId, BookingState, Channel, Customer, Event, EventBody, Hash, Line, LocationId,
    ParticipantId, PoolId, ResourceId, ResourceKind,
};

use crate::error::{StorageError, StorageResult};

/// Where an enrolled device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

/// A location and its device, as the rules change it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationRow {
    pub name: String,
    pub timezone: String,
    /// The enrolled device's Ed25519 key (base64); `None` until enrolled.
    pub public_key: Option<String>,
    pub epoch: u32,
    /// The first seq that must carry `epoch`.
    pub epoch_start_seq: u64,
    pub status: DeviceStatus,
    pub quarantine_reason: Option<String>,
    pub head: ChainHead,
    pub head_signature: Option<String>,
    /// When the hub last heard from the device: the newer of what the
    /// database and this process's readings hold. Read only.
    pub last_seen_at_ms: Option<i64>,
    pub backlog_events: Option<u64>,
    pub synced_at_ms: Option<i64>,
    pub enrolled_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRow {
    pub owner: ParticipantId,
    pub name: String,
    pub kind: ResourceKind,
    /// Whether any pool names it (a resource with pools cannot be renamed
    /// into another kind). Read and kept by the rules.
    pub has_pools: bool,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub resource_id: ResourceId,
    pub owner: ParticipantId,
    pub capacity: i64,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    /// Units consumed by every participant's bookings, as of the logs the
    /// hub holds.
    pub used: i64,
    /// The hub's own holding of the pool.
    pub hub_allotted: i64,
    pub hub_used: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BookingRow {
    pub owner: ParticipantId,
    pub requested_by: ParticipantId,
    pub charged_to: ParticipantId,
    /// The state the charged participant's own log gives the booking.
    pub charged_state: BookingState,
    pub channel: Channel,
    pub state: BookingState,
    pub lines: Vec<Line>,
    pub customer: Customer,
    pub expires_at_ms: Option<i64>,
    pub reason: Option<String>,
    pub decided_by: Option<ParticipantId>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A location's holding of a pool by its own ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldingRow {
    pub allotted: i64,
    pub used: i64,
}

/// An enrollment token as issued.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub location: LocationId,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
}

/// An Idempotency-Key taken earlier: the request it came with and the
/// booking it made.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRow {
    pub request_hash: String,
    pub booking: BookingId,
    pub created_at_ms: i64,
}

/// An event to store: of a location's log (`recipient` `None`) or of the
/// hub's, addressed to one location or to everyone.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub hash: Hash,
    /// The canonical body the hash covers.
    pub body: String,
    pub recipient: Option<String>,
    pub received_at_ms: i64,
}

/// An inbox event a location set aside, as it reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetAside {
    pub location: LocationId,
    pub hub_seq: u64,
    pub origin: String,
    pub kind: String,
    pub reason: String,
    pub at_ms: i64,
}

/// A webhook delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub webhook: i64,
    pub event_id: String,
    pub booking: BookingId,
    pub payload: String,
    pub due_at_ms: i64,
}

/// Rows keyed by id: `None` where the row was looked for and is not there.
type Rows<K, V> = HashMap<K, Option<V>>;

/// The `recipient` of hub events addressed to every location (locations
/// joining, catalog): one copy that each store reads, instead of one per
/// store. Location ids cannot contain it.
pub const EVERYONE: &str = "*";

/// The rows one transaction reads, and what it changed.
#[derive(Debug, Default)]
pub struct Working {
    pub locations: Rows<LocationId, LocationRow>,
    pub resources: Rows<ResourceId, ResourceRow>,
    pub pools: Rows<PoolId, PoolRow>,
    pub bookings: Rows<BookingId, BookingRow>,
    /// Every holding and every unit in flight of the pools in
    /// `units_loaded`; what is not here is zero.
    pub holdings: HashMap<(PoolId, LocationId), HoldingRow>,
    pub in_flight: HashMap<(PoolId, ParticipantId, ParticipantId), i64>,
    pub units_loaded: HashSet<PoolId>,
    pub tokens: Rows<String, TokenRow>,
    pub idempotency: Rows<String, IdempotencyRow>,
    /// The hub log's head; `None` until loaded.
    pub hub_head: Option<ChainHead>,
    /// Every webhook's id; `None` until loaded.
    pub webhooks: Option<Vec<i64>>,
    /// Stored hashes of one location's events, by seq, for the seqs asked
    /// for in `hashes_wanted`.
    pub stored_hashes: HashMap<u64, Hash>,
    /// Bookings the hub must expire now, found by the backend's index.
    pub due: Option<Vec<BookingId>>,

    wanted: Wanted,

    // What changed, for the backend to save.
    pub new_events: Vec<NewEvent>,
    pub dirty_locations: BTreeSet<LocationId>,
    pub dirty_resources: BTreeSet<ResourceId>,
    pub dirty_pools: BTreeSet<PoolId>,
    pub dirty_bookings: BTreeSet<BookingId>,
    pub dirty_holdings: BTreeSet<(PoolId, LocationId)>,
    pub dirty_in_flight: BTreeSet<(PoolId, ParticipantId, ParticipantId)>,
    pub used_tokens: Vec<(String, i64)>,
    pub new_idempotency: Vec<(String, IdempotencyRow)>,
    pub set_aside: Vec<SetAside>,
    pub deliveries: Vec<NewDelivery>,
    /// Idempotency-Keys taken before this instant are to be forgotten.
    pub forget_idempotency_before: Option<i64>,
    /// Bookings whose state changed, for web orders waiting on a decision.
    pub changed: Vec<BookingId>,
}

/// What a backend is asked to read: ids not loaded yet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Wanted {
    pub locations: BTreeSet<LocationId>,
    pub resources: BTreeSet<ResourceId>,
    pub pools: BTreeSet<PoolId>,
    pub bookings: BTreeSet<BookingId>,
    /// Pools whose holdings and units in flight to read.
    pub units_of: BTreeSet<PoolId>,
    pub tokens: BTreeSet<String>,
    pub idempotency: BTreeSet<String>,
    pub hub_head: bool,
    pub webhooks: bool,
    /// A location's stored event hashes for seqs in `from..=to`.
    pub hashes: Option<(LocationId, u64, u64)>,
    /// Bookings the hub must expire: `(now_ms, skew_margin_ms)`, at most
    /// [`EXPIRED_PER_SWEEP`].
    pub due: Option<(i64, i64)>,
}

/// Bookings one sweep expires: a sweep holds the write lock for a bounded
/// time, and the next sweep follows within a quarter of a second.
pub const EXPIRED_PER_SWEEP: usize = 256;

impl Wanted {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn location_of(participant: &ParticipantId) -> Option<&LocationId> {
    match participant {
        ParticipantId::Location(l) => Some(l),
        ParticipantId::Hub => None,
    }
}

impl Working {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn want_location(&mut self, id: &LocationId) -> &mut Self {
        self.wanted.locations.insert(id.clone());
        self
    }

    pub fn want_participant(&mut self, id: &ParticipantId) -> &mut Self {
        if let Some(location) = location_of(id) {
            self.want_location(location);
        }
        self
    }

    pub fn want_pool(&mut self, id: &PoolId) -> &mut Self {
        self.wanted.pools.insert(id.clone());
        self
    }

    pub fn want_booking(&mut self, id: &BookingId) -> &mut Self {
        self.wanted.bookings.insert(*id);
        self
    }

    pub fn want_token(&mut self, token_hash: &str) -> &mut Self {
        self.wanted.tokens.insert(token_hash.to_owned());
        self
    }

    pub fn want_idempotency(&mut self, key: &str) -> &mut Self {
        self.wanted.idempotency.insert(key.to_owned());
        self
    }

    /// The stored hashes of `location`'s events `from..=to`.
    pub fn want_hashes(&mut self, location: &LocationId, from: u64, to: u64) -> &mut Self {
        if from <= to {
            self.wanted.hashes = Some((location.clone(), from, to));
        }
        self
    }

    /// The bookings the hub must expire at `now_ms`.
    pub fn want_due(&mut self, now_ms: i64, skew_margin_ms: i64) -> &mut Self {
        self.wanted.due = Some((now_ms, skew_margin_ms));
        self
    }

    /// Everything the rules read to apply `body` as written by `origin`.
    pub fn want_event(&mut self, origin: &ParticipantId, body: &EventBody) -> &mut Self {
        self.want_participant(origin);
        match body {
            EventBody::ResourceCreated { id, owner, .. } => {
                self.wanted.resources.insert(id.clone());
                self.want_participant(owner);
            }
            EventBody::PoolCreated {
                id,
                resource_id,
                owner,
                ..
            } => {
                self.want_pool(id);
                self.wanted.resources.insert(resource_id.clone());
                self.want_participant(owner);
            }
            EventBody::PoolAdjusted { pool, .. } | EventBody::AllotmentReturned { pool, .. } => {
                self.want_pool(pool);
            }
            EventBody::AllotmentGranted { pool, to, .. } => {
                self.want_pool(pool).want_participant(to);
            }
            EventBody::AllotmentCredited { pool, from, .. }
            | EventBody::AllotmentRecalled { pool, from, .. } => {
                self.want_pool(pool).want_participant(from);
            }
            EventBody::BookingCreated {
                id,
                owner,
                requested_by,
                charged_to,
                lines,
                ..
            } => {
                self.want_booking(id)
                    .want_participant(owner)
                    .want_participant(requested_by)
                    .want_participant(charged_to);
                for line in lines {
                    self.want_pool(&line.pool_id);
                }
            }
            EventBody::BookingConfirmed { id, .. }
            | EventBody::BookingCancelled { id, .. }
            | EventBody::BookingFulfilled { id, .. }
            | EventBody::BookingNoShow { id, .. }
            | EventBody::BookingExpired { id, .. }
            | EventBody::BookingCancelRequested { id } => {
                self.want_booking(id);
            }
            EventBody::LocationJoined { location, .. } => {
                self.want_location(location);
            }
            // What a participant took in from another moves its ledger as
            // the event it took in names (crate::ledger).
            EventBody::Observed { event, .. } => {
                if let Ok(inner) = event.typed() {
                    self.want_event(&event.origin, &inner);
                }
            }
            EventBody::Relayed { .. } | EventBody::InboxSetAside { .. } => {}
        }
        self
    }

    /// What the backend must still read: what was asked for and is not
    /// loaded, and what the loaded rows name. Empty once everything is in.
    pub fn wanted(&mut self) -> Wanted {
        let mut more = std::mem::take(&mut self.wanted);
        for row in self.tokens.values().flatten() {
            more.locations.insert(row.location.clone());
        }
        for row in self.idempotency.values().flatten() {
            more.bookings.insert(row.booking);
        }
        if let Some(due) = &self.due {
            more.bookings.extend(due.iter().copied());
        }
        for row in self.bookings.values().flatten() {
            for party in [&row.owner, &row.requested_by, &row.charged_to] {
                if let Some(location) = location_of(party) {
                    more.locations.insert(location.clone());
                }
            }
            more.pools
                .extend(row.lines.iter().map(|l| l.pool_id.clone()));
        }
        for (id, row) in &self.pools {
            more.units_of.insert(id.clone());
            if let Some(row) = row {
                more.resources.insert(row.resource_id.clone());
                if let Some(owner) = location_of(&row.owner) {
                    more.locations.insert(owner.clone());
                }
            }
        }
        more.locations.retain(|id| !self.locations.contains_key(id));
        more.resources.retain(|id| !self.resources.contains_key(id));
        more.pools.retain(|id| !self.pools.contains_key(id));
        more.bookings.retain(|id| !self.bookings.contains_key(id));
        more.units_of.retain(|id| !self.units_loaded.contains(id));
        more.tokens.retain(|t| !self.tokens.contains_key(t));
        more.idempotency
            .retain(|k| !self.idempotency.contains_key(k));
        more.hub_head = self.hub_head.is_none();
        more.webhooks = self.webhooks.is_none();
        if self.due.is_some() {
            more.due = None;
        }
        more
    }

    fn missing(what: &'static str, id: impl std::fmt::Display) -> StorageError {
        StorageError::backend(format!("{what} {id} was not read before the rules ran"))
    }

    /// A location's row; `None` where there is no such location.
    pub fn location(&self, id: &LocationId) -> StorageResult<Option<&LocationRow>> {
        self.locations
            .get(id)
            .map(Option::as_ref)
            .ok_or_else(|| Self::missing("location", id))
    }

    pub fn location_mut(&mut self, id: &LocationId) -> StorageResult<&mut LocationRow> {
        self.dirty_locations.insert(id.clone());
        match self.locations.get_mut(id) {
            Some(Some(row)) => Ok(row),
            Some(None) => Err(StorageError::not_found("location", id)),
            None => Err(Self::missing("location", id)),
        }
    }

    pub fn resource(&self, id: &ResourceId) -> StorageResult<Option<&ResourceRow>> {
        self.resources
            .get(id)
            .map(Option::as_ref)
            .ok_or_else(|| Self::missing("resource", id))
    }

    /// Adds a resource unless one with its id exists.
    pub fn insert_resource(&mut self, id: &ResourceId, row: ResourceRow) -> StorageResult<()> {
        if self.resource(id)?.is_none() {
            self.resources.insert(id.clone(), Some(row));
            self.dirty_resources.insert(id.clone());
        }
        Ok(())
    }

    pub fn pool(&self, id: &PoolId) -> StorageResult<Option<&PoolRow>> {
        self.pools
            .get(id)
            .map(Option::as_ref)
            .ok_or_else(|| Self::missing("pool", id))
    }

    /// The pool, to change; `None` where there is no such pool.
    pub fn pool_mut(&mut self, id: &PoolId) -> StorageResult<Option<&mut PoolRow>> {
        match self.pools.get_mut(id) {
            Some(Some(row)) => {
                self.dirty_pools.insert(id.clone());
                Ok(Some(row))
            }
            Some(None) => Ok(None),
            None => Err(Self::missing("pool", id)),
        }
    }

    /// Adds a pool unless one with its id exists.
    pub fn insert_pool(&mut self, id: &PoolId, row: PoolRow) -> StorageResult<()> {
        if self.pool(id)?.is_none() {
            if let Some(Some(resource)) = self.resources.get_mut(&row.resource_id) {
                resource.has_pools = true;
            }
            self.pools.insert(id.clone(), Some(row));
            self.units_loaded.insert(id.clone());
            self.dirty_pools.insert(id.clone());
        }
        Ok(())
    }

    pub fn booking(&self, id: &BookingId) -> StorageResult<Option<&BookingRow>> {
        self.bookings
            .get(id)
            .map(Option::as_ref)
            .ok_or_else(|| Self::missing("booking", id))
    }

    pub fn booking_mut(&mut self, id: &BookingId) -> StorageResult<&mut BookingRow> {
        match self.bookings.get_mut(id) {
            Some(Some(row)) => {
                self.dirty_bookings.insert(*id);
                Ok(row)
            }
            Some(None) => Err(StorageError::not_found("booking", id)),
            None => Err(Self::missing("booking", id)),
        }
    }

    pub fn insert_booking(&mut self, id: BookingId, row: BookingRow) {
        self.bookings.insert(id, Some(row));
        self.dirty_bookings.insert(id);
    }

    fn units_of(&self, pool: &PoolId) -> StorageResult<()> {
        if self.units_loaded.contains(pool) {
            Ok(())
        } else {
            Err(Self::missing("units of pool", pool))
        }
    }

    pub fn holding(&self, pool: &PoolId, holder: &LocationId) -> StorageResult<HoldingRow> {
        self.units_of(pool)?;
        Ok(self
            .holdings
            .get(&(pool.clone(), holder.clone()))
            .copied()
            .unwrap_or_default())
    }

    pub fn holding_mut(
        &mut self,
        pool: &PoolId,
        holder: &LocationId,
    ) -> StorageResult<&mut HoldingRow> {
        self.units_of(pool)?;
        let key = (pool.clone(), holder.clone());
        self.dirty_holdings.insert(key.clone());
        Ok(self.holdings.entry(key).or_default())
    }

    pub fn units_in_flight(
        &self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> StorageResult<i64> {
        self.units_of(pool)?;
        Ok(self
            .in_flight
            .get(&(pool.clone(), from.clone(), to.clone()))
            .copied()
            .unwrap_or(0))
    }

    pub fn in_flight_mut(
        &mut self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> StorageResult<&mut i64> {
        self.units_of(pool)?;
        let key = (pool.clone(), from.clone(), to.clone());
        self.dirty_in_flight.insert(key.clone());
        Ok(self.in_flight.entry(key).or_default())
    }

    pub fn hub_head(&self) -> StorageResult<ChainHead> {
        self.hub_head.ok_or_else(|| Self::missing("hub head", ""))
    }

    pub fn webhooks(&self) -> StorageResult<&[i64]> {
        self.webhooks
            .as_deref()
            .ok_or_else(|| Self::missing("webhooks", ""))
    }

    /// Stores an event; a hub event moves the hub's head.
    pub fn store_event(&mut self, stored: NewEvent) {
        if stored.event.origin == ParticipantId::Hub {
            self.hub_head = Some(ChainHead {
                seq: stored.event.seq,
                hash: stored.hash,
            });
        }
        self.new_events.push(stored);
    }

    /// The hub events this transaction appended, in order.
    pub fn hub_events(&self) -> impl Iterator<Item = &NewEvent> {
        self.new_events
            .iter()
            .filter(|e| e.event.origin == ParticipantId::Hub)
    }
}

/// The view as the authorization rules and the ledger look at it: what
/// earlier events of the same batch did is already in it.
impl Facts for Working {
    type Error = StorageError;

    fn resource(&self, id: &ResourceId) -> StorageResult<Option<ResourceFacts>> {
        Ok(Working::resource(self, id)?.map(|r| ResourceFacts {
            owner: r.owner.clone(),
            kind: r.kind,
            has_pools: r.has_pools,
        }))
    }

    fn pool(&self, id: &PoolId) -> StorageResult<Option<PoolFacts>> {
        Ok(Working::pool(self, id)?.map(|p| PoolFacts {
            owner: p.owner.clone(),
            capacity: p.capacity,
        }))
    }

    fn booking(&self, id: &BookingId) -> StorageResult<Option<BookingFacts>> {
        Ok(Working::booking(self, id)?.map(|b| BookingFacts {
            owner: b.owner.clone(),
            requested_by: b.requested_by.clone(),
            charged_to: b.charged_to.clone(),
            charged_state: Some(b.charged_state),
            channel: b.channel,
            lines: b.lines.clone(),
            customer: b.customer.clone(),
        }))
    }

    fn available(&self, pool: &PoolId, holder: &ParticipantId) -> StorageResult<Option<i64>> {
        Ok(Some(match holder {
            ParticipantId::Hub => Working::pool(self, pool)?
                .map(|p| p.hub_allotted - p.hub_used)
                .unwrap_or(0),
            ParticipantId::Location(l) => {
                let h = self.holding(pool, l)?;
                h.allotted - h.used
            }
        }))
    }

    fn in_flight(
        &self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> StorageResult<Option<i64>> {
        Ok(Some(self.units_in_flight(pool, from, to)?))
    }

    fn may_receive(&self, participant: &ParticipantId) -> StorageResult<Option<bool>> {
        Ok(Some(match participant {
            ParticipantId::Hub => true,
            ParticipantId::Location(id) => self
                .location(id)?
                .is_some_and(|row| row.public_key.is_some()),
        }))
    }
}

/// An instant the view holds in milliseconds.
pub fn timestamp(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX)
}

/// A booking as the public API and webhooks show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HubBooking {
    pub id: BookingId,
    pub code: String,
    pub state: BookingState,
    pub lines: Vec<Line>,
    pub customer: Customer,
    pub channel: Channel,
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

impl BookingRow {
    pub fn public(&self, id: BookingId) -> HubBooking {
        HubBooking {
            id,
            code: id.short_code(),
            state: self.state,
            lines: self.lines.clone(),
            customer: self.customer.clone(),
            channel: self.channel,
            owner: self.owner.clone(),
            requested_by: self.requested_by.clone(),
            charged_to: self.charged_to.clone(),
            decided_by: self.decided_by.clone(),
            expires_at: self.expires_at_ms.map(timestamp),
            reason: self.reason.clone(),
            created_at: timestamp(self.created_at_ms),
            updated_at: timestamp(self.updated_at_ms),
        }
    }
}
