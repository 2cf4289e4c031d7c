//! The service's error: what a transport tells its client when a call fails, whatever
//! the transport. Each error has a stable machine-readable `code`, a [`Category`] (which a
//! transport maps to its own status: an HTTP status, a WebSocket error frame, an agent
//! run's failure), a message fit for the client, a retry-after and whether retrying can
//! help. [`ServiceError::info`] is the one match that decides all of them; it names every
//! case, so a new error cannot slip through without a decision.
//!
//! Messages never carry an internal detail: a database error, an upstream's raw body, a
//! URL or a transport error go to the log (`Display` of the inner error), not to the
//! client.

use std::time::Duration;

use sluice_limits::lease::Refusal;
use sluice_limits::spec::{Meter, Period};
use sluice_providers::{Exhaustion, Failure, FailureClass, RouteError, StreamError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing API key: present a gateway key (over HTTP: `Authorization: Bearer <key>`)")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("this API key has been revoked")]
    KeyRevoked,
    #[error("this API key has expired")]
    KeyExpired,
    #[error("this API key may not use the model `{0}`")]
    ModelNotAllowed(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("max_tokens {asked} is above this gateway's per-request cap of {cap}")]
    MaxTokensTooLarge { asked: u32, cap: u32 },
    #[error("{}", limit_message(.0))]
    LimitReached(Box<Refusal>),
    /// The detail (a database error) goes to the log, never to the client.
    #[error("limits could not be checked; retry shortly")]
    LimitsUnavailable(String),
    #[error("this API key is stopped by its spend breaker: {reason}; an operator can reset it")]
    SpendBreakerOpen {
        reason: String,
        retry_after_ms: Option<u64>,
    },
    #[error("the gateway is shutting down; retry on another instance or shortly")]
    ShuttingDown,
    /// A stream still open when the service was cut (its stop's grace period ended).
    #[error("the gateway is shutting down; the answer is incomplete")]
    StreamCut,
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A stream that broke after its first chunk went to the client.
    #[error("the stream broke: {0}")]
    Stream(StreamError),
    /// The prompt guard refused the request (docs/guard.md): nothing was sent upstream or
    /// billed. Names the detectors, never the text they matched.
    #[error("the prompt was rejected by the gateway's prompt guard (detectors: {})", .detectors.join(", "))]
    PromptRejected {
        detectors: Vec<&'static str>,
        score: f32,
    },
    /// The answer carried what its policy blocks (a canary of the system prompt, a
    /// secret, PII): it ends here; what was found is redacted from what was sent.
    #[error("the answer was stopped by the gateway's output filter ({})", .kinds.join(", "))]
    OutputBlocked { kinds: Vec<&'static str> },
}

/// What kind of failure, coarse enough for every transport to map: the HTTP gateway
/// turns each into one status and OpenAI error `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// No key, or a key that is not (or no longer) valid.
    Authentication,
    /// A valid key that may not do this (model allowlist, spend breaker).
    Permission,
    /// The request itself is wrong; sending it again changes nothing.
    InvalidRequest,
    /// The model does not exist.
    NotFound,
    /// A rate limit (the gateway's or a provider's): retry after the wait.
    RateLimited,
    /// A budget is spent: retrying soon does not help.
    QuotaExceeded,
    /// The gateway cannot take the call now (shutting down, limits unreachable, every
    /// provider failing or without a usable key).
    Unavailable,
    /// The provider failed or answered with something unusable.
    Upstream,
    /// The provider did not answer in time.
    UpstreamTimeout,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Permission => "permission",
            Category::InvalidRequest => "invalid_request",
            Category::NotFound => "not_found",
            Category::RateLimited => "rate_limited",
            Category::QuotaExceeded => "quota_exceeded",
            Category::Unavailable => "unavailable",
            Category::Upstream => "upstream",
            Category::UpstreamTimeout => "upstream_timeout",
        }
    }
}

