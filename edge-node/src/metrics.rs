//! What the store reports at `/metrics` (`--metrics-listen`): the names,
//! and the gauges read from the database at each scrape. Counters and
//! histograms are recorded where things happen (the writer, the sync
//! loops, the request layer).

use ops_kit::metrics::GaugeSnapshot;

use crate::store::{Store, queries};

/// Requests by route, method and status.
pub const HTTP_REQUESTS: &str = "edge_node_http_requests_total";
/// Request latency by route and method.
pub const HTTP_DURATION: &str = "edge_node_http_request_duration_seconds";
/// Jobs (bookings, confirmations, ...) committed together by one fsync.
pub const COMMIT_BATCH: &str = "edge_node_commit_batch_size";
/// A group commit's time, its fsync included.
pub const COMMIT_DURATION: &str = "edge_node_commit_duration_seconds";
/// Bookings this store owns, by state and channel.
pub const BOOKINGS: &str = "edge_node_bookings";
/// Events written here that the hub has not acknowledged.
pub const SYNC_BACKLOG: &str = "edge_node_sync_backlog_events";
/// This clock minus the hub's, in seconds.
pub const CLOCK_OFFSET: &str = "edge_node_clock_offset_seconds";
/// 1 for the link's current state (online, offline, forked, fenced, ...).
pub const SYNC_STATE: &str = "edge_node_sync_state";
/// A push's round trip.
pub const PUSH_DURATION: &str = "edge_node_sync_push_duration_seconds";
/// A pull's round trip, the long poll's wait included.
pub const PULL_DURATION: &str = "edge_node_sync_pull_duration_seconds";
/// Events the hub acknowledged.
pub const PUSHED_EVENTS: &str = "edge_node_sync_pushed_events_total";
/// Events received from the hub.
pub const PULLED_EVENTS: &str = "edge_node_sync_pulled_events_total";
/// Refusals of what this store sent, by code (fork, fenced, quarantined,
/// forbidden, invalid_event).
pub const SYNC_REFUSALS: &str = "edge_node_sync_refusals_total";
/// Events from the hub this store could not apply and set aside
/// (`GET /api/v1/sync/set-aside`).
pub const SET_ASIDE: &str = "edge_node_sync_set_aside_events";

/// The request layer's names.
pub const REQUESTS: ops_kit::http::RequestMetrics = ops_kit::http::RequestMetrics {
    requests_total: HTTP_REQUESTS,
    duration_seconds: HTTP_DURATION,
};

static BOOKINGS_GAUGE: GaugeSnapshot = GaugeSnapshot::new(BOOKINGS);
static SYNC_STATE_GAUGE: GaugeSnapshot = GaugeSnapshot::new(SYNC_STATE);

/// Sets the gauges from the database, just before a scrape renders them.
pub async fn refresh(store: Store) {
    let enrolled = store.node().hub.is_some();
    let margin = store.settings().skew_margin_ms;
    let owner = store.node().participant().to_string();
    let read = store
        .read(move |conn| {
            let status = queries::sync_status(conn, enrolled, margin)?;
            let counts = queries::booking_counts(conn, &owner)?;
            Ok((status, counts))
        })
        .await;
    let (status, counts) = match read {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the store for metrics");
            return;
        }
    };
    BOOKINGS_GAUGE.set(
        counts
            .into_iter()
            .map(|(state, channel, n)| (vec![("state", state), ("channel", channel)], n as f64))
            .collect(),
    );
    SYNC_STATE_GAUGE.set(vec![(vec![("state", status.state.clone())], 1.0)]);
    metrics::gauge!(SYNC_BACKLOG).set(status.backlog_events as f64);
    metrics::gauge!(SET_ASIDE).set(status.set_aside_events as f64);
    if let Some(offset) = status.clock_offset_ms {
        metrics::gauge!(CLOCK_OFFSET).set(offset as f64 / 1000.0);
    }
}
