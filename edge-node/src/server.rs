//! The HTTP server: the API router with its limits and error shape, and the
//! background tasks that run beside it.

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shared::limits::REQUEST_BODY_MAX_BYTES;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::api::error::ApiError;
use crate::api::{self, AppState};
use crate::store::Store;
use crate::{sweeper, sync};

/// The whole HTTP surface of a node.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api::router(state))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .layer(CatchPanicLayer::custom(|_panic| -> Response {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

/// Serves the node on `listener` until `shutdown` resolves, with the hold
/// sweeper and, when the node is enrolled, the sync client running beside it.
pub async fn run(
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let sweeper = tokio::spawn(sweeper::run(store.clone(), stopped(stop_rx.clone())));
    let sync = if store.node().hub.is_some() {
        let client = sync::hub_client(store.data_dir(), store.node(), store.clock())
            .map_err(std::io::Error::other)?;
        Some(tokio::spawn(sync::task::run(
            store.clone(),
            client,
            stop_rx.clone(),
        )))
    } else {
        None
    };
    let app = router(AppState::new(store));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = sweeper.await;
    if let Some(sync) = sync {
        let _ = sync.await;
    }
    served
}