/// Everything a transport needs to report an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub category: Category,
    /// Fit for the client: never a database error, a raw upstream body or a URL.
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Whether the same call may succeed if tried again (after `retry_after`, if any).
    pub retryable: bool,
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        self.info().code
    }

    /// The one decision of code, category, message and retry advice.
    pub fn info(&self) -> ErrorInfo {
        use Category as C;
        let msg = || self.to_string();
        let info = |code, category, message: String, retryable| ErrorInfo {
            code,
            category,
            message,
            retry_after: None,
            retryable,
        };
        match self {
            ServiceError::MissingApiKey => info("missing_api_key", C::Authentication, msg(), false),
            ServiceError::InvalidApiKey => info("invalid_api_key", C::Authentication, msg(), false),
            ServiceError::KeyRevoked => info("key_revoked", C::Authentication, msg(), false),
            ServiceError::KeyExpired => info("key_expired", C::Authentication, msg(), false),
            ServiceError::ModelNotAllowed(_) => {
                info("model_not_allowed", C::Permission, msg(), false)
            }
            ServiceError::InvalidRequest(_) => {
                info("invalid_request", C::InvalidRequest, msg(), false)
            }
            ServiceError::MaxTokensTooLarge { .. } => {
                info("max_tokens_too_large", C::InvalidRequest, msg(), false)
            }
            ServiceError::LimitReached(r) => {
                let rate = r.period == Period::Minute;
                ErrorInfo {
                    retry_after: r.retry_after_ms.map(Duration::from_millis),
                    ..info(
                        if rate {
                            "rate_limit_exceeded"
                        } else {
                            "budget_exceeded"
                        },
                        if rate {
                            C::RateLimited
                        } else {
                            C::QuotaExceeded
                        },
                        msg(),
                        // A budget does not come back by retrying soon; a request larger
                        // than the whole limit never fits.
                        rate && !r.oversized,
                    )
                }
            }
            ServiceError::LimitsUnavailable(_) => ErrorInfo {
                retry_after: Some(Duration::from_secs(1)),
                ..info("limits_unavailable", C::Unavailable, msg(), true)
            },
            ServiceError::SpendBreakerOpen { retry_after_ms, .. } => ErrorInfo {
                retry_after: retry_after_ms.map(Duration::from_millis),
                ..info("spend_breaker_open", C::Permission, msg(), false)
            },
            ServiceError::ShuttingDown => ErrorInfo {
                retry_after: Some(Duration::from_secs(1)),
                ..info("shutting_down", C::Unavailable, msg(), true)
            },
            ServiceError::StreamCut => info("shutting_down", C::Unavailable, msg(), true),
            ServiceError::Route(RouteError::UnknownModel(_)) => {
                info("model_not_found", C::NotFound, msg(), false)
            }
            ServiceError::Route(RouteError::Rejected(f)) => {
                let code = match f.class {
                    FailureClass::ContentFilter => "content_filter",
                    _ => "upstream_bad_request",
                };
                info(code, C::InvalidRequest, f.message.clone(), false)
            }
            ServiceError::Route(RouteError::Exhausted { last, .. }) => exhausted(last),
            ServiceError::Stream(e) => stream_error(e),
            ServiceError::PromptRejected { .. } => {
                info("prompt_rejected", C::InvalidRequest, msg(), false)
            }
            ServiceError::OutputBlocked { .. } => {
                info("output_blocked", C::InvalidRequest, msg(), false)
            }
        }
    }
}

fn limit_message(r: &Refusal) -> String {
    let (kind, name) = r.scope.split_once(':').unwrap_or(("key", &r.scope));
    let amount = match r.meter {
        Meter::UsdNanos => format!("${:.2}", r.limit as f64 / 1e9),
        Meter::Tokens => format!("{} tokens", r.limit),
        Meter::Requests => format!("{} requests", r.limit),
    };
    let what = match r.period {
        Period::Minute => format!("rate limit of {amount} per minute"),
        Period::Day => format!("daily budget of {amount}"),
        Period::Month => format!("monthly budget of {amount}"),
        Period::Total => format!("lifetime budget of {amount}"),
    };
    if r.oversized {
        return format!("this request alone is larger than the {what} of {kind} `{name}`");
    }
    match r.retry_after_ms {
        Some(ms) => format!(
            "{kind} `{name}` reached its {what}; retry after {} s",
            ms.div_ceil(1000).max(1)
        ),
        None => format!("{kind} `{name}` reached its {what}"),
    }
}

