//! The `sync-hub` command line, kept in the library so the binary is a
//! one-line `main` and tests can drive the same code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shared::LocationId;

use crate::{HubSettings, keys};

/// How long an enrollment token stays usable.
const ENROLLMENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Parser)]
#[command(name = "sync-hub", version, about = "The central sync hub")]
struct Cli {
    /// Where the hub keeps its database and key (default: $STATE_DIRECTORY
    /// under systemd, else the platform data directory).
    #[arg(long, global = true, env = "SYNC_HUB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the hub's state in this PostgreSQL database instead of SQLite in
    /// the data directory (which then holds only the hub key), e.g.
    /// postgres://hub@db.example/hub. Every process serving one fleet uses
    /// the same URL and the same hub key.
    #[arg(long, global = true, env = "SYNC_HUB_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sync protocol and the public API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
        listen: SocketAddr,
        /// A store not heard from for this long is unreachable.
        #[arg(long, default_value_t = 5000, value_name = "MS")]
        unreachable_after_ms: i64,
        /// Clock skew margin; an offset beyond half of it is an alert.
        #[arg(long, default_value_t = shared::limits::SKEW_MARGIN_MS, value_name = "MS")]
        skew_margin_ms: i64,
    },
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
    /// Manage webhooks: every booking state change is POSTed to each URL.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
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

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let database_url = cli.database_url.as_deref();
    match cli.command {
        Command::Serve {
            listen,
            unreachable_after_ms,
            skew_margin_ms,
        } => {
            let settings = HubSettings {
                unreachable_after_ms,
                skew_margin_ms,
                ..HubSettings::default()
            };
            let state = runtime.block_on(crate::open_server(&data_dir, database_url, settings))?;
            let files = crate::serve::raise_open_file_limit();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!("listening on http://{}", listener.local_addr()?);
                match files {
                    Ok(limit) => println!(
                        "open files: up to {limit}, room for about {} connected stores",
                        crate::serve::stores_for_open_files(limit)
                    ),
                    Err(e) => eprintln!("could not raise the open file limit: {e}"),
                }
                std::io::stdout().flush()?;
                crate::run(state, listener, shutdown_signal()).await?;
                Ok(())
            })
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
            crate::backup::copy(&source, &to)?;
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
