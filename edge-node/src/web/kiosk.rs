//! The kiosk: a customer reserves stock for pickup or a place in a slot,
//! and leaves with a code. It speaks to customers only: the store's name,
//! what can be booked, and no sync state (a kiosk books on this PC whether
//! the internet is up or not). Leaving kiosk mode takes a staff PIN.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use jiff::civil::Date;
use qrcode::QrCode;
use qrcode::render::svg;
use shared::event::ResourceKind;
use shared::protocol::CreateBooking;
use shared::{BookingId, BookingState, Channel, Customer, Line, PoolId};

use super::html::{Frame, h, local_time};
use super::i18n::{Arg, Tr};
use super::{Catalog, Ctx, PageError, PageResult, catalog, field, form, render, signed_in};
use crate::auth::Role;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::ops::{self, NewBooking};
use crate::store::queries::{self, PoolView};

/// How long a kiosk reservation of stock is kept for pickup.
const PICKUP_HOLD_SECONDS: i64 = 2 * 3600;
/// How long a kiosk reservation of a slot waits for staff to confirm it
/// (the customer pays at the counter).
const SLOT_HOLD_SECONDS: i64 = 30 * 60;

/// Slots the kiosk shows ahead.
const KIOSK_DAYS_AHEAD: i64 = 14;

/// The most a customer reserves at once at the kiosk.
const KIOSK_QUANTITY_MAX: i64 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/kiosk", get(kiosk))
        .route("/kiosk/list", get(kiosk_list))
        .route("/kiosk/book", post(kiosk_book))
        .route("/kiosk/booked/{id}", get(kiosk_booked))
        .route("/kiosk/staff", get(kiosk_staff))
}

#[derive(Debug, Default, serde::Deserialize)]
struct DayQuery {
    #[serde(default)]
    day: Option<String>,
}

/// What the kiosk offers: stock to pick up, and slots by local day.
struct Offer<'a> {
    stock: Vec<(&'a str, &'a PoolView)>,
    /// Days with slots, in order, each with its slots in order of start.
    days: Vec<(Date, Vec<(&'a str, &'a PoolView)>)>,
}

/// Sorts the kiosk's offer: days in order, times in order within a day,
/// then by name. Pure, so its order is tested without a page.
fn offer<'a>(
    catalog: &'a Catalog,
    me: &shared::ParticipantId,
    tz: &jiff::tz::TimeZone,
) -> Offer<'a> {
    let mut stock = Vec::new();
    let mut slots: Vec<(jiff::Timestamp, &str, &PoolView)> = Vec::new();
    for pool in catalog.pools.iter().filter(|p| p.owner == *me) {
        let Some(resource) = catalog.resource_of(pool) else {
            continue;
        };
        match (resource.kind, pool.starts_at) {
            (ResourceKind::Stock, _) => stock.push((resource.name.as_str(), pool)),
            (ResourceKind::Slot, Some(start)) => slots.push((start, &resource.name, pool)),
            (ResourceKind::Slot, None) => {}
        }
    }
    stock.sort_by(|a, b| a.0.cmp(b.0));
    slots.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut days: Vec<(Date, Vec<(&str, &PoolView)>)> = Vec::new();
    for (start, name, pool) in slots {
        let day = start.to_zoned(tz.clone()).date();
        match days.last_mut() {
            Some((d, list)) if *d == day => list.push((name, pool)),
            _ => days.push((day, vec![(name, pool)])),
        }
    }
    Offer { stock, days }
}

