//! The manager's pages: resources, stock and slot pools, recurring slots,
//! stock adjustments, allotments for the website and other locations, the
//! quarantine, refused events and sign-in locks.
//!
//! A form that fails comes back with what was typed and the reason next to
//! the field it concerns, in plain words.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use jiff::civil::{Date, Time, Weekday};
use shared::event::ResourceKind;
use shared::limits::POOL_CAPACITY_MAX;
use shared::slots::{SlotRule, SlotRuleError, generate};
use shared::{ParticipantId, PoolId, ResourceId};

use super::html::{button_form, h, local_time};
use super::i18n::{Arg, Tr};
use super::{Ctx, PageError, PageResult, catalog, form, render, signed_in, staff_frame};
use crate::auth::{self, Role};
use crate::state::AppState;
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

/// Pools listed per resource on the manager page; the rest are counted.
const POOLS_SHOWN: usize = 20;

const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Monday, "mon"),
    (Weekday::Tuesday, "tue"),
    (Weekday::Wednesday, "wed"),
    (Weekday::Thursday, "thu"),
    (Weekday::Friday, "fri"),
    (Weekday::Saturday, "sat"),
    (Weekday::Sunday, "sun"),
];

/// A form that did not go through: which form and field, why, and what
/// was typed, so the page shows it again with the reason beside the field.
#[derive(Debug, Clone)]
struct Failed {
    /// The form: "resource", "stock", "slots", or a pool's id.
    form: String,
    field: &'static str,
    message: String,
    values: HashMap<String, Vec<String>>,
}

impl Failed {
    fn new(form: impl Into<String>, field: &'static str, message: String) -> Self {
        Self {
            form: form.into(),
            field,
            message,
            values: HashMap::new(),
        }
    }
}

/// A form's fields, as the page shows them: typed values when this form
/// failed, else the defaults.
struct Fields<'a> {
    form: &'a str,
    failed: Option<&'a Failed>,
}

impl Fields<'_> {
    fn mine(&self) -> Option<&Failed> {
        self.failed.filter(|f| f.form == self.form)
    }

    fn value(&self, name: &str, default: &str) -> String {
        match self.mine() {
            Some(f) => h(super::field(&f.values, name)),
            None => h(default),
        }
    }

    fn checked(&self, name: &str, value: &str, default: bool) -> bool {
        match self.mine() {
            Some(f) => f
                .values
                .get(name)
                .is_some_and(|v| v.iter().any(|x| x == value)),
            None => default,
        }
    }

    /// `aria-invalid` and the description for `name`, when it failed.
    fn attrs(&self, name: &str, id: &str) -> String {
        match self.mine() {
            Some(f) if f.field == name => {
                format!(r#" aria-invalid="true" aria-describedby="err-{id}""#)
            }
            _ => String::new(),
        }
    }

    /// The reason, right under the field.
    fn error(&self, name: &str, id: &str) -> String {
        match self.mine() {
            Some(f) if f.field == name => format!(
                r#"<p class="field-error" id="err-{id}" role="alert">{}</p>"#,
                h(&f.message)
            ),
            _ => String::new(),
        }
    }
}

async fn manager(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let ctx = match signed_in(&state, &headers, Role::Manager, "/manager").await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    manager_page(&state, &ctx, None).await
}

