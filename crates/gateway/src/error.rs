//! The one place where errors become HTTP responses, in OpenAI's error shape:
//! `{"error":{"message","type","param","code"}}`. `code` is Sluice's stable,
//! machine-readable name. The service decides code, message and retry advice
//! ([`ServiceError::info`]), and the scheduler its own ([`SchedulerError::body`]); here
//! each of the service's categories, each of the scheduler's refusals, and each error only
//! HTTP has (bodies, paths, the admin API), gets its status in a match that names every
//! case, so a new error cannot slip through without a status decision.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use sluice_limits::spec::{Meter, Period};
use sluice_protocol::codes;
use sluice_scheduler::SchedulerError;
use sluice_service::{Category, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A request about agent runs refused (`/v1/runs`); a service error it wraps is
    /// answered exactly as [`ApiError::Service`] would be.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error("missing or wrong admin token")]
    AdminUnauthorized,
    #[error("an identity header is only believed from the gateway's trusted proxies")]
    UntrustedIdentity,
    #[error("the admin API is off: set [server] admin_token to turn it on")]
    AdminDisabled,
    #[error("{0}")]
    NotFoundEntity(String),
    #[error("the store failed: {0}")]
    Store(#[from] sluice_store::StoreError),
    #[error("the request body did not arrive within {}s", .0.as_secs())]
    BodyTimeout(Duration),
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyUnreadable(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// A request the client must fix (`400 invalid_request`).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::Service(ServiceError::InvalidRequest(message.into()))
    }

    /// The service error this is, also when the scheduler passed it on.
    fn service(&self) -> Option<&ServiceError> {
        match self {
            ApiError::Service(e) | ApiError::Scheduler(SchedulerError::Service(e)) => Some(e),
            _ => None,
        }
    }
}

/// The parts of an error response.
struct Parts {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    /// `x-should-retry: false`: SDKs would retry this status, but retrying cannot help.
    no_retry: bool,
}

/// A service category's status and OpenAI error `type`.
fn category(c: Category) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match c {
        Category::Authentication => (S::UNAUTHORIZED, "authentication_error"),
        Category::Permission => (S::FORBIDDEN, "permission_error"),
        Category::InvalidRequest => (S::BAD_REQUEST, "invalid_request_error"),
        Category::NotFound => (S::NOT_FOUND, "invalid_request_error"),
        Category::RateLimited => (S::TOO_MANY_REQUESTS, "rate_limit_error"),
        Category::QuotaExceeded => (S::TOO_MANY_REQUESTS, "insufficient_quota"),
        Category::Unavailable => (S::SERVICE_UNAVAILABLE, "api_error"),
        Category::Upstream => (S::BAD_GATEWAY, "api_error"),
        Category::UpstreamTimeout => (S::GATEWAY_TIMEOUT, "api_error"),
    }
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
            no_retry: false,
        };
        let msg = self.to_string();
        match self {
            ApiError::Service(e) => service_parts(e),
            ApiError::Scheduler(e) => scheduler_parts(e),
            ApiError::AdminUnauthorized => p(
                S::UNAUTHORIZED,
                "authentication_error",
                "invalid_admin_token",
                msg,
            ),
            ApiError::UntrustedIdentity => p(
                S::UNAUTHORIZED,
                "authentication_error",
                "untrusted_identity_header",
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
            ApiError::NotFound(_) => p(S::NOT_FOUND, "invalid_request_error", "not_found", msg),
            ApiError::MethodNotAllowed => p(
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                msg,
            ),
        }
    }
}

fn service_parts(e: &ServiceError) -> Parts {
    let info = e.info();
    let (status, kind) = category(info.category);
    Parts {
        status,
        kind,
        code: info.code,
        message: info.message,
        retry_after: info.retry_after,
        // A budget does not come back by retrying soon, nor does a tripped spend breaker:
        // tell SDKs not to.
        no_retry: info.category == Category::QuotaExceeded
            || matches!(e, ServiceError::SpendBreakerOpen { .. }),
    }
}

