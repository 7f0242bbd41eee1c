//! The public API for the website and dashboards, behind API keys from
//! `sync-hub api-key create`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::{BookingId, LocationId, PoolId};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{IdPath, JsonBody, QueryParams};
use crate::keys::hash_secret;
use crate::storage::{HubBooking, LocationHealth, PoolSummary};
use shared::limits::ALLOTMENT_UNITS_MAX;
use shared::protocol::ErrorBody;

/// A caller holding a valid API key.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer API_KEY"))?;
        if state.storage.api_key_exists(&hash_secret(key)).await? {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized("unknown API key"))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PoolsQuery {
    /// The location whose pools to list.
    #[param(value_type = LocationId)]
    location: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PoolList {
    pools: Vec<PoolSummary>,
}

#[utoipa::path(
    get,
    path = "/v1/pools",
    tag = "catalog",
    summary = "A location's pools",
    description = "What the hub knows of one location's pools, as of the store's last push: `stale` when the store has not been heard from lately or has events still to push.",
    params(PoolsQuery),
    responses((status = 200, description = "The pools", body = PoolList), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn pools(
    _key: ApiKey,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PoolsQuery>,
) -> ApiResult<Response> {
    let location =
        LocationId::parse(&q.location).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = state.now_ms();
    let mut pools = state.storage.pool_summaries(&location).await?;
    for pool in &mut pools {
        let heard = pool
            .owner_last_seen_at_ms
            .is_some_and(|at| now - at <= state.settings.unreachable_after_ms);
        pool.stale = !heard || pool.owner_backlog_events.is_none_or(|b| b > 0);
    }
    Ok(Json(PoolList { pools }).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/bookings/{id}",
    tag = "bookings",
    summary = "One booking",
    description = "As the hub last heard of it.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking", body = HubBooking), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn booking(
    _key: ApiKey,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    let booking = state
        .storage
        .booking(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("booking {id} not found")))?;
    Ok(Json(booking).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LocationView {
    #[serde(flatten)]
    health: LocationHealth,
    /// Heard from within the unreachable threshold.
    reachable: bool,
    /// Its clock is off by more than half the skew margin.
    clock_alert: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LocationList {
    locations: Vec<LocationView>,
}

#[utoipa::path(
    get,
    path = "/v1/locations",
    tag = "fleet",
    summary = "Every location with its sync health",
    description = "Reachable or not, last seen, backlog, clock offset, epoch.",
    responses((status = 200, description = "The locations", body = LocationList), (status = 401, description = "No valid API key", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn locations(_key: ApiKey, State(state): State<AppState>) -> ApiResult<Response> {
    let now = state.now_ms();
    let locations = state
        .storage
        .locations()
        .await?
        .into_iter()
        .map(|health| LocationView {
            reachable: health
                .last_seen_at
                .is_some_and(|at| now - at.as_millisecond() <= state.settings.unreachable_after_ms),
            clock_alert: health
                .clock_offset_ms
                .is_some_and(|o| o.abs() > state.settings.skew_margin_ms / 2),
            health,
        })
        .collect();
    Ok(Json(LocationList { locations }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    units: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Returned {
    pool: PoolId,
    returned: i64,
    to: LocationId,
}

#[utoipa::path(
    post,
    path = "/v1/pools/{id}/allotment/return",
    tag = "catalog",
    summary = "Give the hub's unused units back",
    description = "Returns `units` of the website's allotment of a pool to the store that owns it.",
    params(("id" = PoolId, Path, description = "The pool id")),
    request_body = ReturnBody,
    responses((status = 200, description = "Returned", body = Returned), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody), (status = 409, description = "The hub holds fewer unused units", body = ErrorBody)),
    security(("api_key" = []))
)]
/// The hub gives unused units of its allotment back to the pool's owner.
pub async fn return_allotment(
    _key: ApiKey,
    State(state): State<AppState>,
    IdPath(pool): IdPath<PoolId>,
    JsonBody(body): JsonBody<ReturnBody>,
) -> ApiResult<Response> {
    if !(1..=ALLOTMENT_UNITS_MAX).contains(&body.units) {
        return Err(ApiError::bad_request(format!(
            "units must be between 1 and {ALLOTMENT_UNITS_MAX}"
        )));
    }
    let owner = state
        .storage
        .return_hub_allotment(&pool, body.units, state.now_ms())
        .await?;
    Ok(Json(Returned {
        pool,
        returned: body.units,
        to: owner,
    })
    .into_response())
}
