//! The signed sync protocol (docs/ARCHITECTURE.md, section 5). Every request but `enroll`
//! is signed by the device's key over method, path with query, timestamp,
//! nonce and body hash; every answer is signed by the hub over the request's
//! nonce, its time, its status and its body.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::LocationId;
use shared::limits::{
    LOG_PAGE_EVENTS_MAX, PULL_EVENTS_MAX, PUSH_BATCH_EVENTS_MAX, SYNC_BODY_MAX_BYTES,
};
use shared::protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, HeadResponse, LogResponse, PullResponse, PushRequest,
    PushResponse, ResetResponse,
};
use shared::signing::{
    self, FRESHNESS_WINDOW_MS, HEADER_DEVICE, HEADER_HUB_SIGNATURE, HEADER_HUB_TIME, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::keys::hash_secret;
use crate::plan::Refusal;
use crate::storage::{Device, DeviceStatus, Seen, StorageError};

/// A request whose signature checked out.
#[derive(Debug)]
pub struct Signed {
    pub device: Device,
    pub nonce: String,
    pub body: Bytes,
}

async fn body_of(request: Request) -> ApiResult<(Method, String, HeaderMap, Bytes)> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let bytes = axum::body::to_bytes(body, SYNC_BODY_MAX_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("sync requests are limited to {SYNC_BODY_MAX_BYTES} bytes"),
            )
        })?;
    Ok((parts.method, path, parts.headers, bytes))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized(format!("missing {name} header")))
}

fn query_value<T: std::str::FromStr>(path: &str, name: &str) -> Option<T> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

fn query_u64(path: &str, name: &str) -> Option<u64> {
    query_value(path, name)
}

/// Clock offsets a device may report, either way: a century. Far beyond any
/// real skew (a store PC whose clock battery died boots decades off, and
/// must still sync, stamped in our time, and be flagged for it), and far
/// inside `i64`, so nothing computed from a report (its absolute value on
/// the dashboard) can overflow.
const REPORTED_OFFSET_MAX_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

