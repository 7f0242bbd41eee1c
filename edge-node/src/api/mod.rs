//! The LAN JSON API under `/api/v1` (listed in README.md).

pub mod extract;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::booking::Action;
use shared::event::{ResourceKind, canonical_json};
use shared::limits::{BOOKING_LIST_MAX, IDEMPOTENCY_KEY_MAX_CHARS};
use shared::protocol::{CreateBooking, ErrorBody};
use shared::{BookingId, BookingState, ParticipantId, PoolId, ResourceId};

use crate::auth::{Role, hash_token};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, Principal};
use crate::store::StoreError;
use crate::store::ops::{self, NewBooking, NewPool, NewResource};
use crate::store::queries::{
    self, BookingFilter, BookingView, PoolFilter, PoolView, ResourceView, SEARCH_MAX_CHARS, Search,
    SyncStatus,
};
use extract::{IdPath, JsonBody, QueryParams, RawBody, parse_bytes};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The JSON API's routes, under `/api/v1/`, each with its OpenAPI
/// operation: the document is collected from the same list that routes, so
/// it cannot name a path the server does not answer. They are written out
/// in full rather than nested: a nested router rewrites every request's URI
/// to strip its prefix.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_resource, list_resources))
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool))
        .routes(routes!(adjust_pool))
        .routes(routes!(grant_allotment))
        .routes(routes!(return_allotment))
        .routes(routes!(create_booking, list_bookings))
        .routes(routes!(get_booking))
        .routes(routes!(confirm_booking))
        .routes(routes!(cancel_booking))
        .routes(routes!(fulfil_booking))
        .routes(routes!(no_show_booking))
        .routes(routes!(sync_status))
        .routes(routes!(list_quarantine))
        .routes(routes!(list_set_aside))
}

/// The document's frame: what the API is, its tags and its credentials.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "edge-node",
        description = "The LAN API of one store: its catalog, its bookings and its sync health. \
Every answer is JSON; every refusal is `{\"error\": {\"code\", \"message\"}}` with the HTTP status \
that fits. A booking is acknowledged only once it is on disk, and the store answers with the \
internet down."
    ),
    tags(
        (name = "catalog", description = "Resources and their pools of capacity."),
        (name = "allotments", description = "Escrow: moving units of a pool between participants, so each unit belongs to one at a time."),
        (name = "bookings", description = "Booking, holding, confirming, cancelling, fulfilling."),
        (name = "sync", description = "This store's replication to the hub, as it sees it."),
        (name = "health", description = "For load balancers and supervisors; no credentials."),
    ),
    modifiers(&Credentials),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The two ways to call the API: a token, or a signed-in UI session.