async fn manager_page(state: &AppState, ctx: &Ctx, failed: Option<Failed>) -> PageResult {
    let tr = ctx.tr;
    let tz = &ctx.tz;
    let now = state.store.now_ms();
    let catalog = catalog(state, Some(now), None).await?;
    let quarantine = state.store.read(queries::quarantine).await?;
    let locked = state
        .store
        .read(move |conn| auth::locked_users(conn, now))
        .await?;
    let set_aside = state
        .store
        .read(|conn| Ok((queries::set_aside(conn)?, queries::set_aside_count(conn)?)))
        .await?;
    let me = state.store.node().participant();
    let known: Vec<_> = state
        .store
        .read(queries::known_locations)
        .await?
        .into_iter()
        .filter(|k| k.id.as_str() != me.as_str())
        .collect();
    let failed = failed.as_ref();
    // Who units can go to: the website, and the locations the hub
    // introduced. A select only when there is a choice.
    let recipients = |prefix: &str, id: &str, fields: &Fields<'_>| -> String {
        if known.is_empty() {
            return r#"<input type="hidden" name="to" value="hub">"#.to_owned();
        }
        let chosen = fields.value("to", "hub");
        let option = |value: &str, label: &str| {
            let selected = if h(value) == chosen { " selected" } else { "" };
            format!(
                r#"<option value="{}"{selected}>{}</option>"#,
                h(value),
                h(label)
            )
        };
        let options: String = std::iter::once(option("hub", &tr.t("the-website")))
            .chain(known.iter().map(|k| option(k.id.as_str(), &k.name)))
            .collect();
        format!(
            r#"<label for="{prefix}t-{id}">{}</label><select id="{prefix}t-{id}" name="to">{options}</select>"#,
            h(&tr.t("mgr-to"))
        )
    };
    let mut resources: Vec<_> = catalog
        .resources
        .values()
        .filter(|r| r.owner == me)
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name));

    let mut content = format!("<h2>{}</h2>", h(&tr.t("mgr-catalog")));
    if resources.is_empty() {
        content.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("mgr-catalog-empty"))
        ));
    }
    for resource in &resources {
        let pools: Vec<_> = catalog
            .pools
            .iter()
            .filter(|p| p.resource_id == resource.id)
            .collect();
        let mut rows = String::new();
        for pool in pools.iter().take(POOLS_SHOWN) {
            let when = match (pool.starts_at, pool.ends_at) {
                (Some(s), Some(e)) => format!(
                    "{} {}–{}",
                    tr.day(s, tz),
                    local_time(s, tz),
                    local_time(e, tz)
                ),
                _ => tr.t("mgr-stock"),
            };
            let given: Vec<String> = pool
                .allotments
                .iter()
                .map(|a| {
                    let who = match &a.to {
                        ParticipantId::Hub => tr.t("the-website"),
                        other => known
                            .iter()
                            .find(|k| k.id.as_str() == other.as_str())
                            .map_or_else(|| other.to_string(), |k| k.name.clone()),
                    };
                    format!("{} {}", h(&who), a.units)
                })
                .collect();
            let given = if given.is_empty() {
                "0".to_owned()
            } else {
                given.join(", ")
            };
            let id = h(pool.id.as_str());
            let form_id = pool.id.to_string();
            let adjust = Fields {
                form: &format!("{form_id}/adjust"),
                failed,
            };
            let allot = Fields {
                form: &format!("{form_id}/allot"),
                failed,
            };
            let recall = Fields {
                form: &format!("{form_id}/recall"),
                failed,
            };
            let over = if pool.overbooked {
                format!(
                    r#" <span class="warn">{}</span>"#,
                    h(&tr.t("mgr-overbooked"))
                )
            } else {
                String::new()
            };
            rows.push_str(&format!(
                r#"<li class="pool" id="pool-{id}">
<p class="facts-line"><strong>{when}</strong> · {cap_label} {cap} · {avail_label} {avail}{over} · {given_label} {given}</p>
<div class="tools">
<form method="post" action="/manager/pools/{id}/adjust"><label for="d-{id}">{adjust_label}</label><input id="d-{id}" name="delta" type="number" inputmode="numeric" placeholder="±" value="{d_value}" required{d_attrs}><button type="submit" class="secondary">{adjust_button}</button>{d_error}</form>
<form method="post" action="/manager/pools/{id}/allot"><label for="a-{id}">{give_label}</label><input id="a-{id}" name="units" type="number" inputmode="numeric" min="1" value="{a_value}" required{a_attrs}>{give_to}<button type="submit" class="secondary">{give_button}</button>{a_error}</form>
<form method="post" action="/manager/pools/{id}/recall"><label for="r-{id}">{take_label}</label><input id="r-{id}" name="units" type="number" inputmode="numeric" min="1" value="{r_value}" required{r_attrs}>{take_from}<button type="submit" class="secondary">{take_button}</button>{r_error}</form>
</div></li>"#,
                cap_label = h(&tr.t("mgr-capacity")),
                cap = pool.capacity,
                avail_label = h(&tr.t("mgr-available")),
                avail = pool.available,
                given_label = h(&tr.t("mgr-given")),
                adjust_label = h(&tr.t("mgr-adjust-label")),
                adjust_button = h(&tr.t("mgr-adjust")),
                d_value = adjust.value("delta", ""),
                d_attrs = adjust.attrs("delta", &format!("d-{id}")),
                d_error = adjust.error("delta", &format!("d-{id}")),
                give_label = h(&tr.t("mgr-give-label")),
                give_button = h(&tr.t("mgr-give")),
                a_value = allot.value("units", ""),
                a_attrs = allot.attrs("units", &format!("a-{id}")),
                a_error = allot.error("units", &format!("a-{id}")),
                give_to = recipients("a", &id, &allot),
                take_label = h(&tr.t("mgr-take-label")),
                take_button = h(&tr.t("mgr-take")),
                r_value = recall.value("units", ""),
                r_attrs = recall.attrs("units", &format!("r-{id}")),
                r_error = recall.error("units", &format!("r-{id}")),
                take_from = recipients("r", &id, &recall),
            ));
        }
        let more = if pools.len() > POOLS_SHOWN {
            format!(
                r#"<p class="muted">{}</p>"#,
                h(&tr.a(
                    "mgr-more-pools",
                    &[("count", ((pools.len() - POOLS_SHOWN) as i64).into())]
                ))
            )
        } else {
            String::new()
        };
        let kind = match resource.kind {
            ResourceKind::Stock => tr.t("mgr-kind-stock"),
            ResourceKind::Slot => tr.t("mgr-kind-slot"),
        };
        content.push_str(&format!(
            r#"<div class="card"><h3>{} <span class="muted">({})</span></h3>{}{more}</div>"#,
            h(&resource.name),
            h(&kind),
            if rows.is_empty() {
                format!(r#"<p class="muted">{}</p>"#, h(&tr.t("mgr-no-pools")))
            } else {
                format!(r#"<ul class="pools">{rows}</ul>"#)
            }
        ));
    }
    content.push_str(&add_forms(state, ctx, &resources, failed, now));
    content.push_str(&quarantine_section(&quarantine, tr, tz));
    content.push_str(&locks_section(&locked, tr, tz));
    content.push_str(&set_aside_section(&set_aside.0, set_aside.1, tr, tz));
    let frame = staff_frame(state, ctx, tr.t("mgr-title"), "/manager", None).await?;
    let status = if failed.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, render(&frame, &content)).into_response())
}

