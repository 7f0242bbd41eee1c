//! The hub's settings, read in layers (built-in defaults, the `--config`
//! TOML file, `SYNC_HUB__KEY` environment variables, flags), checked
//! before anything starts, and printed as a commented file by
//! `sync-hub default-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ops_kit::config::{Flags, Loaded, Secret};
use ops_kit::log::LogSettings;
use ops_kit::metrics::MetricsSettings;
use serde::{Deserialize, Serialize};

use crate::HubSettings;
use crate::alerts::AlertSettings;

/// The prefix of environment variables that set keys: `SYNC_HUB__LISTEN`,
/// `SYNC_HUB__ALERTS__BACKLOG_EVENTS` (a section's key after a second
/// `__`).
pub const ENV_PREFIX: &str = "SYNC_HUB__";

/// How long a store may stay silent before it counts as unreachable: under
/// a second, a store on an ordinary connection would flicker; over a day,
/// web orders would wait for a store long gone.
pub const UNREACHABLE_AFTER_MS_RANGE: std::ops::RangeInclusive<i64> = 1_000..=86_400_000;

/// The longest pull the hub holds open: long enough to spare idle stores
/// from polling, bounded so a connection never looks dead to a proxy.
pub const LONG_POLL_MAX_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=60_000;

/// As at the store (`edge-node`'s `skew_margin_ms`).
pub const SKEW_MARGIN_MS_RANGE: std::ops::RangeInclusive<i64> = 1_000..=3_600_000;

/// Every setting of `sync-hub serve`, each under the name of its flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL instead of SQLite; holds a password, so it is a secret.
    pub database_url: Option<Secret>,
    pub listen: SocketAddr,
    pub unreachable_after_ms: i64,
    pub skew_margin_ms: i64,
    pub long_poll_max_ms: u64,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub alerts: AlertSettings,
}

impl Default for Config {
    fn default() -> Self {
        let hub = HubSettings::default();
        Self {
            data_dir: None,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            unreachable_after_ms: hub.unreachable_after_ms,
            skew_margin_ms: hub.skew_margin_ms,
            long_poll_max_ms: hub.long_poll_max_ms,
            metrics: MetricsSettings::default(),
            log: LogSettings::default(),
            alerts: AlertSettings::default(),
        }
    }
}

impl Config {
    /// What the handlers and background tasks need of it.
    pub fn hub_settings(&self) -> HubSettings {
        HubSettings {
            unreachable_after_ms: self.unreachable_after_ms,
            skew_margin_ms: self.skew_margin_ms,
            long_poll_max_ms: self.long_poll_max_ms,
            alerts: self.alerts.clone(),
        }
    }
}

/// Reads and checks the settings; an error names the key, where its value
/// came from and what is allowed.
pub fn load(file: Option<&Path>, flags: &Flags) -> anyhow::Result<Config> {
    let loaded: Loaded<Config> = ops_kit::config::load(ENV_PREFIX, file, flags)?;
    check(&loaded)?;
    Ok(loaded.value)
}

