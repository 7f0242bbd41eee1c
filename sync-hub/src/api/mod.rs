//! The hub's HTTP surface: the signed sync protocol under `/v1/sync/` and
//! the public API (API keys) under `/v1/`.

pub mod bookings;
pub mod error;
pub mod extract;
pub mod public;
pub mod sync;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use shared::limits::SYNC_BODY_MAX_BYTES;
use shared::signing::SigningKey;
use tower_http::catch_panic::CatchPanicLayer;

use crate::notify::Inboxes;
use crate::storage::HubStorage;
use error::ApiError;

/// Settings the handlers and background tasks need.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// A location not heard from for this long is unreachable.
    pub unreachable_after_ms: i64,
    /// Clock skew margin; an offset beyond half of it is an alert.
    pub skew_margin_ms: i64,
    /// Longest a pull is held open.
    pub long_poll_max_ms: u64,
    /// When the fleet's state raises an alert.
    pub alerts: crate::alerts::AlertSettings,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            unreachable_after_ms: 5_000,
            skew_margin_ms: shared::limits::SKEW_MARGIN_MS,
            long_poll_max_ms: shared::limits::LONG_POLL_MAX_MS,
            alerts: crate::alerts::AlertSettings::default(),
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub storage: Arc<dyn HubStorage>,
    pub key: Arc<SigningKey>,
    pub inboxes: Arc<Inboxes>,
    pub settings: HubSettings,
    /// Ids of bookings whose state just changed, for web orders waiting on
    /// their owner's decision.
    pub decisions: tokio::sync::broadcast::Sender<shared::BookingId>,
    pub in_flight: Arc<bookings::InFlight>,
    /// The fleet as last read by the fleet watch, for the dashboard: every
    /// open dashboard is served from this one read, not a read of its own.
    pub fleet: tokio::sync::watch::Sender<Option<Arc<crate::fleet::Snapshot>>>,
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// Every answer carries the hub's clock, signed or not, so a device whose
/// clock is off learns by how much even from a refusal.
async fn stamp_hub_time(mut response: Response) -> Response {
    if !response
        .headers()
        .contains_key(shared::signing::HEADER_HUB_TIME)
        && let Ok(value) =
            axum::http::HeaderValue::from_str(&jiff::Timestamp::now().as_millisecond().to_string())
    {
        response
            .headers_mut()
            .insert(shared::signing::HEADER_HUB_TIME, value);
    }
    response
}

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/v1/sync/enroll", post(sync::enroll))
        .route("/v1/sync/head", get(sync::head))
        .route("/v1/sync/push", post(sync::push))
        .route("/v1/sync/pull", get(sync::pull))
        .route("/v1/sync/log", get(sync::own_log))
        .route("/v1/sync/reset", post(sync::reset))
        .route("/v1/pools", get(public::pools))
        .route(
            "/v1/pools/{id}/allotment/return",
            post(public::return_allotment),
        )
        .route("/v1/bookings", post(bookings::create))
        .route("/v1/bookings/{id}", get(public::booking))
        .route("/v1/bookings/{id}/cancel", post(bookings::cancel))
        .route("/v1/locations", get(public::locations))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .merge(crate::dashboard::router());
    // Counted per route (the pattern, not the path), inside the routing.
    ops_kit::http::route_metrics(routes, crate::metrics::REQUESTS)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(state)
        .layer(axum::middleware::map_response(extract::json_refusals))
        .layer(axum::middleware::map_response(stamp_hub_time))
        .layer(DefaultBodyLimit::max(SYNC_BODY_MAX_BYTES))
        .layer(CatchPanicLayer::custom(|_panic| -> Response {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(ops_kit::http::trace_layer())
        .layer(ops_kit::http::request_id_layers().1)
        .layer(ops_kit::http::request_id_layers().0)
}

/// Ready to serve: the database answers and holds this binary's schema.
/// Without credentials, for load balancers and orchestrators; the reason
/// goes to the log, not to whoever asks.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.storage.ready().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is not reachable or not migrated",
            )
            .into_response()
        }
    }
}