/// The scheduler's refusals: its code and retry advice ([`SchedulerError::body`]), with
/// the status decided here. A bad `input` is HTTP's `invalid_request` (the WebSocket's
/// `invalid_params`), the code of every other body of the wrong shape.
fn scheduler_parts(e: &SchedulerError) -> Parts {
    use StatusCode as S;
    let advice = e.body();
    let p = |status, kind, code, no_retry| Parts {
        status,
        kind,
        code,
        message: e.to_string(),
        retry_after: advice.retry_after_ms.map(Duration::from_millis),
        no_retry,
    };
    match e {
        SchedulerError::AgentNotFound(_) => p(
            S::NOT_FOUND,
            "invalid_request_error",
            codes::AGENT_NOT_FOUND,
            false,
        ),
        SchedulerError::InvalidInput(_) => p(
            S::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            false,
        ),
        SchedulerError::TooManyRuns { .. } => p(
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            codes::TOO_MANY_RUNS,
            false,
        ),
        SchedulerError::AgentBreakerOpen { .. } => p(
            S::SERVICE_UNAVAILABLE,
            "api_error",
            codes::AGENT_BREAKER_OPEN,
            false,
        ),
        SchedulerError::RunNotFound(_) => p(
            S::NOT_FOUND,
            "invalid_request_error",
            codes::RUN_NOT_FOUND,
            false,
        ),
        // OpenAI SDKs retry a 409; the same key with a different request never succeeds.
        SchedulerError::IdempotencyKeyReused(_) => p(
            S::CONFLICT,
            "invalid_request_error",
            codes::IDEMPOTENCY_KEY_REUSED,
            true,
        ),
        SchedulerError::ShuttingDown => {
            p(S::SERVICE_UNAVAILABLE, "api_error", "shutting_down", false)
        }
        SchedulerError::Store(_) => p(S::SERVICE_UNAVAILABLE, "api_error", codes::INTERNAL, false),
        SchedulerError::Service(e) => service_parts(e),
        // Only at start: no request meets it.
        SchedulerError::Config(_) => p(
            S::INTERNAL_SERVER_ERROR,
            "api_error",
            codes::INTERNAL,
            false,
        ),
    }
}

