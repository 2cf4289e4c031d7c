//! The one place where errors become HTTP responses, in OpenAI's error shape:
//! `{"error":{"message","type","param","code"}}`. `code` is Sluice's stable,
//! machine-readable name; the match below names every case, so a new error cannot
//! slip through without a status decision.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use sluice_limits::lease::Refusal;
use sluice_limits::spec::{Meter, Period};
use sluice_providers::{Exhaustion, Failure, FailureClass, RouteError, StreamError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
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
    #[error("max_tokens {asked} is above this gateway's per-request cap of {cap}")]
    MaxTokensTooLarge { asked: u32, cap: u32 },
    #[error("this API key has been revoked")]
    KeyRevoked,
    #[error("this API key has expired")]
    KeyExpired,
    #[error("this API key may not use the model `{0}`")]
    ModelNotAllowed(String),
    #[error("missing or wrong admin token")]
    AdminUnauthorized,
    #[error("the admin API is off: set [server] admin_token to turn it on")]
    AdminDisabled,
    #[error("{0}")]
    NotFoundEntity(String),
    #[error("the store failed: {0}")]
    Store(#[from] sluice_store::StoreError),
    #[error("the gateway is shutting down; retry on another instance or shortly")]
    ShuttingDown,
    #[error("the request body did not arrive within {}s", .0.as_secs())]
    BodyTimeout(Duration),
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyUnreadable(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Route(#[from] RouteError),
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

/// The parts of an error response.
struct Parts {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn parts(&self) -> Parts {
        use StatusCode as S;
        let p = |status, kind, code, message: String| Parts {
            status,
            kind,
            code,
            message,
            retry_after: None,
        };
        let msg = self.to_string();
        match self {
            ApiError::MissingApiKey => p(
                S::UNAUTHORIZED,
                "authentication_error",
                "missing_api_key",
                msg,
            ),
            ApiError::InvalidApiKey => p(
                S::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                msg,
            ),
            ApiError::LimitReached(r) => Parts {
                retry_after: r.retry_after_ms.map(Duration::from_millis),
                ..p(
                    S::TOO_MANY_REQUESTS,
                    if r.period == Period::Minute {
                        "rate_limit_error"
                    } else {
                        "insufficient_quota"
                    },
                    if r.period == Period::Minute {
                        "rate_limit_exceeded"
                    } else {
                        "budget_exceeded"
                    },
                    msg,
                )
            },
            ApiError::LimitsUnavailable(_) => Parts {
                retry_after: Some(Duration::from_secs(1)),
                ..p(
                    S::SERVICE_UNAVAILABLE,
                    "api_error",
                    "limits_unavailable",
                    msg,
                )
            },
            ApiError::SpendBreakerOpen { retry_after_ms, .. } => Parts {
                retry_after: retry_after_ms.map(Duration::from_millis),
                ..p(S::FORBIDDEN, "permission_error", "spend_breaker_open", msg)
            },
            ApiError::MaxTokensTooLarge { .. } => p(
                S::BAD_REQUEST,
                "invalid_request_error",
                "max_tokens_too_large",
                msg,
            ),
            ApiError::KeyRevoked => p(S::UNAUTHORIZED, "authentication_error", "key_revoked", msg),
            ApiError::KeyExpired => p(S::UNAUTHORIZED, "authentication_error", "key_expired", msg),
            ApiError::ModelNotAllowed(_) => {
                p(S::FORBIDDEN, "permission_error", "model_not_allowed", msg)
            }
            ApiError::AdminUnauthorized => p(
                S::UNAUTHORIZED,
                "authentication_error",
                "invalid_admin_token",
                msg,
            ),
            ApiError::AdminDisabled => {
                p(S::NOT_FOUND, "invalid_request_error", "admin_disabled", msg)
            }
            ApiError::NotFoundEntity(_) => {
                p(S::NOT_FOUND, "invalid_request_error", "not_found", msg)
            }
            ApiError::Store(_) => p(
                S::INTERNAL_SERVER_ERROR,
                "api_error",
                "store_error",
                "the gateway's store failed; see its log".into(),
            ),
            ApiError::ShuttingDown => Parts {
                retry_after: Some(Duration::from_secs(1)),
                ..p(S::SERVICE_UNAVAILABLE, "api_error", "shutting_down", msg)
            },
            ApiError::BodyTimeout(_) => p(
                S::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_body_timeout",
                msg,
            ),
            ApiError::BodyTooLarge(_) => p(
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                msg,
            ),
            ApiError::BodyUnreadable(_) => {
                p(S::BAD_REQUEST, "invalid_request_error", "invalid_body", msg)
            }
            ApiError::InvalidJson(_) => {
                p(S::BAD_REQUEST, "invalid_request_error", "invalid_json", msg)
            }
            ApiError::InvalidRequest(_) => p(
                S::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                msg,
            ),
            ApiError::NotFound(_) => p(S::NOT_FOUND, "invalid_request_error", "not_found", msg),
            ApiError::MethodNotAllowed => p(
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                msg,
            ),
            ApiError::Route(RouteError::UnknownModel(_)) => p(
                S::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                msg,
            ),
            ApiError::Route(RouteError::Rejected(f)) => {
                let code = match f.class {
                    FailureClass::ContentFilter => "content_filter",
                    _ => "upstream_bad_request",
                };
                p(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    code,
                    f.message.clone(),
                )
            }
            ApiError::Route(RouteError::Exhausted { last, .. }) => exhausted(last),
        }
    }
}

/// Every chain entry failed: the answer reflects how the last one did.
fn exhausted(last: &Exhaustion) -> Parts {
    use StatusCode as S;
    let f = match last {
        Exhaustion::BreakerOpen(wait) => {
            return Parts {
                status: S::SERVICE_UNAVAILABLE,
                kind: "api_error",
                code: "circuit_open",
                message: "every provider for this model is failing; its circuit breaker is open"
                    .into(),
                retry_after: Some(*wait),
            };
        }
        Exhaustion::NoKey(wait) => {
            return Parts {
                status: if wait.is_some() {
                    S::TOO_MANY_REQUESTS
                } else {
                    S::SERVICE_UNAVAILABLE
                },
                kind: if wait.is_some() {
                    "rate_limit_error"
                } else {
                    "api_error"
                },
                code: if wait.is_some() {
                    "rate_limited"
                } else {
                    "no_available_key"
                },
                message: match wait {
                    Some(_) => {
                        "every provider API key for this model is rate limited; retry later".into()
                    }
                    None => {
                        "every provider API key for this model was refused by the provider".into()
                    }
                },
                retry_after: *wait,
            };
        }
        Exhaustion::OwnLimit(wait) => {
            return Parts {
                status: S::TOO_MANY_REQUESTS,
                kind: "rate_limit_error",
                code: "rate_limit_exceeded",
                message: "every upstream model for this model is at the gateway's own limit \
                          ([limits.upstream]); retry later"
                    .into(),
                retry_after: Some(*wait),
            };
        }
        Exhaustion::Failure(f) => f,
    };
    let (status, kind, code, message) = failure_parts(f);
    Parts {
        status,
        kind,
        code,
        message,
        retry_after: f.retry_after,
    }
}

/// How a failed provider call reads to the client: status, type, stable code and message.
///
/// The message is one of ours for every class where the provider's words would tell the
/// client nothing it can act on (and might name an organisation, a deployment or a host).
/// Only for the client-error classes (bad request, context overflow, content filter) is
/// the provider's own message relayed: it tells the client what to fix, and it comes from
/// the provider's documented JSON error format (`Failure::message` never holds a raw body,
/// a URL or a transport error; those are in `Failure::detail`, which only the log gets).
fn failure_parts(f: &Failure) -> (StatusCode, &'static str, &'static str, String) {
    use StatusCode as S;
    let ours = |s: &str| s.to_owned();
    match f.class {
        FailureClass::RateLimited => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limited",
            ours("the provider rate limited the request; retry later"),
        ),
        FailureClass::Auth => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_auth_failed",
            ours("the provider refused the gateway's API key"),
        ),
        FailureClass::Billing => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_quota_exhausted",
            ours("the provider's quota or billing limit is exhausted"),
        ),
        FailureClass::Timeout => (
            S::GATEWAY_TIMEOUT,
            "api_error",
            "upstream_timeout",
            match f.status {
                // Which of our deadlines passed ("no answer within the request deadline
                // of 5s"): ours, and what the client can tune against.
                None => format!("the provider did not answer in time: {}", f.message),
                // A provider's 408.
                Some(_) => ours("the provider did not answer in time"),
            },
        ),
        FailureClass::Connect => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_unreachable",
            ours("the provider could not be reached"),
        ),
        FailureClass::Server => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_error",
            ours("the provider failed"),
        ),
        FailureClass::BadResponse => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_bad_response",
            // Ours too: "too large", "not a stream", "could not be decoded".
            f.message.clone(),
        ),
        FailureClass::ContextOverflow => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
            f.message.clone(),
        ),
        FailureClass::ContentFilter => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "content_filter",
            f.message.clone(),
        ),
        FailureClass::BadRequest => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "upstream_bad_request",
            f.message.clone(),
        ),
        FailureClass::Forbidden => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_forbidden",
            ours("the provider does not allow this model for the gateway's key"),
        ),
        FailureClass::Untranslatable => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_by_provider",
            // Ours: what the request has that the provider's format cannot say.
            f.message.clone(),
        ),
        FailureClass::ModelNotFound => (
            S::BAD_GATEWAY,
            "api_error",
            "upstream_model_not_found",
            ours("the provider does not serve the model"),
        ),
    }
}

