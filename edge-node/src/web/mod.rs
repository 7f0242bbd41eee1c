//! The LAN web UI: kiosk, staff and manager pages served by the node
//! itself, so they keep working with the internet down. Pages are plain
//! server-rendered HTML and forms (they work without script); a small
//! embedded script adds live updates over server-sent events.

mod guard;
pub mod html;
mod manager;
mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::stream::Stream;
use shared::event::ResourceKind;
use shared::protocol::CreateBooking;
use shared::{BookingId, BookingState, Channel, Customer, Line, PoolId};

use crate::auth::Role;
use crate::state::{AppState, Session};
use crate::store::StoreError;
use crate::store::ops::{self, NewBooking};
use crate::store::queries::{self, BookingFilter, PoolFilter, PoolView, ResourceView};
pub use guard::{Guard, GuardLayer};
use html::{Frame, banner, button_form, h, local_day, local_time, page, zone};

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

/// How long a kiosk reservation of stock is kept for pickup.
const PICKUP_HOLD_SECONDS: i64 = 2 * 3600;
/// How long a kiosk reservation of a slot waits for staff to confirm it
/// (the customer pays at the counter).
const SLOT_HOLD_SECONDS: i64 = 30 * 60;

/// Slots the kiosk shows ahead.
const KIOSK_DAYS_AHEAD: i64 = 14;

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
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signin/kiosk", post(session::signin_kiosk))
        .route("/signout", post(session::signout))
        .route("/kiosk", get(kiosk))
        .route("/kiosk/book", post(kiosk_book))
        .route("/kiosk/booked/{id}", get(kiosk_booked))
        .route("/staff", get(staff))
        .route("/staff/list", get(staff_list))
        .route("/staff/bookings/{id}/{action}", post(staff_act))
        .route("/events", get(events))
        .merge(manager::router())
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