/// The kiosk's reservation form: a pending hold that staff confirm at the
/// counter (stock is kept for pickup, a slot until the customer pays).
fn book_form(tr: Tr, pool: &PoolView, stock: bool, day: Option<Date>) -> String {
    let max = pool.available.clamp(1, KIOSK_QUANTITY_MAX);
    let id = h(pool.id.as_str());
    let (label, note) = if stock {
        (tr.t("kiosk-reserve-pickup"), tr.t("kiosk-pickup-note"))
    } else {
        (tr.t("kiosk-reserve"), tr.t("kiosk-slot-note"))
    };
    let day = day
        .map(|d| format!(r#"<input type="hidden" name="day" value="{d}">"#))
        .unwrap_or_default();
    format!(
        r#"<details><summary>{summary}</summary>
<form method="post" action="/kiosk/book" class="book">
<input type="hidden" name="pool_id" value="{id}">{day}
<label for="q-{id}">{how_many}</label><input id="q-{id}" name="quantity" type="number" min="1" max="{max}" value="1" required>
<label for="n-{id}">{your_name}</label><input id="n-{id}" name="name" autocomplete="name" required maxlength="200">
<label for="p-{id}">{phone}</label><input id="p-{id}" name="phone" type="tel" autocomplete="tel" maxlength="40">
<p class="muted">{note}</p>
<div class="row"><button type="submit">{label}</button></div>
</form></details>"#,
        summary = h(&tr.t("kiosk-reserve")),
        how_many = h(&tr.t("kiosk-how-many")),
        your_name = h(&tr.t("kiosk-your-name")),
        phone = h(&tr.t("kiosk-phone")),
        note = h(&note),
        label = h(&label),
    )
}

fn left(tr: Tr, pool: &PoolView, stock: bool, day: Option<Date>) -> String {
    if pool.available > 0 {
        format!(
            r#"<p class="left">{}</p>{}"#,
            h(&tr.a("kiosk-available", &[("count", pool.available.into())])),
            book_form(tr, pool, stock, day)
        )
    } else {
        format!(r#"<p class="soldout">{}</p>"#, h(&tr.t("kiosk-sold-out")))
    }
}

/// The live part of the kiosk: what can be booked, for the chosen day.
async fn kiosk_fragment(
    state: &AppState,
    ctx: &Ctx,
    wanted: Option<Date>,
) -> Result<String, PageError> {
    let tr = ctx.tr;
    let now = state.store.now_ms();
    let catalog = catalog(state, Some(now), Some(now + KIOSK_DAYS_AHEAD * 86_400_000)).await?;
    let me = state.store.node().participant();
    let offer = offer(&catalog, &me, &ctx.tz);
    let mut content = String::new();
    content.push_str(&format!("<h2>{}</h2>", h(&tr.t("kiosk-pickup"))));
    if offer.stock.is_empty() {
        content.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("kiosk-nothing-to-pick-up"))
        ));
    } else {
        content.push_str(r#"<div class="grid">"#);
        for (name, pool) in &offer.stock {
            content.push_str(&format!(
                r#"<div class="card"><h3>{}</h3>{}</div>"#,
                h(name),
                left(tr, pool, true, None)
            ));
        }
        content.push_str("</div>");
    }
    content.push_str(&format!("<h2>{}</h2>", h(&tr.t("kiosk-slots"))));
    if offer.days.is_empty() {
        content.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("kiosk-no-slots"))
        ));
        return Ok(content);
    }
    let chosen = wanted
        .filter(|d| offer.days.iter().any(|(day, _)| day == d))
        .unwrap_or(offer.days[0].0);
    // The day picker: one tap per day, the chosen one marked.
    content.push_str(&format!(
        r#"<nav class="days" aria-label="{}">"#,
        h(&tr.t("kiosk-days"))
    ));
    for (day, _) in &offer.days {
        let current = if *day == chosen {
            r#" aria-current="date""#
        } else {
            ""
        };
        content.push_str(&format!(
            r#"<a class="day" href="/kiosk?day={day}"{current}>{}</a>"#,
            h(&tr.day_short(*day))
        ));
    }
    content.push_str("</nav>");
    if let Some((day, slots)) = offer.days.iter().find(|(d, _)| *d == chosen) {
        content.push_str(&format!(
            r#"<h3 id="chosen-day">{}</h3><div class="grid">"#,
            h(&tr.date(*day))
        ));
        for (name, pool) in slots {
            let (Some(start), Some(end)) = (pool.starts_at, pool.ends_at) else {
                continue;
            };
            content.push_str(&format!(
                r#"<div class="card slot" data-starts="{}"><h3>{}–{} · {}</h3>{}</div>"#,
                start.as_millisecond(),
                local_time(start, &ctx.tz),
                local_time(end, &ctx.tz),
                h(name),
                left(tr, pool, false, Some(*day))
            ));
        }
        content.push_str("</div>");
    }
    Ok(content)
}

