//! The fleet dashboard at the hub's `/`: operators sign in with a name and
//! password (`sync-hub user add`), under the sign-in rules of a store's LAN
//! UI ([`shared::signin`]), and watch every location live over
//! server-sent events. Every open dashboard is served from the one fleet
//! read the fleet watch publishes each second, never a read of its own.
//! The pages are in [`page`]; this module is sign-in, sessions and routes.

pub mod page;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::fleet::{OperatorSession, Snapshot};
use crate::keys;

/// The session cookie; its value is a random secret whose SHA-256 is stored.
pub const COOKIE: &str = "hub_session";

/// Longest operator name and password taken: a name fits a line, and
/// Argon2 over a megabyte-long password would be a denial of service.
pub const OPERATOR_NAME_MAX_CHARS: usize = 100;
pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// How often an open live view checks that its session still holds, so a
/// signed-out or timed-out operator stops receiving the fleet.
const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// What the dashboard's pages may load: their own script and style sheet
/// only; forms post back to the hub.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/fleet", get(fleet_json))
        .route("/events", get(events))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
}

/// Hashes an operator's password with Argon2id and a fresh salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    check_password(password).map_err(anyhow::Error::msg)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

/// The rules a new password meets, in words.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
        return Err(format!(
            "a password is at least {PASSWORD_MIN_CHARS} characters (and at most {PASSWORD_MAX_BYTES} bytes)"
        ));
    }
    Ok(())
}

/// The rules an operator's name meets, in words.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > OPERATOR_NAME_MAX_CHARS
        || shared::booking::has_hidden_characters(name)
    {
        return Err(format!(
            "a name is 1 to {OPERATOR_NAME_MAX_CHARS} characters, without control or text-direction characters"
        ));
    }
    Ok(name.to_owned())
}

fn password_matches(password: &str, stored: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(stored).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Checked when the name matches no operator, so an unknown name costs
/// what a wrong password costs and timing does not tell them apart.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(b"no operator has this password")
        .map(|h| h.to_string())
        .unwrap_or_default()
});

fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(String, OperatorSession)>, ApiError> {
    let Some(secret) = session_secret(headers) else {
        return Ok(None);
    };
    let hash = keys::hash_secret(&secret);
    let found = state
        .storage
        .operator_session(
            &hash,
            shared::signin::SESSION_IDLE_TIMEOUT_MS,
            state.now_ms(),
        )
        .await?;
    Ok(found.map(|s| (hash, s)))
}

/// A page answer: HTML with the dashboard's security headers.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

/// Whether a form post comes from a page of this hub (its Origin, or
/// Referer, names our host): another site's page must not sign a browser
/// in or out.
fn from_this_host(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|url| {
            url.split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        });
    matches!((host, from), (Some(host), Some(from)) if host.eq_ignore_ascii_case(from))
}

fn cookie(value: &str, max_age_s: Option<i64>) -> HeaderValue {
    let max_age = max_age_s
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The fleet as last read, or a read now when the watch has not run yet.
async fn snapshot(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    if let Some(snap) = state.fleet.borrow().clone() {
        return Ok(snap);
    }
    let now = state.now_ms();
    let read = state.storage.fleet(now).await?;
    Ok(Arc::new(Snapshot { read, at_ms: now }))
}

async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((_, session)) = session(&state, &headers).await? else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let snap = snapshot(&state).await?;
    Ok(html(
        StatusCode::OK,
        page::dashboard(&session, &snap, &state.settings),
    ))
}

#[derive(Debug, Deserialize)]
struct SigninQuery {
    /// `expired`: the session ended; `out`: signed out.
    m: Option<String>,
}

async fn signin_page(Query(q): Query<SigninQuery>) -> Response {
    let message = match q.m.as_deref() {
        Some("expired") => Some("Your session ended. Sign in again to go on."),
        Some("out") => Some("You are signed out."),
        _ => None,
    };
    html(StatusCode::OK, page::signin("", message, None))
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    name: String,
    password: String,
}

