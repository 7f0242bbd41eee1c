//! The dashboard's HTML: the sign-in page, the page frame and the fleet
//! fragment the live view replaces each second. Every value from a store
//! or the database goes through [`h`]: a store names itself, and an
//! enrolled store is not a trusted party.

use shared::html::escape as h;

use crate::HubSettings;
use crate::alerts::{self, location_state};
use crate::fleet::{OperatorSession, Snapshot};

fn frame(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body>
{body}
</body>
</html>
"#,
        title = h(title)
    )
}

pub fn signin(name: &str, message: Option<&str>, error: Option<&str>) -> String {
    let message = message
        .map(|m| format!(r#"<p class="notice" role="status">{}</p>"#, h(m)))
        .unwrap_or_default();
    let error = error
        .map(|e| {
            format!(
                r#"<p class="error" id="signin-error" role="alert">{}</p>"#,
                h(e)
            )
        })
        .unwrap_or_default();
    let described = if error.is_empty() {
        ""
    } else {
        r#" aria-describedby="signin-error""#
    };
    frame(
        "Sign in · Fleet",
        &format!(
            r#"<main class="signin">
<h1>Fleet dashboard</h1>
{message}
<form method="post" action="/signin">
<label for="name">Name</label>
<input id="name" name="name" autocomplete="username" required maxlength="100" value="{name}"{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{described}>
{error}
<button type="submit">Sign in</button>
</form>
</main>"#,
            name = h(name)
        ),
    )
}

pub fn dashboard(session: &OperatorSession, snap: &Snapshot, settings: &HubSettings) -> String {
    frame(
        "Fleet",
        &format!(
            r#"<header class="top">
<h1>Fleet</h1>
<p id="live" class="live" role="status">Live</p>
<form method="post" action="/signout" class="signout">
<input type="hidden" name="csrf" value="{csrf}">
<span class="who">{operator}</span>
<button type="submit" class="secondary">Sign out</button>
</form>
</header>
<main id="fleet" aria-live="polite">
{fleet}
</main>"#,
            csrf = h(&session.csrf),
            operator = h(&session.operator),
            fleet = fleet(snap, settings),
        ),
    )
}

fn clock(at_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "store_unreachable" => "Store unreachable",
        "clock_skew" => "Clock off",
        "fork" => "Fork to resolve",
        "backlog_growing" => "Backlog growing",
        "events_set_aside" => "Events set aside",
        "pool_overbooked" => "Pool overbooked",
        "webhook_failing" => "Webhook failing",
        _ => "Alert",
    }
}

/// The part of the page the live view replaces.
pub fn fleet(snap: &Snapshot, settings: &HubSettings) -> String {
    let now = snap.at_ms;
    let read = &snap.read;
    let summary = alerts::summarize(read, settings, now);
    let count = |state: &str| {
        summary
            .by_state
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    };
    let mut out = format!(
        r#"<section class="summary" aria-label="Summary">
<p><strong data-count="connected">{}</strong> connected</p>
<p class="{}"><strong data-count="unreachable">{}</strong> unreachable</p>
<p><strong>{}</strong> never seen</p>
<p class="{}"><strong>{}</strong> quarantined</p>
<p><strong>{}</strong> events waiting to sync</p>
<p class="asof">as of {}</p>
</section>
"#,
        count("connected"),
        if count("unreachable") > 0 { "bad" } else { "" },
        count("unreachable"),
        count("never_seen"),
        if count("quarantined") > 0 { "bad" } else { "" },
        count("quarantined"),
        summary.backlog_events,
        clock(now),
    );
    out.push_str(r#"<section aria-labelledby="alerts-h"><h2 id="alerts-h">Alerts</h2>"#);
    if read.open_alerts.is_empty() {
        out.push_str(r#"<p class="quiet" id="no-alerts">No alerts.</p>"#);
    } else {
        out.push_str(r#"<ul class="alerts" id="alerts">"#);
        for alert in &read.open_alerts {
            out.push_str(&format!(
                r#"<li data-alert="{key}"><strong>{label}</strong> <span>{message}</span> <small>since {since} ({ago})</small></li>"#,
                key = h(&alert.key),
                label = kind_label(&alert.kind),
                message = h(&alert.message),
                since = clock(alert.raised_at_ms),
                ago = ago(now - alert.raised_at_ms),
            ));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>\n");
    out.push_str(
        r#"<section aria-labelledby="stores-h"><h2 id="stores-h">Locations</h2>
<table class="stores"><thead><tr><th scope="col">Location</th><th scope="col">State</th><th scope="col">Last seen</th><th scope="col">Backlog</th><th scope="col">Clock offset</th><th scope="col">Epoch</th><th scope="col">Waiting orders</th><th scope="col">Set aside</th></tr></thead><tbody>"#,
    );
    for location in &read.locations {
        let state = location_state(location, settings, now);
        let seen_ms = location.last_seen_at.map(|t| t.as_millisecond());
        let state_text = match (state, seen_ms) {
            ("connected", _) => "Reachable".to_owned(),
            ("unreachable", Some(seen)) => format!(
                "Unreachable since {}",
                clock(seen + settings.unreachable_after_ms)
            ),
            ("quarantined", _) => "Quarantined: fork to resolve".to_owned(),
            _ => "Never seen".to_owned(),
        };
        let participant = format!("loc:{}", location.id);
        let waiting = read
            .waiting_requests
            .iter()
            .find(|(owner, _)| *owner == participant)
            .map_or(0, |(_, n)| *n);
        let offset = location
            .clock_offset_ms
            .map_or_else(|| "unknown".to_owned(), |o| format!("{o} ms"));
        let skewed = location
            .clock_offset_ms
            .is_some_and(|o| o.abs() > settings.skew_margin_ms / 2);
        out.push_str(&format!(
            r#"<tr data-location="{id}" data-state="{state}"><th scope="row" data-label="Location">{name}<small>{id}</small></th><td data-label="State"><span class="badge {state}">{state_text}</span></td><td data-label="Last seen">{seen}</td><td data-label="Backlog">{backlog}</td><td data-label="Clock offset" class="{skew}">{offset}</td><td data-label="Epoch">{epoch}</td><td data-label="Waiting orders">{waiting}</td><td data-label="Set aside">{set_aside}</td></tr>"#,
            id = h(location.id.as_str()),
            name = h(&location.name),
            seen = seen_ms.map_or_else(|| "never".to_owned(), |s| format!("{} <small>{}</small>", ago(now - s), clock(s))),
            backlog = location.backlog_events.map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
            skew = if skewed { "bad" } else { "" },
            epoch = location.epoch,
            set_aside = location.set_aside_events,
        ));
    }
    out.push_str("</tbody></table></section>\n");
    if !read.overbooked_pools.is_empty() {
        out.push_str(r#"<section aria-labelledby="pools-h"><h2 id="pools-h">Overbooked pools</h2><ul class="plain">"#);
        for pool in &read.overbooked_pools {
            out.push_str(&format!(
                "<li><strong>{}</strong> of {}: {} booked of {}</li>",
                h(&pool.id),
                h(&pool.owner),
                pool.used,
                pool.capacity
            ));
        }
        out.push_str("</ul></section>\n");
    }
    if !read.failing_webhooks.is_empty() {
        out.push_str(r#"<section aria-labelledby="hooks-h"><h2 id="hooks-h">Webhook deliveries failing</h2><ul class="plain">"#);
        for hook in &read.failing_webhooks {
            out.push_str(&format!(
                "<li><strong>{}</strong>: {} failed attempts, {} waiting{}</li>",
                h(&hook.url),
                hook.attempts,
                hook.pending,
                hook.last_error
                    .as_ref()
                    .map(|e| format!(" ({})", h(e)))
                    .unwrap_or_default()
            ));
        }
        out.push_str("</ul></section>\n");
    }
    out
}
