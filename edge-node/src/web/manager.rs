//! The manager's pages: resources, stock and slot pools, recurring slots,
//! stock adjustments, allotments for the website and other locations, and the quarantine.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use jiff::civil::{Date, Time, Weekday};
use shared::event::ResourceKind;
use shared::slots::{SlotRule, generate};
use shared::{ParticipantId, PoolId, ResourceId};

use super::html::{Frame, button_form, h, local_day, local_time, page, zone};
use super::{PageError, PageResult, catalog, field, form, frame_parts};
use crate::auth::{self, Role};
use crate::state::{AppState, Session};
use crate::store::ops::{self, NewPool, NewResource};
use crate::store::{StoreError, queries};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/manager", get(manager))
        .route("/manager/resources", post(add_resource))
        .route("/manager/pools", post(add_stock_pool))
        .route("/manager/slots", post(add_slots))
        .route("/manager/pools/{id}/{action}", post(pool_action))
        .route("/manager/quarantine/{id}/{action}", post(quarantine_action))
        .route("/manager/users/{id}/unlock", post(unlock_user))
}

fn bad(message: impl Into<String>) -> PageError {
    PageError(StatusCode::BAD_REQUEST, message.into())
}

const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Monday, "Mon"),
    (Weekday::Tuesday, "Tue"),
    (Weekday::Wednesday, "Wed"),
    (Weekday::Thursday, "Thu"),
    (Weekday::Friday, "Fri"),
    (Weekday::Saturday, "Sat"),
    (Weekday::Sunday, "Sun"),
];

