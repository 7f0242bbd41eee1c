//! The central sync hub. Edge nodes replay their ordered, signed event logs
//! to it and pull what is addressed to them; it keeps a materialized view of
//! every location's catalog, bookings and availability, and serves the
//! public API.
//!
//! [`router`] and [`run`] are what the binary and the tests start.

pub mod api;
pub mod background;
pub mod cli;
pub mod keys;
pub mod ledger;
pub mod notify;
pub mod plan;
pub mod serve;
pub mod storage;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

pub use api::{AppState, HubSettings, router};
use tokio::net::TcpListener;

/// Opens the default (embedded SQLite) storage and the hub key of `data_dir`.
pub fn open(data_dir: &Path, settings: HubSettings) -> anyhow::Result<AppState> {
    let storage = storage::sqlite::SqliteStorage::open(data_dir)?;
    let key = keys::load_or_create_hub_key(data_dir)?;
    Ok(AppState {
        inboxes: storage::HubStorage::inboxes(&storage),
        storage: Arc::new(storage),
        key: Arc::new(key),
        settings,
        decisions: tokio::sync::broadcast::channel(DECISIONS_BUFFERED).0,
        in_flight: Arc::default(),
    })
}

/// Booking changes buffered for waiting web orders; a waiter that falls
/// further behind re-reads its booking.
const DECISIONS_BUFFERED: usize = 1024;

/// Serves the hub on `listener` until `shutdown` resolves, with the expiry
/// sweeper and the webhook dispatcher running beside it.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(background::sweep(state.clone(), stop_rx.clone()));
    let webhooks = tokio::spawn(background::deliver_webhooks(state.clone(), stop_rx));
    let served = serve::serve(listener, router(state), None, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    let _ = sweeper.await;
    let _ = webhooks.await;
    served
}