/// A page-level failure, shown as a page rather than JSON.
#[derive(Debug)]
pub struct PageError(StatusCode, String);

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        if e.is_internal() {
            tracing::error!(error = %e, "page failed in the store");
            return Self(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.".into(),
            );
        }
        Self(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sorry</title><link rel="stylesheet" href="/assets/app.css"></head><body><main><div class="alert bad" role="alert">{}</div><p><a class="button" href="/">Back</a></p></main></body></html>"#,
            h(&self.1)
        );
        (self.0, Html(body)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

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

async fn frame_parts(state: &AppState) -> Result<(String, String), PageError> {
    let enrolled = state.store.node().hub.is_some();
    let margin = state.store.settings().skew_margin_ms;
    let status = state
        .store
        .read(move |conn| queries::sync_status(conn, enrolled, margin))
        .await?;
    let tz = zone(&state.store.node().timezone);
    Ok((
        state.store.node().location.to_string(),
        banner(&status, &tz),
    ))
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

struct Catalog {
    resources: HashMap<String, ResourceView>,
    pools: Vec<PoolView>,
}

async fn catalog(
    state: &AppState,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Catalog, PageError> {
    let filter = PoolFilter {
        resource_id: None,
        from_ms,
        to_ms,
        limit: 1000,
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

/// The kiosk's reservation form: a pending hold that staff confirm at the
/// counter (stock is kept for pickup, a slot until the customer pays).
fn book_form(pool: &PoolView, stock: bool) -> String {
    let max = pool.available.clamp(1, 10);
    let id = h(pool.id.as_str());
    let (label, note) = if stock {
        ("Reserve for pickup", "We keep it for you for 2 hours.")
    } else {
        (
            "Reserve",
            "Pay at the counter within 30 minutes to confirm.",
        )
    };
    format!(
        r#"<details><summary>Reserve</summary>
<form method="post" action="/kiosk/book">
<input type="hidden" name="pool_id" value="{id}">
<label for="q-{id}">How many</label><input id="q-{id}" name="quantity" type="number" min="1" max="{max}" value="1" required>
<label for="n-{id}">Your name</label><input id="n-{id}" name="name" autocomplete="name" required maxlength="200">
<label for="p-{id}">Phone (optional)</label><input id="p-{id}" name="phone" type="tel" autocomplete="tel" maxlength="40">
<p class="muted">{note}</p>
<div class="row"><button type="submit">{label}</button></div>
</form></details>"#
    )
}

async fn kiosk_page(state: &AppState, session: &Session, notice: Option<String>) -> PageResult {
    let now = state.store.now_ms();
    let catalog = catalog(state, Some(now), Some(now + KIOSK_DAYS_AHEAD * 86_400_000)).await?;
    let me = state.store.node().participant();
    let tz = zone(&state.store.node().timezone);
    let mut stock = String::new();
    // (start, card) of every slot: pools come ordered by resource, and a
    // customer reads the days and times in the order they come.
    let mut slots: Vec<(jiff::Timestamp, String, String)> = Vec::new();
    for pool in catalog.pools.iter().filter(|p| p.owner == me) {
        let Some(resource) = catalog.resources.get(pool.resource_id.as_str()) else {
            continue;
        };
        let left = if pool.available > 0 {
            format!(
                r#"<p class="left">{} available</p>{}"#,
                pool.available,
                book_form(pool, resource.kind == ResourceKind::Stock)
            )
        } else {
            r#"<p class="soldout">Sold out</p>"#.to_owned()
        };
        match (resource.kind, pool.starts_at, pool.ends_at) {
            (ResourceKind::Stock, _, _) => {
                stock.push_str(&format!(
                    r#"<div class="card"><h3>{}</h3>{left}</div>"#,
                    h(&resource.name)
                ));
            }
            (ResourceKind::Slot, Some(start), Some(end)) => {
                let card = format!(
                    r#"<div class="card"><h3>{}–{} · {}</h3>{left}</div>"#,
                    local_time(start, &tz),
                    local_time(end, &tz),
                    h(&resource.name)
                );
                slots.push((start, resource.name.clone(), card));
            }
            _ => {}
        }
    }
    slots.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut days: Vec<(String, Vec<String>)> = Vec::new();
    for (start, _, card) in slots {
        let day = local_day(start, &tz);
        match days.last_mut() {
            Some((d, cards)) if *d == day => cards.push(card),
            _ => days.push((day, vec![card])),
        }
    }
    let mut content = String::new();
    if let Some(notice) = notice {
        content.push_str(&format!(
            r#"<div class="alert bad" role="alert">{}</div>"#,
            h(&notice)
        ));
    }
    content.push_str("<h2>Pick up in store</h2>");
    content.push_str(&if stock.is_empty() {
        r#"<p class="muted">Nothing to pick up right now.</p>"#.to_owned()
    } else {
        format!(r#"<div class="grid">{stock}</div>"#)
    });
    content.push_str("<h2>Classes and tables</h2>");
    if days.is_empty() {
        content.push_str(r#"<p class="muted">No times open in the next two weeks.</p>"#);
    }
    for (day, cards) in days {
        content.push_str(&format!(
            r#"<h3>{}</h3><div class="grid">{}</div>"#,
            h(&day),
            cards.join("")
        ));
    }
    let (store, banner) = frame_parts(state).await?;
    let frame = Frame {
        title: "Book here",
        store: &store,
        who: Some(session.label()),
        banner,
        live: None,
    };
    Ok(Html(page(&frame, &content)).into_response())
}

async fn kiosk(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let Some(session) = Session::require(&state, &headers, Role::Kiosk).await else {
        return Ok(Redirect::to("/signin").into_response());
    };
    kiosk_page(&state, &session, None).await
}

async fn kiosk_book(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let Some(session) = Session::require(&state, &headers, Role::Kiosk).await else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let fields = form(&body);
    let pool = PoolId::parse(field(&fields, "pool_id"))
        .map_err(|e| PageError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let quantity: i64 = field(&fields, "quantity").parse().unwrap_or(0);
    let phone = field(&fields, "phone");
    let is_stock = state
        .store
        .read({
            let pool = pool.clone();
            move |conn| {
                Ok(queries::pool_row_of(conn, &pool)?.is_some_and(|p| p.starts_at_ms.is_none()))
            }
        })
        .await?;
    let request = CreateBooking {
        lines: vec![Line {
            pool_id: pool,
            quantity,
        }],
        customer: Customer {
            name: field(&fields, "name").to_owned(),
            phone: (!phone.is_empty()).then(|| phone.to_owned()),
            email: None,
        },
        hold_seconds: Some(if is_stock {
            PICKUP_HOLD_SECONDS
        } else {
            SLOT_HOLD_SECONDS
        }),
        request_ttl_seconds: None,
    };
    let channel = match session.role {
        Role::Kiosk => Channel::Kiosk,
        _ => Channel::Staff,
    };
    let made = state
        .store
        .write_checked_first(move |ctx| ops::create_booking(ctx, NewBooking { request, channel }))
        .await;
    match made {
        Ok(view) => Ok(Redirect::to(&format!("/kiosk/booked/{}", view.id)).into_response()),
        Err(StoreError::InsufficientCapacity { .. }) => {
            kiosk_page(
                &state,
                &session,
                Some("Sorry, that just sold out. Please pick another time or item.".into()),
            )
            .await
        }
        Err(e) if !e.is_internal() => {
            kiosk_page(&state, &session, Some(format!("That did not work: {e}"))).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn kiosk_booked(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let Some(session) = Session::require(&state, &headers, Role::Kiosk).await else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let id =
        BookingId::parse(&id).map_err(|e| PageError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let booking = state
        .store
        .read(move |conn| queries::booking(conn, &id))
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "No such booking.".into()))?;
    let tz = zone(&state.store.node().timezone);
    let what = match booking.state {
        BookingState::Held => format!(
            "Reserved for you until {}. Show this code at the counter.",
            booking
                .expires_at
                .map(|t| local_time(t, &tz))
                .unwrap_or_default()
        ),
        BookingState::Confirmed => "Confirmed. See you soon!".to_owned(),
        other => format!("This booking is {other}."),
    };
    let content = format!(
        r#"<meta http-equiv="refresh" content="45;url=/kiosk">
<div class="card centered">
<h2>Thank you, {name}!</h2>
<p>Your code</p>
<p class="code" aria-label="Your code is {code_spaced}">{code}</p>
<p class="alert good">{what}</p>
<p><a class="button" href="/kiosk">Done</a></p>
</div>"#,
        name = h(&booking.customer.name),
        code = h(&booking.code),
        code_spaced = h(&booking
            .code
            .chars()
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")),
        what = h(&what),
    );
    let (store, banner) = frame_parts(&state).await?;
    let frame = Frame {
        title: "Booked",
        store: &store,
        who: Some(session.label()),
        banner,
        live: None,
    };
    Ok(Html(page(&frame, &content)).into_response())
}

/// How many of the latest bookings the staff page lists under the pending
/// ones: enough to glance back over the last hour of a busy counter; the
/// pending ones are listed in full above, however many.
const STAFF_RECENT_BOOKINGS: usize = 100;

/// The live part of the staff page: every pending hold, then the most
/// recent bookings.
async fn staff_fragment(state: &AppState) -> Result<String, PageError> {
    let filter = BookingFilter {
        state: None,
        limit: STAFF_RECENT_BOOKINGS,
    };
    let bookings = state
        .store
        .read(move |conn| queries::bookings(conn, &filter))
        .await?;
    let waiting = state.store.read(queries::pending_bookings).await?;
    let catalog = catalog(state, None, None).await?;
    let names: HashMap<String, String> = catalog
        .pools
        .iter()
        .map(|p| {
            let name = catalog
                .resources
                .get(p.resource_id.as_str())
                .map(|r| r.name.clone())
                .unwrap_or_else(|| p.id.to_string());
            (p.id.to_string(), name)
        })
        .collect();
    let tz = zone(&state.store.node().timezone);
    let me = state.store.node().participant();
    let row = |b: &queries::BookingView| {
        let what: Vec<String> = b
            .lines
            .iter()
            .map(|l| {
                format!(
                    "{} × {}",
                    l.quantity,
                    h(names
                        .get(l.pool_id.as_str())
                        .map_or(l.pool_id.as_str(), String::as_str))
                )
            })
            .collect();
        let mut actions = String::new();
        let path = |a: &str| format!("/staff/bookings/{}/{a}", b.id);
        let ours = b.charged_to == me;
        if (ours || b.owner == me) && b.state == BookingState::Held {
            actions.push_str(&button_form(&path("confirm"), "Confirm", "ok", true));
        }
        if (ours || b.owner == me) && b.state == BookingState::Confirmed {
            actions.push_str(&button_form(&path("fulfil"), "Fulfil", "ok", true));
        }
        if ours && matches!(b.state, BookingState::Held | BookingState::Confirmed) {
            actions.push_str(&button_form(&path("cancel"), "Cancel", "danger", true));
        }
        let countdown = match (b.state, b.expires_at) {
            (BookingState::Held | BookingState::Requested, Some(at)) => format!(
                r#" <span class="muted" data-expires="{}">until {}</span>"#,
                at.as_millisecond(),
                local_time(at, &tz)
            ),
            _ => String::new(),
        };
        format!(
            r#"<tr><td><strong>{code}</strong><br><span class="muted">{channel}</span></td><td>{name}<br><span class="muted">{what}</span></td><td><span class="state {state}">{state}</span>{countdown}</td><td class="optional">{at}</td><td><div class="row">{actions}</div></td></tr>"#,
            code = h(&b.code),
            channel = b.channel.as_str(),
            name = h(&b.customer.name),
            what = what.join(", "),
            state = b.state.as_str(),
            at = local_time(b.created_at, &tz),
        )
    };
    let table = |rows: Vec<String>, empty: &str| {
        if rows.is_empty() {
            format!(r#"<p class="muted">{empty}</p>"#)
        } else {
            format!(
                r#"<table><thead><tr><th>Code</th><th>Customer</th><th>State</th><th class="optional">Made</th><th><span class="visually-hidden">Actions</span></th></tr></thead><tbody>{}</tbody></table>"#,
                rows.join("")
            )
        }
    };
    let pending: Vec<String> = waiting.iter().map(row).collect();
    let recent: Vec<String> = bookings.iter().map(row).collect();
    Ok(format!(
        "<h2>Pending holds</h2>{}<h2>Recent bookings</h2>{}",
        table(pending, "No holds waiting."),
        table(recent, "No bookings yet.")
    ))
}

async fn staff(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let Some(session) = Session::require(&state, &headers, Role::Staff).await else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let live = staff_fragment(&state).await?;
    let (store, banner) = frame_parts(&state).await?;
    let nav = if session.role == Role::Manager {
        r#"<p><a href="/manager">Manage the catalog</a></p>"#
    } else {
        ""
    };
    let frame = Frame {
        title: "Staff",
        store: &store,
        who: Some(session.label()),
        banner,
        live: Some("/staff/list"),
    };
    Ok(Html(page(
        &frame,
        &format!(r#"{nav}<div id="live">{live}</div>"#),
    ))
    .into_response())
}

async fn staff_list(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    if Session::require(&state, &headers, Role::Staff)
        .await
        .is_none()
    {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    }
    Ok(Html(staff_fragment(&state).await?).into_response())
}

async fn staff_act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    if Session::require(&state, &headers, Role::Staff)
        .await
        .is_none()
    {
        return Ok(Redirect::to("/signin").into_response());
    }
    let id =
        BookingId::parse(&id).map_err(|e| PageError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let action = match action.as_str() {
        "confirm" => shared::Action::Confirm,
        "cancel" => shared::Action::Cancel,
        "fulfil" => shared::Action::Fulfil,
        _ => return Err(PageError(StatusCode::NOT_FOUND, "No such action.".into())),
    };
    state
        .store
        .write(move |ctx| ops::transition(ctx, &id, action))
        .await?;
    Ok(Redirect::to("/staff").into_response())
}

/// Server-sent events for a signed-in page: `change` when anything was
/// committed, `status` with a fresh sync banner every few seconds. The
/// stream ends when its session does (sign-out, a new sign-in in the same
/// browser, the idle timeout) and when the server stops.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = Session::require(&state, &headers, Role::Kiosk).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    Sse::new(event_stream(state, session))
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
    head: tokio::sync::watch::Receiver<u64>,
    ticker: tokio::time::Interval,
    sessions_ended: tokio::sync::watch::Receiver<u64>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

fn event_stream(
    state: AppState,
    session: Session,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let live = Live {
        head: state.store.head_seq(),
        ticker: tokio::time::interval(STATUS_EVERY),
        sessions_ended: state.sessions_ended(),
        stopping: state.stopping(),
        state,
        session,
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
                    let banner = frame_parts(&live.state).await.map(|(_, b)| b).unwrap_or_default();
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
