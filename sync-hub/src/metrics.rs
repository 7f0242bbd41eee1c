//! What the hub reports at `/metrics` (`--metrics-listen`): the names, and
//! the gauges read from storage at each scrape. Counters and histograms are
//! recorded where things happen (the request layer, pushes, web orders,
//! webhook deliveries).

use ops_kit::metrics::GaugeSnapshot;

use crate::AppState;

/// Requests by route, method and status.
pub const HTTP_REQUESTS: &str = "sync_hub_http_requests_total";
/// Request latency by route and method.
pub const HTTP_DURATION: &str = "sync_hub_http_request_duration_seconds";
/// Applying one store's push, from its arrival to its acknowledgment.
pub const PUSH_DURATION: &str = "sync_hub_sync_push_duration_seconds";
/// Events stores pushed that the hub accepted.
pub const PUSHED_EVENTS: &str = "sync_hub_sync_pushed_events_total";
/// A pull's time, the long poll's wait included.
pub const PULL_DURATION: &str = "sync_hub_sync_pull_duration_seconds";
/// Pushes refused, by code (fork, fenced, forbidden, invalid_event, ...).
pub const PUSH_REFUSALS: &str = "sync_hub_sync_refusals_total";
/// From a web order's arrival to its owner's decision (or the wait's end).
pub const WEB_ORDER_DECISION: &str = "sync_hub_web_order_decision_seconds";
/// Web orders by outcome (decided, waiting, rejected).
pub const WEB_ORDERS: &str = "sync_hub_web_orders_total";
/// Webhook delivery attempts by outcome (delivered, failed).
pub const WEBHOOK_DELIVERIES: &str = "sync_hub_webhook_deliveries_total";
/// Locations by state (connected, unreachable, never_seen, quarantined).
pub const LOCATIONS: &str = "sync_hub_locations";
/// Events the stores hold that have not reached the hub, over all stores.
pub const SYNC_BACKLOG: &str = "sync_hub_sync_backlog_events";
/// The largest clock offset of any store, in seconds (absolute).
pub const CLOCK_OFFSET_MAX: &str = "sync_hub_clock_offset_max_seconds";
/// Alerts open now, by kind.
pub const ALERTS: &str = "sync_hub_alerts";
/// Bookings by state and channel.
pub const BOOKINGS: &str = "sync_hub_bookings";

/// The request layer's names.
pub const REQUESTS: ops_kit::http::RequestMetrics = ops_kit::http::RequestMetrics {
    requests_total: HTTP_REQUESTS,
    duration_seconds: HTTP_DURATION,
};

static LOCATIONS_GAUGE: GaugeSnapshot = GaugeSnapshot::new(LOCATIONS);
static BOOKINGS_GAUGE: GaugeSnapshot = GaugeSnapshot::new(BOOKINGS);
static ALERTS_GAUGE: GaugeSnapshot = GaugeSnapshot::new(ALERTS);

/// Sets the gauges from storage, just before a scrape renders them.
pub async fn refresh(state: AppState) {
    let now = state.now_ms();
    let (fleet, counts) =
        match tokio::join!(state.storage.fleet(now), state.storage.booking_counts()) {
            (Ok(fleet), Ok(counts)) => (fleet, counts),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the fleet for metrics");
                return;
            }
        };
    let summary = crate::alerts::summarize(&fleet, &state.settings, now);
    LOCATIONS_GAUGE.set(
        summary
            .by_state
            .into_iter()
            .map(|(s, n)| (vec![("state", s.to_owned())], n as f64))
            .collect(),
    );
    metrics::gauge!(SYNC_BACKLOG).set(summary.backlog_events as f64);
    metrics::gauge!(CLOCK_OFFSET_MAX).set(summary.clock_offset_max_ms as f64 / 1000.0);
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    for alert in &fleet.open_alerts {
        *by_kind.entry(alert.kind.as_str()).or_default() += 1;
    }
    ALERTS_GAUGE.set(
        by_kind
            .into_iter()
            .map(|(k, n)| (vec![("kind", k.to_owned())], n as f64))
            .collect(),
    );
    BOOKINGS_GAUGE.set(
        counts
            .into_iter()
            .map(|(state, channel, n)| (vec![("state", state), ("channel", channel)], n as f64))
            .collect(),
    );
}
