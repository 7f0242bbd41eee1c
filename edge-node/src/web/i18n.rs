//! The pages' languages: one Fluent catalogue per language
//! (`edge-node/assets/i18n/*.ftl`), chosen by the language switch (a
//! cookie) or else the browser's `Accept-Language`. Every word a page shows
//! comes from a catalogue; handlers hold message ids, never text.

use std::sync::LazyLock;

use axum::http::{HeaderMap, header};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The cookie the language switch sets.
pub const LANG_COOKIE: &str = "edge_lang";

/// A language the pages speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub const ALL: [Self; 2] = [Self::En, Self::De];

    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::De => "de",
        }
    }

    /// The language's name in itself, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::De => "Deutsch",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }

    fn source(self) -> &'static str {
        match self {
            Self::En => include_str!("../../assets/i18n/en.ftl"),
            Self::De => include_str!("../../assets/i18n/de.ftl"),
        }
    }

    /// The language a request asks for: the switch's cookie, else the
    /// best of `Accept-Language` we speak (by its q-values), else English.
    pub fn of(headers: &HeaderMap) -> Self {
        if let Some(lang) = crate::state::cookie_named(headers, LANG_COOKIE)
            .as_deref()
            .and_then(Self::parse)
        {
            return lang;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::from_accept_language)
            .unwrap_or(Self::En)
    }

    /// The first language we speak in an `Accept-Language` value, by
    /// weight; "de-AT" counts as German.
    pub fn from_accept_language(value: &str) -> Option<Self> {
        let mut best: Option<(f32, Self)> = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or_default();
            let Some(lang) = Self::parse(primary) else {
                continue;
            };
            if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }
}

type Bundle = FluentBundle<FluentResource>;

fn bundle(lang: Lang) -> Bundle {
    let id = lang.code().parse().unwrap_or_default();
    let mut bundle = Bundle::new_concurrent(vec![id]);
    // No Unicode isolation marks around placeables: every value passes
    // through `h`, which shows text-direction characters as marks.
    bundle.set_use_isolating(false);
    let resource =
        FluentResource::try_new(lang.source().to_owned()).unwrap_or_else(|(resource, _)| resource);
    // A duplicate id keeps the first; the catalogue tests catch it.
    let _ = bundle.add_resource(resource);
    bundle
}

static BUNDLES: LazyLock<[Bundle; 2]> = LazyLock::new(|| [bundle(Lang::En), bundle(Lang::De)]);

/// Text in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tr {
    pub lang: Lang,
}

/// A value for a placeable in a message.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    Number(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(text: &'a String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Self::Number(n)
    }
}

impl Tr {
    pub fn new(lang: Lang) -> Self {
        Self { lang }
    }

    pub fn of(headers: &HeaderMap) -> Self {
        Self::new(Lang::of(headers))
    }

    /// Message `id`, as plain text (not yet escaped).
    pub fn t(&self, id: &str) -> String {
        self.format(id, None)
    }

