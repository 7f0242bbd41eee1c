//! The public booking API: web orders decided by the store that owns the
//! capacity (or by the hub's allotment when the store is away), and
//! cancellations.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::booking::validate_request;
use shared::event::canonical_json;
use shared::limits::{
    HOLD_SECONDS_MAX, IDEMPOTENCY_KEY_MAX_CHARS, REQUEST_BODY_MAX_BYTES, REQUEST_TTL_DEFAULT_S,
    REQUEST_TTL_MAX_S, WAIT_MS_MAX,
};
use shared::protocol::{CreateBooking, ErrorBody};
use shared::{BookingId, BookingState};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{IdPath, QueryParams, RawBody, parse_json};
use super::public::ApiKey;
use crate::keys::hash_secret;
use crate::storage::{HubBooking, WebOrder};

/// How long a cancellation waits for the store to carry it out.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Wait up to this long (at most 10 s) for the store's decision when the
    /// order must be decided by it.
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Idempotency keys of orders being placed right now.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<String>>);

struct Claim {
    keys: Arc<InFlight>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.keys
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn claim(keys: &Arc<InFlight>, key: &str) -> Option<Claim> {
    let inserted = keys
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.to_owned());
    inserted.then(|| Claim {
        keys: keys.clone(),
        key: key.to_owned(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected<'a> {
    #[serde(flatten)]
    error: ErrorBody,
    booking: &'a HubBooking,
}

/// 201 when decided, 202 while the owner has yet to decide, 409 when
/// refused or run out.
fn answer(booking: &HubBooking, replayed: bool) -> Response {
    let mut response = match booking.state {
        BookingState::Requested => (StatusCode::ACCEPTED, Json(booking)).into_response(),
        BookingState::Rejected | BookingState::Expired => {
            let reason = booking
                .reason
                .clone()
                .unwrap_or_else(|| booking.state.to_string());
            let code = if reason.starts_with("insufficient_capacity") {
                "insufficient_capacity"
            } else if booking.state == BookingState::Expired {
                "expired"
            } else {
                "rejected"
            };
            let body = Rejected {
                error: ErrorBody::new(code, reason),
                booking,
            };
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        _ => (StatusCode::CREATED, Json(booking)).into_response(),
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Waits until `id` leaves `state` or `limit` passes; the booking as it is then.
async fn wait_while(
    state: &AppState,
    id: BookingId,
    current: HubBooking,
    waiting_in: BookingState,
    limit: Duration,
) -> ApiResult<HubBooking> {
    let mut changes = state.decisions.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    // Re-read once after subscribing, in case it moved in between.
    let mut booking = state.storage.booking(&id).await?.unwrap_or(current);
    while booking.state == waiting_in {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Err(_) => break,
            Ok(Ok(changed)) if changed != id => continue,
            Ok(_) => {
                if let Some(now) = state.storage.booking(&id).await? {
                    booking = now;
                }
            }
        }
    }
    Ok(booking)
}

#[utoipa::path(
    post,
    path = "/v1/bookings",
    tag = "bookings",
    summary = "Place a web order",
    description = "Decided by the store that owns the units when it is reachable; when it is not, from the hub's own allotment if that covers the order, else it waits (202, `requested`) for the store until `request_ttl_seconds` pass. 201 when decided, 202 while the store has yet to decide (poll `GET /v1/bookings/{id}`, or pass `wait_ms`), 409 when refused. With an `Idempotency-Key` header a retry gets the first answer again (header `idempotent-replayed: true`).",
    params(OrderQuery, ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: 1 to 255 printable characters", min_length = 1, max_length = 255)),
    request_body = CreateBooking,
    responses((status = 201, description = "Booked", body = HubBooking), (status = 202, description = "Waiting for the store's decision", body = HubBooking), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, description = "A line names a pool the hub does not know", body = ErrorBody), (status = 409, description = "Refused by the store, out of units or expired undecided (the answer then also carries the `booking`: see `Rejected`), a slot that has ended, or a request with this Idempotency-Key still in flight", body = ErrorBody), (status = 413, description = "The body is too large", body = ErrorBody), (status = 422, description = "This Idempotency-Key was used for a different order", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn create(
    _key: ApiKey,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<OrderQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(WAIT_MS_MAX));
    if body.len() > REQUEST_BODY_MAX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {REQUEST_BODY_MAX_BYTES} bytes"),
        ));
    }
    // Read strictly: a `Value` would keep the last of duplicate keys, and
    // the idempotency hash below would then be of another body than sent.
    let raw: serde_json::Value = parse_json(&body)?;
    let request_hash = hash_secret(&canonical_json(&raw));
    let order: CreateBooking = serde_path_to_error::deserialize(raw).map_err(|e| {
        ApiError::bad_request(format!("invalid request at {}: {}", e.path(), e.inner()))
    })?;
    validate_request(&order.lines, &order.customer)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if order
        .hold_seconds
        .is_some_and(|s| !(1..=HOLD_SECONDS_MAX).contains(&s))
    {
        return Err(ApiError::bad_request(format!(
            "hold_seconds must be between 1 and {HOLD_SECONDS_MAX}"
        )));
    }
    let ttl_s = order.request_ttl_seconds.unwrap_or(REQUEST_TTL_DEFAULT_S);
    if !(1..=REQUEST_TTL_MAX_S).contains(&ttl_s) {
        return Err(ApiError::bad_request(format!(
            "request_ttl_seconds must be between 1 and {REQUEST_TTL_MAX_S}"
        )));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX_CHARS)
                .ok_or_else(|| {
                    ApiError::bad_request("Idempotency-Key must be 1 to 255 printable characters")
                })?;
            Some(key.to_owned())
        }
    };
    let _claim = match &key {
        Some(key) => Some(claim(&state.in_flight, key).ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
        })?),
        None => None,
    };
    let started = std::time::Instant::now();
    let placed = state
        .storage
        .place_web_order(
            WebOrder {
                lines: order.lines,
                customer: order.customer,
                hold_seconds: order.hold_seconds,
                ttl_ms: ttl_s * 1000,
                idempotency: key.map(|k| (k, request_hash)),
            },
            state.settings.unreachable_after_ms,
            state.now_ms(),
        )
        .await?;
    let id = placed.booking.id;
    let booking = if placed.booking.state == BookingState::Requested && !wait.is_zero() {
        wait_while(&state, id, placed.booking, BookingState::Requested, wait).await?
    } else {
        placed.booking
    };
    if !placed.replayed {
        let outcome = match booking.state {
            BookingState::Requested => "waiting",
            BookingState::Rejected | BookingState::Expired => "rejected",
            _ => "decided",
        };
        metrics::counter!(crate::metrics::WEB_ORDERS, "outcome" => outcome).increment(1);
        if outcome != "waiting" {
            metrics::histogram!(crate::metrics::WEB_ORDER_DECISION)
                .record(started.elapsed().as_secs_f64());
        }
    }
    Ok(answer(&booking, placed.replayed))
}

#[utoipa::path(
    post,
    path = "/v1/bookings/{id}/cancel",
    tag = "bookings",
    summary = "Cancel a booking",
    description = "The store the booking is charged to carries the cancellation out; the answer waits briefly for it.",
    params(("id" = BookingId, Path, description = "The booking id")),
    responses((status = 200, description = "The booking as it is now", body = HubBooking), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 404, description = "No such booking", body = ErrorBody), (status = 409, description = "The booking's state does not allow this", body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn cancel(
    _key: ApiKey,
    State(state): State<AppState>,
    IdPath(id): IdPath<BookingId>,
) -> ApiResult<Response> {
    let placed = state.storage.cancel_booking(&id, state.now_ms()).await?;
    let booking = if matches!(
        placed.booking.state,
        BookingState::Held | BookingState::Confirmed
    ) {
        // Charged to the store: it carries the cancellation out.
        wait_while(
            &state,
            id,
            placed.booking.clone(),
            placed.booking.state,
            CANCEL_WAIT,
        )
        .await?
    } else {
        placed.booking
    };
    Ok(Json(booking).into_response())
}
