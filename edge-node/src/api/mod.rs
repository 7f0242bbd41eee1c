//! The LAN JSON API under `/api/v1` (listed in README.md).

pub mod extract;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shared::booking::Action;
use shared::event::{ResourceKind, canonical_json};
use shared::limits::{BOOKING_LIST_MAX, IDEMPOTENCY_KEY_MAX_CHARS};
use shared::protocol::CreateBooking;
use shared::{BookingId, BookingState, ParticipantId, PoolId, ResourceId};

use crate::auth::{Role, hash_token};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, Principal};
use crate::store::StoreError;
use crate::store::ops::{self, NewBooking, NewPool, NewResource};
use crate::store::queries::{
    self, BookingFilter, BookingView, PoolFilter, PoolView, ResourceView, SEARCH_MAX_CHARS, Search,
};
use extract::{IdPath, JsonBody, QueryParams, RawBody, parse_bytes};

/// The JSON API's routes, under `/api/v1/`. They are written out in full
/// rather than nested: a nested router rewrites every request's URI to
/// strip its prefix.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/api/v1/resources",
            post(create_resource).get(list_resources),
        )
        .route("/api/v1/pools", post(create_pool).get(list_pools))
        .route("/api/v1/pools/{id}", get(get_pool))
        .route("/api/v1/pools/{id}/adjust", post(adjust_pool))
        .route("/api/v1/pools/{id}/allotments", post(grant_allotment))
        .route("/api/v1/pools/{id}/return", post(return_allotment))
        .route("/api/v1/bookings", post(create_booking).get(list_bookings))
        .route("/api/v1/bookings/{id}", get(get_booking))
        .route("/api/v1/bookings/{id}/confirm", post(confirm_booking))
        .route("/api/v1/bookings/{id}/cancel", post(cancel_booking))
        .route("/api/v1/bookings/{id}/fulfil", post(fulfil_booking))
        .route("/api/v1/bookings/{id}/no-show", post(no_show_booking))
        .route("/api/v1/sync/status", get(sync_status))
        .route("/api/v1/quarantine", get(list_quarantine))
        .route("/api/v1/sync/set-aside", get(list_set_aside))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct ResourceList {
    resources: Vec<ResourceView>,
}

#[derive(Debug, Serialize)]
struct PoolList {
    pools: Vec<PoolView>,
}

