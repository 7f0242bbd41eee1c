//! The LAN web UI: kiosk, staff and manager pages served by the node
//! itself, so they keep working with the internet down. Pages are plain
//! server-rendered HTML and forms (they work without script); a small
//! embedded script adds live updates over server-sent events, shows each
//! action's failure next to it, and resets an idle kiosk.
//!
//! Pages read and write through the store's queries and operations, never
//! SQL; what the pages and the JSON API share lives in `crate::state`.

mod guard;
pub mod html;
pub mod i18n;
mod kiosk;
mod manager;
mod session;
mod staff;

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use futures_util::stream::Stream;

use crate::auth::Role;
use crate::state::{AppState, Session, has_cookie};
use crate::store::StoreError;
use crate::store::queries::{self, PoolFilter, PoolView, ResourceView};
pub use guard::{Guard, GuardLayer};
use html::{Frame, banner, h, page, zone};
use i18n::{Arg, Lang, Tr};

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route(
            "/assets/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route("/lang/{code}", get(switch_language))
        .route("/events", get(events))
        .merge(session::router())
        .merge(kiosk::router())
        .merge(staff::router())
        .merge(manager::router())
        .layer(middleware::from_fn(render_errors))
        .with_state(state)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A page-level failure: a status, a catalogue message and its values. It
/// is rendered by [`render_errors`], which knows the request's language:
/// a page for a page, a line of text for the script's inline actions.
#[derive(Debug, Clone)]
pub struct PageError {
    status: StatusCode,
    id: &'static str,
    args: Vec<(&'static str, String)>,
}

impl PageError {
    pub fn new(status: StatusCode, id: &'static str) -> Self {
        Self {
            status,
            id,
            args: Vec::new(),
        }
    }

    pub fn bad(id: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, id)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "error-not-found")
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.args.push((name, value.into()));
        self
    }

    fn text(&self, tr: Tr) -> String {
        // A booking state is shown by its plain name in the page's language.
        let states: Vec<Option<String>> = self
            .args
            .iter()
            .map(|(name, value)| {
                (*name == "state")
                    .then(|| shared::BookingState::parse(value).map(|s| tr.state(s)))
                    .flatten()
            })
            .collect();
        let args: Vec<(&str, Arg<'_>)> = self
            .args
            .iter()
            .zip(&states)
            .map(|((name, value), state)| (*name, Arg::Text(state.as_deref().unwrap_or(value))))
            .collect();
        tr.a(self.id, &args)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        match e {
            e if e.is_internal() => {
                tracing::error!(error = %e, "page failed in the store");
                Self::new(status, "error-internal")
            }
            StoreError::InsufficientCapacity { available, .. } => {
                Self::new(status, "error-sold-out").with("available", available.to_string())
            }
            StoreError::InvalidTransition { source, .. } => {
                Self::new(status, "error-state-changed").with("state", source.from.as_str())
            }
            StoreError::NotFound { .. } => Self::not_found(),
            StoreError::Closed => Self::new(status, "error-closing"),
            // Conflicts and bad input carry the store's own sentence.
            other => Self::new(status, "error-refused").with("why", other.to_string()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

type PageResult = Result<Response, PageError>;

/// Whether the request comes from the page script (an inline action), which
/// shows a failure as a line next to the button it concerns.
fn is_inline(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"fetch")
}

/// Renders each [`PageError`] in the language of the request it answers.
async fn render_errors(request: Request, next: Next) -> Response {
    let tr = Tr::of(request.headers());
    let inline = is_inline(request.headers());
    let mut response = next.run(request).await;
    let Some(error) = response.extensions_mut().remove::<PageError>() else {
        return response;
    };
    let text = error.text(tr);
    if inline {
        return (
            error.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
    }
    let body = format!(
        r#"<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title><link rel="stylesheet" href="/assets/app.css"></head><body><main><div class="alert bad" role="alert">{text}</div><p><a class="button" href="/">{back}</a></p></main></body></html>"#,
        lang = tr.lang.code(),
        title = h(&tr.t("error-title")),
        text = h(&text),
        back = h(&tr.t("back")),
    );
    (error.status, Html(body)).into_response()
}

/// Form fields, repeated ones kept (weekday checkboxes).
pub(crate) fn form(body: &Bytes) -> HashMap<String, Vec<String>> {
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        fields
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    fields
}

pub(crate) fn field<'a>(fields: &'a HashMap<String, Vec<String>>, name: &str) -> &'a str {
    fields
        .get(name)
        .and_then(|v| v.first())
        .map(|s| s.trim())
        .unwrap_or_default()
}

/// Where a page lives and who may see it: what every signed-in page needs
/// to build its frame.
struct Ctx {
    tr: Tr,
    session: Session,
    store: String,
    tz: jiff::tz::TimeZone,
}

/// The session of a page request with at least `role`, or the way to the
/// sign-in page (saying the session ended, when the browser had one) and
/// back to `path` afterwards.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    role: Role,
    path: &str,
) -> Result<Ctx, Response> {
    let tr = Tr::of(headers);
    let Some(session) = Session::require(state, headers, role).await else {
        if is_inline(headers) {
            return Err((
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                tr.t("session-ended"),
            )
                .into_response());
        }
        return Err(Redirect::to(&signin_url(path, has_cookie(headers))).into_response());
    };
    let store = store_name(state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Ctx {
        tr,
        session,
        store,
        tz: zone(&state.store.node().timezone),
    })
}

/// The sign-in page, returning to `next` once signed in.
fn signin_url(next: &str, expired: bool) -> String {
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    if expired {
        format!("/signin?expired=1&next={next}")
    } else {
        format!("/signin?next={next}")
    }
}

async fn store_name(state: &AppState) -> Result<String, PageError> {
    let me = state.store.node().location.clone();
    Ok(state
        .store
        .read(move |conn| queries::store_name(conn, &me))
        .await?)
}

async fn sync_banner(state: &AppState, tr: Tr) -> Result<String, PageError> {
    let enrolled = state.store.node().hub.is_some();
    let margin = state.store.settings().skew_margin_ms;
    let status = state
        .store
        .read(move |conn| queries::sync_status(conn, enrolled, margin))
        .await?;
    let tz = zone(&state.store.node().timezone);
    Ok(banner(&status, &tz, tr))
}

/// The links between the pages a role may use.
fn nav(tr: Tr, role: Role) -> Vec<(&'static str, String)> {
    let mut links = Vec::new();
    if role >= Role::Staff {
        links.push(("/staff", tr.t("nav-queue")));
        links.push(("/staff/slots", tr.t("nav-rosters")));
    }
    if role >= Role::Manager {
        links.push(("/manager", tr.t("nav-manager")));
    }
    links
}

/// A signed-in staff or manager page.
async fn staff_frame<'a>(
    state: &AppState,
    ctx: &'a Ctx,
    title: String,
    path: &'a str,
    live: Option<String>,
) -> Result<Frame<'a>, PageError> {
    Ok(Frame {
        tr: ctx.tr,
        title,
        store: &ctx.store,
        who: Some(ctx.session.label()),
        banner: sync_banner(state, ctx.tr).await?,
        live,
        nav: nav(ctx.tr, ctx.session.role),
        body_attrs: String::new(),
        path,
    })
}