/// The forms that add to the catalog.
fn add_forms(
    state: &AppState,
    ctx: &Ctx,
    resources: &[&queries::ResourceView],
    failed: Option<&Failed>,
    now: i64,
) -> String {
    let tr = ctx.tr;
    let options = |kind: ResourceKind, fields: &Fields<'_>| {
        let chosen = fields.value("resource_id", "");
        resources
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                let selected = if h(r.id.as_str()) == chosen {
                    " selected"
                } else {
                    ""
                };
                format!(
                    r#"<option value="{}"{selected}>{}</option>"#,
                    h(r.id.as_str()),
                    h(&r.name)
                )
            })
            .collect::<String>()
    };
    let res = Fields {
        form: "resource",
        failed,
    };
    let stock = Fields {
        form: "stock",
        failed,
    };
    let slots = Fields {
        form: "slots",
        failed,
    };
    let weekday_checks: String = WEEKDAYS
        .iter()
        .enumerate()
        .map(|(i, (_, code))| {
            format!(
                r#"<label><input type="checkbox" name="weekday" value="{code}"{}> {}</label>"#,
                if slots.checked("weekday", code, i < 5) {
                    " checked"
                } else {
                    ""
                },
                h(&tr.t(&format!("weekday-short-{}", i + 1)))
            )
        })
        .collect();
    let today = jiff::Timestamp::from_millisecond(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(ctx.tz.clone())
        .date();
    let until = today
        .checked_add(jiff::ToSpan::weeks(4))
        .unwrap_or(today)
        .to_string();
    let kind = res.value("kind", "stock");
    let selected = |k: &str| if kind == k { " selected" } else { "" };
    format!(
        r#"<h2>{add}</h2><div class="grid">
<form class="card" method="post" action="/manager/resources" id="form-resource"><h3>{new_item}</h3>
<label for="rn">{name}</label><input id="rn" name="name" required maxlength="200" value="{rn}"{rn_attrs}>{rn_error}
<label for="rk">{kind_label}</label><select id="rk" name="kind"><option value="stock"{sel_stock}>{kind_stock}</option><option value="slot"{sel_slot}>{kind_slot}</option></select>{rk_error}
<p><button type="submit">{add_button}</button></p></form>
<form class="card" method="post" action="/manager/pools" id="form-stock"><h3>{stock_heading}</h3>
<label for="sr">{item}</label><select id="sr" name="resource_id"{sr_attrs}>{stock_options}</select>{sr_error}
<label for="sc">{units}</label><input id="sc" name="capacity" type="number" inputmode="numeric" min="0" required value="{sc}"{sc_attrs}>{sc_error}
<p><button type="submit">{stock_button}</button></p></form>
<form class="card" method="post" action="/manager/slots" id="form-slots"><h3>{slots_heading}</h3>
<label for="lr">{for_label}</label><select id="lr" name="resource_id"{lr_attrs}>{slot_options}</select>{lr_error}
<fieldset class="checks"{lw_attrs}><legend>{days}</legend>{weekday_checks}</fieldset>{lw_error}
<label for="lt">{times}</label><input id="lt" name="times" value="{lt}" required{lt_attrs}>{lt_error}
<label for="ld">{minutes}</label><input id="ld" name="minutes" type="number" inputmode="numeric" min="1" value="{ld}" required{ld_attrs}>{ld_error}
<label for="lc">{places}</label><input id="lc" name="capacity" type="number" inputmode="numeric" min="1" value="{lc}" required{lc_attrs}>{lc_error}
<label for="lf">{from}</label><input id="lf" name="from" type="date" value="{lf}" required{lf_attrs}>{lf_error}
<label for="lu">{until_label}</label><input id="lu" name="until" type="date" value="{lu}" required{lu_attrs}>{lu_error}
<p><button type="submit">{slots_button}</button></p></form>
</div>"#,
        add = h(&tr.t("mgr-add")),
        new_item = h(&tr.t("mgr-new-item")),
        name = h(&tr.t("mgr-name")),
        rn = res.value("name", ""),
        rn_attrs = res.attrs("name", "rn"),
        rn_error = res.error("name", "rn"),
        kind_label = h(&tr.t("mgr-kind")),
        sel_stock = selected("stock"),
        sel_slot = selected("slot"),
        kind_stock = h(&tr.t("mgr-kind-stock-long")),
        kind_slot = h(&tr.t("mgr-kind-slot-long")),
        rk_error = res.error("kind", "rk"),
        add_button = h(&tr.t("mgr-add-button")),
        stock_heading = h(&tr.t("mgr-stock-heading")),
        item = h(&tr.t("mgr-item")),
        sr_attrs = stock.attrs("resource_id", "sr"),
        stock_options = options(ResourceKind::Stock, &stock),
        sr_error = stock.error("resource_id", "sr"),
        units = h(&tr.t("mgr-units")),
        sc = stock.value("capacity", ""),
        sc_attrs = stock.attrs("capacity", "sc"),
        sc_error = stock.error("capacity", "sc"),
        stock_button = h(&tr.t("mgr-stock-button")),
        slots_heading = h(&tr.t("mgr-slots-heading")),
        for_label = h(&tr.t("mgr-for")),
        lr_attrs = slots.attrs("resource_id", "lr"),
        slot_options = options(ResourceKind::Slot, &slots),
        lr_error = slots.error("resource_id", "lr"),
        lw_attrs = slots.attrs("weekday", "lw"),
        days = h(&tr.t("mgr-days")),
        lw_error = slots.error("weekday", "lw"),
        times = h(&tr.a(
            "mgr-times",
            &[("zone", Arg::Text(&state.store.node().timezone))]
        )),
        lt = slots.value("times", "07:00, 18:30"),
        lt_attrs = slots.attrs("times", "lt"),
        lt_error = slots.error("times", "lt"),
        minutes = h(&tr.t("mgr-minutes")),
        ld = slots.value("minutes", "60"),
        ld_attrs = slots.attrs("minutes", "ld"),
        ld_error = slots.error("minutes", "ld"),
        places = h(&tr.t("mgr-places")),
        lc = slots.value("capacity", "12"),
        lc_attrs = slots.attrs("capacity", "lc"),
        lc_error = slots.error("capacity", "lc"),
        from = h(&tr.t("mgr-from")),
        lf = slots.value("from", &today.to_string()),
        lf_attrs = slots.attrs("from", "lf"),
        lf_error = slots.error("from", "lf"),
        until_label = h(&tr.t("mgr-until")),
        lu = slots.value("until", &until),
        lu_attrs = slots.attrs("until", "lu"),
        lu_error = slots.error("until", "lu"),
        slots_button = h(&tr.t("mgr-slots-button")),
    )
}

