//! Every way a provider call can fail, classified, and what the router does about each.

use std::time::Duration;

use sluice_llm::{DecodeError, UpstreamError};

/// The class of a failed provider call. The router's rules hang off this, and the gateway
/// maps the class of the last failure to the client's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 429 or a rate-limit error: cool the key down, rotate, retry after `Retry-After`.
    RateLimited,
    /// 401/403: the key is bad. Disable it, rotate.
    Auth,
    /// 402, `insufficient_quota`, credit exhausted: cool the key down for a long time, rotate.
    Billing,
    /// No response within the connect, first-byte or total timeout.
    Timeout,
    /// The connection could not be made or broke before a response.
    Connect,
    /// 5xx, overload, or a response that broke the wire protocol: retry, then fall back.
    Server,
    /// The prompt is too long for this model: another chain entry may take it.
    ContextOverflow,
    /// The provider refused the content: fail at once; do not shop it around.
    ContentFilter,
    /// 400/422: the request itself is wrong. Fail at once, never retried across the chain.
    BadRequest,
    /// 404: this provider does not serve the model. Fall back.
    ModelNotFound,
}

/// What the router does next after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try the same entry again after a backoff (or `Retry-After`).
    Retry,
    /// Try the same entry with another key right away.
    RotateKey,
    /// Give up on this entry; try the next one in the chain.
    NextEntry,
    /// Give up on the whole request.
    Fail,
}

impl FailureClass {
    pub fn action(self) -> Action {
        match self {
            FailureClass::RateLimited | FailureClass::Auth | FailureClass::Billing => {
                Action::RotateKey
            }
            FailureClass::Timeout | FailureClass::Connect | FailureClass::Server => Action::Retry,
            FailureClass::ContextOverflow | FailureClass::ModelNotFound => Action::NextEntry,
            FailureClass::ContentFilter | FailureClass::BadRequest => Action::Fail,
        }
    }

    /// Whether the failure says the provider+model is unhealthy (feeds the breaker). Rate
    /// limits and key problems are about one key; bad requests are about the client.
    pub fn counts_against_breaker(self) -> bool {
        matches!(
            self,
            FailureClass::Timeout | FailureClass::Connect | FailureClass::Server
        )
    }

    /// A stable name for logs, metrics and the `x-sluice-*` diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Auth => "auth",
            FailureClass::Billing => "billing",
            FailureClass::Timeout => "timeout",
            FailureClass::Connect => "connect",
            FailureClass::Server => "server",
            FailureClass::ContextOverflow => "context_overflow",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::BadRequest => "bad_request",
            FailureClass::ModelNotFound => "model_not_found",
        }
    }
}

/// One failed provider call.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: FailureClass,
    /// The upstream HTTP status, when there was one.
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The provider's message (never contains our credentials: we never send them back).
    pub message: String,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            status: None,
            retry_after: None,
            message: message.into(),
        }
    }

    /// Classifies an HTTP error response from its status, headers and the provider's
    /// error body (already decoded by the wire format, when it could be).
    pub fn from_status(
        status: u16,
        retry_after: Option<Duration>,
        upstream: Option<UpstreamError>,
        raw_body: &[u8],
    ) -> Self {
        let (kind, message) = match upstream {
            Some(e) => (e.kind, e.message),
            None => (
                String::new(),
                String::from_utf8_lossy(raw_body)
                    .chars()
                    .take(500)
                    .collect(),
            ),
        };
        let text = format!("{kind} {message}").to_ascii_lowercase();
        let class = match status {
            429 if is_billing(&text) => FailureClass::Billing,
            429 => FailureClass::RateLimited,
            401 | 403 => FailureClass::Auth,
            402 => FailureClass::Billing,
            404 => FailureClass::ModelNotFound,
            408 => FailureClass::Timeout,
            413 => FailureClass::ContextOverflow,
            400 | 422 if is_context_overflow(&text) => FailureClass::ContextOverflow,
            400 | 422 if is_content_filter(&text) => FailureClass::ContentFilter,
            400 if is_billing(&text) => FailureClass::Billing,
            500..=599 => FailureClass::Server,
            _ => FailureClass::BadRequest,
        };
        let message = if message.is_empty() {
            format!("upstream answered {status}")
        } else {
            message
        };
        Failure {
            class,
            status: Some(status),
            retry_after,
            message,
        }
    }

    /// Classifies an error the provider reported inside a 200 body or stream.
    pub fn from_decode(err: DecodeError) -> Self {
        match err {
            DecodeError::Malformed(m) => Failure::new(FailureClass::Server, m),
            DecodeError::Upstream(e) => {
                let text = format!("{} {}", e.kind, e.message).to_ascii_lowercase();
                let class = if text.contains("rate_limit") || text.contains("resource_exhausted") {
                    if is_billing(&text) {
                        FailureClass::Billing
                    } else {
                        FailureClass::RateLimited
                    }
                } else if is_context_overflow(&text) {
                    FailureClass::ContextOverflow
                } else if text.contains("authentication") || text.contains("permission") {
                    FailureClass::Auth
                } else if text.contains("invalid_request") {
                    FailureClass::BadRequest
                } else {
                    FailureClass::Server
                };
                Failure::new(class, e.message)
            }
        }
    }
}

