//! The HTTP server: the API router with its limits and error shape, and the
//! background tasks that run beside it.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::limits::REQUEST_BODY_MAX_BYTES;
use shared::protocol::ErrorBody;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;
use crate::{sweeper, sync, web};

/// The whole HTTP surface of a node: the JSON API and the LAN UI, behind
/// its limits, security checks and error shape.
///
/// The layers wrap the router once instead of each route: with
/// `Router::layer`, every request would clone and box the whole layer
/// stack, which on the booking path cost more CPU than parsing its JSON.
pub fn app(
    state: AppState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    let (documented, document) = documented().split_for_parts();
    let routes = documented
        .with_state(state.clone())
        .merge(web::router(state))
        .merge(ops_kit::openapi::routes(&document));
    // Counted per route (the pattern, not the path), inside the routing.
    let routes = ops_kit::http::route_metrics(routes, crate::metrics::REQUESTS)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        });
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(ops_kit::http::request_id_layers().0)
        .layer(ops_kit::http::request_id_layers().1)
        .layer(ops_kit::http::trace_layer())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .layer(web::GuardLayer)
        .service(routes)
}

/// What the OpenAPI document describes: the JSON API and the health
/// checks, routed from the same list the document is collected from.
fn documented() -> OpenApiRouter<AppState> {
    api::routes()
        .routes(routes!(ops_kit::openapi::healthz))
        .routes(routes!(readyz))
}

/// The node's OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// Ready to serve: the database answers and holds this binary's schema.
/// Without credentials; the reason goes to the log, not to whoever asks.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Ready to serve",
    description = "The database answers and holds this binary's schema.",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The database is not reachable or not migrated", body = ErrorBody)
    ),
    security(())
)]
async fn readyz(State(state): State<AppState>) -> Response {
    if is_ready(&state.store).await {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database is not reachable or not migrated",
        )
        .into_response()
    }
}

/// Whether the database answers with this binary's schema: `/readyz`, and
/// what the systemd watchdog is fed by.
pub async fn is_ready(store: &Store) -> bool {
    let ready = store
        .read(|conn| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok(version == crate::store::SCHEMA_VERSION as i64)
        })
        .await;
    match ready {
        Ok(true) => true,
        other => {
            tracing::warn!(?other, "not ready");
            false
        }
    }
}

fn panic_response(_panic: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

/// Serves the node on `listener` until `shutdown` resolves, with the hold
/// sweeper and, when the node is enrolled, the sync client running beside it.
/// Slow or silent clients are closed after
/// [`ops_kit::serve::HEADER_READ_TIMEOUT`]; once asked to stop, requests in
/// flight get [`ops_kit::serve::SHUTDOWN_GRACE`] to finish.
pub async fn run(
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(store, listener, None, shutdown).await
}

/// [`run`], over HTTPS when `tls` is given.
pub async fn run_with(
    store: Store,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Made now, so the first sign-in with an unknown name does not pay for
    // it and take longer than a wrong PIN.
    tokio::task::spawn_blocking(crate::auth::prepare_dummy_pin_hash);
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
    let mut state = AppState::new(store);
    state.tls = tls.is_some();
    let streams = state.clone();
    let app = app(state);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        streams.stop_streams();
    };
    // The hub's server: the same header-read timeout, idle limit and
    // bounded graceful shutdown.
    let served = ops_kit::serve::serve(listener, app, tls, shutdown).await;
    let _ = sweeper.await;
    if let Some(sync) = sync {
        let _ = sync.await;
    }
    served
}

/// A TLS server configuration from PEM files (the certificate chain and its
/// private key), for stores that want HTTPS on the LAN.
pub fn tls_config(cert: &Path, key: &Path) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&cert.display().to_string(), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cert.display().to_string(), &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&key.display().to_string(), &e))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("the certificate and key do not fit", &e))?;
    Ok(Arc::new(config))
}
