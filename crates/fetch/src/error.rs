//! Why a fetch gave no answer, in terms an agent (and the operator reading its log) can act
//! on. Messages name the host at most: never a response body, and never the address an
//! internal name resolved to.

use std::error::Error as _;

use crate::policy::Refusal;
use crate::redirect::{RedirectRefused, TooManyRedirects};
use crate::resolver::BlockedAnswer;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("scheme `{0}` is not allowed: only http and https")]
    SchemeNotAllowed(String),
    /// The host (with its port when the URL names one) is not in `allow_hosts`, or is an IP
    /// literal outside `allow_networks`.
    #[error("{0} is not in the fetch allowlist")]
    HostNotAllowed(String),
    /// The URL's IP literal, or an address its host name resolved to (on the first request
    /// or any redirect), is in a blocked range.
    #[error("{host}: the {range} range may not be fetched")]
    AddressBlocked { host: String, range: &'static str },
    #[error("redirect refused: {0}")]
    RedirectRefused(String),
    #[error("stopped after {0} redirects")]
    TooManyRedirects(usize),
    /// The response declared more bytes than `max_bytes`. A body without a length is cut
    /// instead (`Fetched::truncated`).
    #[error("the response is {length} bytes, over the {max}-byte limit")]
    TooLarge { length: u64, max: usize },
    #[error("content type `{0}` is not text")]
    ContentTypeNotAllowed(String),
    #[error("no complete response in time")]
    Timeout,
    /// Connecting, TLS or HTTP failed; the reason is the transport's.
    #[error("fetch from {host} failed: {reason}")]
    FetchFailed { host: String, reason: String },
}

impl FetchError {
    /// A stable, machine-readable code; the closed list is the crate's contract with the
    /// tool's callers.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::SchemeNotAllowed(_) => "scheme_not_allowed",
            FetchError::HostNotAllowed(_) => "host_not_allowed",
            FetchError::AddressBlocked { .. } => "address_blocked",
            FetchError::RedirectRefused(_) => "redirect_refused",
            FetchError::TooManyRedirects(_) => "too_many_redirects",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::ContentTypeNotAllowed(_) => "content_type_not_allowed",
            FetchError::Timeout => "timeout",
            FetchError::FetchFailed { .. } => "fetch_failed",
        }
    }

    /// Whether the same fetch might succeed later. Everything else is the policy's answer
    /// and will not change.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::Timeout | FetchError::FetchFailed { .. } => true,
            FetchError::InvalidUrl(_)
            | FetchError::SchemeNotAllowed(_)
            | FetchError::HostNotAllowed(_)
            | FetchError::AddressBlocked { .. }
            | FetchError::RedirectRefused(_)
            | FetchError::TooManyRedirects(_)
            | FetchError::TooLarge { .. }
            | FetchError::ContentTypeNotAllowed(_) => false,
        }
    }

    pub(crate) fn from_refusal(refusal: Refusal) -> FetchError {
        match refusal {
            Refusal::Scheme(scheme) => FetchError::SchemeNotAllowed(scheme),
            Refusal::Credentials | Refusal::NoHost => FetchError::InvalidUrl(refusal.to_string()),
            Refusal::HostNotAllowed(host) => FetchError::HostNotAllowed(host),
            Refusal::AddressBlocked { host, range } => FetchError::AddressBlocked { host, range },
            // Only a redirect can downgrade; it never reaches here, but has a plain answer.
            Refusal::Downgrade(_) => FetchError::RedirectRefused(refusal.to_string()),
        }
    }

    /// Names what reqwest reports: our own resolver and redirect errors are found by walking
    /// the source chain (reqwest and hyper wrap them), so a refusal on a later hop is told
    /// apart from a network failure.
    pub(crate) fn from_reqwest(err: reqwest::Error, host: &str) -> FetchError {
        let mut source = err.source();
        while let Some(cause) = source {
            if let Some(blocked) = cause.downcast_ref::<BlockedAnswer>() {
                return FetchError::AddressBlocked {
                    host: blocked.host.clone(),
                    range: blocked.range,
                };
            }
            if let Some(RedirectRefused(refusal)) = cause.downcast_ref::<RedirectRefused>() {
                return FetchError::RedirectRefused(refusal.to_string());
            }
            if let Some(TooManyRedirects(max)) = cause.downcast_ref::<TooManyRedirects>() {
                return FetchError::TooManyRedirects(*max);
            }
            source = cause.source();
        }
        if err.is_timeout() {
            return FetchError::Timeout;
        }
        FetchError::FetchFailed {
            host: host.to_owned(),
            reason: chain(err.without_url()),
        }
    }
}

/// `outer: inner: innermost`, each message once (wrappers often repeat their cause).
fn chain(err: reqwest::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
