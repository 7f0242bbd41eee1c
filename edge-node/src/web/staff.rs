//! The staff pages: the queue of open bookings grouped the way a counter
//! works, search by code, name or phone, a booking's details and history,
//! and each slot's roster with no-show marking.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use jiff::Timestamp;
use shared::event::ResourceKind;
use shared::{Action, BookingId, BookingState, Channel, ParticipantId, PoolId};

use super::html::{Confirm, action_form, h, local_time};
use super::i18n::{Arg, Tr};
use super::{Ctx, PageError, PageResult, field, form, is_inline, render, signed_in, staff_frame};
use crate::auth::Role;
use crate::state::AppState;
use crate::store::queries::{
    self, BookingFilter, BookingView, PoolView, ResourceView, SEARCH_MAX_CHARS, Search,
};

/// Confirmed bookings each group of the queue lists before it links to the
/// full, paged list: the count is always shown, so nothing hides.
const GROUP_SHOWN: usize = 100;

/// Results on one page of a search; the page links to the next.
const SEARCH_PAGE: usize = 50;

/// How far back the roster list reaches: today's slots that have started
/// still need their no-shows marked.
const ROSTER_LOOKBACK_MS: i64 = 12 * 3600 * 1000;

/// How far ahead the roster list reaches.
const ROSTER_DAYS_AHEAD: i64 = 14;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/staff", get(queue))
        .route("/staff/list", get(queue_list))
        .route("/staff/bookings/{id}", get(detail))
        .route("/staff/bookings/{id}/{action}", post(act))
        .route("/staff/slots", get(slots))
        .route("/staff/slots/{id}", get(roster))
}

/// Where a booking stands in the counter's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// Ordered on the website, not yet confirmed at the counter.
    WebWaiting,
    /// Requests and holds that run out if nobody acts.
    HoldsRunningOut,
    /// Paid stock to hand over.
    Pickups,
    /// Confirmed places in slots, by start time.
    Classes,
}

impl Group {
    const ALL: [Self; 4] = [
        Self::WebWaiting,
        Self::HoldsRunningOut,
        Self::Pickups,
        Self::Classes,
    ];

    fn id(self) -> &'static str {
        match self {
            Self::WebWaiting => "web",
            Self::HoldsRunningOut => "holds",
            Self::Pickups => "pickups",
            Self::Classes => "classes",
        }
    }
}

/// The group of an open booking whose earliest slot starts at `starts`
/// (`None` for stock); `None` when the booking is no longer open.
pub fn group_of(booking: &BookingView, starts: Option<Timestamp>) -> Option<Group> {
    match booking.state {
        BookingState::Requested | BookingState::Held if booking.channel == Channel::Web => {
            Some(Group::WebWaiting)
        }
        BookingState::Requested | BookingState::Held => Some(Group::HoldsRunningOut),
        BookingState::Confirmed if starts.is_some() => Some(Group::Classes),
        BookingState::Confirmed => Some(Group::Pickups),
        _ => None,
    }
}

/// Sorts open bookings into the queue's groups, each in the order a counter
/// works it: what runs out first, then what starts first, then the oldest
/// order first.
pub fn group(
    bookings: Vec<BookingView>,
    starts: impl Fn(&BookingView) -> Option<Timestamp>,
) -> HashMap<Group, Vec<BookingView>> {
    let mut groups: HashMap<Group, Vec<(Option<Timestamp>, BookingView)>> = HashMap::new();
    for booking in bookings {
        let start = starts(&booking);
        if let Some(g) = group_of(&booking, start) {
            groups.entry(g).or_default().push((start, booking));
        }
    }
    groups
        .into_iter()
        .map(|(g, mut list)| {
            match g {
                Group::WebWaiting | Group::HoldsRunningOut => {
                    list.sort_by_key(|(_, b)| (b.expires_at, b.id));
                }
                Group::Classes => list.sort_by_key(|(s, b)| (*s, b.id)),
                Group::Pickups => list.sort_by_key(|(_, b)| b.id),
            }
            (g, list.into_iter().map(|(_, b)| b).collect())
        })
        .collect()
}

