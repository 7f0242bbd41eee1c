//! The `edge-node` command line, kept in the library so the binary is a
//! one-line `main` and tests can drive the same code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::{Role, create_token};
use crate::config::Config;
use crate::store::{self, Clock, Store, SystemClock};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ops_kit::config::Flags;
use ops_kit::log::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "edge-node",
    version,
    about = "The booking node of one location"
)]
struct Cli {
    /// Read settings from this TOML file (write one with `default-config`).
    /// Environment variables (`EDGE_NODE__KEY`) and flags override it.
    #[arg(long, global = true, env = "EDGE_NODE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where this node keeps its database (default: $STATE_DIRECTORY under
    /// systemd, else the platform data directory). Setting `data_dir`.
    #[arg(long, global = true, env = "EDGE_NODE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log lines as `text` or `json`. Setting `[log] format`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this data directory a standalone, offline-only node.
    Init {
        #[arg(long, value_name = "ID")]
        location: String,
        /// IANA time zone of the location, e.g. Europe/Berlin.
        #[arg(long, value_name = "TZ")]
        timezone: String,
    },
    /// Bind this data directory to a location at the hub (an empty one
    /// becomes that location; a standalone node keeps its history).
    Enroll {
        #[arg(long, value_name = "URL")]
        hub: String,
        #[arg(long, value_name = "TOKEN")]
        token: String,
        /// Rebuild a replacement PC from the hub's copy of the location's log.
        #[arg(long)]
        restore: bool,
    },
    /// Recover from a fork (a PC restored from an old backup): take the
    /// hub's copy of the log, quarantine our divergent events for review,
    /// and continue under a new epoch. The server must be stopped.
    Reset,
    /// Serve the LAN API. Each flag overrides the setting of its name.
    Serve {
        /// Address of the LAN UI and API (default 0.0.0.0:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Shift this node's clock (testing clock skew).
        #[arg(
            long,
            hide = true,
            env = "EDGE_NODE_CLOCK_OFFSET_MS",
            default_value_t = 0
        )]
        clock_offset_ms: i64,
        /// How long past a request's expiry to wait for the owner's decision
        /// before giving up; an offset to the hub beyond half of it is an
        /// alert.
        #[arg(long, value_name = "MS")]
        skew_margin_ms: Option<i64>,
        /// Claim an older sync protocol (testing upgrades).
        #[arg(
            long,
            hide = true,
            env = "EDGE_NODE_SYNC_PROTOCOL",
            default_value_t = shared::protocol::PROTOCOL,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(shared::protocol::PROTOCOL))
        )]
        sync_protocol: u32,
        /// Seconds a kiosk waits untouched before it clears the screen for
        /// the next customer.
        #[arg(long, value_name = "SECONDS")]
        kiosk_idle_seconds: Option<i64>,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics. Setting
        /// `[metrics] listen`.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Print a complete, commented configuration file with the defaults
    /// (and --data-dir, when given).
    DefaultConfig,
    /// Print the LAN API's OpenAPI document, as served at /openapi.json.
    Openapi,
    /// Manage LAN API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage staff and managers who sign in to the LAN UI with a PIN.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write a consistent copy of this store's database to FILE while the
    /// server runs. A data directory holding the copy as its `edge.db`
    /// (with this store's `device.key`) serves the same state.
    Backup {
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Show sync state, backlog and clock offset.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a hub and two stores with sample catalogs in temporary
    /// directories, and a simulated website placing orders.
    #[cfg(feature = "demo")]
    Demo,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user who signs in with NAME and PIN.
    Add {
        #[arg(long)]
        name: String,
        /// staff or manager.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// 4 to 12 digits. Without it the PIN is read from the first line
        /// of standard input, so that it stays out of shell history and
        /// the process list.
        #[arg(long)]
        pin: Option<String>,
    },
    /// Lift NAME's sign-in locks on every device (works while the server
    /// runs).
    Unlock {
        #[arg(long)]
        name: String,
    },
    /// List every user with their role and any lock in force.
    List,
    /// Remove NAME: their sessions end at once.
    Remove {
        #[arg(long)]
        name: String,
    },
    /// Give NAME a new PIN (from standard input when --pin is not given):
    /// their sessions end and their locks are lifted.
    SetPin {
        #[arg(long)]
        name: String,
        #[arg(long)]
        pin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new bearer token for ROLE (kiosk, staff or manager).
    Create {
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List every token by its id (the start of its hash), role and age.
    List,
    /// Revoke the token with ID, as `token list` shows it. A running
    /// server refuses it within a minute (it trusts a token it checked for
    /// that long).
    Revoke {
        #[arg(long)]
        id: String,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| format!("unknown role {value:?}: use kiosk, staff or manager"))
}

fn default_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "edge-node")
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
        print!("{}", ops_kit::openapi::to_json(&crate::server::openapi()));
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
        .set("log.format", cli.log_format);
    match &cli.command {
        Command::Serve {
            listen,
            skew_margin_ms,
            kiosk_idle_seconds,
            tls_cert,
            tls_key,
            metrics_listen,
            ..
        } => flags
            .set("listen", *listen)
            .set("skew_margin_ms", *skew_margin_ms)
            .set("kiosk_idle_seconds", *kiosk_idle_seconds)
            .set("tls_cert", tls_cert.as_ref())
            .set("tls_key", tls_key.as_ref())
            .set("metrics.listen", *metrics_listen),
        _ => flags,
    }
}