fn kiosk_frame<'a>(
    state: &AppState,
    ctx: &'a Ctx,
    title: String,
    path: &'a str,
    live: Option<String>,
) -> Frame<'a> {
    Frame {
        tr: ctx.tr,
        title,
        store: &ctx.store,
        // No sign-out: a customer must not leave kiosk mode.
        who: None,
        banner: String::new(),
        live,
        nav: Vec::new(),
        body_attrs: format!(
            r#" class="kiosk" data-idle="{}""#,
            state.store.settings().kiosk_idle_seconds
        ),
        path,
    }
}

fn parse_day(day: Option<&str>) -> Option<Date> {
    day.and_then(|d| d.parse().ok())
}

async fn kiosk_page(
    state: &AppState,
    ctx: &Ctx,
    day: Option<Date>,
    notice: Option<String>,
) -> PageResult {
    let live_url = match day {
        Some(d) => format!("/kiosk/list?day={d}"),
        None => "/kiosk/list".to_owned(),
    };
    let fragment = kiosk_fragment(state, ctx, day).await?;
    let notice = notice
        .map(|n| format!(r#"<div class="alert bad" role="alert">{}</div>"#, h(&n)))
        .unwrap_or_default();
    let content = format!(
        r#"{notice}<div id="live">{fragment}</div><p class="leave"><a href="/kiosk/staff">{}</a></p>"#,
        h(&ctx.tr.t("kiosk-staff-link"))
    );
    let frame = kiosk_frame(
        state,
        ctx,
        ctx.tr.t("kiosk-title"),
        "/kiosk",
        Some(live_url),
    );
    Ok(render(&frame, &content))
}

async fn kiosk(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DayQuery>,
) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Kiosk, "/kiosk").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    kiosk_page(&state, &ctx, parse_day(q.day.as_deref()), None).await
}

async fn kiosk_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DayQuery>,
) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Kiosk, "/kiosk").await {
        Ok(ctx) => ctx,
        Err(_) => return Ok(StatusCode::UNAUTHORIZED.into_response()),
    };
    let fragment = kiosk_fragment(&state, &ctx, parse_day(q.day.as_deref())).await?;
    Ok(axum::response::Html(fragment).into_response())
}

async fn kiosk_book(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Kiosk, "/kiosk").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let fields = form(&body);
    let day = parse_day(Some(field(&fields, "day")));
    let Ok(pool) = PoolId::parse(field(&fields, "pool_id")) else {
        return kiosk_page(&state, &ctx, day, Some(tr.t("kiosk-gone"))).await;
    };
    let quantity: i64 = field(&fields, "quantity").parse().unwrap_or(0);
    if !(1..=KIOSK_QUANTITY_MAX).contains(&quantity) {
        let max = KIOSK_QUANTITY_MAX;
        return kiosk_page(
            &state,
            &ctx,
            day,
            Some(tr.a("kiosk-quantity", &[("max", max.into())])),
        )
        .await;
    }
    let name = field(&fields, "name");
    if name.is_empty() {
        return kiosk_page(&state, &ctx, day, Some(tr.t("kiosk-name-needed"))).await;
    }
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
            name: name.to_owned(),
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
    let channel = match ctx.session.role {
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
            kiosk_page(&state, &ctx, day, Some(tr.t("kiosk-just-sold-out"))).await
        }
        Err(StoreError::BookingInput(_)) => {
            kiosk_page(&state, &ctx, day, Some(tr.t("kiosk-check-input"))).await
        }
        Err(e) if !e.is_internal() => kiosk_page(&state, &ctx, day, Some(tr.t("kiosk-gone"))).await,
        Err(e) => Err(e.into()),
    }
}