/// What the booking rows need to know besides the bookings.
struct Names {
    pools: HashMap<PoolId, PoolView>,
    resources: HashMap<String, ResourceView>,
    locations: HashMap<String, String>,
    me: ParticipantId,
    now: Timestamp,
}

impl Names {
    async fn load(state: &AppState, bookings: &[&BookingView]) -> Result<Self, PageError> {
        let ids: Vec<PoolId> = bookings
            .iter()
            .flat_map(|b| b.lines.iter().map(|l| l.pool_id.clone()))
            .collect();
        let (pools, resources, known) = state
            .store
            .read(move |conn| {
                Ok((
                    queries::pools_named(conn, ids.iter())?,
                    queries::resources(conn)?,
                    queries::known_locations(conn)?,
                ))
            })
            .await?;
        Ok(Self {
            pools: pools.into_iter().map(|p| (p.id.clone(), p)).collect(),
            resources: resources
                .into_iter()
                .map(|r| (r.id.to_string(), r))
                .collect(),
            locations: known
                .into_iter()
                .map(|k| (k.id.to_string(), k.name))
                .collect(),
            me: state.store.node().participant(),
            now: Timestamp::from_millisecond(state.store.now_ms()).unwrap_or_default(),
        })
    }

    /// When the booking's earliest slot starts; `None` for stock.
    fn starts(&self, booking: &BookingView) -> Option<Timestamp> {
        booking
            .lines
            .iter()
            .filter_map(|l| self.pools.get(&l.pool_id).and_then(|p| p.starts_at))
            .min()
    }

    fn pool_name(&self, pool: &PoolId) -> String {
        self.pools
            .get(pool)
            .and_then(|p| self.resources.get(p.resource_id.as_str()))
            .map_or_else(|| pool.to_string(), |r| r.name.clone())
    }