fn quarantine_section(
    quarantine: &[queries::QuarantinedEvent],
    tr: Tr,
    tz: &jiff::tz::TimeZone,
) -> String {
    let mut out = format!("<h2>{}</h2>", h(&tr.t("mgr-quarantine")));
    let pending: Vec<_> = quarantine
        .iter()
        .filter(|q| q.status == "pending")
        .collect();
    if pending.is_empty() {
        out.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("mgr-quarantine-empty"))
        ));
        return out;
    }
    out.push_str(r#"<ul class="plain">"#);
    for q in pending {
        let what = match q.kind.as_str() {
            "booking_created" => tr.a(
                "mgr-quarantine-booking",
                &[
                    (
                        "name",
                        Arg::Text(q.body["customer"]["name"].as_str().unwrap_or("?")),
                    ),
                    (
                        "lines",
                        (q.body["lines"].as_array().map_or(0, Vec::len) as i64).into(),
                    ),
                ],
            ),
            other => other.replace('_', " "),
        };
        let id = h(&q.id);
        let reenter = if q.kind == "booking_created" {
            button_form(
                &format!("/manager/quarantine/{id}/reenter"),
                &tr.t("mgr-reenter"),
                "ok",
                false,
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            r#"<li><p>{} {} · {}</p><div class="row">{reenter}{}</div></li>"#,
            h(&tr.day(q.at, tz)),
            local_time(q.at, tz),
            h(&what),
            button_form(
                &format!("/manager/quarantine/{id}/discard"),
                &tr.t("mgr-discard"),
                "danger",
                false
            )
        ));
    }
    out.push_str("</ul>");
    out
}