#[derive(Debug, Serialize)]
struct BookingList {
    bookings: Vec<BookingView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateResourceBody {
    name: String,
    kind: ResourceKind,
    #[serde(default)]
    id: Option<ResourceId>,
}

async fn create_resource(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateResourceBody>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let new = NewResource {
        id: body.id,
        name: body.name,
        kind: body.kind,
    };
    let view = state
        .store
        .write(move |ctx| ops::create_resource(ctx, new))
        .await?;
    Ok(created(view))
}

async fn list_resources(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let resources = state.store.read(queries::resources).await?;
    Ok(Json(ResourceList { resources }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePoolBody {
    resource_id: ResourceId,
    capacity: i64,
    #[serde(default)]
    starts_at: Option<jiff::Timestamp>,
    #[serde(default)]
    ends_at: Option<jiff::Timestamp>,
    #[serde(default)]
    id: Option<PoolId>,
}

async fn create_pool(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreatePoolBody>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let new = NewPool {
        id: body.id,
        resource_id: body.resource_id,
        capacity: body.capacity,
        starts_at_ms: body.starts_at.map(|t| t.as_millisecond()),
        ends_at_ms: body.ends_at.map(|t| t.as_millisecond()),
    };
    let view = state
        .store
        .write(move |ctx| ops::create_pool(ctx, new))
        .await?;
    Ok(created(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolQuery {
    #[serde(default)]
    resource_id: Option<ResourceId>,
    #[serde(default)]
    from: Option<jiff::Timestamp>,
    #[serde(default)]
    to: Option<jiff::Timestamp>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Pools listed by one call at most.
const POOL_LIST_MAX: usize = 1000;

async fn list_pools(
    principal: Principal,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<PoolQuery>,
) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let filter = PoolFilter {
        resource_id: q.resource_id,
        from_ms: q.from.map(|t| t.as_millisecond()),
        to_ms: q.to.map(|t| t.as_millisecond()),
        limit: q.limit.unwrap_or(POOL_LIST_MAX).min(POOL_LIST_MAX),
    };
    let pools = state
        .store
        .read(move |conn| queries::pools(conn, &filter))
        .await?;
    Ok(Json(PoolList { pools }).into_response())
}

async fn get_pool(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<PoolId>,
) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let lookup = id.clone();
    let pool = state
        .store
        .read(move |conn| queries::pool(conn, &lookup))
        .await?;
    let pool = pool.ok_or_else(|| ApiError::from(StoreError::not_found("pool", &id)))?;
    Ok(Json(pool).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    delta: i64,
}

async fn adjust_pool(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<PoolId>,
    JsonBody(body): JsonBody<AdjustBody>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let view = state
        .store
        .write(move |ctx| ops::adjust_pool(ctx, &id, body.delta))
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllotmentBody {
    to: ParticipantId,
    units: i64,
}

async fn grant_allotment(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<PoolId>,
    JsonBody(body): JsonBody<AllotmentBody>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let view = state
        .store
        .write(move |ctx| ops::grant_allotment(ctx, &id, &body.to, body.units))
        .await?;
    Ok(created(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    units: i64,
}

/// A grantee gives unused units back to the owner.
async fn return_allotment(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<PoolId>,
    JsonBody(body): JsonBody<ReturnBody>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let view = state
        .store
        .write(move |ctx| ops::return_allotment(ctx, &id, body.units))
        .await?;
    Ok(Json(view).into_response())
}

/// [`Json`] with room for a whole booking from the start: axum's buffer
/// starts at 128 bytes and grows three times for a typical booking.
fn json_answer(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not write a response");
            ApiError::internal().into_response()
        }
    }
}

/// The raw Idempotency-Key header, taken without copying the other headers
/// (axum's `HeaderMap` extractor clones them all).
struct IdempotencyKeyHeader(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(parts.headers.get("idempotency-key").cloned()))
    }
}

/// The `Idempotency-Key` header, if any, checked for shape.
fn idempotency_key(value: Option<&HeaderValue>) -> ApiResult<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX_CHARS {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Marks an idempotency key as in flight for as long as it lives.
struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    fn claim(keys: &Arc<Mutex<HashSet<String>>>, key: &str) -> Option<Self> {
        let mut held = keys.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.to_owned()).then(|| Self {
            keys: keys.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

async fn create_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    RawBody(bytes): RawBody,
) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let key = idempotency_key(key.as_ref())?;
    let request: CreateBooking = parse_bytes(&bytes)?;
    // Only a keyed request needs its canonical hash, and for it the body as
    // a `Value`.
    let request_hash = match key {
        Some(_) => {
            let raw: serde_json::Value = parse_bytes(&bytes)?;
            Some(hash_token(&canonical_json(&raw)))
        }
        None => None,
    };
    let new = NewBooking {
        request,
        channel: principal.channel(),
    };
    let Some(key) = key else {
        let view = state
            .store
            .write_checked_first(move |ctx| ops::create_booking(ctx, new))
            .await?;
        let status =
            StatusCode::from_u16(ops::created_status(&view)).unwrap_or(StatusCode::CREATED);
        return Ok(json_answer(status, &view));
    };
    let _claim = InFlight::claim(&state.in_flight, &key).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
    })?;
    let recorded = state
        .store
        .write(move |ctx| {
            ops::create_booking_idempotent(
                ctx,
                &key,
                request_hash.as_deref().unwrap_or_default(),
                new,
            )
        })
        .await?;
    let status = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        recorded.body,
    )
        .into_response();
    if recorded.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookingQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

async fn list_bookings(
    principal: Principal,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<BookingQuery>,
) -> ApiResult<Response> {
    principal.require(Role::Staff)?;
    let booking_state = q
        .state
        .map(|s| {
            BookingState::parse(&s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown booking state {s:?}")))
        })
        .transpose()?;
    let after = q
        .after
        .map(|a| {
            BookingId::parse(&a)
                .map_err(|_| ApiError::bad_request("after must be the `next` of a previous page"))
        })
        .transpose()?;
    let search = match q.q.as_deref().map(str::trim) {
        Some(text) if text.chars().count() > SEARCH_MAX_CHARS => {
            return Err(ApiError::bad_request(format!(
                "q is longer than {SEARCH_MAX_CHARS} characters"
            )));
        }
        Some(text) if !text.is_empty() => Some(Search::new(text)),
        _ => None,
    };
    let filter = BookingFilter {
        state: booking_state,
        search,
        after,
        limit: match q.limit {
            Some(0) => return Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => n.min(BOOKING_LIST_MAX),
            None => BOOKING_LIST_MAX,
        },
    };
    let page = state
        .store
        .read(move |conn| queries::bookings(conn, &filter))
        .await?;
    Ok(Json(BookingList {
        bookings: page.bookings,
        next: page.next.map(|id| id.to_string()),
    })
    .into_response())
}

async fn get_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    // Booking ids are unguessable, so a kiosk may show the one it just made.
    principal.require(Role::Kiosk)?;
    let booking = state
        .store
        .read(move |conn| queries::booking(conn, &id))
        .await?
        .ok_or_else(|| ApiError::from(StoreError::not_found("booking", id)))?;
    Ok(Json(booking).into_response())
}

async fn act_on_booking(
    principal: Principal,
    state: AppState,
    id: BookingId,
    action: Action,
) -> ApiResult<Response> {
    principal.require(Role::Staff)?;
    let view = state
        .store
        .write(move |ctx| ops::transition(ctx, &id, action, principal.user_name))
        .await?;
    Ok(Json(view).into_response())
}

async fn confirm_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Confirm).await
}

async fn cancel_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Cancel).await
}

async fn fulfil_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Fulfil).await
}

async fn no_show_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::NoShow).await
}

async fn sync_status(principal: Principal, State(state): State<AppState>) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let enrolled = state.store.node().hub.is_some();
    let margin = state.store.settings().skew_margin_ms;
    let status = state
        .store
        .read(move |conn| queries::sync_status(conn, enrolled, margin))
        .await?;
    Ok(Json(status).into_response())
}

#[derive(Debug, Serialize)]
struct QuarantineList {
    events: Vec<queries::QuarantinedEvent>,
}

async fn list_quarantine(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let events = state.store.read(queries::quarantine).await?;
    Ok(Json(QuarantineList { events }).into_response())
}

#[derive(Debug, Serialize)]
struct SetAsideList {
    events: Vec<queries::SetAsideEvent>,
}

/// Inbox events this node could not apply, newest first.
async fn list_set_aside(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let events = state.store.read(queries::set_aside).await?;
    Ok(Json(SetAsideList { events }).into_response())
}
