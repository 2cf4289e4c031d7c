//! What can go wrong, in the caller's terms: connecting ([`ClientError`]), a call
//! ([`CallError`]), and why a client stopped for good ([`CloseReason`]).

use std::fmt;
use std::time::Duration;

use sluice_protocol::{ErrorBody, close};

/// A failure below the protocol: the TCP connection, the WebSocket upgrade or a frame.
/// Opaque so the WebSocket library's version is not part of this crate's API; its
/// `source()` is the library's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(#[source] pub(crate) Box<dyn std::error::Error + Send + Sync>);

impl TransportError {
    pub(crate) fn msg(m: impl Into<String>) -> TransportError {
        TransportError(m.into().into())
    }
}

/// Why [`crate::Client::connect`] failed. Nothing here is retried by `connect`; the
/// variant says whether trying again could help.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid gateway URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The key was missing, unknown, revoked or expired (close `4001`); `code` is the
    /// gateway's error code, e.g. `invalid_api_key`. New credentials are needed.
    #[error("the gateway refused the key: {code}")]
    Unauthorized { code: String },
    /// No protocol version in common (close `4002`).
    #[error("no protocol version in common with the gateway: {reason}")]
    UnsupportedProtocol { reason: String },
    /// The key holds as many sessions as it may (close `4004`); try later.
    #[error("the key holds as many sessions as the gateway allows")]
    TooManySessions,
    /// The gateway closed the socket during the handshake with another code.
    #[error("the gateway closed the connection during the handshake: {code} {reason}")]
    Refused { code: u16, reason: String },
    /// The upgrade was answered with an HTTP status (e.g. `403` for a browser origin not
    /// allowed, `404` for a wrong path).
    #[error("the gateway answered the upgrade with HTTP {status}")]
    Http { status: u16 },
    /// No `hello` within [`crate::ClientConfig::connect_timeout`].
    #[error("no hello from the gateway within {0:?}")]
    Timeout(Duration),
    /// The gateway's first frame was not a `hello`.
    #[error("the gateway broke the handshake: {0}")]
    Protocol(String),
    #[error("cannot reach the gateway: {0}")]
    Transport(#[from] TransportError),
}

impl ClientError {
    /// Whether connecting again, unchanged, may succeed (so a reconnect loop goes on).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) | ClientError::Timeout(_) | ClientError::TooManySessions => {
                true
            }
            ClientError::Refused { code, .. } => {
                close::should_reconnect(*code) || *code == close::CONNECT_TIMEOUT
            }
            ClientError::Http { status } => *status >= 500,
            ClientError::InvalidUrl { .. }
            | ClientError::Unauthorized { .. }
            | ClientError::UnsupportedProtocol { .. }
            | ClientError::Protocol(_) => false,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The gateway answered with an error: a code from the protocol's closed list (or
    /// the completion service's, the same as the HTTP API's), a message, and whether
    /// and when the same call may succeed.
    #[error("{}: {}", .0.code, .0.message)]
    Remote(ErrorBody),
    /// The connection dropped before the answer arrived. Answers are not replayed after
    /// a reconnect, so whether the gateway acted on the call is unknown; it may be sent
    /// again (the client reconnects meanwhile).
    #[error("the connection dropped before the answer arrived")]
    Disconnected,
    /// No answer within the call's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request is larger than the gateway's `max_frame_bytes`; it was not sent.
    #[error("the request is {size} bytes, over the gateway's limit of {limit}")]
    TooLarge { size: usize, limit: u64 },
    /// The answer did not have the shape the method promises.
    #[error("unexpected answer: {0}")]
    InvalidResponse(String),
    /// The client has stopped for good.
    #[error("the client is closed: {0}")]
    Closed(CloseReason),
}

impl CallError {
    /// The protocol error code, for [`CallError::Remote`].
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Remote(e) => Some(&e.code),
            _ => None,
        }
    }

    /// Whether sending the same call again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Remote(e) => e.retryable,
            CallError::Disconnected | CallError::Timeout(_) => true,
            CallError::TooLarge { .. } | CallError::InvalidResponse(_) | CallError::Closed(_) => {
                false
            }
        }
    }

    /// How long to wait before retrying, when the gateway said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Remote(e) => e.retry_after_ms.map(Duration::from_millis),
            _ => None,
        }
    }
}

/// Why a client stopped for good (it no longer reconnects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`crate::Client::close`] was called, or every handle was dropped.
    ByClient,
    /// The gateway closed with a code that says not to reconnect (`4000` protocol
    /// error, `4001` unauthorized, `4010` taken over by another connection, `1009`…).
    ByGateway { code: u16, reason: String },
    /// Reconnecting failed: refused for good, or `max_attempts` attempts failed (or
    /// reconnecting is off). `error` is the last attempt's.
    GaveUp { attempts: u32, error: String },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ByClient => f.write_str("closed by the client"),
            CloseReason::ByGateway { code, reason } => {
                write!(f, "closed by the gateway ({code}")?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                f.write_str(")")
            }
            CloseReason::GaveUp { attempts, error } => {
                write!(
                    f,
                    "gave up reconnecting after {attempts} attempt(s): {error}"
                )
            }
        }
    }
}