/// Checks a device's signed request: known enrolled device, valid
/// signature, fresh timestamp, unused nonce. Only a request that passes all
/// of them is recorded (contact, clock offset, backlog): a refused one may
/// be a replay.
async fn verify(state: &AppState, request: Request) -> ApiResult<Signed> {
    let (method, path, headers, body) = body_of(request).await?;
    let location = LocationId::parse(header(&headers, HEADER_DEVICE)?)
        .map_err(|e| ApiError::unauthorized(format!("bad {HEADER_DEVICE}: {e}")))?;
    let timestamp: i64 = header(&headers, HEADER_TIMESTAMP)?
        .parse()
        .map_err(|_| ApiError::unauthorized(format!("bad {HEADER_TIMESTAMP}")))?;
    let nonce = header(&headers, HEADER_NONCE)?.to_owned();
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::unauthorized(
            "the nonce must be 16 to 64 hex digits",
        ));
    }
    let signature = header(&headers, HEADER_SIGNATURE)?;
    let device = state
        .storage
        .device(&location)
        .await?
        .ok_or_else(|| ApiError::unauthorized(format!("unknown device {location}")))?;
    let public_key = device
        .public_key
        .as_deref()
        .ok_or_else(|| ApiError::unauthorized(format!("{location} has not enrolled a device")))?;
    signing::verify_b64(
        public_key,
        &signing::request_message(method.as_str(), &path, timestamp, &nonce, &body),
        signature,
    )
    .map_err(|_| ApiError::unauthorized("the request signature does not verify"))?;
    let now = state.now_ms();
    // Compared without subtracting: the timestamp is the caller's, and
    // i64::MIN - now overflows.
    let skew_ms = timestamp.abs_diff(now);
    if skew_ms > FRESHNESS_WINDOW_MS.unsigned_abs() {
        // A replay, or a device whose clock is far off and that has not yet
        // learnt ours (this answer tells it, in `x-hub-time`, and it stamps
        // its next request in our time). Nothing of it is recorded: a
        // captured request replayed later must not move the device's clock
        // offset (a false alert) nor count as contact.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "stale_request",
            format!(
                "the request's timestamp is {} s {} the hub's clock; the window is ±{} s",
                skew_ms / 1000,
                if timestamp > now {
                    "ahead of"
                } else {
                    "behind"
                },
                FRESHNESS_WINDOW_MS / 1000
            ),
        ));
    }
    // Fresh: from here `timestamp - now` is within the window.
    // A device stamps its requests in our time once it has measured the
    // offset, and reports that measurement (signed, in the query); before
    // that, its timestamp shows it.
    let reported = match query_value::<i64>(&path, "clock_offset_ms") {
        Some(offset) if offset.unsigned_abs() > REPORTED_OFFSET_MAX_MS.unsigned_abs() => {
            return Err(ApiError::bad_request(format!(
                "clock_offset_ms must be within ±{REPORTED_OFFSET_MAX_MS} ms"
            )));
        }
        reported => reported,
    };
    // Stored as a signed integer: a count beyond one is not a count.
    let backlog_events = query_u64(&path, "backlog");
    if backlog_events.is_some_and(|b| i64::try_from(b).is_err()) {
        return Err(ApiError::bad_request("backlog is out of range"));
    }
    let seen = Seen {
        at_ms: now,
        clock_offset_ms: reported.unwrap_or(timestamp - now),
        backlog_events,
        synced_at_ms: None,
    };
    let expires_at_ms = timestamp.max(now) + FRESHNESS_WINDOW_MS;
    if !state
        .storage
        .admit(&location, &nonce, timestamp, expires_at_ms, seen)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "replayed_request",
            "this nonce was used before, or the request was signed before the hub started; sign a new one",
        ));
    }
    Ok(Signed {
        device,
        nonce,
        body,
    })
}

/// An answer signed for the request that carried `nonce`.
fn signed_response(state: &AppState, nonce: &str, status: StatusCode, body: Vec<u8>) -> Response {
    let now = state.now_ms();
    let signature = state.key.sign_b64(&signing::response_message(
        nonce,
        now,
        status.as_u16(),
        &body,
    ));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&now.to_string()) {
        headers.insert(HEADER_HUB_TIME, value);
    }
    if let Ok(value) = HeaderValue::from_str(&signature) {
        headers.insert(HEADER_HUB_SIGNATURE, value);
    }
    response
}

fn signed_ok<T: Serialize>(state: &AppState, nonce: &str, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => signed_response(state, nonce, StatusCode::OK, body),
        Err(_) => ApiError::internal().into_response(),
    }
}

