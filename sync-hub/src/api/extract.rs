//! Extractors and parsers whose every refusal is the JSON error shape with
//! the right status, instead of axum's plain-text defaults, and the layer
//! that gives the same shape to any refusal that still comes out as text.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use shared::json::UniqueKeys;

use super::error::{ApiError, ApiResult};

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("malformed JSON: {e}"),
    )
}

fn shape_error(path: &serde_path_to_error::Path, e: &serde_json::Error) -> ApiError {
    let path = path.to_string();
    if path == "." {
        ApiError::bad_request(format!("invalid request: {e}"))
    } else {
        ApiError::bad_request(format!("invalid request at {path}: {e}"))
    }
}

/// Parses a JSON body into `T`. Malformed JSON is `invalid_json`; a key
/// given twice in any object (which serde_json would otherwise settle by
/// keeping the last), an unknown field or a wrong type is `invalid_request`
/// naming where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, UniqueKeys>(&mut json).map_err(|e| {
        match e.inner().classify() {
            Category::Data => shape_error(e.path(), e.inner()),
            _ => malformed(e.inner()),
        }
    })?;
    json.end().map_err(|e| malformed(&e))?;
    // Well formed and without duplicates: what is left is its shape.
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| shape_error(e.path(), e.inner()))
}

/// The bytes of a request body within the router's body limit.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        rejection.body_text(),
                    )
                } else {
                    ApiError::bad_request(format!(
                        "could not read the request body: {}",
                        rejection.body_text()
                    ))
                }
            })
    }
}

/// A JSON body parsed with [`parse_json`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A single path parameter parsed into an id type. A path that does not
/// decode (`%FF` is not UTF-8) or a malformed id is a 400; an unknown one is
/// the handler's 404.
#[derive(Debug)]
pub struct IdPath<T>(pub T);

impl<T, S> FromRequestParts<S> for IdPath<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
        raw.parse()
            .map(IdPath)
            .map_err(|e| ApiError::bad_request(format!("bad id in path: {e}")))
    }
}

/// Query parameters; unknown or malformed ones are 400s.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

/// Longest text of a refusal that is carried over into its JSON message.
const REFUSAL_TEXT_MAX_BYTES: usize = 1024;

/// Gives the JSON error shape to a refusal that is not JSON: one made by a
/// layer or an extractor of axum's that a handler did not wrap. Handlers'
/// own errors are JSON already and pass through untouched, as do successes.
pub async fn json_refusals(response: Response) -> Response {
    let status = response.status();
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // A page of the dashboard says what went wrong on the page itself.
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let (parts, body) = response.into_parts();
    if status.is_server_error() {
        // A cause of ours is for the log, not for the caller.
        let mut internal = ApiError::internal();
        internal.status = status;
        let body = internal.into_response().into_body();
        return json_parts(parts, body);
    }
    let text = axum::body::to_bytes(body, REFUSAL_TEXT_MAX_BYTES)
        .await
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_owned());
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "refused",
    };
    let body = ApiError::new(status, code, text)
        .into_response()
        .into_body();
    json_parts(parts, body)
}

fn json_parts(mut parts: axum::http::response::Parts, body: axum::body::Body) -> Response {
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}
