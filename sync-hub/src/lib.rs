//! The central sync hub. Edge nodes replay their event logs to it and pull
//! what is addressed to them; the website books through it.
//!
//! This crate is a skeleton until the sync work lands: it serves a health
//! endpoint so deployments can be wired up.

use std::future::Future;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

pub fn router() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async { axum::Json(json!({ "status": "ok" })) }),
    )
}

pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