async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !from_this_host(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "sign in from this hub's own page",
        ));
    }
    let Ok(form) = serde_urlencoded_form::<SigninForm>(&body) else {
        return Ok(html(
            StatusCode::BAD_REQUEST,
            page::signin("", None, Some("Enter your name and password.")),
        ));
    };
    let name = form.name.trim().to_owned();
    let refuse = |why: &str| {
        html(
            StatusCode::UNAUTHORIZED,
            page::signin(&name, None, Some(why)),
        )
    };
    if name.is_empty()
        || name.chars().count() > OPERATOR_NAME_MAX_CHARS
        || form.password.len() > PASSWORD_MAX_BYTES
    {
        return Ok(refuse("That name and password do not match an operator."));
    }
    let now = state.now_ms();
    let operator = state.storage.operator(&name).await?;
    if let Some(until) = operator
        .as_ref()
        .and_then(|o| o.locked_until_ms)
        .filter(|u| *u > now)
    {
        let minutes = (until - now + 59_999) / 60_000;
        return Ok(refuse(&format!(
            "Too many wrong passwords: this account is locked for {minutes} more minute(s)."
        )));
    }
    let stored = operator
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |o| o.password_hash.clone());
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &stored))
        .await
        .unwrap_or(false);
    let Some(operator) = operator.filter(|_| matches) else {
        if let Some(known) = state.storage.operator(&name).await? {
            let failed = i64::from(known.failed_attempts) + 1;
            let lock = shared::signin::lockout_ms(failed).map(|ms| now + ms);
            state.storage.operator_failed(&name, lock).await?;
        }
        return Ok(refuse("That name and password do not match an operator."));
    };
    let (secret, hash) = keys::new_secret("").map_err(|_| ApiError::internal())?;
    let (csrf, _) = keys::new_secret("").map_err(|_| ApiError::internal())?;
    // The session the browser came with, if any, ends: a sign-in replaces it.
    if let Some(old) = session_secret(&headers) {
        state
            .storage
            .end_operator_session(&keys::hash_secret(&old))
            .await?;
    }
    state
        .storage
        .start_operator_session(&operator.name, &hash, &csrf, now)
        .await?;
    tracing::info!(operator = %operator.name, "operator signed in");
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&secret, None));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let session = session(&state, &headers).await?;
    let form = serde_urlencoded_form::<SignoutForm>(&body).ok();
    if let Some((hash, s)) = session {
        let genuine = from_this_host(&headers) && form.is_some_and(|f| f.csrf == s.csrf);
        if !genuine {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "sign out from this hub's own page",
            ));
        }
        state.storage.end_operator_session(&hash).await?;
    }
    let mut response = Redirect::to("/signin?m=out").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", Some(0)));
    Ok(response)
}

/// The fleet as JSON, for an operator's tools (a session is required).
async fn fleet_json(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if session(&state, &headers).await?.is_none() {
        return Err(ApiError::unauthorized("sign in at / first"));
    }
    let snap = snapshot(&state).await?;
    let summary = crate::alerts::summarize(&snap.read, &state.settings, snap.at_ms);
    Ok(axum::Json(serde_json::json!({
        "as_of": crate::working::timestamp(snap.at_ms),
        "summary": summary,
        "locations": snap.read.locations.iter().map(|l| serde_json::json!({
            "id": l.id,
            "name": l.name,
            "state": crate::alerts::location_state(l, &state.settings, snap.at_ms),
            "last_seen_at": l.last_seen_at,
            "backlog_events": l.backlog_events,
            "clock_offset_ms": l.clock_offset_ms,
            "epoch": l.epoch,
            "set_aside_events": l.set_aside_events,
        })).collect::<Vec<_>>(),
        "waiting_requests": snap.read.waiting_requests,
        "overbooked_pools": snap.read.overbooked_pools,
        "failing_webhooks": snap.read.failing_webhooks,
        "alerts": snap.read.open_alerts,
    }))
    .into_response())
}

/// The live view: the fleet fragment each time the fleet watch reads, and
/// `signed_out` when the session ends.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some((hash, _)) = session(&state, &headers).await? else {
        return Err(ApiError::unauthorized("sign in at / first"));
    };
    let mut rx = state.fleet.subscribe();
    rx.mark_changed();
    let checked = tokio::time::Instant::now();
    let stream = futures_util::stream::unfold(
        (rx, state, hash, checked, false),
        |(mut rx, state, hash, mut checked, done)| async move {
            if done || rx.changed().await.is_err() {
                return None;
            }
            if checked.elapsed() > SESSION_RECHECK {
                checked = tokio::time::Instant::now();
                let alive = state
                    .storage
                    .operator_session(
                        &hash,
                        shared::signin::SESSION_IDLE_TIMEOUT_MS,
                        state.now_ms(),
                    )
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if !alive {
                    let event = Event::default().event("signed_out").data("expired");
                    return Some((Ok::<_, Infallible>(event), (rx, state, hash, checked, true)));
                }
            }
            let snap = rx.borrow_and_update().clone();
            let data = match snap {
                Some(snap) => page::fleet(&snap, &state.settings),
                None => String::new(),
            };
            let event = Event::default().event("fleet").data(data);
            Some((Ok(event), (rx, state, hash, checked, false)))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/dashboard.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/dashboard.js"),
    )
        .into_response()
}

/// A form body, strictly: unknown or missing fields are an error.
fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ()> {
    let pairs: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(pairs)).map_err(|_| ())
}
