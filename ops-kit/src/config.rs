//! Layered settings: built-in defaults, then a TOML file (`--config`), then
//! environment variables (`PREFIX__SECTION__KEY`), then flags. Each layer
//! is a figment provider, so an error names the key and where its value
//! came from (the file, the variable or the flag).

use std::fmt;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Reads the settings of type `T`: its `Default`, then `file`, then every
/// environment variable starting with `env_prefix` (e.g. `EDGE_NODE__`,
/// nested keys split at `__`), then `flags` (the flags given on the command
/// line, serialized without the ones left out). Unknown keys are errors
/// when `T` denies them.
pub fn load<T>(
    env_prefix: &str,
    file: Option<&Path>,
    flags: &impl Serialize,
) -> anyhow::Result<Loaded<T>>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut figment = Figment::from(Named {
        name: "the built-in defaults",
        data: Serialized::defaults(T::default()),
        flag: false,
    });
    if let Some(path) = file {
        if !path.is_file() {
            anyhow::bail!(
                "cannot read the config file {}: no such file (write one with `default-config`)",
                path.display()
            );
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment
        .merge(Env::prefixed(env_prefix).split("__"))
        .merge(Named {
            name: "command-line flag",
            data: Serialized::defaults(flags),
            flag: true,
        });
    let value = figment.extract::<T>().map_err(|e| explain(e, env_prefix))?;
    Ok(Loaded {
        value,
        figment,
        env_prefix: env_prefix.to_owned(),
    })
}

/// Settings as read, with the layers they came from for later checks.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    pub figment: Figment,
    env_prefix: String,
}

impl<T> Loaded<T> {
    /// An error for `key` holding `value`, naming where the value came from
    /// and what is allowed instead.
    pub fn invalid(&self, key: &str, value: impl fmt::Display, allowed: &str) -> anyhow::Error {
        anyhow::anyhow!("setting `{key}` = {value}{}: {allowed}", self.origin(key))
    }

    /// Where `key` got its value: " (from the file X)", " (from
    /// EDGE_NODE__KEY)", " (from --key)" or nothing for a default.
    pub fn origin(&self, key: &str) -> String {
        let Some(meta) = self.figment.find_metadata(key) else {
            return String::new();
        };
        let path: Vec<&str> = key.split('.').collect();
        if let Some(figment::Source::File(file)) = &meta.source {
            return format!(" (from {})", file.display());
        }
        if meta.name.starts_with("the built-in") {
            return String::new();
        }
        format!(
            " (from {})",
            source_key(meta, &Profile::Default, &path, &self.env_prefix)
        )
    }
}

/// Every error figment found, one per line, each naming its key and source.
fn explain(error: figment::Error, env_prefix: &str) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let mut line = e.kind.to_string();
            if let (Some(profile), Some(meta)) = (&e.profile, &e.metadata)
                && !e.path.is_empty()
            {
                let keys: Vec<&str> = e.path.iter().map(String::as_str).collect();
                line = format!("setting `{}`: {line}", e.path.join("."));
                match &meta.source {
                    Some(figment::Source::File(file)) => {
                        line.push_str(&format!(" (in {})", file.display()))
                    }
                    _ if meta.name.starts_with("the built-in") => {}
                    _ => line.push_str(&format!(
                        " (from {})",
                        source_key(meta, profile, &keys, env_prefix)
                    )),
                }
            } else if let Some(meta) = &e.metadata {
                match &meta.source {
                    Some(source) => line.push_str(&format!(" in {source}")),
                    None => line.push_str(&format!(" in {}", meta.name)),
                }
            }
            line
        })
        .collect();
    anyhow::anyhow!("invalid configuration: {}", lines.join("; "))
}

