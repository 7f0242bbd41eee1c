//! Sign-in, sessions and the same-origin check.
//!
//! Staff and managers sign in with a name and PIN (Argon2id); a kiosk
//! device signs in once with a kiosk token. Sessions live in an HttpOnly,
//! SameSite=Strict cookie whose secret is new at every sign-in, end at
//! sign-out, and expire when idle.
//!
//! Failed sign-ins lock with a growing delay after five, counted per name
//! and device (see `migrations/edge-node/0007_sign_in_devices.sql`): the
//! sign-in form's answer gives every browser a long-lived device cookie, a
//! device on which the user signed in before keeps its own counter, and all
//! other devices share one. So a stranger guessing from fresh browsers is
//! throttled without locking staff out of their own tills. An unknown name
//! costs the same Argon2id check, gets the same answer and locks the same
//! way as a wrong PIN: no answer tells which names exist.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::html::{Frame, h, page};
use super::i18n::Tr;
use super::{PageError, PageResult, field, form};
use crate::auth::{
    self, KIOSK_IDLE_TIMEOUT_MS, Role, STAFF_IDLE_TIMEOUT_MS, hash_token, role_of_hash,
};
use crate::state::{AppState, COOKIE, Session, cookie, cookie_named};

/// The cookie that tells one browser from another for sign-in throttling.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signin/kiosk", post(signin_kiosk))
        .route("/signout", post(signout))
}

pub const DEVICE_COOKIE: &str = "edge_device";

/// How long a browser keeps its device cookie: 400 days, the longest that
/// browsers honour.
const DEVICE_COOKIE_MAX_AGE_S: i64 = 400 * 24 * 3600;

/// Length of a device id as we make them (32 random bytes, base64url): a
/// cookie of another shape is not one of ours, and gets a new one.
const DEVICE_ID_CHARS: usize = 43;