    /// Message `id` with its placeables filled.
    pub fn a(&self, id: &str, args: &[(&str, Arg<'_>)]) -> String {
        let mut fluent = FluentArgs::new();
        for (name, value) in args {
            match value {
                Arg::Text(text) => fluent.set(*name, FluentValue::from(*text)),
                Arg::Number(n) => fluent.set(*name, FluentValue::from(*n)),
            }
        }
        self.format(id, Some(&fluent))
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let bundle = &BUNDLES[self.lang as usize];
        let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
            // The catalogue tests keep this from happening; should it, the
            // id shows where the text is missing instead of nothing.
            tracing::warn!(
                id,
                lang = self.lang.code(),
                "message missing from the catalogue"
            );
            return id.to_owned();
        };
        let mut errors = Vec::new();
        bundle
            .format_pattern(pattern, args, &mut errors)
            .into_owned()
    }

    /// "Monday 23 November" in the location's time zone, in this language.
    pub fn day(&self, at: Timestamp, tz: &TimeZone) -> String {
        let date = at.to_zoned(tz.clone()).date();
        self.date(date)
    }

    /// A calendar day, in this language ("Montag, 23. November").
    pub fn date(&self, date: jiff::civil::Date) -> String {
        let weekday = self.t(&format!(
            "weekday-{}",
            date.weekday().to_monday_one_offset()
        ));
        let month = self.t(&format!("month-{}", date.month()));
        self.a(
            "date-long",
            &[
                ("weekday", Arg::Text(&weekday)),
                ("day", Arg::Number(i64::from(date.day()))),
                ("month", Arg::Text(&month)),
            ],
        )
    }

    /// A short day name for the day picker ("Mon 23").
    pub fn day_short(&self, date: jiff::civil::Date) -> String {
        let weekday = self.t(&format!(
            "weekday-short-{}",
            date.weekday().to_monday_one_offset()
        ));
        self.a(
            "date-short",
            &[
                ("weekday", Arg::Text(&weekday)),
                ("day", Arg::Number(i64::from(date.day()))),
            ],
        )
    }

    /// The plain-language name of a booking state.
    pub fn state(&self, state: shared::BookingState) -> String {
        self.t(&format!("state-{}", state.as_str().replace('_', "-")))
    }

    /// The plain-language name of a channel.
    pub fn channel(&self, channel: shared::Channel) -> String {
        self.t(&format!("channel-{}", channel.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ids(source: &str) -> BTreeSet<String> {
        source
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '\t']) && !l.starts_with('-'))
            .filter_map(|l| l.split_once(" =").map(|(id, _)| id.trim().to_owned()))
            .filter(|id| !id.is_empty())
            .collect()
    }

    #[test]
    fn every_catalogue_parses_and_has_the_same_messages() {
        let english = ids(Lang::En.source());
        assert!(english.len() > 50, "{} messages", english.len());
        for lang in Lang::ALL {
            FluentResource::try_new(lang.source().to_owned())
                .unwrap_or_else(|(_, e)| panic!("{} does not parse: {e:?}", lang.code()));
            let mut probe = Bundle::new_concurrent(vec![lang.code().parse().expect("id")]);
            let resource = FluentResource::try_new(lang.source().to_owned()).expect("parses");
            probe
                .add_resource(resource)
                .unwrap_or_else(|e| panic!("{}: {e:?}", lang.code()));
            assert_eq!(ids(lang.source()), english, "{} differs", lang.code());
        }
    }

    /// Every message id the pages use, read from their source, is in the
    /// catalogue: a typo shows up here, not as an id on a page.
    #[test]
    fn every_message_the_pages_name_exists() {
        let english = ids(Lang::En.source());
        let sources = [
            include_str!("mod.rs"),
            include_str!("html.rs"),
            include_str!("kiosk.rs"),
            include_str!("staff.rs"),
            include_str!("session.rs"),
            include_str!("manager.rs"),
        ];
        let mut used = BTreeSet::new();
        for source in sources {
            for call in [".t(", ".a("] {
                for (at, _) in source.match_indices(call) {
                    // The id may follow on the next line.
                    let rest = source[at + call.len()..].trim_start();
                    if let Some(rest) = rest.strip_prefix('"')
                        && let Some(end) = rest.find('"')
                        && rest[..end]
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    {
                        used.insert(rest[..end].to_owned());
                    }
                }
            }
        }
        assert!(used.len() > 30, "found {} uses", used.len());
        let missing: Vec<_> = used.difference(&english).collect();
        assert!(missing.is_empty(), "not in the catalogue: {missing:?}");
    }

    #[test]
    fn the_browser_chooses_among_the_languages_we_speak() {
        assert_eq!(Lang::from_accept_language("de"), Some(Lang::De));
        assert_eq!(Lang::from_accept_language("de-AT,en;q=0.5"), Some(Lang::De));
        assert_eq!(
            Lang::from_accept_language("fr-FR,en;q=0.8,de;q=0.9"),
            Some(Lang::De)
        );
        assert_eq!(Lang::from_accept_language("fr, it"), None);
        assert_eq!(Lang::from_accept_language("de;q=0, en"), Some(Lang::En));
    }

    #[test]
    fn dates_read_in_each_language() {
        let date = jiff::civil::date(2026, 11, 23);
        assert_eq!(Tr::new(Lang::En).date(date), "Monday 23 November");
        assert_eq!(Tr::new(Lang::De).date(date), "Montag, 23. November");
        assert_eq!(Tr::new(Lang::De).day_short(date), "Mo 23.");
    }

    #[test]
    fn every_state_and_channel_has_a_name_in_every_language() {
        for lang in Lang::ALL {
            let tr = Tr::new(lang);
            for state in shared::BookingState::ALL {
                assert!(!tr.state(state).starts_with("state-"), "{state}");
            }
            for channel in [
                shared::Channel::Kiosk,
                shared::Channel::Staff,
                shared::Channel::Web,
                shared::Channel::Api,
            ] {
                assert!(!tr.channel(channel).starts_with("channel-"));
            }
        }
    }
}
