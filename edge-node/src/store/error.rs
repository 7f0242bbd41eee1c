//! The store's typed errors, with the API code and status each maps to.

use shared::booking::{BookingInputError, TransitionError};
use shared::{BookingId, PoolId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("not enough units left in pool {pool}: {requested} requested, {available} available")]
    InsufficientCapacity {
        pool: PoolId,
        requested: i64,
        available: i64,
    },
    #[error("booking {id}: {source}")]
    InvalidTransition {
        id: BookingId,
        source: TransitionError,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    BookingInput(#[from] BookingInputError),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error(
        "the data directory {0} holds no edge node; run `edge-node init --location ID --timezone TZ` first"
    )]
    NotInitialized(String),
    #[error("{0}")]
    Setup(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// The stable machine-readable code of the JSON error shape.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::InsufficientCapacity { .. } => "insufficient_capacity",
            Self::InvalidTransition { .. } => "invalid_state",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) | Self::BookingInput(_) => "invalid_request",
            Self::IdempotencyMismatch => "idempotency_key_reused",
            Self::NotInitialized(_) | Self::Setup(_) => "not_initialized",
            Self::Closed => "unavailable",
            Self::Sqlite(_) | Self::Corrupt(_) | Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status the LAN API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::InsufficientCapacity { .. }
            | Self::InvalidTransition { .. }
            | Self::Conflict(_) => 409,
            Self::Invalid(_) | Self::BookingInput(_) => 400,
            Self::IdempotencyMismatch => 422,
            Self::NotInitialized(_) | Self::Setup(_) | Self::Closed => 503,
            Self::Sqlite(_) | Self::Corrupt(_) | Self::Internal(_) => 500,
        }
    }

    /// Whether trying the same again later may succeed: the database was
    /// busy, full or failing, or the store is closing. Anything else is an
    /// answer about what was asked (a constraint it breaks included).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code != rusqlite::ErrorCode::ConstraintViolation
            }
            Self::Sqlite(_) | Self::Closed => true,
            _ => false,
        }
    }

    /// Whether this is a fault of ours rather than an answer to the request.
    pub fn is_internal(&self) -> bool {
        self.status() >= 500
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