/// Staff locked out of signing in somewhere, each with a button that lets
/// them try again on every device.
fn locks_section(locked: &[auth::LockedUser], tr: Tr, tz: &jiff::tz::TimeZone) -> String {
    let mut section = format!("<h2>{}</h2>", h(&tr.t("mgr-locks")));
    if locked.is_empty() {
        section.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("mgr-locks-empty"))
        ));
        return section;
    }
    section.push_str(r#"<ul class="plain">"#);
    for user in locked {
        let until = jiff::Timestamp::from_millisecond(user.locked_until_ms)
            .map(|t| local_time(t, tz))
            .unwrap_or_default();
        section.push_str(&format!(
            r#"<li class="row"><span>{}</span> <span class="muted">{}</span>{}</li>"#,
            h(&user.name),
            h(&tr.a("mgr-locked-until", &[("until", Arg::Text(&until))])),
            button_form(
                &format!("/manager/users/{}/unlock", user.id),
                &tr.t("mgr-unlock"),
                "secondary",
                false
            )
        ));
    }
    section.push_str("</ul>");
    section
}

/// What the hub sent that this store could not apply: the rest of the
/// inbox went on, and the hub's operator sees the same list.
fn set_aside_section(
    events: &[queries::SetAsideEvent],
    total: u64,
    tr: Tr,
    tz: &jiff::tz::TimeZone,
) -> String {
    let mut out = format!("<h2>{}</h2>", h(&tr.t("mgr-refused")));
    if events.is_empty() {
        out.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.t("mgr-refused-empty"))
        ));
        return out;
    }
    if total > events.len() as u64 {
        out.push_str(&format!(
            r#"<p class="muted">{}</p>"#,
            h(&tr.a(
                "mgr-refused-newest",
                &[
                    ("shown", (events.len() as i64).into()),
                    ("total", (total as i64).into())
                ]
            ))
        ));
    }
    out.push_str(r#"<ul class="plain">"#);
    for event in events {
        out.push_str(&format!(
            "<li><p>{} {} · {} · {}</p><p class=\"muted\">{}</p></li>",
            h(&tr.day(event.set_aside_at, tz)),
            local_time(event.set_aside_at, tz),
            h(&event.origin),
            h(&event.kind.replace('_', " ")),
            h(&event.reason)
        ));
    }
    out.push_str("</ul>");
    out
}