/// The JSON error object, also sent as the last event of a broken stream.
pub fn error_body(message: &str, kind: &str, code: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The error event that ends a stream: the same body as the error response would be.
pub fn stream_error_body(e: &ServiceError) -> serde_json::Value {
    let info = e.info();
    let (_, kind) = category(info.category);
    error_body(&info.message, kind, info.code)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        match &self {
            ApiError::Store(e) => tracing::error!("store: {e}"),
            ApiError::Scheduler(SchedulerError::Store(detail)) => {
                tracing::error!("run store: {detail}");
            }
            _ => {}
        }
        if let Some(ServiceError::LimitsUnavailable(detail)) = self.service() {
            tracing::warn!("limits could not be checked: {detail}");
        }
        if parts.status.is_server_error() {
            tracing::warn!(code = parts.code, "{}", parts.message);
        }
        let body = error_body(&parts.message, parts.kind, parts.code);
        let mut resp = (parts.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(ServiceError::LimitReached(r)) = self.service()
            && let (Period::Minute, Meter::Requests | Meter::Tokens) = (r.period, r.meter)
        {
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
        if parts.no_retry {
            h.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(wait) = parts.retry_after {
            // Whole seconds, rounded up: a client waiting this long finds the key back.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_limits::lease::Refusal;

    fn refusal(period: Period) -> ServiceError {
        ServiceError::LimitReached(Box::new(Refusal {
            scope: "key:k".into(),
            meter: Meter::Tokens,
            period,
            limit: 100,
            retry_after_ms: Some(2_500),
            oversized: false,
        }))
    }

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn each_category_gets_its_status_type_and_headers() {
        let rate = ApiError::from(refusal(Period::Minute)).into_response();
        assert_eq!(rate.status(), 429);
        assert_eq!(header(&rate, "retry-after"), Some("3"));
        assert_eq!(header(&rate, "x-ratelimit-limit-tokens"), Some("100"));
        assert_eq!(header(&rate, "x-ratelimit-remaining-tokens"), Some("0"));
        assert_eq!(header(&rate, "x-should-retry"), None);

        let budget = ApiError::from(refusal(Period::Day)).into_response();
        assert_eq!(budget.status(), 429);
        assert_eq!(header(&budget, "x-should-retry"), Some("false"));
        assert_eq!(header(&budget, "x-ratelimit-limit-tokens"), None);

        let breaker = ApiError::from(ServiceError::SpendBreakerOpen {
            reason: "r".into(),
            retry_after_ms: None,
        })
        .into_response();
        assert_eq!(breaker.status(), 403);
        assert_eq!(header(&breaker, "x-should-retry"), Some("false"));

        let not_allowed = ApiError::from(ServiceError::ModelNotAllowed("m".into())).into_response();
        assert_eq!(not_allowed.status(), 403);
        assert_eq!(header(&not_allowed, "x-should-retry"), None);

        let stopping = ApiError::from(ServiceError::ShuttingDown).into_response();
        assert_eq!(stopping.status(), 503);
        assert_eq!(header(&stopping, "retry-after"), Some("1"));
    }

    #[test]
    fn scheduler_refusals_get_their_status_and_a_wrapped_service_error_keeps_its_own() {
        let cases = [
            (
                SchedulerError::AgentNotFound("a".into()),
                404,
                "agent_not_found",
            ),
            (
                SchedulerError::RunNotFound("r".into()),
                404,
                "run_not_found",
            ),
            (
                SchedulerError::InvalidInput("input: empty".into()),
                400,
                "invalid_request",
            ),
            (
                SchedulerError::TooManyRuns {
                    agent: "a".into(),
                    max: 1,
                },
                429,
                "too_many_runs",
            ),
            (
                SchedulerError::IdempotencyKeyReused("k".into()),
                409,
                "idempotency_key_reused",
            ),
            (
                SchedulerError::Store("connection refused by 10.1.2.3".into()),
                503,
                "internal_error",
            ),
        ];
        for (e, status, code) in cases {
            let parts = ApiError::from(e).parts();
            assert_eq!((parts.status.as_u16(), parts.code), (status, code));
            assert!(
                !parts.message.contains("10.1.2.3"),
                "a database error stays in the log: {}",
                parts.message
            );
        }

        let reused =
            ApiError::from(SchedulerError::IdempotencyKeyReused("k".into())).into_response();
        assert_eq!(
            header(&reused, "x-should-retry"),
            Some("false"),
            "SDKs retry 409s; this one cannot succeed"
        );
        let store = ApiError::from(SchedulerError::Store("x".into())).into_response();
        assert_eq!(header(&store, "retry-after"), Some("1"));

        let open = ApiError::from(SchedulerError::AgentBreakerOpen {
            agent: "a".into(),
            reason: "r".into(),
            retry_after: Some(Duration::from_millis(2_500)),
        })
        .into_response();
        assert_eq!(open.status(), 503);
        assert_eq!(header(&open, "retry-after"), Some("3"));
        let unknown = ApiError::from(SchedulerError::AgentBreakerOpen {
            agent: "a".into(),
            reason: "r".into(),
            retry_after: None,
        })
        .into_response();
        assert_eq!(header(&unknown, "retry-after"), None, "no wait is known");

        let wrapped =
            ApiError::from(SchedulerError::Service(refusal(Period::Minute))).into_response();
        let direct = ApiError::from(refusal(Period::Minute)).into_response();
        assert_eq!(wrapped.status(), direct.status());
        assert_eq!(
            wrapped.headers(),
            direct.headers(),
            "the same headers as HTTP's"
        );
    }

    #[test]
    fn categories_map_to_openai_types() {
        assert_eq!(category(Category::QuotaExceeded).1, "insufficient_quota");
        assert_eq!(category(Category::RateLimited).1, "rate_limit_error");
        assert_eq!(
            category(Category::UpstreamTimeout).0,
            StatusCode::GATEWAY_TIMEOUT
        );
        let body = stream_error_body(&ServiceError::StreamCut);
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["code"], "shutting_down");
    }
}
