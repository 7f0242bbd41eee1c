//! Log output: human-readable text or one JSON object per line, on stderr
//! (journald and container runtimes collect it from there).

use serde::{Deserialize, Serialize};

/// How log lines are written (`--log-format`, `[log] format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `[log]` section both servers share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,sync_hub=debug`; `RUST_LOG`
    /// wins when it is set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Checks the filter before anything runs, so a typo is an error that
/// names the setting rather than a silent default.
pub fn parse_level(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())
}

/// Installs the process's logger. A span's fields (the request id among
/// them) appear on every line logged inside it, in both formats.
pub fn init(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| parse_level(&settings.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running several servers in one process) keeps
    // the first logger.
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