fn signed_error(state: &AppState, nonce: &str, error: ApiError) -> Response {
    match serde_json::to_vec(&error.body()) {
        Ok(body) => signed_response(state, nonce, error.status, body),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// Runs a signed endpoint: verification failures are plain errors (there is
/// no trustworthy nonce to bind them to); everything after is signed.
async fn signed<F, Fut>(state: AppState, request: Request, handle: F) -> Response
where
    F: FnOnce(AppState, Signed) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Response>>,
{
    let verified = match verify(&state, request).await {
        Ok(verified) => verified,
        Err(e) => return e.into_response(),
    };
    let nonce = verified.nonce.clone();
    match handle(state.clone(), verified).await {
        Ok(response) => response,
        Err(e) => signed_error(&state, &nonce, e),
    }
}

/// A sync body: strict JSON, no key given twice (the bytes are signed; the
/// hub must act on the one reading of them the device meant).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    super::extract::parse_json(body)
}

#[utoipa::path(
    post,
    path = "/v1/sync/enroll",
    tag = "sync",
    summary = "Enroll a device",
    description = "A store's device presents a one-time token from `sync-hub location add` and its new Ed25519 public key; the hub binds the key to the location. The only sync request that is not signed.",
    request_body = EnrollRequest,
    responses((status = 200, description = "Enrolled", body = EnrollResponse), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "The token is unknown or spent", body = ErrorBody), (status = 409, description = "The token is for another location than the device already is", body = ErrorBody)),
    security(())
)]
pub async fn enroll(State(state): State<AppState>, request: Request) -> Response {
    let result: ApiResult<Response> = async {
        let (_, _, _, body) = body_of(request).await?;
        let enroll: EnrollRequest = parse(&body)?;
        if !signing::is_public_key(&enroll.public_key) {
            return Err(ApiError::bad_request("public_key must be a base64 Ed25519 key"));
        }
        let enrolled = state
            .storage
            .enroll(&enroll, &hash_secret(&enroll.token), state.now_ms())
            .await?;
        tracing::info!(location = %enrolled.location, epoch = enrolled.epoch, restore = enroll.restore, "device enrolled");
        Ok(axum::Json(EnrollResponse {
            location: enrolled.location,
            name: enrolled.name,
            timezone: enrolled.timezone,
            epoch: enrolled.epoch,
            epoch_start_seq: enrolled.epoch_start_seq,
            hub_public_key: state.key.public_key_b64(),
            hub_head: enrolled.hub_head,
        })
        .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    get,
    path = "/v1/sync/head",
    tag = "sync",
    summary = "What the hub holds of the caller's log",
    description = "The device's epoch, status and the head (`seq`, hash) of its log at the hub, to resume replay from. Signed by the device (see the `device` credentials); the answer is signed by the hub in `x-hub-signature`.",
    responses((status = 200, description = "The head", body = HeadResponse), (status = 401, description = "The signature, device, timestamp or nonce does not check out", body = ErrorBody)),
    security(("device" = []))
)]
pub async fn head(State(state): State<AppState>, request: Request) -> Response {
    signed(state, request, |state, signed| async move {
        let d = signed.device;
        Ok(signed_ok(
            &state,
            &signed.nonce,
            &HeadResponse {
                location: d.location,
                epoch: d.epoch,
                status: d.status.as_str().into(),
                head: d.head,
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/sync/push",
    tag = "sync",
    summary = "Replay the next events of the caller's log",
    description = "Ordered and idempotent: events the hub already holds are skipped, a gap is refused with `expected_seq`, a divergent chain is a fork. Every event is checked for who may author it and what it may touch before any is applied; the batch is applied in one transaction. Signed by the device (see the `device` credentials); the answer is signed by the hub in `x-hub-signature`.",
    params(("backlog" = Option<u64>, Query, description = "Events the device still has to push after this batch, for the fleet dashboard")),
    request_body = PushRequest,
    responses((status = 200, description = "Applied (or already held)", body = PushResponse), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "The signature, device, timestamp or nonce does not check out", body = ErrorBody), (status = 403, description = "An event touches what this location may not", body = ErrorBody), (status = 409, description = "A gap (`expected_seq` says where to resume), a fork, a fenced epoch or a quarantined device", body = ErrorBody), (status = 413, description = "The batch is too large", body = ErrorBody)),
    security(("device" = []))
)]
pub async fn push(State(state): State<AppState>, request: Request) -> Response {
    let backlog = request
        .uri()
        .path_and_query()
        .and_then(|pq| query_u64(pq.as_str(), "backlog"));
    signed(state, request, move |state, signed| async move {
        let batch: PushRequest = parse(&signed.body)?;
        if batch.events.is_empty() || batch.events.len() > PUSH_BATCH_EVENTS_MAX {
            return Err(ApiError::bad_request(format!(
                "a batch carries 1 to {PUSH_BATCH_EVENTS_MAX} events"
            )));
        }
        let location = signed.device.location.clone();
        if batch.origin.as_str() != location.as_str() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("device {location} may only push its own log, not {}'s", batch.origin),
            ));
        }
        verify_head(&signed.device, &batch)?;
        let started = std::time::Instant::now();
        let events = batch.events.len() as u64;
        let pushed = state
            .storage
            .push(&location, batch.events, &batch.head_signature, backlog, state.now_ms())
            .await;
        metrics::histogram!(crate::metrics::PUSH_DURATION).record(started.elapsed().as_secs_f64());
        let pushed = match pushed {
            Ok(pushed) => {
                metrics::counter!(crate::metrics::PUSHED_EVENTS).increment(events.min(pushed.applied as u64));
                pushed
            }
            Err(e) => {
                if let StorageError::Refused(refusal) = &e {
                    metrics::counter!(crate::metrics::PUSH_REFUSALS, "code" => refusal.code()).increment(1);
                }
                return Err(e.into());
            }
        };
        tracing::debug!(%location, applied = pushed.applied, head = pushed.acked.seq, "push applied");
        Ok(signed_ok(&state, &signed.nonce, &PushResponse { acked: pushed.acked }))
    })
    .await
}

/// The batch's head signature: the device's key over its last event, so
/// the hub holds, for every head it acknowledges, the device's word for it.
fn verify_head(device: &Device, batch: &PushRequest) -> ApiResult<()> {
    let Some(last) = batch.events.last() else {
        return Err(ApiError::bad_request("a push carries at least one event"));
    };
    let key = device
        .public_key
        .as_deref()
        .ok_or_else(|| ApiError::unauthorized(format!("{} is not enrolled", device.location)))?;
    signing::verify_b64(
        key,
        &signing::head_message(device.location.as_str(), last.epoch, last.seq, &last.hash()),
        &batch.head_signature,
    )
    .map_err(|_| ApiError::from(StorageError::from(Refusal::BadHeadSignature)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PullQuery {
    /// The last `hub_seq` the device has applied.
    after: u64,
    /// Hold the request open this long when nothing is waiting (capped by
    /// the hub's `long_poll_max_ms`).
    #[serde(default)]
    wait_ms: Option<u64>,
    /// The sync protocol the device speaks; devices that do not say speak
    /// the first.
    #[serde(default)]
    protocol: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/sync/pull",
    tag = "sync",
    summary = "Events addressed to the caller",
    description = "The hub's log as it concerns this location, after `after`; a long poll when `wait_ms` is given and nothing is waiting. Signed by the device (see the `device` credentials); the answer is signed by the hub in `x-hub-signature`.",
    params(PullQuery),
    responses((status = 200, description = "The next events (maybe none)", body = PullResponse), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "The signature, device, timestamp or nonce does not check out", body = ErrorBody)),
    security(("device" = []))
)]
pub async fn pull(State(state): State<AppState>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let answer = pull_signed(state, request).await;
    metrics::histogram!(crate::metrics::PULL_DURATION).record(started.elapsed().as_secs_f64());
    answer
}

async fn pull_signed(state: AppState, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    signed(state, request, |state, signed| async move {
        let q: PullQuery = parse_query(&query)?;
        let location = signed.device.location;
        let wait = std::time::Duration::from_millis(
            q.wait_ms.unwrap_or(0).min(state.settings.long_poll_max_ms),
        );
        let deadline = tokio::time::Instant::now() + wait;
        let (mut mine, everyone) = state.inboxes.subscribe(&location);
        let speaks = q.protocol.unwrap_or(1);
        // Read once after subscribing; then, while waiting, wake for what
        // is addressed to this store (a web order, a decision, units), and
        // answer from the published tail of the log when it holds all
        // there is. News for everyone (a location joined, another store's
        // catalog) does not end a wait: it rides the answer at the end of
        // the long poll. Woken by each, every waiting store would answer
        // once per broadcast, and a fleet rolling out would cost the hub
        // stores times enrollments answers; this way it costs one answer
        // per store per long poll, however much news there is.
        let mut events = state
            .storage
            .inbox(&location, q.after, PULL_EVENTS_MAX)
            .await?;
        while events.is_empty() {
            let woke = tokio::time::timeout_at(deadline, mine.changed()).await;
            let ended = !matches!(woke, Ok(Ok(())));
            if ended && !everyone.has_changed().unwrap_or(false) {
                break;
            }
            events = match state.inboxes.from_tail(&location, q.after, PULL_EVENTS_MAX) {
                Some(events) => events,
                None => {
                    state
                        .storage
                        .inbox(&location, q.after, PULL_EVENTS_MAX)
                        .await?
                }
            };
            if ended {
                break;
            }
        }
        // Nothing is skipped: the device gets what it can read, up to the
        // first event it cannot, and is told to upgrade.
        let unreadable = events
            .iter()
            .position(|e| shared::protocol::event_protocol(&e.event) > speaks);
        if unreadable == Some(0) {
            // Nothing it can read: answer at the end of the long poll, so a
            // device that does not know to back off does not poll in a loop.
            tokio::time::sleep_until(deadline).await;
        }
        let upgrade_to_protocol = unreadable.map(|at| {
            let needs = shared::protocol::event_protocol(&events[at].event);
            events.truncate(at);
            needs
        });
        Ok(signed_ok(
            &state,
            &signed.nonce,
            &PullResponse {
                events,
                upgrade_to_protocol,
            },
        ))
    })
    .await
}

fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> ApiResult<T> {
    let pairs: serde_json::Map<String, serde_json::Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let value = v
                .parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| v.into());
            (k.to_owned(), value)
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// The last `seq` the device already has.
    after: u64,
    /// At most this many events.
    #[serde(default)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/v1/sync/log",
    tag = "sync",
    summary = "The caller's own log as the hub holds it",
    description = "For a replacement device rebuilding its store (`edge-node enroll --restore`) and for fork recovery. Signed by the device (see the `device` credentials); the answer is signed by the hub in `x-hub-signature`.",
    params(LogQuery),
    responses((status = 200, description = "A page of the log", body = LogResponse), (status = 400, description = "The request is not valid: the message says what and why", body = ErrorBody), (status = 401, description = "The signature, device, timestamp or nonce does not check out", body = ErrorBody)),
    security(("device" = []))
)]
pub async fn own_log(State(state): State<AppState>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    signed(state, request, |state, signed| async move {
        let q: LogQuery = parse_query(&query)?;
        let limit = q
            .limit
            .unwrap_or(LOG_PAGE_EVENTS_MAX)
            .clamp(1, LOG_PAGE_EVENTS_MAX);
        let (events, head) = state
            .storage
            .own_log(&signed.device.location, q.after, limit)
            .await?;
        Ok(signed_ok(
            &state,
            &signed.nonce,
            &LogResponse { events, head },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/sync/reset",
    tag = "sync",
    summary = "Start a new epoch after the hub's head",
    description = "Fork recovery (`edge-node reset`): the device takes the hub's copy of its log and continues under a new epoch. Signed by the device (see the `device` credentials); the answer is signed by the hub in `x-hub-signature`.",
    responses((status = 200, description = "The new epoch", body = ResetResponse), (status = 401, description = "The signature, device, timestamp or nonce does not check out", body = ErrorBody)),
    security(("device" = []))
)]
pub async fn reset(State(state): State<AppState>, request: Request) -> Response {
    signed(state, request, |state, signed| async move {
        let location = signed.device.location;
        let was = signed.device.status;
        let (epoch, epoch_start_seq, head) = state.storage.reset(&location).await?;
        tracing::warn!(%location, epoch, was = was.as_str(), "device reset to a new epoch");
        debug_assert!(was != DeviceStatus::Pending);
        Ok(signed_ok(
            &state,
            &signed.nonce,
            &ResetResponse {
                epoch,
                epoch_start_seq,
                head,
            },
        ))
    })
    .await
}