fn back() -> axum::response::Response {
    Redirect::to("/manager").into_response()
}

/// The manager's session for a form post, or the way to sign in.
async fn manager_ctx(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Ctx, axum::response::Response> {
    signed_in(state, headers, Role::Manager, "/manager").await
}

/// Shows the manager page again with `failed` beside its field, or fails
/// the request when the store itself failed.
async fn again(
    state: &AppState,
    ctx: &Ctx,
    failed: Failed,
    values: HashMap<String, Vec<String>>,
) -> PageResult {
    manager_page(state, ctx, Some(Failed { values, ..failed })).await
}

async fn add_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let ctx = match manager_ctx(&state, &headers).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let fields = form(&body);
    let name = super::field(&fields, "name").to_owned();
    let Some(kind) = ResourceKind::parse(super::field(&fields, "kind")) else {
        let failed = Failed::new("resource", "kind", tr.t("mgr-error-kind"));
        return again(&state, &ctx, failed, fields).await;
    };
    if name.is_empty() {
        let failed = Failed::new("resource", "name", tr.t("mgr-error-name"));
        return again(&state, &ctx, failed, fields).await;
    }
    let new = NewResource {
        id: None,
        name,
        kind,
    };
    match state
        .store
        .write(move |w| ops::create_resource(w, new))
        .await
    {
        Ok(_) => Ok(back()),
        Err(e) if !e.is_internal() => {
            let failed = Failed::new("resource", "name", tr.t("mgr-error-name-text"));
            again(&state, &ctx, failed, fields).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A whole number typed into a form, or the plain reason it is not one.
fn number(tr: Tr, text: &str) -> Result<i64, String> {
    text.trim()
        .parse()
        .map_err(|_| tr.a("mgr-error-number", &[("typed", Arg::Text(text.trim()))]))
}

async fn add_stock_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let ctx = match manager_ctx(&state, &headers).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let fields = form(&body);
    let Ok(resource_id) = ResourceId::parse(super::field(&fields, "resource_id")) else {
        let failed = Failed::new("stock", "resource_id", tr.t("mgr-error-item"));
        return again(&state, &ctx, failed, fields).await;
    };
    let capacity = match number(tr, super::field(&fields, "capacity")) {
        Ok(n) if (0..=POOL_CAPACITY_MAX).contains(&n) => n,
        Ok(_) => {
            let failed = Failed::new("stock", "capacity", capacity_range(tr));
            return again(&state, &ctx, failed, fields).await;
        }
        Err(message) => {
            return again(
                &state,
                &ctx,
                Failed::new("stock", "capacity", message),
                fields,
            )
            .await;
        }
    };
    let new = NewPool {
        id: None,
        resource_id,
        capacity,
        starts_at_ms: None,
        ends_at_ms: None,
    };
    match state.store.write(move |w| ops::create_pool(w, new)).await {
        Ok(_) => Ok(back()),
        Err(e) if !e.is_internal() => {
            let failed = Failed::new("stock", "resource_id", tr.t("mgr-error-item"));
            again(&state, &ctx, failed, fields).await
        }
        Err(e) => Err(e.into()),
    }
}

fn capacity_range(tr: Tr) -> String {
    tr.a("mgr-error-capacity", &[("max", POOL_CAPACITY_MAX.into())])
}

fn parse_times(tr: Tr, text: &str) -> Result<Vec<Time>, String> {
    text.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Time>()
                .map_err(|_| tr.a("mgr-error-time", &[("typed", Arg::Text(t))]))
        })
        .collect()
}

