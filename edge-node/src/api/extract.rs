//! Extractors whose every rejection is the JSON error shape with the right
//! status, instead of axum's plain-text defaults.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use shared::limits::REQUEST_BODY_MAX_BYTES;

/// The bytes of a JSON request body, bounded by the body limit. A body
/// that does not say it is JSON is a 415 (a form or text post is not taken
/// for JSON: a cross-site form can send those without a CORS preflight);
/// an empty one is a 400.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

/// Whether `Content-Type` is `application/json`, with any parameters (such
/// as `; charset=utf-8`).
fn says_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !says_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!(
                    "request bodies are limited to {REQUEST_BODY_MAX_BYTES} bytes"
                ))
            } else {
                ApiError::bad_request(format!("could not read the request body: {rejection}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Ok(Self(bytes))
    }
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("malformed JSON: {e}"),
    )
}

/// A JSON body parsed into `T`: unknown fields, wrong types and missing
/// fields are 400s that name the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_bytes(&bytes).map(JsonBody)
    }
}

/// Parses JSON bytes straight into `T`, without building a `Value` first.
/// Malformed JSON is `invalid_json`; JSON of the wrong shape (including a
/// field given twice) is a 400 that names the field.
pub fn parse_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Most bodies are fine: parse them without tracking where in the
    // document the parser is, and track it only to explain a failure.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| shape_error(&e.path().to_string(), e.inner()))
        .and_then(|value| json.end().map(|()| value).map_err(malformed));
    // Only a body that failed is read again, for syntax alone: malformed JSON
    // is `invalid_json` wherever its fault lies, even after a field that is
    // also wrong. (A body that parsed was read whole, so it is well formed.)
    parsed.map_err(
        |shape| match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => malformed(syntax),
            Ok(_) => shape,
        },
    )
}

fn shape_error(path: &str, e: &dyn std::fmt::Display) -> ApiError {
    if path == "." {
        ApiError::bad_request(format!("invalid request: {e}"))
    } else {
        ApiError::bad_request(format!("invalid request at {path}: {e}"))
    }
}

/// A single path parameter parsed into an id type; a malformed id is a 400,
/// an unknown one is the handler's 404.
#[derive(Debug)]
pub struct IdPath<T>(pub T);

impl<T, S> FromRequestParts<S> for IdPath<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
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

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}