/// Every chain entry failed: the error reflects how the last one did.
fn exhausted(last: &Exhaustion) -> ErrorInfo {
    use Category as C;
    match last {
        Exhaustion::BreakerOpen(wait) => ErrorInfo {
            code: "circuit_open",
            category: C::Unavailable,
            message: "every provider for this model is failing; its circuit breaker is open".into(),
            retry_after: Some(*wait),
            retryable: true,
        },
        Exhaustion::NoKey(Some(wait)) => ErrorInfo {
            code: "rate_limited",
            category: C::RateLimited,
            message: "every provider API key for this model is rate limited; retry later".into(),
            retry_after: Some(*wait),
            retryable: true,
        },
        Exhaustion::NoKey(None) => ErrorInfo {
            code: "no_available_key",
            category: C::Unavailable,
            message: "every provider API key for this model was refused by the provider".into(),
            retry_after: None,
            retryable: false,
        },
        Exhaustion::OwnLimit(wait) => ErrorInfo {
            code: "rate_limit_exceeded",
            category: C::RateLimited,
            message: "every upstream model for this model is at the gateway's own limit \
                      ([limits.upstream]); retry later"
                .into(),
            retry_after: Some(*wait),
            retryable: true,
        },
        Exhaustion::Failure(f) => failure(f),
    }
}

/// How a failed provider call reads to the client.
///
/// The message is one of ours for every class where the provider's words would tell the
/// client nothing it can act on (and might name an organisation, a deployment or a host).
/// Only for the client-error classes (bad request, context overflow, content filter) is
/// the provider's own message relayed: it tells the client what to fix, and it comes from
/// the provider's documented JSON error format (`Failure::message` never holds a raw body,
/// a URL or a transport error; those are in `Failure::detail`, which only the log gets).
fn failure(f: &Failure) -> ErrorInfo {
    use Category as C;
    let ours = |s: &str| s.to_owned();
    let (code, category, message, retryable) = match f.class {
        FailureClass::RateLimited => (
            "rate_limited",
            C::RateLimited,
            ours("the provider rate limited the request; retry later"),
            true,
        ),
        FailureClass::Auth => (
            "upstream_auth_failed",
            C::Upstream,
            ours("the provider refused the gateway's API key"),
            false,
        ),
        FailureClass::Billing => (
            "upstream_quota_exhausted",
            C::Upstream,
            ours("the provider's quota or billing limit is exhausted"),
            false,
        ),
        FailureClass::Timeout => (
            "upstream_timeout",
            C::UpstreamTimeout,
            match f.status {
                // Which of our deadlines passed ("no answer within the request deadline
                // of 5s"): ours, and what the client can tune against.
                None => format!("the provider did not answer in time: {}", f.message),
                // A provider's 408.
                Some(_) => ours("the provider did not answer in time"),
            },
            true,
        ),
        FailureClass::Connect => (
            "upstream_unreachable",
            C::Upstream,
            ours("the provider could not be reached"),
            true,
        ),
        FailureClass::Server => (
            "upstream_error",
            C::Upstream,
            ours("the provider failed"),
            true,
        ),
        // Ours too: "too large", "not a stream", "could not be decoded".
        FailureClass::BadResponse => (
            "upstream_bad_response",
            C::Upstream,
            f.message.clone(),
            true,
        ),
        FailureClass::ContextOverflow => (
            "context_length_exceeded",
            C::InvalidRequest,
            f.message.clone(),
            false,
        ),
        FailureClass::ContentFilter => (
            "content_filter",
            C::InvalidRequest,
            f.message.clone(),
            false,
        ),
        FailureClass::BadRequest => (
            "upstream_bad_request",
            C::InvalidRequest,
            f.message.clone(),
            false,
        ),
        FailureClass::Forbidden => (
            "upstream_forbidden",
            C::Upstream,
            ours("the provider does not allow this model for the gateway's key"),
            false,
        ),
        // Ours: what the request has that the provider's format cannot say.
        FailureClass::Untranslatable => (
            "unsupported_by_provider",
            C::InvalidRequest,
            f.message.clone(),
            false,
        ),
        FailureClass::ModelNotFound => (
            "upstream_model_not_found",
            C::Upstream,
            ours("the provider does not serve the model"),
            false,
        ),
    };
    ErrorInfo {
        code,
        category,
        message,
        retry_after: f.retry_after,
        retryable,
    }
}