async fn manager(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let Some(session) = Session::require(&state, &headers, Role::Manager).await else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let now = state.store.now_ms();
    let catalog = catalog(&state, Some(now), None).await?;
    let quarantine = state.store.read(queries::quarantine).await?;
    let locked = state
        .store
        .read(move |conn| auth::locked_users(conn, now))
        .await?;
    let set_aside = state
        .store
        .read(|conn| Ok((queries::set_aside(conn)?, queries::set_aside_count(conn)?)))
        .await?;
    let known = state.store.read(queries::known_locations).await?;
    // Who units can go to: the website, and the locations the hub
    // introduced. A select only when there is a choice.
    let recipients = |prefix: &str, id: &str| -> String {
        if known.is_empty() {
            return r#"<input type="hidden" name="to" value="hub">"#.to_owned();
        }
        let options: String =
            std::iter::once(r#"<option value="hub">the website</option>"#.to_owned())
                .chain(known.iter().map(|k| {
                    format!(
                        r#"<option value="{}">{}</option>"#,
                        h(k.id.as_str()),
                        h(&k.name)
                    )
                }))
                .collect();
        format!(
            r#"<label class="visually-hidden" for="{prefix}t-{id}">Who</label><select id="{prefix}t-{id}" name="to">{options}</select>"#
        )
    };
    let tz = zone(&state.store.node().timezone);
    let me = state.store.node().participant();
    let mut resources: Vec<_> = catalog
        .resources
        .values()
        .filter(|r| r.owner == me)
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name));

    let mut content = String::from(r#"<p><a href="/staff">Staff view</a></p><h2>Catalog</h2>"#);
    for resource in &resources {
        let pools: Vec<_> = catalog
            .pools
            .iter()
            .filter(|p| p.resource_id == resource.id)
            .collect();
        let mut rows = String::new();
        for pool in pools.iter().take(20) {
            let when = match (pool.starts_at, pool.ends_at) {
                (Some(s), Some(e)) => format!(
                    "{} {}–{}",
                    local_day(s, &tz),
                    local_time(s, &tz),
                    local_time(e, &tz)
                ),
                _ => "stock".into(),
            };
            let given: Vec<String> = pool
                .allotments
                .iter()
                .map(|a| match &a.to {
                    ParticipantId::Hub => format!("website {}", a.units),
                    other => {
                        let name = known
                            .iter()
                            .find(|k| k.id.as_str() == other.as_str())
                            .map_or(other.as_str(), |k| k.name.as_str());
                        format!("{} {}", h(name), a.units)
                    }
                })
                .collect();
            let given = if given.is_empty() {
                "0".to_owned()
            } else {
                given.join(", ")
            };
            let id = h(pool.id.as_str());
            let (give_to, take_from) = (recipients("a", &id), recipients("r", &id));
            let (give, take) = if known.is_empty() {
                ("Give to website", "Take back from website")
            } else {
                ("Give", "Take back")
            };
            rows.push_str(&format!(
                r#"<tr><td>{when}</td><td>{cap}</td><td>{avail}{over}</td><td>{given}</td><td>
<div class="tools">
<form method="post" action="/manager/pools/{id}/adjust"><label class="visually-hidden" for="d-{id}">Change stock by</label><input id="d-{id}" name="delta" type="number" placeholder="± units" required><button type="submit" class="secondary">Adjust stock</button></form>
<form method="post" action="/manager/pools/{id}/allot"><label class="visually-hidden" for="a-{id}">Units to give</label><input id="a-{id}" name="units" type="number" min="1" placeholder="units" required>{give_to}<button type="submit" class="secondary">{give}</button></form>
<form method="post" action="/manager/pools/{id}/recall"><label class="visually-hidden" for="r-{id}">Units to take back</label><input id="r-{id}" name="units" type="number" min="1" placeholder="units" required>{take_from}<button type="submit" class="secondary">{take}</button></form>
</div></td></tr>"#,
                cap = pool.capacity,
                avail = pool.available,
                over = if pool.overbooked { " ⚠ overbooked" } else { "" },
            ));
        }
        content.push_str(&format!(
            r#"<div class="card"><h3>{} <span class="muted">({})</span></h3>{}</div>"#,
            h(&resource.name),
            resource.kind.as_str(),
            if rows.is_empty() {
                r#"<p class="muted">No pools yet.</p>"#.to_owned()
            } else {
                format!(
                    r#"<table><thead><tr><th>When</th><th>Capacity</th><th>Available here</th><th>Given out</th><th>Change</th></tr></thead><tbody>{rows}</tbody></table>"#
                )
            }
        ));
    }
    let options = |kind: ResourceKind| {
        resources
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                format!(
                    r#"<option value="{}">{}</option>"#,
                    h(r.id.as_str()),
                    h(&r.name)
                )
            })
            .collect::<String>()
    };
    let weekday_checks: String = WEEKDAYS
        .iter()
        .enumerate()
        .map(|(i, (_, label))| {
            format!(
                r#"<label><input type="checkbox" name="weekday" value="{label}"{}> {label}</label>"#,
                if i < 5 { " checked" } else { "" }
            )
        })
        .collect();
    let today = jiff::Timestamp::from_millisecond(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date();
    content.push_str(&format!(
        r#"<h2>Add</h2><div class="grid">
<form class="card" method="post" action="/manager/resources"><h3>New item or class</h3>
<label for="rn">Name</label><input id="rn" name="name" required maxlength="200">
<label for="rk">Kind</label><select id="rk" name="kind"><option value="stock">Stock item (pickup)</option><option value="slot">Time slots (class, table, room)</option></select>
<p><button type="submit">Add</button></p></form>
<form class="card" method="post" action="/manager/pools"><h3>Stock for an item</h3>
<label for="sr">Item</label><select id="sr" name="resource_id">{stock}</select>
<label for="sc">Units in stock</label><input id="sc" name="capacity" type="number" min="0" required>
<p><button type="submit">Set up stock</button></p></form>
<form class="card" method="post" action="/manager/slots"><h3>Recurring slots</h3>
<label for="lr">For</label><select id="lr" name="resource_id">{slot}</select>
<fieldset class="checks"><legend>Days</legend>{weekday_checks}</fieldset>
<label for="lt">Times, local ({zone})</label><input id="lt" name="times" value="07:00, 18:30" required>
<label for="ld">Minutes each</label><input id="ld" name="minutes" type="number" min="1" value="60" required>
<label for="lc">Places each</label><input id="lc" name="capacity" type="number" min="1" value="12" required>
<label for="lf">From</label><input id="lf" name="from" type="date" value="{today}" required>
<label for="lu">Until</label><input id="lu" name="until" type="date" value="{until}" required>
<p><button type="submit">Create slots</button></p></form>
</div>"#,
        stock = options(ResourceKind::Stock),
        slot = options(ResourceKind::Slot),
        zone = h(&state.store.node().timezone),
        until = today.checked_add(jiff::ToSpan::weeks(4)).unwrap_or(today),
    ));
    content.push_str("<h2>Quarantine</h2>");
    let pending: Vec<_> = quarantine
        .iter()
        .filter(|q| q.status == "pending")
        .collect();
    if pending.is_empty() {
        content.push_str(r#"<p class="muted">Nothing set aside. (A reset after restoring an old backup puts events of this store that the hub never had here, for review.)</p>"#);
    } else {
        content.push_str(
            r#"<table><thead><tr><th>When</th><th>What</th><th>Decide</th></tr></thead><tbody>"#,
        );
        for q in pending {
            let what = match q.kind.as_str() {
                "booking_created" => format!(
                    "Booking for {} ({} lines)",
                    q.body["customer"]["name"].as_str().unwrap_or("?"),
                    q.body["lines"].as_array().map_or(0, Vec::len)
                ),
                other => other.replace('_', " "),
            };
            let id = h(&q.id);
            let reenter = if q.kind == "booking_created" {
                format!(
                    r#"<form method="post" action="/manager/quarantine/{id}/reenter"><button type="submit" class="ok">Re-enter</button></form>"#
                )
            } else {
                String::new()
            };
            content.push_str(&format!(
                r#"<tr><td>{} {}</td><td>{}</td><td><div class="row">{reenter}<form method="post" action="/manager/quarantine/{id}/discard"><button type="submit" class="danger">Discard</button></form></div></td></tr>"#,
                local_day(q.at, &tz),
                local_time(q.at, &tz),
                h(&what)
            ));
        }
        content.push_str("</tbody></table>");
    }
    content.push_str(&locks_section(&locked, &tz));
    content.push_str(&set_aside_section(&set_aside.0, set_aside.1, &tz));
    let (store, banner) = frame_parts(&state).await?;
    let frame = Frame {
        title: "Manager",
        store: &store,
        who: Some(session.label()),
        banner,
        live: None,
    };
    Ok(Html(page(&frame, &content)).into_response())
}

/// Staff locked out of signing in somewhere, each with a button that lets
/// them try again on every device.
fn locks_section(locked: &[auth::LockedUser], tz: &jiff::tz::TimeZone) -> String {
    let mut section = String::from("<h2>Sign-in locks</h2>");
    if locked.is_empty() {
        section.push_str(r#"<p class="muted">Nobody is locked out.</p>"#);
        return section;
    }
    section.push_str(
        r#"<table><thead><tr><th>Who</th><th>Locked until</th><th><span class="visually-hidden">Unlock</span></th></tr></thead><tbody>"#,
    );
    for user in locked {
        let until = jiff::Timestamp::from_millisecond(user.locked_until_ms)
            .map(|t| local_time(t, tz))
            .unwrap_or_default();
        section.push_str(&format!(
            "<tr><td>{}</td><td>{until}</td><td>{}</td></tr>",
            h(&user.name),
            button_form(
                &format!("/manager/users/{}/unlock", user.id),
                "Unlock",
                "secondary",
                false
            )
        ));
    }
    section.push_str("</tbody></table>");
    section
}

async fn unlock_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_manager(&state, &headers).await?;
    let id: i64 = id.parse().map_err(|_| bad("no such user"))?;
    state
        .store
        .write(move |ctx| {
            let name = auth::user_name(ctx.conn(), id)?
                .ok_or_else(|| StoreError::not_found("user", id))?;
            auth::unlock_user(ctx.conn(), &name).map(|_| ())
        })
        .await?;
    Ok(back())
}

/// What the hub sent that this store could not apply: the rest of the
/// inbox went on, and the hub's operator sees the same list.
fn set_aside_section(
    events: &[queries::SetAsideEvent],
    total: u64,
    tz: &jiff::tz::TimeZone,
) -> String {
    let mut out = String::from("<h2>Refused from the hub</h2>");
    if events.is_empty() {
        out.push_str(r#"<p class="muted">Nothing refused. (What the hub sends that this store cannot apply, such as another store's change to a pool it does not own, is listed here and skipped; everything after it is applied as usual.)</p>"#);
        return out;
    }
    if total > events.len() as u64 {
        out.push_str(&format!(
            r#"<p class="muted">The newest {} of {total}.</p>"#,
            events.len()
        ));
    }
    out.push_str(r#"<table><thead><tr><th>When</th><th>From</th><th>What</th><th>Why</th></tr></thead><tbody>"#);
    for event in events {
        out.push_str(&format!(
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            local_day(event.set_aside_at, tz),
            local_time(event.set_aside_at, tz),
            h(&event.origin),
            h(&event.kind.replace('_', " ")),
            h(&event.reason)
        ));
    }
    out.push_str("</tbody></table>");
    out
}

async fn require_manager(state: &AppState, headers: &HeaderMap) -> Result<(), PageError> {
    Session::require(state, headers, Role::Manager)
        .await
        .map(|_| ())
        .ok_or_else(|| PageError(StatusCode::FORBIDDEN, "Sign in as a manager.".into()))
}

fn back() -> axum::response::Response {
    Redirect::to("/manager").into_response()
}

async fn add_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    require_manager(&state, &headers).await?;
    let fields = form(&body);
    let kind =
        ResourceKind::parse(field(&fields, "kind")).ok_or_else(|| bad("pick stock or slots"))?;
    let new = NewResource {
        id: None,
        name: field(&fields, "name").to_owned(),
        kind,
    };
    state
        .store
        .write(move |ctx| ops::create_resource(ctx, new))
        .await?;
    Ok(back())
}

async fn add_stock_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    require_manager(&state, &headers).await?;
    let fields = form(&body);
    let new = NewPool {
        id: None,
        resource_id: ResourceId::parse(field(&fields, "resource_id"))
            .map_err(|e| bad(e.to_string()))?,
        capacity: field(&fields, "capacity")
            .parse()
            .map_err(|_| bad("capacity must be a number"))?,
        starts_at_ms: None,
        ends_at_ms: None,
    };
    state
        .store
        .write(move |ctx| ops::create_pool(ctx, new))
        .await?;
    Ok(back())
}

fn parse_times(text: &str) -> Result<Vec<Time>, PageError> {
    text.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Time>()
                .map_err(|_| bad(format!("{t:?} is not a time like 07:00")))
        })
        .collect()
}

