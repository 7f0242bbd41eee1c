//! The checks and headers every request and response of a node goes
//! through, as one plain tower layer: axum's `from_fn` and `map_response`
//! would box a future and clone the inner service for every request.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use futures_util::future::{Either, Map, Ready, ready};
use tower::{Layer, Service};

/// Wraps a service in [`Guard`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardLayer;

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard { inner }
    }
}

/// Refuses cross-site requests that change something, and gives every
/// response the headers that keep our pages out of other sites' frames.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
}

type Answer = Result<Response, Infallible>;

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<Either<Ready<Answer>, S::Future>, fn(Answer) -> Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let answer = if same_origin(&request) {
            Either::Right(self.inner.call(request))
        } else {
            Either::Left(ready(Ok(cross_site_refusal())))
        };
        answer.map(with_security_headers as fn(Answer) -> Answer)
    }
}

/// Whether a request may go on: a request that changes something and
/// carries our session cookie without a bearer token (so a browser may have
/// attached the cookie for another site's page) must come from a page of
/// ours, as its Origin (or Referer) says.
///
/// A request to the JSON API with no cookie carries nothing another site
/// could borrow: it goes on, and gets its 401 from the API if it has no
/// token either. The pages are held to their origin even without a cookie,
/// so that no other site can sign a browser in under someone else's name.
fn same_origin(request: &Request) -> bool {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // Only the JSON API takes bearer tokens; the pages go by the cookie.
    let headers = request.headers();
    let api = request.uri().path().starts_with("/api/");
    let bearer = api
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "));
    let borrowable = !api || crate::state::has_cookie(headers);
    safe || bearer || !borrowable || from_this_host(headers)
}

fn from_this_host(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|url| {
            url.split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        });
    matches!((host, from), (Some(host), Some(from)) if host.eq_ignore_ascii_case(from))
}

fn cross_site_refusal() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(shared::protocol::ErrorBody::new(
            "cross_site_request",
            "requests that change something must come from this store's own pages",
        )),
    )
        .into_response()
}

/// What a page may load: only our own embedded script and style sheet, no
/// inline script or style (so markup injected past [`super::html::h`] still
/// cannot run), no frames of our pages elsewhere, and forms that post only
/// back to the node. JSON answers and refusals carry it too: opened in a
/// browser tab, they must not run anything either.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Every response gets the headers that keep it out of other sites' frames
/// and limit what a page may load. Pages and API answers show customer names
/// and phone numbers: nothing may keep them (a shared browser's cache, a
/// proxy), unless the handler chose a caching policy itself (the embedded
/// assets, which hold no data).
fn with_security_headers(answer: Answer) -> Answer {
    let Ok(mut response) = answer;
    let headers = response.headers_mut();
    // A handler may have set a stricter policy of its own (the API
    // reference page loads nothing but its style sheet).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    Ok(response)
}
