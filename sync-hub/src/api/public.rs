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
use crate::storage::{LocationHealth, PoolSummary};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolsQuery {
    location: String,
}

#[derive(Debug, Serialize)]
struct PoolList {
    pools: Vec<PoolSummary>,
}

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

#[derive(Debug, Serialize)]
struct LocationView {
    #[serde(flatten)]
    health: LocationHealth,
    /// Heard from within the unreachable threshold.
    reachable: bool,
    /// Its clock is off by more than half the skew margin.
    clock_alert: bool,
}

#[derive(Debug, Serialize)]
struct LocationList {
    locations: Vec<LocationView>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    units: i64,
}

#[derive(Debug, Serialize)]
struct Returned {
    pool: PoolId,
    returned: i64,
    to: LocationId,
}

/// The hub gives unused units of its allotment back to the pool's owner.
pub async fn return_allotment(
    _key: ApiKey,
    State(state): State<AppState>,
    IdPath(pool): IdPath<PoolId>,
    JsonBody(body): JsonBody<ReturnBody>,
) -> ApiResult<Response> {
    if body.units <= 0 {
        return Err(ApiError::bad_request("units must be positive"));
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
