//! What the JSON API and the pages share: the server's state, the caller
//! a request authenticates as (a bearer token or a signed-in session), and
//! the session cookie. Both `api` and `web` build on this module; neither
//! imports the other.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use shared::Channel;
use tokio::sync::watch;

use crate::auth::{self, Role, TokenCache, hash_token, role_of_hash};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;

/// The session cookie's name.
pub const COOKIE: &str = "edge_session";

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// Served over HTTPS: session cookies are marked Secure.
    pub tls: bool,
    tokens: Arc<TokenCache>,
    /// Idempotency keys of requests being processed right now.
    pub(crate) in_flight: Arc<Mutex<HashSet<String>>>,
    /// Bumped whenever a session ends by sign-out or replacement, so live
    /// streams re-check theirs at once rather than at their next tick.
    sessions_ended: Arc<watch::Sender<u64>>,
    /// Set when the server stops: live streams end, so they do not hold
    /// the shutdown for its whole grace.
    stopping: Arc<watch::Sender<bool>>,
}

impl AppState {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tls: false,
            tokens: Arc::default(),
            in_flight: Arc::default(),
            sessions_ended: Arc::new(watch::Sender::new(0)),
            stopping: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Tells live streams that some session ended.
    pub fn session_ended(&self) {
        self.sessions_ended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a session ends.
    pub fn sessions_ended(&self) -> watch::Receiver<u64> {
        self.sessions_ended.subscribe()
    }

    /// Ends every live stream: the server is stopping.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Turns true when the server stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub role: Role,
    /// The signed-in person, for a UI session; a bearer token names no one.
    pub user_name: Option<String>,
}

impl Principal {
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role < role {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role; this device is signed in as {}",
                role.as_str(),
                self.role.as_str()
            )));
        }
        Ok(())
    }

    pub(crate) fn channel(&self) -> Channel {
        match self.role {
            Role::Kiosk => Channel::Kiosk,
            Role::Staff | Role::Manager => Channel::Staff,
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            // A signed-in page of the UI calls the API with its session.
            return match Session::from_headers(state, &parts.headers).await {
                Some(session) => Ok(Self {
                    role: session.role,
                    user_name: session.user_name,
                }),
                None => Err(ApiError::unauthorized(
                    "missing Authorization: Bearer TOKEN (or a signed-in session)",
                )),
            };
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer TOKEN")
            })?;
        let digest = shared::Hash::of(token.as_bytes());
        if let Some(role) = state.tokens.get(&digest) {
            return Ok(Self {
                role,
                user_name: None,
            });
        }
        let lookup = digest.to_hex();
        let role = state
            .store
            .read(move |conn| role_of_hash(conn, &lookup))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        state.tokens.put(digest, role);
        Ok(Self {
            role,
            user_name: None,
        })
    }
}

/// A session is touched at most this often, to keep writes rare.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub user_name: Option<String>,
    /// SHA-256 of the cookie's secret: the session's row.
    id_hash: String,
}

impl Session {
    pub fn label(&self) -> String {
        match &self.user_name {
            Some(name) => format!("{name} ({})", self.role.as_str()),
            None => self.role.as_str().to_owned(),
        }
    }

    /// The session of the cookie in `headers`, if it is alive.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Option<Self> {
        let secret = cookie(headers)?;
        let hash = hash_token(&secret);
        let lookup = hash.clone();
        let lookup_hash = hash.clone();
        let row = state
            .store
            .read(move |conn| auth::session(conn, &lookup))
            .await
            .ok()??;
        let now = state.store.now_ms();
        if now - row.last_seen_at_ms > row.idle_timeout_ms {
            let _ = state
                .store
                .write(move |ctx| auth::end_session(ctx.conn(), &hash))
                .await;
            return None;
        }
        if now - row.last_seen_at_ms > TOUCH_EVERY_MS {
            let _ = state
                .store
                .write(move |ctx| auth::touch_session(ctx.conn(), &hash, now))
                .await;
        }
        Some(Self {
            role: row.role,
            user_name: row.user_name,
            id_hash: lookup_hash,
        })
    }

    /// Whether this session is still signed in and not idle, without
    /// counting the question as activity (a live stream asks it, and an
    /// open page must not keep a session alive).
    pub async fn is_alive(&self, state: &AppState) -> bool {
        let lookup = self.id_hash.clone();
        let now = state.store.now_ms();
        state
            .store
            .read(move |conn| auth::session(conn, &lookup))
            .await
            .is_ok_and(|row| row.is_some_and(|r| now - r.last_seen_at_ms <= r.idle_timeout_ms))
    }

    /// The session, if it has at least `role`.
    pub async fn require(state: &AppState, headers: &HeaderMap, role: Role) -> Option<Self> {
        Self::from_headers(state, headers)
            .await
            .filter(|s| s.role >= role)
    }
}

pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

/// Whether the request carries a session cookie, valid or not.
pub(crate) fn has_cookie(headers: &HeaderMap) -> bool {
    cookie(headers).is_some()
}

pub(crate) fn cookie_named(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}
