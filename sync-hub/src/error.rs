//! What an operation of the hub's storage and rules can fail with. The
//! rules and every backend share it; the API maps it to HTTP.

use crate::plan::Refusal;

/// The source of a backend failure, kept for the log.
pub type BackendSource = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("insufficient capacity: {0}")]
    InsufficientCapacity(String),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("{0}")]
    InvalidState(String),
    /// The database failed, or holds what this binary cannot read; the
    /// source error is kept for the log.
    #[error("storage error: {0}")]
    Backend(#[source] BackendSource),
}

impl StorageError {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// A backend failure described in words (no error value to keep).
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend(message.into().into())
    }

    /// A stored value this binary cannot read back.
    pub fn corrupt(what: &str, value: impl std::fmt::Display) -> Self {
        Self::backend(format!("stored {what} {value} does not parse"))
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