fn is_billing(text: &str) -> bool {
    [
        "insufficient_quota",
        "billing",
        "credit balance",
        "exceeded your current quota",
        "payment",
    ]
    .iter()
    .any(|n| text.contains(n))
}

fn is_context_overflow(text: &str) -> bool {
    [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "exceeds the maximum number of tokens",
        "too many tokens",
    ]
    .iter()
    .any(|n| text.contains(n))
}

fn is_content_filter(text: &str) -> bool {
    [
        "content_filter",
        "content_policy_violation",
        "content management policy",
        "safety",
    ]
    .iter()
    .any(|n| text.contains(n))
}

/// `Retry-After` as seconds or an HTTP date, or `retry-after-ms` (OpenAI, Azure).
pub fn retry_after(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok())
        && let Ok(ms) = ms.trim().parse::<f64>()
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_millis(ms as u64));
    }
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(kind: &str, message: &str) -> Option<UpstreamError> {
        Some(UpstreamError {
            kind: kind.into(),
            message: message.into(),
        })
    }

    #[test]
    fn statuses_and_bodies_classify() {
        let c = |s, u| Failure::from_status(s, None, u, b"").class;
        assert_eq!(
            c(429, up("rate_limit_exceeded", "slow down")),
            FailureClass::RateLimited
        );
        assert_eq!(
            c(
                429,
                up("insufficient_quota", "You exceeded your current quota")
            ),
            FailureClass::Billing
        );
        assert_eq!(c(401, None), FailureClass::Auth);
        assert_eq!(c(402, None), FailureClass::Billing);
        assert_eq!(c(500, None), FailureClass::Server);
        assert_eq!(
            c(529, up("overloaded_error", "Overloaded")),
            FailureClass::Server
        );
        assert_eq!(
            c(400, up("invalid_request_error", "bad")),
            FailureClass::BadRequest
        );
        assert_eq!(
            c(400, up("context_length_exceeded", "x")),
            FailureClass::ContextOverflow
        );
        assert_eq!(
            c(
                400,
                up(
                    "invalid_request_error",
                    "prompt is too long: 210000 tokens > 200000 maximum"
                )
            ),
            FailureClass::ContextOverflow
        );
        assert_eq!(
            c(
                400,
                up(
                    "invalid_request_error",
                    "Your credit balance is too low to access the Anthropic API."
                )
            ),
            FailureClass::Billing
        );
        assert_eq!(
            c(400, up("content_policy_violation", "no")),
            FailureClass::ContentFilter
        );
        assert_eq!(c(404, None), FailureClass::ModelNotFound);
    }

    #[test]
    fn rules_per_class() {
        assert_eq!(FailureClass::BadRequest.action(), Action::Fail);
        assert_eq!(FailureClass::Server.action(), Action::Retry);
        assert_eq!(FailureClass::RateLimited.action(), Action::RotateKey);
        assert_eq!(FailureClass::ContextOverflow.action(), Action::NextEntry);
        assert!(!FailureClass::RateLimited.counts_against_breaker());
        assert!(FailureClass::Timeout.counts_against_breaker());
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(now + Duration::from_secs(7))
                .parse()
                .unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        h.clear();
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