/// The code as a QR code, drawn as SVG on the server (no script, no
/// network): staff scan it into the search box.
fn qr_svg(code: &str) -> String {
    match QrCode::new(code.as_bytes()) {
        Ok(qr) => qr
            .render::<svg::Color<'_>>()
            .min_dimensions(160, 160)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

async fn kiosk_booked(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Kiosk, "/kiosk").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let id = BookingId::parse(&id).map_err(|_| PageError::not_found())?;
    let booking = state
        .store
        .read(move |conn| queries::booking(conn, &id))
        .await?
        .ok_or_else(PageError::not_found)?;
    let catalog = catalog(&state, None, None).await?;
    let today = jiff::Timestamp::from_millisecond(state.store.now_ms())
        .unwrap_or_default()
        .to_zoned(ctx.tz.clone())
        .date();
    // What was booked and for when, line by line.
    let mut what = String::new();
    for line in &booking.lines {
        let pool = catalog.pool(&line.pool_id);
        let name = pool
            .and_then(|p| catalog.resource_of(p))
            .map_or(line.pool_id.as_str(), |r| r.name.as_str());
        let when = match pool.and_then(|p| p.starts_at.zip(p.ends_at)) {
            Some((start, end)) => {
                let day = start.to_zoned(ctx.tz.clone()).date();
                tr.a(
                    "kiosk-booked-when",
                    &[
                        ("day", Arg::Text(&tr.date(day))),
                        ("from", Arg::Text(&local_time(start, &ctx.tz))),
                        ("to", Arg::Text(&local_time(end, &ctx.tz))),
                    ],
                )
            }
            None => tr.t("kiosk-booked-pickup"),
        };
        what.push_str(&format!(
            r#"<li><strong>{} × {}</strong><br>{}</li>"#,
            line.quantity,
            h(name),
            h(&when)
        ));
    }
    let until = booking.expires_at.map(|t| {
        let day = t.to_zoned(ctx.tz.clone()).date();
        let time = local_time(t, &ctx.tz);
        if day == today {
            time
        } else {
            format!("{}, {time}", tr.date(day))
        }
    });
    let status = match (booking.state, until) {
        (BookingState::Held, Some(until)) => {
            tr.a("kiosk-held-until", &[("until", Arg::Text(&until))])
        }
        (BookingState::Confirmed, _) => tr.t("kiosk-confirmed"),
        (other, _) => tr.a("kiosk-now", &[("state", Arg::Text(&tr.state(other)))]),
    };
    let code_spaced = booking
        .code
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(" ");
    let content = format!(
        r#"<meta http-equiv="refresh" content="{idle};url=/kiosk">
<div class="card centered booked">
<h2>{thanks}</h2>
<ul class="what">{what}</ul>
<p class="alert good">{status}</p>
<p>{your_code}</p>
<p class="code" aria-label="{code_label}">{code}</p>
<div class="qr" role="img" aria-label="{qr_label}">{qr}</div>
<p><a class="button" href="/kiosk">{done}</a></p>
</div>"#,
        idle = state.store.settings().kiosk_idle_seconds,
        thanks = h(&tr.a(
            "kiosk-thanks",
            &[("name", Arg::Text(&booking.customer.name))]
        )),
        status = h(&status),
        your_code = h(&tr.t("kiosk-your-code")),
        code_label = h(&tr.a("kiosk-code-label", &[("code", Arg::Text(&code_spaced))])),
        code = h(&booking.code),
        qr_label = h(&tr.t("kiosk-qr-label")),
        qr = qr_svg(&booking.code),
        done = h(&tr.t("kiosk-done")),
    );
    let frame = kiosk_frame(&state, &ctx, tr.t("kiosk-booked-title"), "/kiosk", None);
    Ok(render(&frame, &content))
}

/// Leaving kiosk mode: a staff member signs in on this device with their
/// name and PIN (the sign-in's own throttling applies), which ends the
/// kiosk's session.
async fn kiosk_staff(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Kiosk, "/kiosk").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let content = format!(
        r#"<form class="card narrow" method="post" action="/signin">
<h2>{heading}</h2>
<p class="muted">{explain}</p>
<input type="hidden" name="next" value="/staff">
<label for="name">{name}</label><input id="name" name="name" autocomplete="username" required maxlength="100">
<label for="pin">{pin}</label><input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password" required maxlength="12">
<div class="row"><button type="submit">{go}</button><a class="button secondary" href="/kiosk">{back}</a></div>
</form>"#,
        heading = h(&tr.t("kiosk-leave-heading")),
        explain = h(&tr.t("kiosk-leave-explain")),
        name = h(&tr.t("signin-name")),
        pin = h(&tr.t("signin-pin")),
        go = h(&tr.t("kiosk-leave-go")),
        back = h(&tr.t("kiosk-leave-back")),
    );
    let frame = kiosk_frame(
        &state,
        &ctx,
        tr.t("kiosk-leave-title"),
        "/kiosk/staff",
        None,
    );
    Ok(render(&frame, &content))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use shared::event::ResourceKind;
    use shared::{ParticipantId, PoolId, ResourceId};

    use super::*;
    use crate::store::queries::ResourceView;

    fn pool(id: &str, resource: &str, starts: Option<&str>) -> PoolView {
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("ts");
        PoolView {
            id: PoolId::parse(id).expect("pool"),
            resource_id: ResourceId::parse(resource).expect("resource"),
            owner: ParticipantId::parse("berlin").expect("me"),
            capacity: 10,
            allotted: 10,
            used: 0,
            available: 10,
            overbooked: false,
            allotments: Vec::new(),
            starts_at: starts.map(at),
            ends_at: starts.map(|s| at(s) + jiff::SignedDuration::from_hours(1)),
            updated_at: at("2026-11-20T00:00:00Z"),
        }
    }

    #[test]
    fn days_and_times_come_in_order_whatever_order_the_pools_do() {
        let resource = |id: &str, name: &str, kind| {
            (
                id.to_owned(),
                ResourceView {
                    id: ResourceId::parse(id).expect("id"),
                    owner: ParticipantId::parse("berlin").expect("me"),
                    name: name.into(),
                    kind,
                    created_at: "2026-11-20T00:00:00Z".parse().expect("ts"),
                },
            )
        };
        let catalog = Catalog {
            resources: HashMap::from([
                resource("berlin:class", "Barista class", ResourceKind::Slot),
                resource("berlin:table", "Table", ResourceKind::Slot),
                resource("berlin:beans", "Beans", ResourceKind::Stock),
            ]),
            pools: vec![
                pool(
                    "berlin:class:1",
                    "berlin:class",
                    Some("2026-12-05T13:00:00Z"),
                ),
                pool(
                    "berlin:class:2",
                    "berlin:class",
                    Some("2026-11-28T13:00:00Z"),
                ),
                pool(
                    "berlin:table:1",
                    "berlin:table",
                    Some("2026-11-28T09:00:00Z"),
                ),
                pool(
                    "berlin:table:2",
                    "berlin:table",
                    Some("2026-11-29T09:00:00Z"),
                ),
                pool("berlin:beans", "berlin:beans", None),
            ],
        };
        let me = ParticipantId::parse("berlin").expect("me");
        let tz = super::super::html::zone("Europe/Berlin");
        let offer = offer(&catalog, &me, &tz);
        let days: Vec<String> = offer.days.iter().map(|(d, _)| d.to_string()).collect();
        assert_eq!(days, ["2026-11-28", "2026-11-29", "2026-12-05"]);
        let first: Vec<&str> = offer.days[0].1.iter().map(|(_, p)| p.id.as_str()).collect();
        assert_eq!(first, ["berlin:table:1", "berlin:class:2"]);
        assert_eq!(offer.stock.len(), 1);
    }

    #[test]
    fn the_code_is_drawn_as_a_qr_code() {
        let svg = qr_svg("7KQ2MX");
        assert!(svg.starts_with("<?xml") || svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path") || svg.contains("<rect"));
    }
}