fn run(cli: Cli, config: Config) -> Result<()> {
    let data_dir = match config.data_dir.clone() {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let clock = SystemClock::default();
    match cli.command {
        Command::Init { location, timezone } => {
            let location = shared::LocationId::parse(&location)?;
            let node = store::init(&data_dir, &location, &timezone, clock.now_ms())?;
            println!(
                "initialized location {} ({}) in {}",
                node.location,
                node.timezone,
                data_dir.display()
            );
            Ok(())
        }
        Command::Serve {
            clock_offset_ms,
            sync_protocol,
            ..
        } => {
            let tls = match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => Some(crate::server::tls_config(cert, key)?),
                _ => None,
            };
            let clock = SystemClock {
                offset_ms: clock_offset_ms,
            };
            let store = Store::open_with(
                &data_dir,
                Arc::new(clock),
                store::StoreSettings {
                    skew_margin_ms: config.skew_margin_ms,
                    sync_protocol,
                    kiosk_idle_seconds: config.kiosk_idle_seconds,
                },
            )?;
            serve(store, &config, tls)
        }
        Command::DefaultConfig => {
            print!("{}", crate::config::render(Some(&data_dir)));
            Ok(())
        }
        Command::Openapi => {
            print!("{}", ops_kit::openapi::to_json(&crate::server::openapi()));
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { role },
        } => {
            let (conn, _node) = store::open_admin(&data_dir)?;
            let token = create_token(&conn, role, clock.now_ms())?;
            println!("{token}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List,
        } => {
            let (conn, node) = store::open_admin(&data_dir)?;
            let tz = local_zone(&node.timezone);
            for t in crate::auth::list_tokens(&conn)? {
                println!(
                    "{}  {:<8} created {}",
                    t.id,
                    t.role.as_str(),
                    local(t.created_at_ms, &tz)
                );
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => {
            let (conn, _node) = store::open_admin(&data_dir)?;
            crate::auth::revoke_token(&conn, &id)?;
            println!("token {} revoked", id.trim());
            Ok(())
        }
        Command::User {
            command: UserCommand::List,
        } => {
            let (conn, node) = store::open_admin(&data_dir)?;
            let tz = local_zone(&node.timezone);
            for u in crate::auth::list_users(&conn, clock.now_ms())? {
                let lock = u
                    .locked_until_ms
                    .map(|at| format!("  locked until {}", local(at, &tz)))
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<8} added {}{lock}",
                    u.name,
                    u.role.as_str(),
                    local(u.created_at_ms, &tz)
                );
            }
            Ok(())
        }
        Command::User {
            command: UserCommand::Remove { name },
        } => {
            let (mut conn, _node) = store::open_admin(&data_dir)?;
            let name = crate::auth::remove_user(&mut conn, &name)?;
            println!("user {name} removed; their sessions have ended");
            Ok(())
        }
        Command::User {
            command: UserCommand::SetPin { name, pin },
        } => {
            let pin = match pin {
                Some(pin) => pin,
                None => read_pin()?,
            };
            let (mut conn, _node) = store::open_admin(&data_dir)?;
            let name = crate::auth::set_pin(&mut conn, &name, &pin)?;
            println!("user {name} has a new PIN; their sessions have ended");
            Ok(())
        }
        Command::Status { json } => status(&data_dir, json),
        Command::Backup { to } => {
            let done = store::backup::backup(&data_dir, &to)?;
            println!(
                "backed up {} bookings and the log up to event {} to {}",
                done.bookings,
                done.head_seq,
                done.path.display()
            );
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { name, role, pin },
        } => {
            let pin = match pin {
                Some(pin) => pin,
                None => read_pin()?,
            };
            let (conn, _node) = store::open_admin(&data_dir)?;
            crate::auth::add_user(&conn, &name, role, &pin, clock.now_ms())?;
            println!("user {} added as {}", name.trim(), role.as_str());
            Ok(())
        }
        Command::User {
            command: UserCommand::Unlock { name },
        } => {
            let (conn, _node) = store::open_admin(&data_dir)?;
            let name = crate::auth::unlock_user(&conn, &name)?;
            println!("user {name} unlocked: every device may try again");
            Ok(())
        }
        Command::Enroll {
            hub,
            token,
            restore,
        } => {
            let enrolled = runtime()?.block_on(crate::sync::enroll(
                &data_dir,
                &hub,
                &token,
                restore,
                Arc::new(clock),
            ))?;
            println!(
                "enrolled as {} (epoch {}) with {hub}{}",
                enrolled.location,
                enrolled.epoch,
                if restore {
                    format!(
                        "; rebuilt from {} events held by the hub",
                        enrolled.restored_events
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Reset => {
            let reset = runtime()?.block_on(crate::sync::reset(&data_dir, Arc::new(clock)))?;
            println!(
                "reset to epoch {}: rebuilt from {} events held by the hub; {} events of ours quarantined for review (GET /api/v1/quarantine)",
                reset.epoch, reset.hub_events, reset.quarantined
            );
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo => demo(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Binds the configured address, announces it, tells systemd it is ready,
/// and serves until a shutdown signal; the metrics listener and the
/// watchdog run beside it.
fn serve(store: Store, config: &Config, tls: Option<Arc<rustls::ServerConfig>>) -> Result<()> {
    let listen = config.listen;
    let metrics_listen = config.metrics.listen;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (setting `listen`)"))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{addr}");
        let metrics = match metrics_listen {
            Some(at) => {
                let store = store.clone();
                Some(
                    ops_kit::metrics::serve(
                        at,
                        move || crate::metrics::refresh(store.clone()),
                        std::future::pending(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        std::io::stdout().flush()?;
        tracing::info!(node.location = %store.node().location, %addr, "serving");
        ops_kit::notify::ready();
        let watched = store.clone();
        let watchdog = tokio::spawn(async move {
            ops_kit::notify::watchdog(move || {
                let store = watched.clone();
                async move { crate::server::is_ready(&store).await }
            })
            .await;
        });
        let served = crate::server::run_with(store, listener, tls, async {
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

fn status(data_dir: &Path, json: bool) -> Result<()> {
    let (conn, node) = store::open_admin(data_dir)?;
    let status = crate::store::queries::sync_status(
        &conn,
        node.hub.is_some(),
        shared::limits::SKEW_MARGIN_MS,
    )?;
    if json {
        let mut value = serde_json::to_value(&status)?;
        value["location"] = serde_json::Value::from(node.location.as_str());
        value["epoch"] = serde_json::Value::from(node.epoch);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let never = || "never".to_owned();
    println!("location:        {} ({})", node.location, node.timezone);
    println!("epoch:           {}", node.epoch);
    match &node.hub {
        Some(hub) => println!("enrolled:        yes, with {}", hub.url),
        None => println!("enrolled:        no (standalone)"),
    }
    println!("state:           {}", status.state);
    if let Some(error) = &status.error {
        println!("error:           {error}");
    }
    println!("backlog_events:  {}", status.backlog_events);
    println!(
        "last_push_at:    {}",
        status.last_push_at.map_or_else(never, |t| t.to_string())
    );
    println!(
        "last_pull_at:    {}",
        status.last_pull_at.map_or_else(never, |t| t.to_string())
    );
    println!(
        "clock_offset_ms: {}{}",
        status
            .clock_offset_ms
            .map_or_else(|| "unknown".into(), |o| o.to_string()),
        if status.clock_alert {
            "  ALERT: this clock is off by more than half the skew margin"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(feature = "demo")]
fn demo() -> Result<()> {
    runtime()?.block_on(crate::demo::run(shutdown_signal()))
}

/// The PIN from the first line of standard input, asked for (without
/// echo) when a person is typing.
fn read_pin() -> anyhow::Result<String> {
    let pin = ops_kit::prompt::secret_line("PIN (4 to 12 digits): ")?;
    if pin.is_empty() {
        anyhow::bail!("no PIN given: pass --pin or write it to standard input");
    }
    Ok(pin)
}

fn local_zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// A time as the store reads it: its own zone, to the minute.
fn local(at_ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| at_ms.to_string())
}