#[derive(Debug)]
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            ops_kit::openapi::bearer(
                "`Authorization: Bearer TOKEN` with a token from `edge-node token create --role kiosk|staff|manager`.",
            ),
        );
        let mut session = ApiKeyValue::new(crate::state::COOKIE);
        session.description = Some(
            "The LAN UI's session cookie, after signing in with a PIN. A request that carries \
             it and no token must come from the store's own pages: its `Origin` (or `Referer`) \
             must name the host it is sent to, or it is refused with 403 `cross_site_request`."
                .into(),
        );
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(session)));
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ResourceList {
    resources: Vec<ResourceView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PoolList {
    pools: Vec<PoolView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BookingList {
    bookings: Vec<BookingView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateResourceBody {
    /// Not blank, and without control or text-direction characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    kind: ResourceKind,
    #[serde(default)]
    id: Option<ResourceId>,
}

#[utoipa::path(
    post,
    path = "/api/v1/resources",
    tag = "catalog",
    summary = "Create a resource",
    description = "A resource is something bookable: `stock` (countable items) or `slot` (time-bound capacity, one pool per slot). An id, when given, must be a UUID or `location:slug` in this store's namespace.\n\nRole: manager or above.",
    request_body = CreateResourceBody,
    responses((status = 201, description = "Created", body = ResourceView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 409, description = "A resource with this id exists", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/resources",
    tag = "catalog",
    summary = "List resources",
    description = "Every resource this store knows: its own and those shared with it.\n\nRole: kiosk or above.",
    responses((status = 200, description = "The resources", body = ResourceList), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn list_resources(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Kiosk)?;
    let resources = state.store.read(queries::resources).await?;
    Ok(Json(ResourceList { resources }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePoolBody {
    resource_id: ResourceId,
    /// 0 to 1,000,000,000 units.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    capacity: i64,
    #[serde(default)]
    starts_at: Option<jiff::Timestamp>,
    #[serde(default)]
    ends_at: Option<jiff::Timestamp>,
    #[serde(default)]
    id: Option<PoolId>,
}

#[utoipa::path(
    post,
    path = "/api/v1/pools",
    tag = "catalog",
    summary = "Create a pool",
    description = "A pool holds the capacity of one resource (for a slot resource, of one slot between `starts_at` and `ends_at`). This store owns it and its whole capacity starts as its own allotment.\n\nRole: manager or above.",
    request_body = CreatePoolBody,
    responses((status = 201, description = "Created", body = PoolView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "A pool with this id exists, the resource is another store's, or a stock resource has its pool already", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PoolQuery {
    /// Only the pools of this resource.
    #[serde(default)]
    resource_id: Option<ResourceId>,
    /// Slot pools ending after this instant (stock pools are always listed).
    #[serde(default)]
    from: Option<jiff::Timestamp>,
    /// Slot pools starting before this instant (stock pools are always
    /// listed).
    #[serde(default)]
    to: Option<jiff::Timestamp>,
    /// At most this many pools (and never more than 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// Pools listed by one call at most.
const POOL_LIST_MAX: usize = 1000;

#[utoipa::path(
    get,
    path = "/api/v1/pools",
    tag = "catalog",
    summary = "List pools",
    description = "Pools with what this store may still book of each, optionally of one resource and overlapping a time range.\n\nRole: kiosk or above.",
    params(PoolQuery),
    responses((status = 200, description = "The pools", body = PoolList), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/pools/{id}",
    tag = "catalog",
    summary = "One pool",
    description = "\n\nRole: kiosk or above.",
    params(("id" = PoolId, Path, description = "The pool id")),
    responses((status = 200, description = "The pool", body = PoolView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    /// Units to add; negative removes them.
    delta: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/pools/{id}/adjust",
    tag = "allotments",
    summary = "Change a pool's capacity",
    description = "Adds `delta` units (negative removes them). Only the owner adjusts; a decrease below what is booked marks the pool overbooked rather than cancelling anyone.\n\nRole: manager or above.",
    params(("id" = PoolId, Path, description = "The pool id")),
    request_body = AdjustBody,
    responses((status = 200, description = "The pool after the change", body = PoolView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody), (status = 409, description = "Not this store's pool", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AllotmentBody {
    /// Who receives the units: another location, or `hub` for the website.
    to: ParticipantId,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    units: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/pools/{id}/allotments",
    tag = "allotments",
    summary = "Grant units to another participant",
    description = "Moves `units` of the owner's free allotment to `to` (another location or `hub`, for the website). Escrow: the units are then theirs alone to book.\n\nRole: manager or above.",
    params(("id" = PoolId, Path, description = "The pool id")),
    request_body = AllotmentBody,
    responses((status = 201, description = "The pool after the grant", body = PoolView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody), (status = 409, description = "Not enough free units, or not this store's pool", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    units: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/pools/{id}/return",
    tag = "allotments",
    summary = "Return units to the owner",
    description = "A grantee gives `units` of its unused allotment back to the pool's owner.\n\nRole: manager or above.",
    params(("id" = PoolId, Path, description = "The pool id")),
    request_body = ReturnBody,
    responses((status = 200, description = "The pool after the return", body = PoolView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody), (status = 409, description = "Not that many unused units", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/bookings",
    tag = "bookings",
    summary = "Book",
    description = "Takes units of one or more pools for a customer. Acknowledged only once committed to disk. With `hold_seconds`, a pending hold that frees its units unless confirmed in time. A line this store cannot cover from what it holds of a pool (its own units, or units granted to it) becomes a request the pool's owner decides (202). With an `Idempotency-Key` header, a retry of the same request gets the first answer again (header `idempotent-replayed: true`).\n\nRole: kiosk or above.",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: 1 to 255 printable ASCII characters", min_length = 1, max_length = 255)),
    request_body = CreateBooking,
    responses((status = 201, description = "Booked (confirmed or held)", body = BookingView), (status = 202, description = "Requested: the owner of the units decides", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such pool", body = ErrorBody), (status = 409, description = "Not enough units left, or a request with this Idempotency-Key is in flight", body = ErrorBody), (status = 422, description = "This Idempotency-Key was used for a different request", body = ErrorBody), (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody), (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct BookingQuery {
    /// Only bookings in this state (`requested`, `held`, `confirmed`,
    /// `rejected`, `cancelled`, `fulfilled`, `expired`, `no_show`).
    #[serde(default)]
    state: Option<String>,
    /// Search by booking code, part of the customer's name, or the phone's
    /// digits however they were written.
    #[serde(default)]
    q: Option<String>,
    /// At most this many bookings on the page (and never more than 500).
    #[serde(default)]
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    #[param(value_type = Option<BookingId>)]
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/bookings",
    tag = "bookings",
    summary = "List bookings",
    description = "Newest first, a page at a time; filter by state, or search by code, name or phone.\n\nRole: staff or above.",
    params(BookingQuery),
    responses((status = 200, description = "A page of bookings", body = BookingList), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/bookings/{id}",
    tag = "bookings",
    summary = "One booking",
    description = "Booking ids are unguessable, so a kiosk may show the booking it just made.\n\nRole: kiosk or above.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/bookings/{id}/confirm",
    tag = "bookings",
    summary = "Confirm a held or requested booking",
    description = "\n\nRole: staff or above.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking after the change", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The booking's state does not allow this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn confirm_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Confirm).await
}

#[utoipa::path(
    post,
    path = "/api/v1/bookings/{id}/cancel",
    tag = "bookings",
    summary = "Cancel a booking, freeing its units",
    description = "\n\nRole: staff or above.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking after the change", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The booking's state does not allow this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn cancel_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Cancel).await
}

#[utoipa::path(
    post,
    path = "/api/v1/bookings/{id}/fulfil",
    tag = "bookings",
    summary = "Mark a booking collected or served",
    description = "\n\nRole: staff or above.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking after the change", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The booking's state does not allow this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn fulfil_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::Fulfil).await
}

#[utoipa::path(
    post,
    path = "/api/v1/bookings/{id}/no-show",
    tag = "bookings",
    summary = "Mark a slot booking a no-show",
    description = "\n\nRole: staff or above.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking after the change", body = BookingView), (status = 400, description = "The request is not valid: the message says which field and why", body = ErrorBody), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The booking's state does not allow this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn no_show_booking(
    principal: Principal,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    act_on_booking(principal, state, id, Action::NoShow).await
}

#[utoipa::path(
    get,
    path = "/api/v1/sync/status",
    tag = "sync",
    summary = "Sync health",
    description = "Whether this store is enrolled and reaching the hub, how many events wait to be replayed, when it last pushed and pulled, and its clock offset.\n\nRole: kiosk or above.",
    responses((status = 200, description = "Sync health", body = SyncStatus), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct QuarantineList {
    events: Vec<queries::QuarantinedEvent>,
}

#[utoipa::path(
    get,
    path = "/api/v1/quarantine",
    tag = "sync",
    summary = "Quarantined events",
    description = "Events of this store's own log set aside by a fork recovery (`edge-node reset`), for review.\n\nRole: manager or above.",
    responses((status = 200, description = "The quarantined events", body = QuarantineList), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
async fn list_quarantine(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let events = state.store.read(queries::quarantine).await?;
    Ok(Json(QuarantineList { events }).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SetAsideList {
    events: Vec<queries::SetAsideEvent>,
}

#[utoipa::path(
    get,
    path = "/api/v1/sync/set-aside",
    tag = "sync",
    summary = "Events set aside",
    description = "Events from the hub this store could not apply, newest first, with the reason; the rest of sync goes on past them.\n\nRole: manager or above.",
    responses((status = 200, description = "The events set aside", body = SetAsideList), (status = 401, description = "No valid token or session", body = ErrorBody), (status = 403, description = "The caller's role may not do this", body = ErrorBody)),
    security(("token" = []), ("session" = []))
)]
/// Inbox events this node could not apply, newest first.
async fn list_set_aside(
    principal: Principal,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    principal.require(Role::Manager)?;
    let events = state.store.read(queries::set_aside).await?;
    Ok(Json(SetAsideList { events }).into_response())
}
