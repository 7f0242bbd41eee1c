//! The central sync hub. Edge nodes replay their ordered, signed event logs
//! to it and pull what is addressed to them; it keeps a materialized view of
//! every location's catalog, bookings and availability, and serves the
//! public API.
//!
//! [`router`] and [`run`] are what the binary and the tests start.

pub mod alerts;
pub mod api;
pub mod background;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod enrollment;
pub mod error;
pub mod fleet;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod routing;
pub mod service;
pub mod storage;
pub mod view;
pub mod working;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

pub use api::{AppState, HubSettings, router};
use tokio::net::TcpListener;

/// Opens the default (embedded SQLite) storage and the hub key of `data_dir`.
pub fn open(data_dir: &Path, settings: HubSettings) -> anyhow::Result<AppState> {
    let storage = storage::sqlite::SqliteStorage::open(data_dir)?;
    let key = keys::load_or_create_hub_key(data_dir)?;
    Ok(state(Arc::new(storage), key, settings))
}

/// Opens what `sync-hub serve` serves: the PostgreSQL database at
/// `database_url` when there is one (refused if it belongs to a hub with
/// another key than the one in `data_dir`), else SQLite in `data_dir`.
pub async fn open_server(
    data_dir: &Path,
    database_url: Option<&str>,
    settings: HubSettings,
) -> anyhow::Result<AppState> {
    let Some(url) = database_url else {
        return open(data_dir, settings);
    };
    let key = keys::load_or_create_hub_key(data_dir)?;
    let storage = storage::postgres::PostgresStorage::connect(url, Some(&key.public_key_b64()))
        .await
        .map_err(database_error)?;
    Ok(state(Arc::new(storage), key, settings))
}

/// Opens the storage an administration command works on: PostgreSQL at
/// `database_url` when there is one, else SQLite in `data_dir`. It signs
/// nothing, so it neither needs nor records a hub key.
pub async fn open_storage(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn storage::HubStorage>> {
    Ok(match database_url {
        Some(url) => Arc::new(
            storage::postgres::PostgresStorage::connect(url, None)
                .await
                .map_err(database_error)?,
        ),
        None => {
            // An administration command never makes a hub: a mistyped or
            // missing --data-dir would otherwise start a second, empty one
            // whose tokens the real hub refuses.
            if !data_dir.join(storage::sqlite::DB_FILE).exists() {
                anyhow::bail!(
                    "{} holds no hub: pass the --data-dir (or SYNC_HUB_DATA_DIR) that `sync-hub serve` \
                     uses, or make a hub there first with `sync-hub init`",
                    data_dir.display()
                );
            }
            Arc::new(storage::sqlite::SqliteStorage::open(data_dir)?)
        }
    })
}

/// A database failure at start, with its cause spelled out.
fn database_error(e: storage::StorageError) -> anyhow::Error {
    match &e {
        storage::StorageError::Backend(source) => anyhow::anyhow!("{source}"),
        _ => anyhow::Error::new(e),
    }
}

fn state(
    storage: Arc<dyn storage::HubStorage>,
    key: shared::signing::SigningKey,
    settings: HubSettings,
) -> AppState {
    AppState {
        inboxes: storage.inboxes(),
        decisions: storage.decisions(),
        storage,
        key: Arc::new(key),
        settings,
        in_flight: Arc::default(),
        fleet: tokio::sync::watch::channel(None).0,
    }
}

/// Serves the hub on `listener` until `shutdown` resolves, with the expiry
/// sweeper, the webhook dispatcher and the fleet watch (alerts, the
/// dashboard's live view) running beside it.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(background::sweep(state.clone(), stop_rx.clone()));
    let webhooks = tokio::spawn(background::deliver_webhooks(state.clone(), stop_rx.clone()));
    let fleet = tokio::spawn(background::watch_fleet(state.clone(), stop_rx));
    let served = ops_kit::serve::serve(listener, router(state), None, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    let _ = sweeper.await;
    let _ = webhooks.await;
    let _ = fleet.await;
    served
}
