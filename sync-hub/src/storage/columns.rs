//! How the hub's rows are spelled in a database, for every backend: ids,
//! states and kinds as their text, lines and customers as JSON, instants
//! as milliseconds. A value that does not read back is corruption, not a
//! client's mistake.

use shared::event::ChainHead;
use shared::{
    BookingId, BookingState, Channel, Hash, LocationId, ParticipantId, PoolId, ResourceId,
    ResourceKind,
};

use crate::error::{StorageError, StorageResult};
use crate::notify::{Published, Recipient};
use crate::working::{BookingRow, DeviceStatus};

pub fn participant(value: &str) -> StorageResult<ParticipantId> {
    ParticipantId::parse(value).map_err(|_| StorageError::corrupt("participant", value))
}

pub fn location(value: &str) -> StorageResult<LocationId> {
    LocationId::parse(value).map_err(|_| StorageError::corrupt("location", value))
}

pub fn pool(value: &str) -> StorageResult<PoolId> {
    PoolId::parse(value).map_err(|_| StorageError::corrupt("pool id", value))
}

pub fn resource(value: &str) -> StorageResult<ResourceId> {
    ResourceId::parse(value).map_err(|_| StorageError::corrupt("resource id", value))
}

pub fn booking(value: &str) -> StorageResult<BookingId> {
    BookingId::parse(value).map_err(|_| StorageError::corrupt("booking id", value))
}

pub fn state(value: &str) -> StorageResult<BookingState> {
    BookingState::parse(value).ok_or_else(|| StorageError::corrupt("state", value))
}

pub fn status(value: &str) -> StorageResult<DeviceStatus> {
    DeviceStatus::parse(value).ok_or_else(|| StorageError::corrupt("status", value))
}

pub fn kind(value: &str) -> StorageResult<ResourceKind> {
    ResourceKind::parse(value).ok_or_else(|| StorageError::corrupt("kind", value))
}

pub fn hash(value: &str) -> StorageResult<Hash> {
    Hash::parse_hex(value).ok_or_else(|| StorageError::corrupt("hash", value))
}

pub fn head(seq: i64, hash_hex: &str) -> StorageResult<ChainHead> {
    Ok(ChainHead {
        seq: seq as u64,
        hash: hash(hash_hex)?,
    })
}

/// JSON of a value every row of its kind holds.
pub fn json<T: serde::Serialize>(value: &T) -> StorageResult<String> {
    serde_json::to_string(value).map_err(|e| StorageError::Backend(Box::new(e)))
}

/// A booking row from its columns, in the order of [`BOOKING_COLUMNS`].
#[allow(clippy::too_many_arguments)]
pub fn booking_row(
    id: &str,
    owner: &str,
    requested_by: &str,
    charged_to: &str,
    charged_state: &str,
    channel: &str,
    state_text: &str,
    lines: &str,
    customer: &str,
    expires_at_ms: Option<i64>,
    reason: Option<String>,
    decided_by: Option<&str>,
    created_at_ms: i64,
    updated_at_ms: i64,
) -> StorageResult<BookingRow> {
    Ok(BookingRow {
        owner: participant(owner)?,
        requested_by: participant(requested_by)?,
        charged_to: participant(charged_to)?,
        charged_state: state(charged_state)?,
        channel: Channel::parse(channel)
            .ok_or_else(|| StorageError::corrupt("channel", channel))?,
        state: state(state_text)?,
        lines: serde_json::from_str(lines).map_err(|_| StorageError::corrupt("lines of", id))?,
        customer: serde_json::from_str(customer)
            .map_err(|_| StorageError::corrupt("customer of", id))?,
        expires_at_ms,
        reason,
        decided_by: decided_by.map(participant).transpose()?,
        created_at_ms,
        updated_at_ms,
    })
}

/// The columns of `view_bookings` [`booking_row`] reads, after `id`.
pub const BOOKING_COLUMNS: &str =
    "owner, requested_by, charged_to, charged_state, channel, state, lines, customer,
     expires_at_ms, reason, decided_by, created_at_ms, updated_at_ms";

/// The columns of `locations` a location row is read from, after `id`.
pub const LOCATION_COLUMNS: &str = "name, timezone, public_key, epoch, epoch_start_seq, status, quarantine_reason,
     head_seq, head_hash, head_signature, last_seen_at_ms, backlog_events, synced_at_ms, enrolled_at_ms";

/// The columns of `view_pools` a pool row is read from, after `id`.
pub const POOL_COLUMNS: &str = "resource_id, owner, capacity, starts_at_ms, ends_at_ms, used, hub_allotted, hub_used, updated_at_ms";

/// What one row of the hub's own log tells the long polls: the event
/// itself when it is for everyone (kept in memory for every store to
/// read), only the recipient's mark when it is for one location, nothing
/// when it is addressed to no one. `event` builds the event from the row.
pub fn published(
    seq: u64,
    recipient: Option<&str>,
    event: impl FnOnce() -> StorageResult<shared::Event>,
) -> StorageResult<Option<Published>> {
    Ok(match recipient {
        Some(crate::working::EVERYONE) => Some(Published {
            seq,
            to: Recipient::Everyone,
            event: Some(shared::protocol::InboxEvent {
                hub_seq: seq,
                event: event()?,
            }),
        }),
        Some(location) => Some(Published {
            seq,
            to: Recipient::Location(self::location(location)?),
            event: None,
        }),
        None => None,
    })
}
