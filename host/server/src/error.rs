//! What a service answers when it refuses or fails: what went wrong
//! ([`ErrorKind`]), the stable machine word clients see (`code`), and a
//! message for people. No HTTP here: `http::error` maps each kind to a status
//! and writes the admin API's error body.

use std::fmt;
use std::time::Duration;

/// What went wrong, as far as the caller is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong: its body, path, query or a value in it.
    Invalid,
    /// No credentials, or wrong ones.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// What the request names does not exist.
    NotFound,
    /// The request clashes with the current state (exists already, busy, ...).
    Conflict,
    /// The request needs a declared length of its content.
    LengthRequired,
    /// The content is of a type this operation does not take.
    UnsupportedType,
    /// The range or offset the request gives does not fit the resource.
    BadRange,
    /// Too many requests of this kind now; try again later.
    TooManyRequests,
    /// Something the service needs is not available now (shutting down, a
    /// backend); try again later.
    Unavailable,
    /// A failure on the server's side.
    Internal,
}

/// A service's error. `code` is the stable machine word clients see:
/// `invalid-input`, `not-found`, `conflict`, `forbidden`, `unauthenticated`,
/// `plugin-invalid`, ...
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// When the client may try again (answered as whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client when to try again.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// A wrong request: `invalid-input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "invalid-input", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not-found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, "conflict", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    /// A failure on the server's side; logged here, once.
    pub fn internal(e: impl fmt::Display) -> Self {
        tracing::error!("internal error: {e}");
        Self::new(ErrorKind::Internal, "internal", e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<wharf_store::db::StoreError> for Error {
    fn from(e: wharf_store::db::StoreError) -> Self {
        use wharf_store::db::StoreError::*;
        match e {
            Conflict(what) => Error::conflict(format!("{what} already exists")),
            NotFound(what) => Error::not_found(format!("{what} not found")),
            Backend(e) => Error::internal(format!("{e:#}")),
        }
    }
}
