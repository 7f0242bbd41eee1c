//! The JSON error shape of the hub's APIs.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::protocol::ErrorBody;

use crate::storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub expected_seq: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            expected_seq: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }

    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code, self.message.clone());
        body.error.expected_seq = self.expected_seq;
        body
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound { .. } => Self::not_found(e.to_string()),
            StorageError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StorageError::Invalid(m) => Self::bad_request(m),
            StorageError::Unauthorized(m) => Self::unauthorized(m),
            StorageError::InsufficientCapacity(m) => {
                Self::new(StatusCode::CONFLICT, "insufficient_capacity", m)
            }
            StorageError::IdempotencyMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            ),
            StorageError::InvalidState(m) => Self::new(StatusCode::CONFLICT, "invalid_state", m),
            StorageError::Refused(refusal) => {
                let status =
                    StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut error = Self::new(status, refusal.code(), refusal.to_string());
                if let crate::plan::Refusal::Gap { expected } = refusal {
                    error.expected_seq = Some(expected);
                }
                error
            }
            StorageError::Backend(m) => {
                tracing::error!(error = %m, "storage failed");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
