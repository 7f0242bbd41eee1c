//! The fleet as the hub's operators see it: one read of every location's
//! health and of what needs a person (requests waiting for a store,
//! overbooked pools, failing webhooks, open alerts). The dashboard, the
//! alert rules and the metrics are made from it; storage fills it.

use serde::Serialize;
use shared::LocationId;

use crate::working::DeviceStatus;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// When the hub last refused a push of an old copy of this location's
    /// device (one replaced, or from before a reset) as fenced.
    pub fenced_at: Option<jiff::Timestamp>,
}

/// One read of the fleet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetRead {
    pub locations: Vec<LocationHealth>,
    /// Web orders waiting for their owner's decision, by owner (a
    /// participant id such as `loc:berlin`).
    pub waiting_requests: Vec<(String, u64)>,
    pub overbooked_pools: Vec<OverbookedPool>,
    pub failing_webhooks: Vec<FailingWebhook>,
    pub open_alerts: Vec<OpenAlert>,
}

/// A pool whose bookings, as the hub holds them, use more than it has.
#[derive(Debug, Clone, Serialize)]
pub struct OverbookedPool {
    pub id: String,
    pub owner: String,
    pub capacity: i64,
    pub used: i64,
}

/// A webhook whose oldest undelivered message has failed at least once.
#[derive(Debug, Clone, Serialize)]
pub struct FailingWebhook {
    pub id: i64,
    pub url: String,
    /// Failed attempts of its oldest undelivered message.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Messages waiting for it.
    pub pending: u64,
}

/// A condition that needs an operator, as the rules find it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `kind:subject`: the same condition keeps its key while it lasts.
    pub key: String,
    pub kind: String,
    pub subject: String,
    pub message: String,
    /// The condition may hold, but this process cannot tell yet (a store
    /// already silent when it started watching, within its grace period):
    /// an open alert of this key stays open, and none is raised.
    pub undecided: bool,
}

/// An alert raised and not yet cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenAlert {
    pub key: String,
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub raised_at_ms: i64,
}

/// A person who signs in to the fleet dashboard.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub password_hash: String,
    pub failed_attempts: u32,
    pub locked_until_ms: Option<i64>,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct OperatorSession {
    pub operator: String,
    pub csrf: String,
}

/// One read of the fleet and when it was made.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub read: FleetRead,
    pub at_ms: i64,
}
