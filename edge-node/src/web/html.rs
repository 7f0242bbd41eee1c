//! HTML building blocks: escaping, the page frame, the sync banner, and
//! local times. Every value from a user or the database goes through [`h`].

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::store::queries::SyncStatus;

/// Escapes text for HTML content and attribute values.
pub fn h(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control and text-direction characters (a name a store took
            // in before they were refused, say) would make text read
            // otherwise than it is stored: shown as the replacement mark.
            c if shared::booking::is_hidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// What a page needs to know about where it is shown.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub title: &'a str,
    pub store: &'a str,
    /// Who is signed in, shown with a sign-out button.
    pub who: Option<String>,
    pub banner: String,
    /// A fragment URL to refresh on changes (server-sent events).
    pub live: Option<&'a str>,
}

pub fn page(frame: &Frame<'_>, content: &str) -> String {
    let who = frame
        .who
        .as_ref()
        .map(|who| {
            format!(
                r#"<form method="post" action="/signout" class="row"><span>{}</span><button class="secondary" type="submit">Sign out</button></form>"#,
                h(who)
            )
        })
        .unwrap_or_default();
    let live = frame
        .live
        .map(|url| format!(r#" data-live="{}" data-events="1""#, h(url)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {store}</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body{live}>
<header class="top"><h1>{title} <span class="muted">· {store}</span></h1>{who}</header>
<main>
{banner}
{content}
</main>
</body>
</html>"#,
        title = h(frame.title),
        store = h(frame.store),
        banner = frame.banner,
    )
}

pub fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

/// "14:02" in the location's time zone.
pub fn local_time(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone()).strftime("%H:%M").to_string()
}

/// "Monday 23 November" in the location's time zone.
pub fn local_day(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone()).strftime("%A %-d %B").to_string()
}

/// The banner that always tells the truth about sync.
pub fn banner(status: &SyncStatus, tz: &TimeZone) -> String {
    let (class, text) = if !status.enrolled {
        (
            "standalone",
            format!(
                "Standalone: not connected to a hub. {} changes recorded here.",
                status.backlog_events
            ),
        )
    } else if status.clock_alert {
        let off = status.clock_offset_ms.unwrap_or(0);
        (
            "skew",
            format!(
                "Clock warning: this device's clock is {} {} the hub's. Please check its time settings.",
                human_duration(off.unsigned_abs()),
                if off > 0 { "ahead of" } else { "behind" }
            ),
        )
    } else {
        match status.state.as_str() {
            "online" if status.backlog_events == 0 => {
                ("online", "Online: every change is synced.".to_owned())
            }
            "online" => (
                "online",
                format!("Online: syncing {} changes.", status.backlog_events),
            ),
            "error" => (
                "error",
                format!(
                    "Sync stopped: {}",
                    status
                        .error
                        .as_deref()
                        .unwrap_or("the hub refused this device")
                ),
            ),
            _ => {
                let since = status.last_push_at.max(status.last_pull_at);
                match since {
                    Some(at) => (
                        "offline",
                        format!(
                            "Offline since {}, {} changes waiting to sync.",
                            local_time(at, tz),
                            status.backlog_events
                        ),
                    ),
                    None => (
                        "offline",
                        format!(
                            "Offline: {} changes waiting to sync.",
                            status.backlog_events
                        ),
                    ),
                }
            }
        }
    };
    format!(
        r#"<div id="banner" class="banner {class}" role="status" aria-live="polite">{}</div>"#,
        h(&text)
    )
}

fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    if seconds >= 120 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// A small POST form with one button (one tap).
pub fn button_form(action: &str, label: &str, class: &str, inline: bool) -> String {
    format!(
        r#"<form method="post" action="{}"{}><button type="submit" class="{}">{}</button></form>"#,
        h(action),
        if inline { " data-inline" } else { "" },
        h(class),
        h(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            h(r#"<b onclick="x('y')">&"#),
            "&lt;b onclick=&quot;x(&#39;y&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn hidden_characters_show_as_the_replacement_mark() {
        assert_eq!(
            h("Mal\u{0}lo\u{1b}[31mry\u{202E}gnp.exe Zoë"),
            "Mal\u{FFFD}lo\u{FFFD}[31mry\u{FFFD}gnp.exe Zoë"
        );
    }

    fn status(state: &str) -> SyncStatus {
        SyncStatus {
            enrolled: true,
            state: state.into(),
            backlog_events: 37,
            last_push_at: Some("2026-11-23T13:02:00Z".parse().expect("ts")),
            last_pull_at: None,
            clock_offset_ms: Some(10),
            clock_alert: false,
            set_aside_events: 0,
            error: None,
        }
    }

    #[test]
    fn the_banner_says_since_when_and_how_much_is_waiting() {
        let tz = zone("Europe/Berlin");
        let offline = banner(&status("offline"), &tz);
        assert!(
            offline.contains("Offline since 14:02, 37 changes waiting to sync."),
            "{offline}"
        );
        let mut skewed = status("online");
        skewed.clock_alert = true;
        skewed.clock_offset_ms = Some(300_000);
        assert!(banner(&skewed, &tz).contains("5 min ahead of"));
        let mut standalone = status("offline");
        standalone.enrolled = false;
        assert!(banner(&standalone, &tz).contains("Standalone"));
    }
}
