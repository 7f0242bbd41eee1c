//! The `sync-hub` command line, kept in the library so the binary is a
//! one-line `main` and tests can drive the same code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shared::LocationId;

use crate::config::Config;
use crate::{HubSettings, keys};
use ops_kit::config::{Flags, Secret};
use ops_kit::log::LogFormat;

/// How long an enrollment token stays usable.
const ENROLLMENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Parser)]
#[command(name = "sync-hub", version, about = "The central sync hub")]
struct Cli {
    /// Read settings from this TOML file (write one with `default-config`).
    /// Environment variables (`SYNC_HUB__KEY`) and flags override it.
    #[arg(long, global = true, env = "SYNC_HUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the hub keeps its database and key (default: $STATE_DIRECTORY
    /// under systemd, else the platform data directory). Setting `data_dir`.
    #[arg(long, global = true, env = "SYNC_HUB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the hub's state in this PostgreSQL database instead of SQLite in
    /// the data directory (which then holds only the hub key), e.g.
    /// postgres://hub@db.example/hub. Every process serving one fleet uses
    /// the same URL and the same hub key. Setting `database_url`.
    #[arg(
        long,
        global = true,
        env = "SYNC_HUB_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Log lines as `text` or `json`. Setting `[log] format`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sync protocol, the public API and the fleet dashboard.
    /// Each flag overrides the setting of its name.
    Serve {
        /// Address to serve on (default 127.0.0.1:7700).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// A store not heard from for this long is unreachable.
        #[arg(long, value_name = "MS")]
        unreachable_after_ms: Option<i64>,
        /// Clock skew margin; an offset beyond half of it is an alert.
        #[arg(long, value_name = "MS")]
        skew_margin_ms: Option<i64>,
        /// Longest a store's pull is held open; shorter than
        /// --unreachable-after-ms.
        #[arg(long, value_name = "MS")]
        long_poll_max_ms: Option<u64>,
        /// Serve Prometheus metrics at http://ADDR/metrics. Setting
        /// `[metrics] listen`.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Print a complete, commented configuration file with the defaults
    /// (and --data-dir, when given).
    DefaultConfig,
    /// Print the hub's OpenAPI document, as served at /openapi.json.
    Openapi,
    /// Make a hub in the data directory (or on --database-url): its
    /// database and its signing key, so that locations and API keys can be
    /// added before it first serves. `serve` does the same when needed.
    Init,
    /// Write a consistent copy of the hub's SQLite database to FILE while
    /// the hub runs. A data directory holding the copy as its `hub.db`,
    /// with this hub's `hub.key`, serves the same state.
    Backup {
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Manage locations.
    Location {
        #[command(subcommand)]
        command: LocationCommand,
    },
    /// Manage public API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Manage the operators who sign in to the fleet dashboard at the hub's
    /// `/`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage webhooks: every booking state change and every alert is
    /// POSTed to each URL.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add an operator; the password (at least 12 characters) is read from
    /// the first line of standard input.
    Add {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Add a receiver; prints the HMAC secret its signatures use as the
    /// last line.
    Add {
        #[arg(long)]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum LocationCommand {
    /// Add a location (or re-issue a token for it); prints a one-time
    /// enrollment token, valid 24 hours, as the last line.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long)]
        timezone: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Print a new API key for the public API as the last line.
    Create {
        #[arg(long)]
        name: String,
    },
}

fn default_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "sync-hub")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .context("cannot find a data directory for this user; pass --data-dir")
}

/// Parses the command line, reads the settings, runs the command, and
/// reports errors on stderr with a non-zero exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::DefaultConfig = cli.command {
        print!("{}", crate::config::render(cli.data_dir.as_deref()));
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Openapi = cli.command {
        print!("{}", ops_kit::openapi::to_json(&crate::api::openapi()));
        return std::process::ExitCode::SUCCESS;
    }
    let result = crate::config::load(cli.config.as_deref(), &flags(&cli)).and_then(|config| {
        ops_kit::log::init(&config.log);
        run(cli, config)
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The flags given, as the settings they override.
fn flags(cli: &Cli) -> Flags {
    let flags = Flags::default()
        .set("data_dir", cli.data_dir.as_ref())
        .set("database_url", cli.database_url.as_ref())
        .set("log.format", cli.log_format);
    match &cli.command {
        Command::Serve {
            listen,
            unreachable_after_ms,
            skew_margin_ms,
            long_poll_max_ms,
            metrics_listen,
        } => flags
            .set("listen", *listen)
            .set("unreachable_after_ms", *unreachable_after_ms)
            .set("skew_margin_ms", *skew_margin_ms)
            .set("long_poll_max_ms", *long_poll_max_ms)
            .set("metrics.listen", *metrics_listen),
        _ => flags,
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn run(cli: Cli, config: Config) -> Result<()> {
    let data_dir = match config.data_dir.clone() {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let database_url = config.database_url.as_ref().map(Secret::expose);
    match cli.command {
        Command::Serve { .. } => {
            let listen = config.listen;
            let state = runtime.block_on(crate::open_server(
                &data_dir,
                database_url,
                config.hub_settings(),
            ))?;
            let files = ops_kit::serve::raise_open_file_limit();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (setting `listen`)"))?;
                println!("listening on http://{}", listener.local_addr()?);
                match files {
                    Ok(limit) => println!(
                        "open files: up to {limit}, room for about {} connected stores",
                        ops_kit::serve::stores_for_open_files(limit)
                    ),
                    Err(e) => eprintln!("could not raise the open file limit: {e}"),
                }
                let metrics = match config.metrics.listen {
                    Some(at) => {
                        let state = state.clone();
                        Some(
                            ops_kit::metrics::serve(
                                at,
                                move || crate::metrics::refresh(state.clone()),
                                std::future::pending(),
                            )
                            .await?,
                        )
                    }
                    None => None,
                };
                std::io::stdout().flush()?;
                ops_kit::notify::ready();
                let storage = state.storage.clone();
                let watchdog = tokio::spawn(async move {
                    ops_kit::notify::watchdog(move || {
                        let storage = storage.clone();
                        async move { storage.ready().await.is_ok() }
                    })
                    .await;
                });
                let served = crate::run(state, listener, async {
                    shutdown_signal().await;
                    ops_kit::notify::stopping();
                })
                .await;
                watchdog.abort();
                if let Some(metrics) = metrics {
                    metrics.abort();
                }
                served?;
                Ok(())
            })
        }
        Command::DefaultConfig => {
            print!("{}", crate::config::render(Some(&data_dir)));
            Ok(())
        }
        Command::Openapi => {
            print!("{}", ops_kit::openapi::to_json(&crate::api::openapi()));
            Ok(())
        }
        Command::Init => {
            runtime.block_on(crate::open_server(
                &data_dir,
                database_url,
                HubSettings::default(),
            ))?;
            match database_url {
                Some(_) => println!(
                    "hub ready on its PostgreSQL database; its key is in {}",
                    data_dir.join(keys::HUB_KEY_FILE).display()
                ),
                None => println!("hub ready in {}", data_dir.display()),
            }
            Ok(())
        }
        Command::Backup { to } => {
            anyhow::ensure!(
                database_url.is_none(),
                "this hub keeps its state in PostgreSQL: back it up with pg_dump or \
                 pg_basebackup (README, \"The hub on PostgreSQL\"), and keep hub.key with it"
            );
            let source = data_dir.join(crate::storage::sqlite::DB_FILE);
            anyhow::ensure!(
                source.exists(),
                "{} holds no hub database: pass the --data-dir the hub serves from",
                data_dir.display()
            );
            ops_kit::backup::copy(&source, &to)?;
            println!(
                "backed up the hub's database to {}; keep {} with it",
                to.display(),
                data_dir.join(keys::HUB_KEY_FILE).display()
            );
            Ok(())
        }
        Command::Location {
            command: LocationCommand::Add { id, name, timezone },
        } => {
            let id = LocationId::parse(&id)?;
            jiff::tz::TimeZone::get(&timezone)
                .with_context(|| format!("unknown IANA time zone {timezone:?}"))?;
            anyhow::ensure!(!name.trim().is_empty(), "the name must not be empty");
            anyhow::ensure!(
                name.trim().chars().count() <= 200
                    && !shared::booking::has_hidden_characters(&name),
                "the name is at most 200 characters, without control or text-direction characters"
            );
            let storage = runtime.block_on(crate::open_storage(&data_dir, database_url))?;
            let (token, hash) = keys::new_secret("enroll_")?;
            let now = now_ms();
            runtime.block_on(storage.add_location(
                &id,
                name.trim(),
                &timezone,
                &hash,
                now + ENROLLMENT_TOKEN_TTL_MS,
                now,
            ))?;
            println!("location {id} added; enrollment token (one use, valid 24 h):");
            println!("{token}");
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { name },
        } => {
            let name = crate::dashboard::check_name(&name).map_err(anyhow::Error::msg)?;
            let storage = runtime.block_on(crate::open_storage(&data_dir, database_url))?;
            let password = ops_kit::prompt::secret_line("Password (at least 12 characters): ")?;
            let hash = crate::dashboard::hash_password(&password)?;
            runtime.block_on(storage.add_operator(&name, &hash, now_ms()))?;
            println!("operator {name} added: sign in at the hub's / with this name and password");
            Ok(())
        }
        Command::Webhook {
            command: WebhookCommand::Add { url },
        } => {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "the webhook URL must be http:// or https://"
            );
            let storage = runtime.block_on(crate::open_storage(&data_dir, database_url))?;
            let (secret, _) = keys::new_secret("whsec_")?;
            let id = runtime.block_on(storage.add_webhook(&url, &secret, now_ms()))?;
            println!("webhook {id} added for {url}; signing secret:");
            println!("{secret}");
            Ok(())
        }
        Command::ApiKey {
            command: ApiKeyCommand::Create { name },
        } => {
            let storage = runtime.block_on(crate::open_storage(&data_dir, database_url))?;
            let (key, hash) = keys::new_secret("hub_")?;
            runtime.block_on(storage.add_api_key(&name, &hash, now_ms()))?;
            println!("{key}");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
