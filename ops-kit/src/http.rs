//! What every request passes through on both servers: a request id (taken
//! from `x-request-id` or made up, and sent back), a tracing span carrying
//! it so every log line of the request names it, and request counts and
//! latencies by route and status.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// The names a server records its requests under.
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics {
    /// Counter labelled `route`, `method`, `status`.
    pub requests_total: &'static str,
    /// Histogram labelled `route`, `method`.
    pub duration_seconds: &'static str,
}

/// Wraps `router` with request ids, a span per request and request
/// metrics, each route's layers applied per route (`Router::layer`).
pub fn observe<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    names: RequestMetrics,
) -> Router<S> {
    router
        .layer(middleware::from_fn_with_state(names, track))
        .layer(TraceLayer::new_for_http().make_span_with(RequestSpan))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Request metrics alone, on the routes `router` has so far: for a server
/// that puts ids and tracing around the whole router once
/// ([`request_id_layers`], [`trace_layer`]) rather than per route.
pub fn route_metrics<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    names: RequestMetrics,
) -> Router<S> {
    router.route_layer(middleware::from_fn_with_state(names, track))
}

/// Sets `x-request-id` when the client sent none, and returns it.
pub fn request_id_layers() -> (SetRequestIdLayer<MakeRequestUuid>, PropagateRequestIdLayer) {
    (
        SetRequestIdLayer::x_request_id(MakeRequestUuid),
        PropagateRequestIdLayer::x_request_id(),
    )
}

/// Tracing with a span per request that carries its id.
pub fn trace_layer() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    RequestSpan,
> {
    TraceLayer::new_for_http().make_span_with(RequestSpan)
}

/// Makes the `request` span: method, path and the request id, so every
/// line logged while serving it names the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %id,
        )
    }
}

async fn track(State(names): State<RequestMetrics>, request: Request, next: Next) -> Response {
    // The route's pattern, never the path itself: a label per booking id
    // would grow without bound.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names.requests_total, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(names.duration_seconds, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Standard methods by name; anything else one label, so a client cannot
/// mint label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