/// A stream broken after it was committed. A provider error event is worded like the
/// same failure before commit. Retrying means asking again from the start.
fn stream_error(e: &StreamError) -> ErrorInfo {
    let broke = |code, message: String| ErrorInfo {
        code,
        category: Category::Upstream,
        message,
        retry_after: None,
        retryable: true,
    };
    match e {
        StreamError::Idle(_) | StreamError::NoFirstToken => broke(
            "upstream_idle_timeout",
            "the provider's stream broke: it stopped sending the answer".to_owned(),
        ),
        StreamError::TooLong(limit) => broke(
            "upstream_stream_timeout",
            format!(
                "the provider's stream broke: it ran past the gateway's limit of {} s",
                limit.as_secs()
            ),
        ),
        StreamError::Cut => broke(
            "upstream_stream_cut",
            "the provider's stream broke: it ended before the answer was complete".to_owned(),
        ),
        StreamError::Upstream(f) => {
            let code = match f.class {
                FailureClass::BadResponse => "upstream_bad_response",
                _ => "upstream_stream_error",
            };
            // Whatever the provider said, the answer broke half-way: an upstream failure,
            // retried by asking again.
            broke(
                code,
                format!("the provider's stream broke: {}", failure(f).message),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_not_worth_retrying_and_a_rate_limit_is() {
        let refusal = |period| Refusal {
            scope: "key:k".into(),
            meter: Meter::Tokens,
            period,
            limit: 10,
            retry_after_ms: Some(1_500),
            oversized: false,
        };
        let rate = ServiceError::LimitReached(Box::new(refusal(Period::Minute))).info();
        assert_eq!(
            (rate.code, rate.category, rate.retryable),
            ("rate_limit_exceeded", Category::RateLimited, true)
        );
        assert_eq!(rate.retry_after, Some(Duration::from_millis(1_500)));
        assert!(rate.message.contains("retry after 2 s"), "{}", rate.message);
        let budget = ServiceError::LimitReached(Box::new(refusal(Period::Day))).info();
        assert_eq!(
            (budget.code, budget.category, budget.retryable),
            ("budget_exceeded", Category::QuotaExceeded, false)
        );
    }

    #[test]
    fn an_upstream_failure_never_shows_its_detail() {
        let mut f = Failure::new(FailureClass::Server, "upstream said 500");
        f.detail = "body: internal host db-7.corp".into();
        let e = ServiceError::Route(RouteError::Exhausted {
            entries: 1,
            last: Exhaustion::Failure(f.clone()),
        });
        let info = e.info();
        assert_eq!(
            (info.code, info.category),
            ("upstream_error", Category::Upstream)
        );
        assert!(!info.message.contains("db-7"), "{}", info.message);
        let broke = ServiceError::Stream(StreamError::Upstream(f)).info();
        assert_eq!(broke.code, "upstream_stream_error");
        assert!(!broke.message.contains("db-7"), "{}", broke.message);
    }

    #[test]
    fn a_stream_broken_by_any_provider_error_is_an_upstream_failure_worth_retrying() {
        // A provider's rate-limit or bad-request event half-way through an answer: the
        // answer is broken, whatever the event's class would mean before commit.
        for class in [FailureClass::RateLimited, FailureClass::BadRequest] {
            let f = Failure::new(class, "provider event");
            let info = ServiceError::Stream(StreamError::Upstream(f)).info();
            assert_eq!(
                (info.code, info.category, info.retryable, info.retry_after),
                ("upstream_stream_error", Category::Upstream, true, None),
                "{class:?}"
            );
        }
        let cut = ServiceError::StreamCut.info();
        assert_eq!(
            (cut.code, cut.category),
            ("shutting_down", Category::Unavailable)
        );
        assert!(cut.message.contains("incomplete"));
    }
}