fn check(loaded: &Loaded<Config>) -> anyhow::Result<()> {
    let c = &loaded.value;
    let range = |r: &std::ops::RangeInclusive<i64>, unit: &str| {
        format!("allowed are {} to {} {unit}", r.start(), r.end())
    };
    if !UNREACHABLE_AFTER_MS_RANGE.contains(&c.unreachable_after_ms) {
        return Err(loaded.invalid(
            "unreachable_after_ms",
            c.unreachable_after_ms,
            &range(&UNREACHABLE_AFTER_MS_RANGE, "milliseconds"),
        ));
    }
    if !SKEW_MARGIN_MS_RANGE.contains(&c.skew_margin_ms) {
        return Err(loaded.invalid(
            "skew_margin_ms",
            c.skew_margin_ms,
            &range(&SKEW_MARGIN_MS_RANGE, "milliseconds"),
        ));
    }
    if !LONG_POLL_MAX_MS_RANGE.contains(&c.long_poll_max_ms) {
        return Err(loaded.invalid(
            "long_poll_max_ms",
            c.long_poll_max_ms,
            &format!(
                "allowed are {} to {} milliseconds",
                LONG_POLL_MAX_MS_RANGE.start(),
                LONG_POLL_MAX_MS_RANGE.end()
            ),
        ));
    }
    // A store waiting in a long poll is connected: the hold must end (and
    // the store be heard from again) before the store would count as gone.
    if i64::try_from(c.long_poll_max_ms).unwrap_or(i64::MAX) >= c.unreachable_after_ms {
        return Err(loaded.invalid(
            "long_poll_max_ms",
            c.long_poll_max_ms,
            &format!(
                "must be shorter than unreachable_after_ms ({}{}), or a connected store waiting \
                 in a long poll would count as unreachable",
                c.unreachable_after_ms,
                loaded.origin("unreachable_after_ms")
            ),
        ));
    }
    if c.alerts.unreachable_for_ms < c.unreachable_after_ms {
        return Err(loaded.invalid(
            "alerts.unreachable_for_ms",
            c.alerts.unreachable_for_ms,
            &format!(
                "must be at least unreachable_after_ms ({}): a store is unreachable before it \
                 is alerted about",
                c.unreachable_after_ms
            ),
        ));
    }
    if c.alerts.webhook_attempts == 0 {
        return Err(loaded.invalid(
            "alerts.webhook_attempts",
            0,
            "at least 1 failed attempt is needed to call a webhook failing",
        ));
    }
    if let Some(url) = &c.database_url
        && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
    {
        return Err(loaded.invalid(
            "database_url",
            "(hidden)",
            "a PostgreSQL URL such as postgres://hub@db.example/hub is expected",
        ));
    }
    if let Err(e) = ops_kit::log::parse_level(&c.log.level) {
        return Err(loaded.invalid(
            "log.level",
            format!("{:?}", c.log.level),
            &format!("a filter such as \"info\" or \"info,sync_hub=debug\" is expected ({e})"),
        ));
    }
    // Port 0 asks for any free port: two of them never collide.
    if c.metrics.listen == Some(c.listen) && c.listen.port() != 0 {
        return Err(loaded.invalid(
            "metrics.listen",
            c.listen,
            "the metrics need an address of their own, not the one of `listen`",
        ));
    }
    Ok(())
}