fn render(frame: &Frame<'_>, content: &str) -> Response {
    Html(page(frame, content)).into_response()
}

async fn home(state: State<AppState>, headers: HeaderMap) -> Response {
    match Session::from_headers(&state, &headers).await {
        Some(s) => Redirect::to(match s.role {
            Role::Kiosk => "/kiosk",
            Role::Staff => "/staff",
            Role::Manager => "/manager",
        })
        .into_response(),
        None => Redirect::to("/signin").into_response(),
    }
}

/// How long the language switch is remembered: a year.
const LANG_COOKIE_MAX_AGE_S: i64 = 365 * 24 * 3600;

#[derive(Debug, serde::Deserialize)]
struct Back {
    #[serde(default)]
    back: Option<String>,
}

/// The language switch: remembers the choice and goes back to the page.
async fn switch_language(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(back): Query<Back>,
) -> Response {
    let Some(lang) = Lang::parse(&code) else {
        return PageError::not_found().into_response();
    };
    let to = back
        .back
        .filter(|b| is_local_path(b))
        .unwrap_or_else(|| "/".into());
    let secure = if state.tls { "; Secure" } else { "" };
    let mut response = Redirect::to(&to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{}={}; Path=/; SameSite=Lax; Max-Age={LANG_COOKIE_MAX_AGE_S}{secure}",
        i18n::LANG_COOKIE,
        lang.code()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A path on this server (never another site: `//host` or `/\host`).
pub(crate) fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control())
}

