//! The store's settings, read in layers (built-in defaults, the `--config`
//! TOML file, `EDGE_NODE__KEY` environment variables, flags), checked
//! before anything starts, and printed as a commented file by
//! `edge-node default-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ops_kit::config::{Flags, Loaded};
use ops_kit::log::LogSettings;
use ops_kit::metrics::MetricsSettings;
use serde::{Deserialize, Serialize};

use crate::store;

/// The prefix of environment variables that set keys: `EDGE_NODE__LISTEN`,
/// `EDGE_NODE__LOG__FORMAT` (a section's key after a second `__`).
pub const ENV_PREFIX: &str = "EDGE_NODE__";

/// The clock-skew margin a store accepts: below a second, ordinary network
/// jitter would fire the clock alert; above an hour, a request would wait
/// that long past its expiry for an owner that will never answer.
pub const SKEW_MARGIN_MS_RANGE: std::ops::RangeInclusive<i64> = 1_000..=3_600_000;

/// A kiosk's idle reset: under 5 s it clears a customer mid-sentence; over
/// an hour it keeps one customer's name on screen for the next.
pub const KIOSK_IDLE_SECONDS_RANGE: std::ops::RangeInclusive<i64> = 5..=3600;

/// Every setting of `edge-node serve`, each under the name of its flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    pub skew_margin_ms: i64,
    pub kiosk_idle_seconds: i64,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            skew_margin_ms: shared::limits::SKEW_MARGIN_MS,
            kiosk_idle_seconds: store::KIOSK_IDLE_SECONDS,
            tls_cert: None,
            tls_key: None,
            metrics: MetricsSettings::default(),
            log: LogSettings::default(),
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
    if !SKEW_MARGIN_MS_RANGE.contains(&c.skew_margin_ms) {
        return Err(loaded.invalid(
            "skew_margin_ms",
            c.skew_margin_ms,
            &format!(
                "allowed are {} to {} milliseconds",
                SKEW_MARGIN_MS_RANGE.start(),
                SKEW_MARGIN_MS_RANGE.end()
            ),
        ));
    }
    if !KIOSK_IDLE_SECONDS_RANGE.contains(&c.kiosk_idle_seconds) {
        return Err(loaded.invalid(
            "kiosk_idle_seconds",
            c.kiosk_idle_seconds,
            &format!(
                "allowed are {} to {} seconds",
                KIOSK_IDLE_SECONDS_RANGE.start(),
                KIOSK_IDLE_SECONDS_RANGE.end()
            ),
        ));
    }
    match (&c.tls_cert, &c.tls_key) {
        (Some(_), None) => {
            return Err(loaded.invalid(
                "tls_cert",
                "set",
                "tls_key must be set too: HTTPS needs the certificate and its private key",
            ));
        }
        (None, Some(_)) => {
            return Err(loaded.invalid(
                "tls_key",
                "set",
                "tls_cert must be set too: HTTPS needs the certificate and its private key",
            ));
        }
        _ => {}
    }
    if let Err(e) = ops_kit::log::parse_level(&c.log.level) {
        return Err(loaded.invalid(
            "log.level",
            format!("{:?}", c.log.level),
            &format!("a filter such as \"info\" or \"info,edge_node=debug\" is expected ({e})"),
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
        Some(dir) => format!("data_dir = {}", toml_string(&dir.display().to_string())),
        None => "# data_dir = \"/var/lib/edge-node\"".to_owned(),
    };
    format!(
        r#"# edge-node configuration.
#
# Each key may be left out. Later layers win: the built-in defaults, this
# file, environment variables (EDGE_NODE__LISTEN, EDGE_NODE__LOG__FORMAT for
# a key in a section), then command-line flags (--listen, --log-format).
# An unknown key is an error.

# Where the store keeps its database (edge.db) and its device key. Without
# it: $STATE_DIRECTORY under systemd, else the platform data directory.
{data_dir}

# Address of the LAN web UI and the JSON API.
listen = "{listen}"

# How long past a web order's expiry the store waits for its decision to
# reach the hub; a clock more than half of it off the hub's raises an alert.
# {skew_min} to {skew_max} milliseconds.
skew_margin_ms = {skew}

# Seconds a kiosk may sit untouched before it clears the screen for the next
# customer. {idle_min} to {idle_max}.
kiosk_idle_seconds = {idle}

# Serve HTTPS with this PEM certificate chain and its private key (both or
# neither).
# tls_cert = "/etc/edge-node/cert.pem"
# tls_key = "/etc/edge-node/key.pem"

[metrics]
# Serve Prometheus metrics at http://ADDR/metrics, apart from the LAN
# address. Off when unset.
# listen = "127.0.0.1:9180"

[log]
# "text" for people, "json" for log collectors (one object per line).
format = "{format}"
# A filter: "info", "warn", "info,edge_node=debug". RUST_LOG wins when set.
level = "{level}"
"#,
        listen = d.listen,
        skew = d.skew_margin_ms,
        skew_min = SKEW_MARGIN_MS_RANGE.start(),
        skew_max = SKEW_MARGIN_MS_RANGE.end(),
        idle = d.kiosk_idle_seconds,
        idle_min = KIOSK_IDLE_SECONDS_RANGE.start(),
        idle_max = KIOSK_IDLE_SECONDS_RANGE.end(),
        format = match d.log.format {
            ops_kit::log::LogFormat::Text => "text",
            ops_kit::log::LogFormat::Json => "json",
        },
        level = d.log.level,
    )
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("edge-node.toml");
        std::fs::write(&path, text)?;
        // A prefix no environment sets, so the test reads the file alone.
        let loaded: Loaded<Config> =
            ops_kit::config::load("EDGE_NODE_CONFIG_TEST__", Some(&path), &Flags::default())?;
        check(&loaded)?;
        Ok(loaded.value)
    }

    #[test]
    fn the_default_file_parses_back_to_the_defaults() {
        assert_eq!(parse(&render(None)).unwrap(), Config::default());
        let with_dir = parse(&render(Some(Path::new("/var/lib/edge-node")))).unwrap();
        assert_eq!(
            with_dir,
            Config {
                data_dir: Some("/var/lib/edge-node".into()),
                ..Config::default()
            }
        );
    }

    #[test]
    fn the_packaged_file_is_the_default_file_for_var_lib() {
        let packaged = include_str!("../../packaging/edge-node.toml");
        assert_eq!(
            packaged,
            render(Some(Path::new("/var/lib/edge-node"))),
            "regenerate it: edge-node --data-dir /var/lib/edge-node default-config > packaging/edge-node.toml"
        );
    }

    #[test]
    fn out_of_range_and_unpaired_values_name_their_key() {
        let err = parse("kiosk_idle_seconds = 2\n").unwrap_err().to_string();
        assert!(
            err.contains("kiosk_idle_seconds") && err.contains("5 to 3600"),
            "{err}"
        );
        let err = parse("skew_margin_ms = 0\n").unwrap_err().to_string();
        assert!(
            err.contains("skew_margin_ms") && err.contains("edge-node.toml"),
            "{err}"
        );
        let err = parse("tls_cert = \"/x.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("tls_key"), "{err}");
        let err = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(err.contains("log.format"), "{err}");
        let err = parse("[log]\nlevel = \"info,,=x[\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.level"), "{err}");
        let err = parse("[metric]\nlisten = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metric"), "{err}");
    }
}
