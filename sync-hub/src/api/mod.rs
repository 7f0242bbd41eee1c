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
use serde_json::json;
use shared::limits::SYNC_BODY_MAX_BYTES;
use shared::protocol::ErrorBody;
use shared::signing::SigningKey;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The hub's API routes, each with its OpenAPI operation: the document is
/// collected from the same list that routes, so it cannot name a path the
/// hub does not answer.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sync::enroll))
        .routes(routes!(sync::head))
        .routes(routes!(sync::push))
        .routes(routes!(sync::pull))
        .routes(routes!(sync::own_log))
        .routes(routes!(sync::reset))
        .routes(routes!(public::pools))
        .routes(routes!(public::return_allotment))
        .routes(routes!(bookings::create))
        .routes(routes!(public::booking))
        .routes(routes!(bookings::cancel))
        .routes(routes!(public::locations))
        .routes(routes!(ops_kit::openapi::healthz))
        .routes(routes!(readyz))
}

/// The hub's OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// The document's frame: what the API is, its tags and its credentials.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "sync-hub",
        description = "The centre of the fleet. Stores replay their signed, ordered event logs to it and \
pull what is addressed to them (`/v1/sync/`); the website and dashboards place web orders and read the \
fleet with API keys (`/v1/`). Every refusal is `{\"error\": {\"code\", \"message\"}}` with the HTTP \
status that fits, and every answer carries the hub's clock in `x-hub-time`."
    ),
    tags(
        (name = "sync", description = "The signed replication protocol between stores and the hub."),
        (name = "bookings", description = "Web orders, decided by the store that owns the units."),
        (name = "catalog", description = "What the hub knows of the stores' pools."),
        (name = "fleet", description = "The stores and their sync health."),
        (name = "health", description = "For load balancers and supervisors; no credentials."),
    ),
    modifiers(&Credentials),
    components(schemas(ErrorBody, bookings::Rejected))
)]
pub struct ApiDoc;

/// API keys for the public API; device signatures for sync.
#[derive(Debug)]
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            ops_kit::openapi::bearer(
                "`Authorization: Bearer KEY` with a key from `sync-hub api-key create`.",
            ),
        );
        let mut device = ApiKeyValue::new(shared::signing::HEADER_SIGNATURE);
        device.description = Some(
            "The device's Ed25519 signature (base64) over the method, the path with its query, \
             `x-timestamp` (Unix milliseconds, within the freshness window), `x-nonce` (never \
             reused, 16 to 64 hex digits) and the SHA-256 of the body; `x-device` names the \
             location. Any signed request may report the device's health in its query: \
             `backlog` (events it has still to push) and `clock_offset_ms` (its clock minus \
             the hub's, as it measured it). The hub signs its answer over the nonce, its \
             time, the status and the body in `x-hub-signature`."
                .into(),
        );
        components.add_security_scheme("device", SecurityScheme::ApiKey(ApiKey::Header(device)));
    }
}

pub fn router(state: AppState) -> Router {
    let (routes, document) = documented().split_for_parts();
    let routes = routes
        .merge(crate::dashboard::router())
        .merge(ops_kit::openapi::routes(&document));
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
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Ready to serve",
    description = "The database answers and holds this binary's schema.",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The database is not reachable or not migrated", body = ErrorBody)
    ),
    security(())
)]
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