/// How the source spells `path`: the flag, or the whole environment
/// variable (figment's own spelling leaves out the prefix).
fn source_key(meta: &Metadata, profile: &Profile, path: &[&str], env_prefix: &str) -> String {
    let key = meta.interpolate(profile, path);
    if meta.name.contains("environment") {
        format!("{env_prefix}{}", path.join("__").to_ascii_uppercase())
    } else {
        key
    }
}

/// A provider under a name of ours, so errors say "--listen" rather than
/// "`Serialized` provider".
struct Named<P> {
    name: &'static str,
    data: P,
    flag: bool,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let meta = Metadata::named(self.name);
        if self.flag {
            meta.interpolater(|_, path| {
                // Flags spell nested keys with dashes: [metrics] listen is
                // --metrics-listen.
                format!("--{}", path.join("-").replace('_', "-"))
            })
        } else {
            meta
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.data.data()
    }
}

/// A value that must never reach a log line or `Debug` output, such as a
/// database URL with its password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// The flags given on the command line, by their setting's key (`listen`,
/// `metrics.listen`): a flag left out is absent, so it overrides nothing.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Flags(serde_json::Map<String, serde_json::Value>);

impl Flags {
    /// Sets `key` (dotted for a section) when the flag was given.
    pub fn set<T: Serialize>(mut self, key: &str, value: Option<T>) -> Self {
        let Some(value) = value else { return self };
        let Ok(value) = serde_json::to_value(value) else {
            return self;
        };
        let mut table = &mut self.0;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_owned(), value);
                break;
            }
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let serde_json::Value::Object(next) = entry else {
                break;
            };
            table = next;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        listen: SocketAddr,
        margin_ms: i64,
        secret: Option<Secret>,
        metrics: Metrics,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Metrics {
        listen: Option<SocketAddr>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".parse().unwrap(),
                margin_ms: 5,
                secret: None,
                metrics: Metrics::default(),
            }
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn a_flag_beats_the_file_and_a_missing_flag_does_not() {
        let f = file("margin_ms = 7\n[metrics]\nlisten = \"127.0.0.1:9\"\n");
        let loaded: Loaded<Settings> = load(
            "OPS_KIT_TEST_A__",
            Some(f.path()),
            &Flags::default()
                .set("margin_ms", Some(9))
                .set("metrics.listen", None::<String>),
        )
        .unwrap();
        assert_eq!(loaded.value.margin_ms, 9);
        assert_eq!(
            loaded.value.metrics.listen,
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(loaded.origin("margin_ms"), " (from --margin-ms)");
        let loaded: Loaded<Settings> =
            load("OPS_KIT_TEST_A__", Some(f.path()), &Flags::default()).unwrap();
        assert_eq!(loaded.value.margin_ms, 7);
        assert!(
            loaded
                .origin("margin_ms")
                .contains(&f.path().display().to_string())
        );
        assert_eq!(loaded.origin("listen"), "");
    }

    #[test]
    fn an_unknown_key_and_a_wrong_type_name_the_key_and_the_file() {
        let f = file("margn_ms = 7\n");
        let err = load::<Settings>("OPS_KIT_TEST_B__", Some(f.path()), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("margn_ms"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        let f = file("[metrics]\nlisten = \"nowhere\"\n");
        let err = load::<Settings>("OPS_KIT_TEST_B__", Some(f.path()), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_not_silence() {
        let err = load::<Settings>(
            "OPS_KIT_TEST_C__",
            Some(Path::new("/nonexistent/edge.toml")),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/edge.toml"), "{err}");
    }

    #[test]
    fn a_secret_stays_out_of_debug() {
        let f = file("secret = \"postgres://u:hunter2@db/hub\"\n");
        let loaded: Loaded<Settings> =
            load("OPS_KIT_TEST_D__", Some(f.path()), &Flags::default()).unwrap();
        assert_eq!(
            loaded.value.secret.as_ref().map(Secret::expose),
            Some("postgres://u:hunter2@db/hub")
        );
        assert!(!format!("{:?}", loaded.value).contains("hunter2"));
    }
}