/// The code and message of the error event that ends a stream broken after it was
/// committed. A provider error event is worded like the same failure before commit.
pub fn stream_error(e: &StreamError) -> (&'static str, String) {
    match e {
        StreamError::Idle(_) | StreamError::NoFirstToken => (
            "upstream_idle_timeout",
            "the provider's stream broke: it stopped sending the answer".to_owned(),
        ),
        StreamError::TooLong(limit) => (
            "upstream_stream_timeout",
            format!(
                "the provider's stream broke: it ran past the gateway's limit of {} s",
                limit.as_secs()
            ),
        ),
        StreamError::Cut => (
            "upstream_stream_cut",
            "the provider's stream broke: it ended before the answer was complete".to_owned(),
        ),
        StreamError::Upstream(f) => {
            let code = match f.class {
                FailureClass::BadResponse => "upstream_bad_response",
                _ => "upstream_stream_error",
            };
            let (.., message) = failure_parts(f);
            (code, format!("the provider's stream broke: {message}"))
        }
    }
}

/// The JSON error object, also sent as the last event of a broken stream.
pub fn error_body(message: &str, kind: &str, code: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        match &self {
            ApiError::Store(e) => tracing::error!("store: {e}"),
            ApiError::LimitsUnavailable(detail) => {
                tracing::warn!("limits could not be checked: {detail}");
            }
            _ => {}
        }
        if parts.status.is_server_error() {
            tracing::warn!(code = parts.code, "{}", parts.message);
        }
        let body = error_body(&parts.message, parts.kind, parts.code);
        let mut resp = (parts.status, axum::Json(body)).into_response();
        if let ApiError::LimitReached(r) = &self {
            let h = resp.headers_mut();
            match (r.period, r.meter) {
                (Period::Minute, Meter::Requests | Meter::Tokens) => {
                    let what = r.meter.as_str();
                    h.insert(
                        HeaderName::try_from(format!("x-ratelimit-limit-{what}"))
                            .unwrap_or(HeaderName::from_static("x-ratelimit-limit")),
                        HeaderValue::from(r.limit),
                    );
                    h.insert(
                        HeaderName::try_from(format!("x-ratelimit-remaining-{what}"))
                            .unwrap_or(HeaderName::from_static("x-ratelimit-remaining")),
                        HeaderValue::from(0u64),
                    );
                }
                // A budget does not come back by retrying soon: tell SDKs not to.
                _ => {
                    h.insert("x-should-retry", HeaderValue::from_static("false"));
                }
            }
        }
        if matches!(self, ApiError::SpendBreakerOpen { .. }) {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(wait) = parts.retry_after {
            // Whole seconds, rounded up: a client waiting this long finds the key back.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
