//! The one error type of the core. The HTTP layer maps each variant to a status code in a
//! single place; `Internal` keeps its cause for the logs and never reaches a response body.

/// Errors a use case can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that can never succeed as sent (maps to 400).
    #[error("{0}")]
    Validation(String),
    /// Missing or wrong credentials (maps to 401).
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but this caller may not do this (maps to 403).
    #[error("{0}")]
    Forbidden(String),
    /// The named thing does not exist (maps to 404).
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with current state, e.g. an operation already running (409).
    #[error("{0}")]
    Conflict(String),
    /// Not available yet, try again later (maps to 503), e.g. logs before the VM shipped any.
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit; `retry_after` seconds until it may succeed (maps to 429).
    #[error("{message}")]
    RateLimited { message: String, retry_after: i64 },
    /// Every assignable VM is taken. A normal outcome of a claim, not a fault.
    #[error("no VM is available right now; please try again later")]
    NoVmAvailable,
    /// A dependency (store, compute) failed; details go to the log only (maps to 500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn validation(msg: impl Into<String>) -> Self {
        Error::Validation(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
