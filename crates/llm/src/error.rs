use thiserror::Error;

/// A canonical request that cannot be expressed in a provider's format.
#[derive(Debug, Error, PartialEq)]
pub enum TranslateError {
    #[error("{0}")]
    Unsupported(String),
    #[error("message {index}: {reason}")]
    InvalidMessage { index: usize, reason: String },
}

/// An error the provider reported inside a body or stream (not an HTTP status), kept in
/// the provider's own terms so the router can classify it.
#[derive(Debug, Clone, Default, Error, PartialEq)]
#[error("{kind}: {message}")]
pub struct UpstreamError {
    /// The provider's error type or code, e.g. `overloaded_error`, `rate_limit_exceeded`.
    pub kind: String,
    pub message: String,
    /// A wait the provider asked for in the body rather than in `Retry-After` (Gemini's
    /// `RetryInfo.retryDelay`), as it said it: callers cap it.
    pub retry_after: Option<std::time::Duration>,
}

/// A provider body or stream event that could not be turned into canonical form.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DecodeError {
    #[error("malformed provider response: {0}")]
    Malformed(String),
    #[error("provider reported an error: {0}")]
    Upstream(UpstreamError),
}

impl DecodeError {
    pub fn malformed(e: impl std::fmt::Display) -> Self {
        DecodeError::Malformed(e.to_string())
    }
}
