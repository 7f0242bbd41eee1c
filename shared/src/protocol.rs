//! Request and response bodies both binaries speak on the booking API.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Hash};
use crate::ids::{LocationId, ParticipantId};

use crate::booking::{Customer, Line};

/// `POST /bookings` on the edge (and, with more fields, on the hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBooking {
    /// 1 to 100 lines.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<Line>,
    pub customer: Customer,
    /// A pending hold for this many seconds instead of a confirmation (at
    /// most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604_800)]
    pub hold_seconds: Option<i64>,
    /// For a booking the owner must decide: how long the request may wait
    /// for it (15 minutes unless given, at most 24 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub request_ttl_seconds: Option<i64>,
}

/// The JSON error shape of every API: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// For a refused sync push with a gap: the `seq` the hub expects next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seq: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                expected_seq: None,
            },
        }
    }
}

/// A point in a log: its last `seq` and that event's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeadRef {
    pub seq: u64,
    pub hash: Hash,
}

impl From<crate::event::ChainHead> for HeadRef {
    fn from(head: crate::event::ChainHead) -> Self {
        Self {
            seq: head.seq,
            hash: head.hash,
        }
    }
}

impl From<HeadRef> for crate::event::ChainHead {
    fn from(head: HeadRef) -> Self {
        Self {
            seq: head.seq,
            hash: head.hash,
        }
    }
}

/// `POST /v1/sync/enroll`: a device presents a one-time token and its new
/// public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub public_key: String,
    /// The location the device already is (a standalone node enrolling
    /// later), so a token for another location is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationId>,
    /// The head of the device's own log: events up to it may carry the
    /// epoch they were written under before enrollment.
    pub head_seq: u64,
    /// A replacement device rebuilding from the hub's copy of the log.
    #[serde(default)]
    pub restore: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollResponse {
    pub location: LocationId,
    pub name: String,
    pub timezone: String,
    pub epoch: u32,
    /// The first `seq` that must carry `epoch`.
    pub epoch_start_seq: u64,
    pub hub_public_key: String,
    /// What the hub holds of this location's log.
    pub hub_head: HeadRef,
}

/// `POST /v1/sync/push`: the next events of the device's own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub origin: ParticipantId,
    pub events: Vec<Event>,
    /// The device's signature over the last event's head
    /// ([`crate::signing::head_message`]).
    pub head_signature: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResponse {
    /// The hub's head of this log after the push.
    pub acked: HeadRef,
}

/// `GET /v1/sync/head`: what the hub holds of the caller's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeadResponse {
    pub location: LocationId,
    pub epoch: u32,
    pub status: String,
    pub head: HeadRef,
}

/// One event of the hub's log addressed to the puller, with its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxEvent {
    pub hub_seq: u64,
    pub event: Event,
}

/// The sync protocol this build speaks: which event kinds it understands.
/// 1 is the first; 2 adds `location_joined`. A device says which it speaks
/// when it pulls (`protocol=N`, 1 when absent), and the hub sends it no
/// event it could not read.
pub const PROTOCOL: u32 = 2;

/// The protocol that introduced `kind`.
pub fn kind_protocol(kind: &str) -> u32 {
    match kind {
        "location_joined" => 2,
        _ => 1,
    }
}

/// The protocol a device needs to read `event`, including what a relay or
/// an observation carries.
pub fn event_protocol(event: &Event) -> u32 {
    let inner = event
        .body
        .get("event")
        .and_then(|e| e.get("kind"))
        .and_then(|k| k.as_str())
        .filter(|_| matches!(event.kind.as_str(), "relayed" | "observed"))
        .map_or(1, kind_protocol);
    kind_protocol(&event.kind).max(inner)
}

/// `GET /v1/sync/pull?after=N&wait_ms=M&protocol=P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullResponse {
    pub events: Vec<InboxEvent>,
    /// Set when the next event needs a newer protocol than the caller
    /// speaks: `events` stops before it, and the device must be upgraded
    /// to receive anything more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_to_protocol: Option<u32>,
}

/// `GET /v1/sync/log?after=N`: the caller's own log as the hub holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogResponse {
    pub events: Vec<Event>,
    pub head: HeadRef,
}

/// `POST /v1/sync/reset`: the device starts a new epoch after the hub's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetResponse {
    pub epoch: u32,
    pub epoch_start_seq: u64,
    pub head: HeadRef,
}

#[cfg(test)]
mod protocol_tests {
    use super::*;
    use crate::event::{ChainHead, EventBody};

    #[test]
    fn an_event_needs_the_protocol_of_its_kind_and_of_what_it_relays() {
        let hub = |body: EventBody| Event::next(ChainHead::EMPTY, ParticipantId::Hub, 0, 1, body);
        let joined = hub(EventBody::LocationJoined {
            location: LocationId::parse("store-2").expect("id"),
            name: "Store 2".into(),
        });
        assert_eq!(event_protocol(&joined), 2);
        let relay = |event: Event| {
            hub(EventBody::Relayed {
                event: Box::new(event),
            })
        };
        assert_eq!(event_protocol(&relay(joined.clone())), 2);
        let adjusted = Event::next(
            ChainHead::EMPTY,
            ParticipantId::parse("store-2").expect("id"),
            1,
            1,
            EventBody::PoolAdjusted {
                pool: crate::PoolId::parse("store-2:cups").expect("id"),
                delta: 1,
            },
        );
        assert_eq!(event_protocol(&adjusted), 1);
        assert_eq!(event_protocol(&relay(adjusted)), 1);
    }
}
