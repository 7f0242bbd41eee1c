//! HTML building blocks: escaping, the page frame, the sync banner, and
//! local times. Every value from a user or the database goes through [`h`].

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::i18n::{Arg, Lang, Tr};
use crate::store::queries::SyncStatus;

/// Escapes text for HTML content and attribute values.
pub fn h(text: &str) -> String {
    shared::html::escape(text)
}

/// What a page needs to know about where it is shown.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub tr: Tr,
    pub title: String,
    /// The store's display name.
    pub store: &'a str,
    /// Who is signed in, shown with a sign-out button; `None` on the
    /// sign-in page and on a kiosk (which a customer must not leave).
    pub who: Option<String>,
    pub banner: String,
    /// A fragment URL to refresh on changes (server-sent events).
    pub live: Option<String>,
    /// Links to the other pages this person may use: (href, label).
    pub nav: Vec<(&'static str, String)>,
    /// Extra attributes for `<body>` (kiosk settings), already escaped.
    pub body_attrs: String,
    /// The path the language switch returns to.
    pub path: &'a str,
}

pub fn page(frame: &Frame<'_>, content: &str) -> String {
    let tr = frame.tr;
    let who = frame
        .who
        .as_ref()
        .map(|who| {
            format!(
                r#"<form method="post" action="/signout" class="row"><span>{}</span><button class="secondary" type="submit">{}</button></form>"#,
                h(who),
                h(&tr.t("sign-out"))
            )
        })
        .unwrap_or_default();
    let live = frame
        .live
        .as_ref()
        .map(|url| format!(r#" data-live="{}" data-events="1""#, h(url)))
        .unwrap_or_default();
    let nav: String = frame
        .nav
        .iter()
        .map(|(href, label)| {
            let current = if *href == frame.path {
                r#" aria-current="page""#
            } else {
                ""
            };
            format!(r#"<a href="{href}"{current}>{}</a>"#, h(label))
        })
        .collect();
    let nav = if nav.is_empty() {
        String::new()
    } else {
        format!(r#"<nav aria-label="{}">{nav}</nav>"#, h(&tr.t("nav-label")))
    };
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {store}</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body{live}{attrs} data-expiring="{expiring}" data-left="{left}" data-offline="{offline}">
<header class="top"><h1>{title} <span class="muted">· {store}</span></h1>{nav}<div class="row">{switch}{who}</div></header>
<div id="notice" class="notice" role="alert" hidden></div>
<main>
{banner}
{content}
</main>
</body>
</html>"#,
        lang = tr.lang.code(),
        title = h(&frame.title),
        store = h(frame.store),
        attrs = frame.body_attrs,
        banner = frame.banner,
        switch = language_switch(tr, frame.path),
        expiring = h(&tr.t("countdown-expiring")),
        left = h(&tr.t("countdown-left")),
        offline = h(&tr.t("action-offline")),
    )
}

/// Links to the page in each other language.
fn language_switch(tr: Tr, path: &str) -> String {
    Lang::ALL
        .into_iter()
        .filter(|l| *l != tr.lang)
        .map(|l| {
            format!(
                r#"<a class="lang" href="/lang/{code}?back={back}" lang="{code}" hreflang="{code}">{name}</a>"#,
                code = l.code(),
                back = h(&form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()),
                name = l.name()
            )
        })
        .collect()
}

pub fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

/// "14:02" in the location's time zone.
pub fn local_time(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone()).strftime("%H:%M").to_string()
}

/// The banner that always tells the truth about sync.
pub fn banner(status: &SyncStatus, tz: &TimeZone, tr: Tr) -> String {
    let waiting = status.backlog_events as i64;
    let (class, text) = if !status.enrolled {
        (
            "standalone",
            tr.a("banner-standalone", &[("count", waiting.into())]),
        )
    } else if status.clock_alert {
        let off = status.clock_offset_ms.unwrap_or(0);
        let amount = human_duration(off.unsigned_abs(), tr);
        (
            "skew",
            tr.a(
                if off > 0 {
                    "banner-clock-ahead"
                } else {
                    "banner-clock-behind"
                },
                &[("amount", Arg::Text(&amount))],
            ),
        )
    } else {
        match status.state.as_str() {
            "online" if waiting == 0 => ("online", tr.t("banner-online")),
            "online" => (
                "online",
                tr.a("banner-syncing", &[("count", waiting.into())]),
            ),
            "error" => {
                let why = status
                    .error
                    .clone()
                    .unwrap_or_else(|| tr.t("banner-refused"));
                ("error", tr.a("banner-error", &[("why", Arg::Text(&why))]))
            }
            _ => match status.last_push_at.max(status.last_pull_at) {
                Some(at) => {
                    let since = local_time(at, tz);
                    (
                        "offline",
                        tr.a(
                            "banner-offline-since",
                            &[("since", Arg::Text(&since)), ("count", waiting.into())],
                        ),
                    )
                }
                None => (
                    "offline",
                    tr.a("banner-offline", &[("count", waiting.into())]),
                ),
            },
        }
    };
    format!(
        r#"<div id="banner" class="banner {class}" role="status" aria-live="polite">{}</div>"#,
        h(&text)
    )
}

fn human_duration(ms: u64, tr: Tr) -> String {
    let seconds = (ms / 1000) as i64;
    if seconds >= 120 {
        tr.a("duration-minutes", &[("n", (seconds / 60).into())])
    } else {
        tr.a("duration-seconds", &[("n", seconds.into())])
    }
}

/// A small POST form with one button. `inline` forms post without leaving
/// the page (the script shows their result next to them); `confirm` asks
/// once before it posts.
pub fn button_form(action: &str, label: &str, class: &str, inline: bool) -> String {
    action_form(action, label, class, inline, None)
}

/// [`button_form`] that asks `question` first (Cancel, on a tablet where
/// a slip is easy): with script a dialog, without it a page that asks.
pub fn action_form(
    action: &str,
    label: &str,
    class: &str,
    inline: bool,
    confirm: Option<&Confirm>,
) -> String {
    format!(
        r#"<form method="post" action="{}"{}{}><button type="submit" class="{}">{}</button></form>"#,
        h(action),
        if inline { " data-inline" } else { "" },
        confirm
            .map(|c| format!(
                r#" data-confirm="{}" data-yes="{}" data-no="{}""#,
                h(&c.question),
                h(&c.yes),
                h(&c.no)
            ))
            .unwrap_or_default(),
        h(class),
        h(label)
    )
}

/// The question an action asks before it posts, and its two answers.
#[derive(Debug, Clone)]
pub struct Confirm {
    pub question: String,
    pub yes: String,
    pub no: String,
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
        let en = Tr::new(Lang::En);
        let offline = banner(&status("offline"), &tz, en);
        assert!(
            offline.contains("Offline since 14:02, 37 changes waiting to sync."),
            "{offline}"
        );
        let mut skewed = status("online");
        skewed.clock_alert = true;
        skewed.clock_offset_ms = Some(300_000);
        assert!(banner(&skewed, &tz, en).contains("5 min ahead of"));
        let mut standalone = status("offline");
        standalone.enrolled = false;
        assert!(banner(&standalone, &tz, en).contains("Standalone"));
        let german = banner(&status("offline"), &tz, Tr::new(Lang::De));
        assert!(german.contains("Offline seit 14:02"), "{german}");
    }
}