async fn add_slots(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    require_manager(&state, &headers).await?;
    let fields = form(&body);
    let resource =
        ResourceId::parse(field(&fields, "resource_id")).map_err(|e| bad(e.to_string()))?;
    let weekdays: Vec<Weekday> = fields
        .get("weekday")
        .map(|days| {
            days.iter()
                .filter_map(|d| {
                    WEEKDAYS
                        .iter()
                        .find(|(_, label)| label == d)
                        .map(|(w, _)| *w)
                })
                .collect()
        })
        .unwrap_or_default();
    let rule = SlotRule {
        weekdays,
        times: parse_times(field(&fields, "times"))?,
        duration_minutes: field(&fields, "minutes")
            .parse()
            .map_err(|_| bad("minutes must be a number"))?,
        first_day: field(&fields, "from")
            .parse::<Date>()
            .map_err(|_| bad("pick a first day"))?,
        last_day: field(&fields, "until")
            .parse::<Date>()
            .map_err(|_| bad("pick a last day"))?,
    };
    let capacity: i64 = field(&fields, "capacity")
        .parse()
        .map_err(|_| bad("places must be a number"))?;
    let slots = generate(&rule, &state.store.node().timezone).map_err(|e| bad(e.to_string()))?;
    state
        .store
        .write(move |ctx| {
            for (start, end) in slots {
                ops::create_pool(
                    ctx,
                    NewPool {
                        id: None,
                        resource_id: resource.clone(),
                        capacity,
                        starts_at_ms: Some(start.as_millisecond()),
                        ends_at_ms: Some(end.as_millisecond()),
                    },
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(back())
}

async fn pool_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> PageResult {
    require_manager(&state, &headers).await?;
    let pool = PoolId::parse(&id).map_err(|e| bad(e.to_string()))?;
    let fields = form(&body);
    let number = |name: &str| -> Result<i64, PageError> {
        field(&fields, name)
            .parse()
            .map_err(|_| bad(format!("{name} must be a number")))
    };
    // Units go to the website unless the form names a location.
    let to = match field(&fields, "to") {
        "" => ParticipantId::Hub,
        to => ParticipantId::parse(to).map_err(|e| bad(e.to_string()))?,
    };
    match action.as_str() {
        "adjust" => {
            let delta = number("delta")?;
            state
                .store
                .write(move |ctx| ops::adjust_pool(ctx, &pool, delta))
                .await?;
        }
        "allot" => {
            let units = number("units")?;
            state
                .store
                .write(move |ctx| ops::grant_allotment(ctx, &pool, &to, units))
                .await?;
        }
        "recall" => {
            let units = number("units")?;
            state
                .store
                .write(move |ctx| ops::recall_allotment(ctx, &pool, &to, units))
                .await?;
        }
        _ => return Err(PageError(StatusCode::NOT_FOUND, "No such action.".into())),
    }
    Ok(back())
}

async fn quarantine_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    require_manager(&state, &headers).await?;
    let review = match action.as_str() {
        "reenter" => ops::Review::Reenter,
        "discard" => ops::Review::Discard,
        _ => return Err(PageError(StatusCode::NOT_FOUND, "No such action.".into())),
    };
    state
        .store
        .write(move |ctx| ops::review_quarantined(ctx, &id, review))
        .await?;
    Ok(back())
}