/// PIN checks running at once.
static PIN_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The device id this browser presented, if it is one of ours in shape.
fn device_id(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, DEVICE_COOKIE).filter(|id| {
        id.len() == DEVICE_ID_CHARS
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The device cookie for `id`: kept long, sent to this node only, never
/// readable by script.
fn device_cookie(state: &AppState, id: &str) -> HeaderValue {
    let secure = if state.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={DEVICE_COOKIE_MAX_AGE_S}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// This browser's device id, and the cookie to set when it had none.
///
/// Only the sign-in form's post gives one out, never the page: a browser
/// that follows a link to the page from another site does not send its
/// SameSite=Strict cookies, and would be handed a new id that overwrites
/// the one it signed in with. The post comes from our own page (the guard
/// refuses any other), so a device cookie the browser holds comes with it.
fn device_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderValue>), PageError> {
    if let Some(id) = device_id(headers) {
        return Ok((id, None));
    }
    let (id, _) = auth::new_session_secret()?;
    let cookie = device_cookie(state, &id);
    Ok((id, Some(cookie)))
}

/// Adds the device cookie, if a new one was made, to `response`.
fn with_device_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The session cookie. A person's session lives as long as the browser and
/// the server's idle check allow; a kiosk's cookie is kept for its idle
/// timeout so the fixture stays signed in across restarts.
fn set_cookie(state: &AppState, secret: &str, max_age_s: Option<i64>) -> HeaderValue {
    let secure = if state.tls { "; Secure" } else { "" };
    let max_age = max_age_s
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict{max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session for `role`; the response sets its cookie. The session
/// the browser presented, if any, ends: a sign-in replaces it rather than
/// leaving a second one alive behind the new cookie.
async fn start(
    state: &AppState,
    headers: &HeaderMap,
    role: Role,
    user_name: Option<String>,
    to: &str,
) -> PageResult {
    let (secret, hash) = auth::new_session_secret()?;
    let replaced = cookie(headers).map(|old| hash_token(&old));
    let idle = if role == Role::Kiosk {
        KIOSK_IDLE_TIMEOUT_MS
    } else {
        STAFF_IDLE_TIMEOUT_MS
    };
    let now = state.store.now_ms();
    let session = auth::NewSession {
        id_hash: hash,
        role,
        user_name,
        idle_timeout_ms: idle,
    };
    let ended = state
        .store
        .write(move |ctx| auth::start_session(ctx.conn(), &session, replaced.as_deref(), now))
        .await?;
    if ended {
        state.session_ended();
    }
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(state, &secret, (role == Role::Kiosk).then_some(idle / 1000)),
    );
    Ok(response)
}

/// Where the sign-in page came from: the page to return to, and whether
/// the browser's session had ended (so the page says why it is here).
#[derive(Debug, Default, serde::Deserialize)]
pub struct SigninQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    expired: Option<String>,
}

fn signin_html(state: &AppState, tr: Tr, store: &str, notice: Option<&str>, next: &str) -> String {
    let notice = notice
        .map(|n| format!(r#"<div class="alert bad" role="alert">{}</div>"#, h(n)))
        .unwrap_or_default();
    let content = format!(
        r#"{notice}
<div class="grid">
<form class="card" method="post" action="/signin">
<h2>{staff}</h2>
<input type="hidden" name="next" value="{next}">
<label for="name">{name}</label><input id="name" name="name" autocomplete="username" required maxlength="100">
<label for="pin">{pin}</label><input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password" required maxlength="12">
<p><button type="submit">{sign_in}</button></p>
</form>
<form class="card" method="post" action="/signin/kiosk">
<h2>{kiosk}</h2>
<label for="token">{token}</label><input id="token" name="token" type="password" required>
<p class="muted">{token_hint}</p>
<p><button type="submit" class="secondary">{start}</button></p>
</form>
</div>"#,
        staff = h(&tr.t("signin-staff")),
        next = h(next),
        name = h(&tr.t("signin-name")),
        pin = h(&tr.t("signin-pin")),
        sign_in = h(&tr.t("signin-button")),
        kiosk = h(&tr.t("signin-kiosk")),
        token = h(&tr.t("signin-token")),
        token_hint = h(&tr.t("signin-token-hint")),
        start = h(&tr.t("signin-kiosk-button")),
    );
    let _ = state;
    page(
        &Frame {
            tr,
            title: tr.t("signin-title"),
            store,
            who: None,
            banner: String::new(),
            live: None,
            nav: Vec::new(),
            body_attrs: String::new(),
            path: "/signin",
        },
        &content,
    )
}

/// The page to go to after signing in: `next` when it is a page of ours.
fn next_page(next: &str, role: Role) -> String {
    if super::is_local_path(next) && !next.starts_with("/signin") {
        return next.to_owned();
    }
    match role {
        Role::Manager => "/manager".into(),
        Role::Staff => "/staff".into(),
        Role::Kiosk => "/kiosk".into(),
    }
}

pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SigninQuery>,
) -> PageResult {
    let tr = Tr::of(&headers);
    let store = super::store_name(&state).await?;
    let notice = q.expired.is_some().then(|| tr.t("signin-expired"));
    let next = q.next.unwrap_or_default();
    Ok(Html(signin_html(&state, tr, &store, notice.as_deref(), &next)).into_response())
}

async fn refused(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    notice: &str,
    next: &str,
) -> Response {
    let tr = Tr::of(headers);
    let store = super::store_name(state).await.unwrap_or_default();
    (
        status,
        Html(signin_html(state, tr, &store, Some(notice), next)),
    )
        .into_response()
}

pub async fn signin(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let tr = Tr::of(&headers);
    let fields = form(&body);
    let (typed, pin) = (
        field(&fields, "name").to_owned(),
        field(&fields, "pin").to_owned(),
    );
    let next = field(&fields, "next").to_owned();
    let (device, new_cookie) = device_of(&state, &headers)?;
    let device_hash = hash_token(&device);
    // Find the counter and count the attempt first, in one write, so
    // parallel guesses each count and a locked counter is refused before
    // any PIN is checked. A known and an unknown name do the same work.
    let now = state.store.now_ms();
    let (attempt, locked) = state
        .store
        .write({
            let device_hash = device_hash.clone();
            move |ctx| {
                let attempt = auth::attempt(ctx.conn(), &typed, Some(&device_hash))?;
                let locked = auth::count_attempt(ctx.conn(), &attempt, now)?;
                Ok((attempt, locked))
            }
        })
        .await?;
    if let Some(until) = locked {
        let wait = (until - now + 999) / 1000;
        return Ok(with_device_cookie(
            refused(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &tr.a("signin-locked", &[("seconds", wait.into())]),
                &next,
            )
            .await,
            new_cookie,
        ));
    }
    let user = attempt.user.clone();
    let matches = {
        // Argon2 takes tens of megabytes per check: a few at a time.
        let _permit = PIN_CHECKS.acquire().await.ok();
        tokio::task::spawn_blocking(move || auth::pin_matches_user(&pin, user.as_ref()))
            .await
            .unwrap_or(false)
    };
    let Some(user) = attempt.user.clone().filter(|_| matches) else {
        return Ok(with_device_cookie(
            refused(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &tr.t("signin-wrong"),
                &next,
            )
            .await,
            new_cookie,
        ));
    };
    let id = user.id;
    state
        .store
        .write(move |ctx| auth::signed_in(ctx.conn(), &attempt, id, &device_hash, now))
        .await?;
    let to = next_page(&next, user.role);
    let response = start(&state, &headers, user.role, Some(user.name), &to).await?;
    Ok(with_device_cookie(response, new_cookie))
}

pub async fn signin_kiosk(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let fields = form(&body);
    let hash = hash_token(field(&fields, "token"));
    let role = state
        .store
        .read(move |conn| role_of_hash(conn, &hash))
        .await?;
    if role != Some(Role::Kiosk) {
        let tr = Tr::of(&headers);
        return Ok(refused(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &tr.t("signin-not-kiosk"),
            "",
        )
        .await);
    }
    start(&state, &headers, Role::Kiosk, None, "/kiosk").await
}

pub async fn signout(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    // A kiosk is left only by a staff member signing in on it: a customer
    // must not be able to end kiosk mode.
    if Session::require(&state, &headers, Role::Kiosk)
        .await
        .is_some_and(|s| s.role == Role::Kiosk)
    {
        return Err(PageError::new(StatusCode::FORBIDDEN, "kiosk-no-signout"));
    }
    if let Some(secret) = cookie(&headers) {
        let hash = hash_token(&secret);
        state
            .store
            .write(move |ctx| auth::end_session(ctx.conn(), &hash))
            .await
            .map_err(PageError::from)?;
        // Its live streams end now, not at their next tick.
        state.session_ended();
    }
    let mut response = Redirect::to("/signin").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, "", Some(0)));
    Ok(response)
}