struct Catalog {
    resources: HashMap<String, ResourceView>,
    pools: Vec<PoolView>,
}

impl Catalog {
    fn resource_of(&self, pool: &PoolView) -> Option<&ResourceView> {
        self.resources.get(pool.resource_id.as_str())
    }

    fn pool(&self, id: &shared::PoolId) -> Option<&PoolView> {
        self.pools.iter().find(|p| p.id == *id)
    }
}

/// Pools the catalog pages read at most, named so a store that outgrows it
/// is a figure to act on rather than a surprise.
const CATALOG_POOLS_MAX: usize = 1000;

async fn catalog(
    state: &AppState,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Catalog, PageError> {
    let filter = PoolFilter {
        resource_id: None,
        from_ms,
        to_ms,
        limit: CATALOG_POOLS_MAX,
    };
    let (resources, pools) = state
        .store
        .read(move |conn| Ok((queries::resources(conn)?, queries::pools(conn, &filter)?)))
        .await?;
    Ok(Catalog {
        resources: resources
            .into_iter()
            .map(|r| (r.id.to_string(), r))
            .collect(),
        pools,
    })
}

/// Server-sent events for a signed-in page: `change` when anything was
/// committed, `status` with a fresh sync banner every few seconds. The
/// stream ends when its session does (sign-out, a new sign-in in the same
/// browser, the idle timeout) and when the server stops.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = Session::require(&state, &headers, Role::Kiosk).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let tr = Tr::of(&headers);
    Sse::new(event_stream(state, session, tr))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// How often the banner is re-sent, and the longest a stream outlives its
/// session's idle timeout.
const STATUS_EVERY: Duration = Duration::from_secs(3);

/// What a live stream waits on.
struct Live {
    state: AppState,
    session: Session,
    tr: Tr,
    head: tokio::sync::watch::Receiver<u64>,
    ticker: tokio::time::Interval,
    sessions_ended: tokio::sync::watch::Receiver<u64>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

fn event_stream(
    state: AppState,
    session: Session,
    tr: Tr,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // A clone remembers what the store's own receiver saw (nothing since
    // the start): marked seen, so a new page is not refreshed at once for
    // changes it already shows.
    let mut head = state.store.head_seq();
    head.borrow_and_update();
    let live = Live {
        head,
        ticker: tokio::time::interval(STATUS_EVERY),
        sessions_ended: state.sessions_ended(),
        stopping: state.stopping(),
        state,
        session,
        tr,
    };
    futures_util::stream::unfold(live, |mut live| async move {
        loop {
            let event = tokio::select! {
                changed = live.head.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    Event::default().event("change").data("1")
                }
                _ = live.ticker.tick() => {
                    // The idle timeout passes without anyone signing out.
                    if !live.session.is_alive(&live.state).await {
                        return None;
                    }
                    // A kiosk shows no sync state: its customers only need
                    // to know whether they can book, and they always can.
                    if live.session.role == Role::Kiosk {
                        continue;
                    }
                    let banner = sync_banner(&live.state, live.tr).await.unwrap_or_default();
                    Event::default().event("status").data(banner.replace('\n', " "))
                }
                ended = live.sessions_ended.changed() => {
                    if ended.is_err() || !live.session.is_alive(&live.state).await {
                        return None;
                    }
                    continue;
                }
                // Mapped to `()`: the guard `wait_for` returns is not `Send`.
                () = async { let _ = live.stopping.wait_for(|stop| *stop).await; } => return None,
            };
            return Some((Ok(event), live));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_server_are_followed_back() {
        assert!(is_local_path("/staff?q=x"));
        assert!(!is_local_path("//evil.example/"));
        assert!(!is_local_path("/\\evil.example"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("/staff\r\nSet-Cookie: x"));
    }
}