    fn participant(&self, p: &ParticipantId, tr: Tr) -> String {
        match p {
            ParticipantId::Hub => tr.t("the-website"),
            ParticipantId::Location(id) => self
                .locations
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| id.to_string()),
        }
    }

    /// "2 × Barista class, Saturday 28 November 10:00–12:00".
    fn what(&self, booking: &BookingView, ctx: &Ctx) -> String {
        booking
            .lines
            .iter()
            .map(|l| {
                let mut text = format!("{} × {}", l.quantity, self.pool_name(&l.pool_id));
                if let Some((start, end)) = self
                    .pools
                    .get(&l.pool_id)
                    .and_then(|p| p.starts_at.zip(p.ends_at))
                {
                    let day = start.to_zoned(ctx.tz.clone()).date();
                    text.push_str(&format!(
                        ", {} {}–{}",
                        ctx.tr.date(day),
                        local_time(start, &ctx.tz),
                        local_time(end, &ctx.tz)
                    ));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether every slot of the booking has started (a no-show can be
    /// marked), and it has at least one.
    fn started(&self, booking: &BookingView) -> bool {
        !booking.lines.is_empty()
            && booking.lines.iter().all(|l| {
                self.pools
                    .get(&l.pool_id)
                    .and_then(|p| p.starts_at)
                    .is_some_and(|s| s <= self.now)
            })
    }
}

/// The actions staff may take on `booking` here, as buttons. Cancel asks
/// once before it posts.
fn actions(booking: &BookingView, names: &Names, tr: Tr, back: &str) -> String {
    let me = &names.me;
    let ours = booking.charged_to == *me;
    let mine = ours || booking.owner == *me;
    let back_q: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    let path = |a: &str| format!("/staff/bookings/{}/{a}?back={back_q}", booking.id);
    let slot = names.starts(booking).is_some();
    let mut out = String::new();
    if mine && booking.state == BookingState::Held {
        out.push_str(&action_form(
            &path("confirm"),
            &tr.t("act-confirm"),
            "ok",
            true,
            None,
        ));
    }
    if mine && booking.state == BookingState::Confirmed {
        let label = if slot { "act-arrived" } else { "act-hand-over" };
        out.push_str(&action_form(
            &path("fulfil"),
            &tr.t(label),
            "ok",
            true,
            None,
        ));
        if slot && names.started(booking) {
            out.push_str(&action_form(
                &path("no-show"),
                &tr.t("act-no-show"),
                "secondary",
                true,
                None,
            ));
        }
    }
    if ours && matches!(booking.state, BookingState::Held | BookingState::Confirmed) {
        let question = tr.a(
            "act-cancel-question",
            &[
                ("code", Arg::Text(&booking.code)),
                ("name", Arg::Text(&booking.customer.name)),
            ],
        );
        let confirm = Confirm {
            question,
            yes: tr.t("act-cancel-yes"),
            no: tr.t("act-cancel-no"),
        };
        out.push_str(&action_form(
            &path("cancel"),
            &tr.t("act-cancel"),
            "danger",
            true,
            Some(&confirm),
        ));
    }
    out
}

/// A line saying what a booking waits for, or until when it holds.
fn standing(booking: &BookingView, names: &Names, ctx: &Ctx) -> String {
    let tr = ctx.tr;
    // Stock on hold is picked up by a time; anything else holds until one.
    let id = if names.starts(booking).is_none() && booking.state == BookingState::Held {
        "pickup-by-time"
    } else {
        "until-time"
    };
    let until = booking.expires_at.map(|at| {
        let time = local_time(at, &ctx.tz);
        format!(
            r#" <span class="until">{}</span> <span class="muted" data-expires="{}"></span>"#,
            h(&tr.a(id, &[("time", Arg::Text(&time))])),
            at.as_millisecond(),
        )
    });
    match booking.state {
        BookingState::Requested if booking.owner != names.me => format!(
            "{}{}",
            h(&tr.a(
                "waiting-for",
                &[("who", Arg::Text(&names.participant(&booking.owner, tr)))]
            )),
            until.unwrap_or_default()
        ),
        BookingState::Requested | BookingState::Held => until.unwrap_or_default(),
        _ => String::new(),
    }
}

fn phone_link(phone: &str) -> String {
    let dial: String = phone
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    format!(r#"<a href="tel:{}">{}</a>"#, h(&dial), h(phone))
}

/// One booking as a card in a list: who, what, when, where it stands, and
/// what can be done.
fn row(booking: &BookingView, names: &Names, ctx: &Ctx, back: &str) -> String {
    let tr = ctx.tr;
    let phone = booking
        .customer
        .phone
        .as_deref()
        .map(|p| format!(r#"<span class="phone">{}</span>"#, phone_link(p)))
        .unwrap_or_default();
    let web_waiting = booking.channel == Channel::Web && booking.state.is_open();
    let (web_attr, web_badge) = if web_waiting {
        (
            format!(r#" data-web-order="{}""#, booking.id),
            format!(
                r#"<span class="badge new">{}</span> "#,
                h(&tr.t("web-order-new"))
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"<li class="booking"{web_attr} data-code="{code}"><div class="who">{web_badge}<a class="code-link" href="/staff/bookings/{id}"><strong class="short-code">{code}</strong></a> <span class="name">{name}</span> {phone}</div><div class="what">{what}</div><div class="where"><span class="state {state_class}">{state}</span> <span class="muted">{channel}</span>{standing}</div><div class="row actions">{actions}</div></li>"#,
        id = booking.id,
        code = h(&booking.code),
        name = h(&booking.customer.name),
        what = h(&names.what(booking, ctx)),
        state_class = booking.state.as_str(),
        state = h(&tr.state(booking.state)),
        channel = h(&tr.channel(booking.channel)),
        standing = standing(booking, names, ctx),
        actions = actions(booking, names, tr, back),
    )
}

fn list(rows: Vec<String>, empty: &str) -> String {
    if rows.is_empty() {
        format!(r#"<p class="muted">{}</p>"#, h(empty))
    } else {
        format!(r#"<ul class="bookings">{}</ul>"#, rows.join(""))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct QueueQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

impl QueueQuery {
    fn path(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(q) = self.q.as_deref().filter(|q| !q.trim().is_empty()) {
            query.append_pair("q", q.trim());
        }
        if let Some(s) = &self.state {
            query.append_pair("state", s);
        }
        if let Some(a) = &self.after {
            query.append_pair("after", a);
        }
        let query = query.finish();
        if query.is_empty() {
            "/staff".into()
        } else {
            format!("/staff?{query}")
        }
    }

    fn is_search(&self) -> bool {
        self.q.as_deref().is_some_and(|q| !q.trim().is_empty()) || self.state.is_some()
    }
}

/// The live part of the queue page: the groups, or one page of a search.
async fn queue_fragment(
    state: &AppState,
    ctx: &Ctx,
    query: &QueueQuery,
) -> Result<String, PageError> {
    if query.is_search() {
        return search_fragment(state, ctx, query).await;
    }
    let tr = ctx.tr;
    let (pending, confirmed) = state
        .store
        .read(|conn| {
            Ok((
                queries::pending_bookings(conn)?,
                queries::confirmed_bookings(conn)?,
            ))
        })
        .await?;
    let all: Vec<BookingView> = pending.into_iter().chain(confirmed).collect();
    let names = Names::load(state, &all.iter().collect::<Vec<_>>()).await?;
    let mut groups = group(all, |b| names.starts(b));
    let mut out = String::new();
    for g in Group::ALL {
        let list_of = groups.remove(&g).unwrap_or_default();
        let count = list_of.len();
        let shown = match g {
            // Nothing waiting is ever left off: it would run out unseen.
            Group::WebWaiting | Group::HoldsRunningOut => count,
            Group::Pickups | Group::Classes => count.min(GROUP_SHOWN),
        };
        let rows: Vec<String> = list_of[..shown]
            .iter()
            .map(|b| row(b, &names, ctx, "/staff"))
            .collect();
        let more = if shown < count {
            format!(
                r#"<p><a href="/staff?state=confirmed">{}</a></p>"#,
                h(&tr.a("queue-show-all", &[("count", (count as i64).into())]))
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            r#"<section class="group" id="group-{id}" data-count="{count}"><h2>{title} <span class="count">{count}</span></h2>{list}{more}</section>"#,
            id = g.id(),
            title = h(&tr.t(&format!("group-{}", g.id()))),
            list = list(rows, &tr.t(&format!("group-{}-empty", g.id()))),
        ));
    }
    Ok(out)
}

/// One page of bookings matching what was typed (code, name, phone) or a
/// state, newest first, with a link to the next page.
async fn search_fragment(
    state: &AppState,
    ctx: &Ctx,
    query: &QueueQuery,
) -> Result<String, PageError> {
    let tr = ctx.tr;
    let text = query.q.as_deref().map(str::trim).unwrap_or_default();
    if text.chars().count() > SEARCH_MAX_CHARS {
        return Err(PageError::bad("search-too-long"));
    }
    let filter = BookingFilter {
        state: query.state.as_deref().and_then(BookingState::parse),
        search: (!text.is_empty()).then(|| Search::new(text)),
        after: query
            .after
            .as_deref()
            .and_then(|a| BookingId::parse(a).ok()),
        limit: SEARCH_PAGE,
    };
    let page = state
        .store
        .read(move |conn| queries::bookings(conn, &filter))
        .await?;
    let names = Names::load(state, &page.bookings.iter().collect::<Vec<_>>()).await?;
    let back = query.path();
    let rows: Vec<String> = page
        .bookings
        .iter()
        .map(|b| row(b, &names, ctx, &back))
        .collect();
    let heading = if text.is_empty() {
        tr.t("search-all")
    } else {
        tr.a("search-results", &[("q", Arg::Text(text))])
    };
    let next = page
        .next
        .map(|next| {
            let more = QueueQuery {
                q: query.q.clone(),
                state: query.state.clone(),
                after: Some(next.to_string()),
            };
            format!(
                r#"<p><a class="button secondary" href="{}">{}</a></p>"#,
                h(&more.path()),
                h(&tr.t("search-more"))
            )
        })
        .unwrap_or_default();
    Ok(format!(
        r#"<section class="group" id="results"><h2>{}</h2>{}{next}<p><a href="/staff">{}</a></p></section>"#,
        h(&heading),
        list(rows, &tr.t("search-none")),
        h(&tr.t("search-back"))
    ))
}

async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<QueueQuery>,
) -> PageResult {
    let path = query.path();
    let ctx = match signed_in(&state, &headers, Role::Staff, &path).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let live = queue_fragment(&state, &ctx, &query).await?;
    let typed = query.q.as_deref().unwrap_or_default();
    let content = format!(
        r#"<form class="search row" method="get" action="/staff" role="search">
<label class="visually-hidden" for="q">{label}</label>
<input id="q" name="q" type="search" value="{typed}" placeholder="{placeholder}" maxlength="{max}" autocomplete="off">
<button type="submit">{search}</button>
</form>
<div class="row tools"><button type="button" class="secondary" id="sound-toggle" data-on="{sound_on}" data-off="{sound_off}" aria-pressed="true">{sound_on}</button></div>
<div id="live" data-new-web-order="{new_order}">{live}</div>"#,
        label = h(&tr.t("search-label")),
        typed = h(typed),
        placeholder = h(&tr.t("search-placeholder")),
        max = SEARCH_MAX_CHARS,
        search = h(&tr.t("search-button")),
        sound_on = h(&tr.t("sound-on")),
        sound_off = h(&tr.t("sound-off")),
        new_order = h(&tr.t("web-order-arrived")),
    );
    let live_url = path.replacen("/staff", "/staff/list", 1);
    let frame = staff_frame(&state, &ctx, tr.t("staff-title"), "/staff", Some(live_url)).await?;
    Ok(render(&frame, &content))
}

async fn queue_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<QueueQuery>,
) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Staff, "/staff").await {
        Ok(ctx) => ctx,
        Err(_) => return Ok(StatusCode::UNAUTHORIZED.into_response()),
    };
    Ok(Html(queue_fragment(&state, &ctx, &query).await?).into_response())
}

async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let path = format!("/staff/bookings/{id}");
    let ctx = match signed_in(&state, &headers, Role::Staff, &path).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let id = BookingId::parse(&id).map_err(|_| PageError::not_found())?;
    let (booking, history, unsynced) = state
        .store
        .read(move |conn| {
            let Some(booking) = queries::booking(conn, &id)? else {
                return Ok(None);
            };
            let history = queries::booking_history(conn, &booking)?;
            let unsynced = queries::booking_unsynced(conn, &id)?;
            Ok(Some((booking, history, unsynced)))
        })
        .await?
        .ok_or_else(PageError::not_found)?;
    // Where the booking stands in the fleet, which only sync can say: its
    // latest change may be on this PC alone, or it may wait for another
    // store's decision.
    let enrolled = state.store.node().hub.is_some();
    let names = Names::load(&state, &[&booking]).await?;
    let confirmed_by = history
        .iter()
        .rev()
        .find(|s| s.state == BookingState::Confirmed)
        .map(|s| s.by.clone().unwrap_or_else(|| tr.t("by-device")));
    let dash = "—".to_owned();
    let mut facts: Vec<(String, String)> = vec![
        (tr.t("detail-what"), h(&names.what(&booking, &ctx))),
        (tr.t("detail-customer"), h(&booking.customer.name)),
        (
            tr.t("detail-phone"),
            booking
                .customer
                .phone
                .as_deref()
                .map_or(dash.clone(), phone_link),
        ),
        (
            tr.t("detail-email"),
            booking.customer.email.as_deref().map_or(dash.clone(), |e| {
                format!(r#"<a href="mailto:{0}">{0}</a>"#, h(e))
            }),
        ),
        (tr.t("detail-channel"), h(&tr.channel(booking.channel))),
        (
            tr.t("detail-state"),
            format!(
                r#"<span class="state {}">{}</span>"#,
                booking.state.as_str(),
                h(&tr.state(booking.state))
            ),
        ),
    ];
    if let Some(at) = booking.expires_at
        && matches!(booking.state, BookingState::Held | BookingState::Requested)
    {
        let day = at.to_zoned(ctx.tz.clone()).date();
        facts.push((
            tr.t("detail-pickup-by"),
            h(&format!("{}, {}", tr.date(day), local_time(at, &ctx.tz))),
        ));
    }
    if let Some(by) = confirmed_by {
        facts.push((tr.t("detail-confirmed-by"), h(&by)));
    }
    if booking.requested_by != names.me {
        facts.push((
            tr.t("detail-requested-by"),
            h(&names.participant(&booking.requested_by, tr)),
        ));
    }
    if let Some(reason) = &booking.reason {
        facts.push((tr.t("detail-reason"), h(reason)));
    }
    if enrolled {
        let sync = if unsynced {
            tr.t("detail-sync-local")
        } else {
            tr.t("detail-sync-hub")
        };
        facts.push((tr.t("detail-sync"), h(&sync)));
    }
    let facts: String = facts
        .into_iter()
        .map(|(k, v)| format!("<dt>{}</dt><dd>{v}</dd>", h(&k)))
        .collect();
    let steps: String = history
        .iter()
        .map(|step| {
            let day = step.at.to_zoned(ctx.tz.clone()).date();
            let by = step
                .by
                .as_deref()
                .map(|b| format!(" · {}", h(b)))
                .unwrap_or_default();
            format!(
                r#"<li><span class="state {}">{}</span> <span class="muted">{}, {}{by}</span></li>"#,
                step.state.as_str(),
                h(&tr.state(step.state)),
                h(&tr.date(day)),
                local_time(step.at, &ctx.tz)
            )
        })
        .collect();
    let content = format!(
        r#"<p><a href="/staff">{back}</a></p>
<article class="card detail" id="live-detail">
<h2>{code_label} <span class="short-code">{code}</span></h2>
<dl class="facts">{facts}</dl>
<div class="row actions">{actions}</div>
<h3>{history}</h3>
<ol class="history">{steps}</ol>
</article>"#,
        back = h(&tr.t("detail-back")),
        code_label = h(&tr.t("detail-code")),
        code = h(&booking.code),
        actions = actions(&booking, &names, tr, &path),
        history = h(&tr.t("detail-history")),
    );
    let title = tr.a("detail-title", &[("code", Arg::Text(&booking.code))]);
    let frame = staff_frame(&state, &ctx, title, &path, None).await?;
    Ok(render(&frame, &content))
}

#[derive(Debug, Default, serde::Deserialize)]
struct ActQuery {
    #[serde(default)]
    back: Option<String>,
    #[serde(default)]
    sure: Option<String>,
}

async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Query(query): Query<ActQuery>,
    body: Bytes,
) -> PageResult {
    let back = query
        .back
        .clone()
        .filter(|b| super::is_local_path(b))
        .unwrap_or_else(|| "/staff".into());
    let ctx = match signed_in(&state, &headers, Role::Staff, &back).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let id = BookingId::parse(&id).map_err(|_| PageError::not_found())?;
    let action = match action.as_str() {
        "confirm" => Action::Confirm,
        "cancel" => Action::Cancel,
        "fulfil" => Action::Fulfil,
        "no-show" => Action::NoShow,
        _ => return Err(PageError::not_found()),
    };
    let fields = form(&body);
    let sure = query.sure.as_deref() == Some("1") || field(&fields, "sure") == "1";
    // Cancelling asks once: without the script's question, a page asks.
    if action == Action::Cancel && !sure {
        let booking = state
            .store
            .read(move |conn| queries::booking(conn, &id))
            .await?
            .ok_or_else(PageError::not_found)?;
        let back_q: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
        let content = format!(
            r#"<div class="card narrow"><h2>{question}</h2>
<form method="post" action="/staff/bookings/{id}/cancel?back={back_q}&amp;sure=1"><div class="row"><button class="danger" type="submit">{yes}</button><a class="button secondary" href="{back}">{no}</a></div></form></div>"#,
            question = h(&tr.a(
                "act-cancel-question",
                &[
                    ("code", Arg::Text(&booking.code)),
                    ("name", Arg::Text(&booking.customer.name)),
                ],
            )),
            yes = h(&tr.t("act-cancel-yes")),
            back = h(&back),
            no = h(&tr.t("act-cancel-no")),
        );
        let frame = staff_frame(&state, &ctx, tr.t("act-cancel"), "/staff", None).await?;
        return Ok(render(&frame, &content));
    }
    let by = ctx.session.user_name.clone();
    let view = state
        .store
        .write(move |w| crate::store::ops::transition(w, &id, action, by))
        .await?;
    if is_inline(&headers) {
        let done = tr.a(
            "act-done",
            &[
                ("code", Arg::Text(&view.code)),
                ("state", Arg::Text(&tr.state(view.state))),
            ],
        );
        return Ok(done.into_response());
    }
    Ok(Redirect::to(&back).into_response())
}

/// Slots from earlier today to two weeks ahead, each with how many are
/// booked, linking to its roster.
async fn slots(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Staff, "/staff/slots").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let now = state.store.now_ms();
    let catalog = super::catalog(
        &state,
        Some(now - ROSTER_LOOKBACK_MS),
        Some(now + ROSTER_DAYS_AHEAD * 86_400_000),
    )
    .await?;
    let me = state.store.node().participant();
    let mut slots: Vec<(&PoolView, &ResourceView)> = catalog
        .pools
        .iter()
        .filter(|p| p.owner == me && p.starts_at.is_some())
        .filter_map(|p| catalog.resource_of(p).map(|r| (p, r)))
        .filter(|(_, r)| r.kind == ResourceKind::Slot)
        .collect();
    slots.sort_by_key(|(p, r)| (p.starts_at, r.name.clone()));
    let mut out = String::new();
    let mut day_open = None;
    for (pool, resource) in slots {
        let (Some(start), Some(end)) = (pool.starts_at, pool.ends_at) else {
            continue;
        };
        let day = start.to_zoned(ctx.tz.clone()).date();
        if day_open != Some(day) {
            if day_open.is_some() {
                out.push_str("</ul>");
            }
            out.push_str(&format!(
                r#"<h2>{}</h2><ul class="slots">"#,
                h(&tr.date(day))
            ));
            day_open = Some(day);
        }
        out.push_str(&format!(
            r#"<li><a class="slot-link" href="/staff/slots/{id}">{from}–{to} · {name}</a> <span class="muted">{booked}</span></li>"#,
            id = h(pool.id.as_str()),
            from = local_time(start, &ctx.tz),
            to = local_time(end, &ctx.tz),
            name = h(&resource.name),
            booked = h(&tr.a(
                "roster-booked-of",
                &[("used", pool.used.into()), ("capacity", pool.capacity.into())]
            )),
        ));
    }
    if day_open.is_some() {
        out.push_str("</ul>");
    } else {
        out.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("roster-no-slots"))
        ));
    }
    let frame = staff_frame(
        &state,
        &ctx,
        tr.t("roster-list-title"),
        "/staff/slots",
        None,
    )
    .await?;
    Ok(render(&frame, &out))
}

async fn roster(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let path = format!("/staff/slots/{id}");
    let ctx = match signed_in(&state, &headers, Role::Staff, &path).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let pool_id = PoolId::parse(&id).map_err(|_| PageError::not_found())?;
    let (pool, booked) = state
        .store
        .read({
            let pool_id = pool_id.clone();
            move |conn| {
                Ok((
                    queries::pool(conn, &pool_id)?,
                    queries::roster(conn, &pool_id)?,
                ))
            }
        })
        .await?;
    let pool = pool.ok_or_else(PageError::not_found)?;
    let (Some(start), Some(end)) = (pool.starts_at, pool.ends_at) else {
        return Err(PageError::bad("roster-not-a-slot"));
    };
    let names = Names::load(&state, &booked.iter().collect::<Vec<_>>()).await?;
    let rows: Vec<String> = booked.iter().map(|b| row(b, &names, &ctx, &path)).collect();
    let day = start.to_zoned(ctx.tz.clone()).date();
    let people: i64 = booked
        .iter()
        .filter(|b| b.state.consumes_units())
        .flat_map(|b| b.lines.iter().filter(|l| l.pool_id == pool_id))
        .map(|l| l.quantity)
        .sum();
    let started = start.as_millisecond() <= state.store.now_ms();
    let content = format!(
        r#"<p><a href="/staff/slots">{back}</a></p>
<h2>{name}</h2>
<p>{when}</p>
<p class="muted">{booked}{started}</p>
<div id="live">{list}</div>"#,
        back = h(&tr.t("roster-back")),
        name = h(&names.pool_name(&pool_id)),
        when = h(&format!(
            "{}, {}–{}",
            tr.date(day),
            local_time(start, &ctx.tz),
            local_time(end, &ctx.tz)
        )),
        booked = h(&tr.a(
            "roster-people",
            &[("count", people.into()), ("capacity", pool.capacity.into())]
        )),
        started = if started {
            format!(" · {}", h(&tr.t("roster-started")))
        } else {
            String::new()
        },
        list = list(rows, &tr.t("roster-empty")),
    );
    let title = tr.t("roster-title");
    let frame = staff_frame(&state, &ctx, title, &path, None).await?;
    Ok(render(&frame, &content))
}

#[cfg(test)]
mod tests {
    use shared::{Customer, Line};

    use super::*;

    fn booking(state: BookingState, channel: Channel, expires: Option<i64>) -> BookingView {
        let at = Timestamp::from_millisecond(1_000).expect("ts");
        BookingView {
            id: BookingId::generate(),
            code: "ABC123".into(),
            state,
            lines: vec![Line {
                pool_id: PoolId::parse("berlin:beans").expect("pool"),
                quantity: 1,
            }],
            customer: Customer {
                name: "Ada".into(),
                phone: None,
                email: None,
            },
            channel,
            owner: ParticipantId::parse("berlin").expect("p"),
            requested_by: ParticipantId::parse("berlin").expect("p"),
            charged_to: ParticipantId::parse("berlin").expect("p"),
            expires_at: expires.map(|ms| Timestamp::from_millisecond(ms).expect("ts")),
            reason: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn every_open_booking_lands_in_exactly_one_group_and_closed_ones_in_none() {
        let slot = Some(Timestamp::from_millisecond(5_000).expect("ts"));
        use BookingState as S;
        assert_eq!(
            group_of(&booking(S::Held, Channel::Web, Some(9)), None),
            Some(Group::WebWaiting)
        );
        assert_eq!(
            group_of(&booking(S::Requested, Channel::Web, Some(9)), None),
            Some(Group::WebWaiting)
        );
        assert_eq!(
            group_of(&booking(S::Held, Channel::Kiosk, Some(9)), slot),
            Some(Group::HoldsRunningOut)
        );
        assert_eq!(
            group_of(&booking(S::Confirmed, Channel::Staff, None), slot),
            Some(Group::Classes)
        );
        assert_eq!(
            group_of(&booking(S::Confirmed, Channel::Web, None), None),
            Some(Group::Pickups)
        );
        for closed in [
            S::Fulfilled,
            S::Cancelled,
            S::Expired,
            S::Rejected,
            S::NoShow,
        ] {
            assert_eq!(group_of(&booking(closed, Channel::Kiosk, None), None), None);
        }
    }

    #[test]
    fn holds_are_listed_soonest_to_run_out_first() {
        let later = booking(BookingState::Held, Channel::Kiosk, Some(9_000));
        let sooner = booking(BookingState::Held, Channel::Kiosk, Some(2_000));
        let groups = group(vec![later.clone(), sooner.clone()], |_| None);
        let holds: Vec<_> = groups[&Group::HoldsRunningOut]
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(holds, vec![sooner.id, later.id]);
    }
}