/// The field a rule error concerns, and its plain reason.
fn slot_rule_error(tr: Tr, e: &SlotRuleError) -> (&'static str, String) {
    match e {
        SlotRuleError::NoWeekdays => ("weekday", tr.t("mgr-error-weekdays")),
        SlotRuleError::NoTimes => ("times", tr.t("mgr-error-times")),
        SlotRuleError::Duration => ("minutes", tr.t("mgr-error-minutes")),
        SlotRuleError::Range => ("until", tr.t("mgr-error-range")),
        SlotRuleError::TooMany => (
            "until",
            tr.a(
                "mgr-error-too-many",
                &[("max", (shared::slots::SLOTS_PER_RULE_MAX as i64).into())],
            ),
        ),
        SlotRuleError::TimeZone(zone) => (
            "times",
            tr.a("mgr-error-zone", &[("zone", Arg::Text(zone))]),
        ),
    }
}

async fn add_slots(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let ctx = match manager_ctx(&state, &headers).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let fields = form(&body);
    let fail = |field: &'static str, message: String| Failed::new("slots", field, message);
    let Ok(resource) = ResourceId::parse(super::field(&fields, "resource_id")) else {
        let failed = fail("resource_id", tr.t("mgr-error-class"));
        return again(&state, &ctx, failed, fields).await;
    };
    let weekdays: Vec<Weekday> = fields
        .get("weekday")
        .map(|days| {
            days.iter()
                .filter_map(|d| WEEKDAYS.iter().find(|(_, code)| code == d).map(|(w, _)| *w))
                .collect()
        })
        .unwrap_or_default();
    let parsed = (|| {
        let times =
            parse_times(tr, super::field(&fields, "times")).map_err(|m| fail("times", m))?;
        let minutes =
            number(tr, super::field(&fields, "minutes")).map_err(|m| fail("minutes", m))?;
        let capacity = match number(tr, super::field(&fields, "capacity")) {
            Ok(n) if (1..=POOL_CAPACITY_MAX).contains(&n) => n,
            Ok(_) => return Err(fail("capacity", capacity_range(tr))),
            Err(m) => return Err(fail("capacity", m)),
        };
        let day = |name: &'static str| {
            super::field(&fields, name)
                .parse::<Date>()
                .map_err(|_| fail(name, tr.t("mgr-error-date")))
        };
        let rule = SlotRule {
            weekdays,
            times,
            duration_minutes: minutes,
            first_day: day("from")?,
            last_day: day("until")?,
        };
        let slots = generate(&rule, &state.store.node().timezone).map_err(|e| {
            let (field, message) = slot_rule_error(tr, &e);
            fail(field, message)
        })?;
        Ok((slots, capacity))
    })();
    let (slots, capacity) = match parsed {
        Ok(parsed) => parsed,
        Err(failed) => return again(&state, &ctx, failed, fields).await,
    };
    let made = state
        .store
        .write(move |w| {
            for (start, end) in slots {
                ops::create_pool(
                    w,
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
        .await;
    match made {
        Ok(()) => Ok(back()),
        Err(e) if !e.is_internal() => {
            let failed = fail("resource_id", tr.t("mgr-error-class"));
            again(&state, &ctx, failed, fields).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn pool_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> PageResult {
    let ctx = match manager_ctx(&state, &headers).await {
        Ok(ctx) => ctx,
        Err(to) => return Ok(to),
    };
    let tr = ctx.tr;
    let pool = PoolId::parse(&id).map_err(|_| PageError::not_found())?;
    if !matches!(action.as_str(), "adjust" | "allot" | "recall") {
        return Err(PageError::not_found());
    }
    let form_id = format!("{pool}/{action}");
    let fields = form(&body);
    let field_name = if action == "adjust" { "delta" } else { "units" };
    let fail = |message: String| Failed::new(form_id.clone(), field_name, message);
    let amount = match number(tr, super::field(&fields, field_name)) {
        Ok(n) => n,
        Err(message) => return again(&state, &ctx, fail(message), fields).await,
    };
    // Units go to the website unless the form names a location.
    let to = match super::field(&fields, "to") {
        "" | "hub" => ParticipantId::Hub,
        to => match ParticipantId::parse(to) {
            Ok(to) => to,
            Err(_) => return Err(PageError::bad("mgr-error-recipient")),
        },
    };
    let current = state
        .store
        .read({
            let pool = pool.clone();
            move |conn| queries::pool(conn, &pool)
        })
        .await?
        .ok_or_else(PageError::not_found)?;
    // Each refusal in the words of the form that asked.
    let refusal = |e: &StoreError| match (action.as_str(), e) {
        ("adjust", _) if amount == 0 => tr.t("mgr-error-zero"),
        ("adjust", _) => tr.a(
            "mgr-error-adjust",
            &[
                ("capacity", current.capacity.into()),
                ("max", POOL_CAPACITY_MAX.into()),
            ],
        ),
        ("allot", StoreError::InsufficientCapacity { available, .. }) => {
            tr.a("mgr-error-allot", &[("available", (*available).into())])
        }
        ("recall", StoreError::Conflict(_)) => tr.t("mgr-error-recall-none"),
        _ => tr.a("mgr-error-units", &[("max", POOL_CAPACITY_MAX.into())]),
    };
    let done = {
        let pool = pool.clone();
        let action = action.clone();
        state
            .store
            .write(move |w| match action.as_str() {
                "adjust" => ops::adjust_pool(w, &pool, amount).map(|_| ()),
                "allot" => ops::grant_allotment(w, &pool, &to, amount).map(|_| ()),
                _ => ops::recall_allotment(w, &pool, &to, amount).map(|_| ()),
            })
            .await
    };
    match done {
        Ok(()) => Ok(back()),
        Err(e) if !e.is_internal() => {
            let message = refusal(&e);
            again(&state, &ctx, fail(message), fields).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn quarantine_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    if let Err(to) = manager_ctx(&state, &headers).await {
        return Ok(to);
    }
    let review = match action.as_str() {
        "reenter" => ops::Review::Reenter,
        "discard" => ops::Review::Discard,
        _ => return Err(PageError::not_found()),
    };
    state
        .store
        .write(move |w| ops::review_quarantined(w, &id, review))
        .await?;
    Ok(back())
}

async fn unlock_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    if let Err(to) = manager_ctx(&state, &headers).await {
        return Ok(to);
    }
    let id: i64 = id.parse().map_err(|_| PageError::not_found())?;
    state
        .store
        .write(move |w| {
            let name =
                auth::user_name(w.conn(), id)?.ok_or_else(|| StoreError::not_found("user", id))?;
            auth::unlock_user(w.conn(), &name).map(|_| ())
        })
        .await?;
    Ok(back())
}