/// A complete, commented configuration file holding the defaults (and
/// `data_dir` when one is given): it parses back to exactly those settings.
pub fn render(data_dir: Option<&Path>) -> String {
    let d = Config::default();
    let data_dir = match data_dir {
        Some(dir) => format!(
            "data_dir = \"{}\"",
            dir.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        ),
        None => "# data_dir = \"/var/lib/sync-hub\"".to_owned(),
    };
    format!(
        r#"# sync-hub configuration.
#
# Each key may be left out. Later layers win: the built-in defaults, this
# file, environment variables (SYNC_HUB__LISTEN, SYNC_HUB__LOG__FORMAT for a
# key in a section), then command-line flags (--listen, --log-format).
# An unknown key is an error.

# Where the hub keeps its SQLite database (hub.db) and its signing key
# (hub.key). Without it: $STATE_DIRECTORY under systemd, else the platform
# data directory.
{data_dir}

# Keep the hub's state in PostgreSQL instead (the data directory then holds
# only hub.key). Every process serving one fleet uses the same URL and the
# same hub.key. Also SYNC_HUB_DATABASE_URL.
# database_url = "postgres://hub:secret@db.example/hub"

# Address of the sync protocol, the public API and the fleet dashboard.
listen = "{listen}"

# A store not heard from for this long is unreachable: web orders for it are
# answered 202 and wait. {unreach_min} to {unreach_max} milliseconds.
unreachable_after_ms = {unreach}

# Clock skew margin; a store's clock more than half of it off the hub's
# raises an alert. {skew_min} to {skew_max} milliseconds.
skew_margin_ms = {skew}

# Longest a store's pull is held open waiting for news; shorter than
# unreachable_after_ms. {poll_min} to {poll_max} milliseconds.
long_poll_max_ms = {poll}

[metrics]
# Serve Prometheus metrics at http://ADDR/metrics, apart from the main
# address. Off when unset.
# listen = "127.0.0.1:9170"

[log]
# "text" for people, "json" for log collectors (one object per line).
format = "{format}"
# A filter: "info", "warn", "info,sync_hub=debug". RUST_LOG wins when set.
level = "{level}"

[alerts]
# Raise store_unreachable when a store stays unreachable this long
# (at least unreachable_after_ms).
unreachable_for_ms = {a_unreach}
# Raise backlog_growing when a store has more events than this waiting to
# reach the hub.
backlog_events = {a_backlog}
# Raise webhook_failing when a delivery has failed this many times in a row.
webhook_attempts = {a_hooks}
"#,
        listen = d.listen,
        unreach = d.unreachable_after_ms,
        unreach_min = UNREACHABLE_AFTER_MS_RANGE.start(),
        unreach_max = UNREACHABLE_AFTER_MS_RANGE.end(),
        skew = d.skew_margin_ms,
        skew_min = SKEW_MARGIN_MS_RANGE.start(),
        skew_max = SKEW_MARGIN_MS_RANGE.end(),
        poll = d.long_poll_max_ms,
        poll_min = LONG_POLL_MAX_MS_RANGE.start(),
        poll_max = LONG_POLL_MAX_MS_RANGE.end(),
        format = match d.log.format {
            ops_kit::log::LogFormat::Text => "text",
            ops_kit::log::LogFormat::Json => "json",
        },
        level = d.log.level,
        a_unreach = d.alerts.unreachable_for_ms,
        a_backlog = d.alerts.backlog_events,
        a_hooks = d.alerts.webhook_attempts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sync-hub.toml");
        std::fs::write(&path, text)?;
        let loaded: Loaded<Config> =
            ops_kit::config::load("SYNC_HUB_CONFIG_TEST__", Some(&path), &Flags::default())?;
        check(&loaded)?;
        Ok(loaded.value)
    }

    #[test]
    fn the_default_file_parses_back_to_the_defaults() {
        assert_eq!(parse(&render(None)).unwrap(), Config::default());
        assert_eq!(
            parse(&render(Some(Path::new("/var/lib/sync-hub")))).unwrap(),
            Config {
                data_dir: Some("/var/lib/sync-hub".into()),
                ..Config::default()
            }
        );
    }

    #[test]
    fn the_packaged_file_is_the_default_file_for_var_lib() {
        assert_eq!(
            include_str!("../../packaging/sync-hub.toml"),
            render(Some(Path::new("/var/lib/sync-hub"))),
            "regenerate it: sync-hub --data-dir /var/lib/sync-hub default-config > packaging/sync-hub.toml"
        );
    }

    #[test]
    fn a_long_poll_as_long_as_the_unreachable_threshold_is_refused() {
        let err = parse("unreachable_after_ms = 3000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("long_poll_max_ms") && err.contains("unreachable_after_ms (3000 (from"),
            "{err}"
        );
        let ok = parse("unreachable_after_ms = 3000\nlong_poll_max_ms = 1000\n").unwrap();
        assert_eq!(ok.long_poll_max_ms, 1000);
        let err = parse("[alerts]\nunreachable_for_ms = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("alerts.unreachable_for_ms"), "{err}");
    }

    #[test]
    fn the_database_password_stays_out_of_debug_and_errors() {
        let c = parse("database_url = \"postgres://hub:hunter2@db/hub\"\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = parse("database_url = \"mysql://hub:hunter2@db/hub\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database_url") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
