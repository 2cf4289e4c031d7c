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
    /// 5xx or overload: retry, then fall back.
    Server,
    /// The provider answered 2xx with something that is not a usable answer: a body that
    /// does not decode, one larger than `max_answer_bytes`, a non-SSE answer to a stream
    /// request, a stream event over `max_stream_event_bytes`, or a stream that holds back
    /// too much before its first substantive chunk. Treated like a server error: retry,
    /// then fall back; it counts against the breaker.
    BadResponse,
    /// The prompt is too long for this model: another chain entry may take it.
    ContextOverflow,
    /// The provider refused the content: fail at once; do not shop it around.
    ContentFilter,
    /// 400/422: the request itself is wrong. Fail at once, never retried across the chain.
    BadRequest,
    /// 404: this provider does not serve the model. Fall back.
    ModelNotFound,
    /// 403: this key may not use this model or region. The key stays in rotation (it may
    /// serve other models); the entry is given up.
    Forbidden,
    /// The request cannot be expressed in this provider's format (e.g. a content part it
    /// lacks). Another entry may take it; no call was made.
    Untranslatable,
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
            FailureClass::Timeout
            | FailureClass::Connect
            | FailureClass::Server
            | FailureClass::BadResponse => Action::Retry,
            FailureClass::ContextOverflow
            | FailureClass::ModelNotFound
            | FailureClass::Forbidden
            | FailureClass::Untranslatable => Action::NextEntry,
            FailureClass::ContentFilter | FailureClass::BadRequest => Action::Fail,
        }
    }

    /// Whether the failure says the provider+model is unhealthy (feeds the breaker). Rate
    /// limits and key problems are about one key; bad requests are about the client.
    pub fn counts_against_breaker(self) -> bool {
        matches!(
            self,
            FailureClass::Timeout
                | FailureClass::Connect
                | FailureClass::Server
                | FailureClass::BadResponse
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
            FailureClass::BadResponse => "bad_response",
            FailureClass::ContextOverflow => "context_overflow",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::BadRequest => "bad_request",
            FailureClass::ModelNotFound => "model_not_found",
            FailureClass::Forbidden => "forbidden",
            FailureClass::Untranslatable => "untranslatable",
        }
    }
}

/// One failed provider call.
///
/// It has two texts: `message`, which a client may be shown, and `detail`, which only the
/// log gets (with the request id). `message` is a sentence of Sluice's or the message a
/// provider wrote in its documented JSON error format; Sluice never puts an upstream URL,
/// a host name, a transport error or a raw body there (those go to `detail`). What a
/// provider writes in its own message is its own: it is relayed to clients only for the
/// client-error classes (bad request, context overflow, content filter), where it says
/// what to fix. Neither text ever holds our credentials: they are never sent back to us.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: FailureClass,
    /// The upstream HTTP status, when there was one.
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// Safe to show a client (see the type's doc).
    pub message: String,
    /// For the log only: the transport error chain, an excerpt of a body that was not the
    /// provider's error format, the decoder's complaint. Empty when `message` says it all.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    /// The log form: the message, then the detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            status: None,
            retry_after: None,
            message: message.into(),
            detail: String::new(),
        }
    }

    /// Adds what only the log may see.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Classifies an HTTP error response from its status, headers and the provider's
    /// error body (already decoded by the wire format, when it could be).
    pub fn from_status(
        status: u16,
        retry_after: Option<Duration>,
        upstream: Option<UpstreamError>,
        raw_body: &[u8],
    ) -> Self {
        // A body that is not the provider's JSON error format (an HTML page from a proxy, a
        // stack trace) may name internal hosts: it goes to the log, never to the client.
        let decoded = upstream.is_some();
        let (kind, message, detail, body_wait) = match upstream {
            Some(e) => (e.kind, e.message, String::new(), e.retry_after),
            None => (String::new(), String::new(), excerpt(raw_body), None),
        };
        let kind_l = kind.to_ascii_lowercase();
        // Structured details (Gemini's QuotaFailure, ErrorInfo) live beside the message.
        let raw =
            String::from_utf8_lossy(&raw_body[..raw_body.len().min(8192)]).to_ascii_lowercase();
        // A body in no known format is still read for the words that classify it.
        let text = if decoded {
            format!("{kind_l} {}", message.to_ascii_lowercase())
        } else {
            raw.clone()
        };
        let class = match status {
            // A 429 is a rate limit unless its code says the money ran out, or the quota it
            // names is a daily one. Messages are not trusted here: ordinary rate-limit
            // messages mention "quota", "plan and billing" or "payment method".
            429 if kind_l == "insufficient_quota"
                || kind_l.contains("billing")
                || raw.contains("perday") =>
            {
                FailureClass::Billing
            }
            429 => FailureClass::RateLimited,
            300..=399 => FailureClass::Server,
            401 => FailureClass::Auth,
            // Gemini answers a bad key with 400 API_KEY_INVALID.
            400 if raw.contains("api_key_invalid") || text.contains("api key not valid") => {
                FailureClass::Auth
            }
            403 => FailureClass::Forbidden,
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
        let retry_after = retry_after.or(body_wait.map(|d| d.min(MAX_RETRY_AFTER)));
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
            detail,
        }
    }

    /// Classifies an error the provider reported inside a 200 body or stream.
    pub fn from_decode(err: DecodeError) -> Self {
        match err {
            DecodeError::Malformed(m) => Failure::new(
                FailureClass::BadResponse,
                "the provider's answer could not be decoded",
            )
            .with_detail(m),
            DecodeError::Upstream(e) => {
                let text = format!("{} {}", e.kind, e.message).to_ascii_lowercase();
                let kind = e.kind.to_ascii_lowercase();
                let class = if kind == "insufficient_quota" {
                    FailureClass::Billing
                } else if kind.contains("rate_limit") || kind == "resource_exhausted" {
                    FailureClass::RateLimited
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

/// The first 500 characters of a body, for the log, on one line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&body[..body.len().min(2048)])
        .chars()
        .take(500)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        "empty body".to_owned()
    } else {
        format!("body: {}", text.trim())
    }
}

/// Billing words in a 400 (Anthropic: "Your credit balance is too low…").
fn is_billing(text: &str) -> bool {
    ["insufficient_quota", "credit balance", "billing_hard_limit"]
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
        return Some(Duration::from_millis(
            ms.min(MAX_RETRY_AFTER.as_millis() as f64) as u64,
        ));
    }
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The longest wait a provider can impose through `Retry-After`: a day. Anything longer is
/// taken as a day, so a hostile or broken header cannot overflow a clock or bench a key
/// for ever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

#[cfg(test)]
mod tests {
    use super::*;

    fn up(kind: &str, message: &str) -> Option<UpstreamError> {
        Some(UpstreamError {
            kind: kind.into(),
            message: message.into(),
            retry_after: None,
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
    fn rate_limits_with_billing_words_stay_rate_limits() {
        // OpenAI's per-minute 429 and Gemini's per-minute 429 both talk about quota,
        // billing or payment; only the structured code or a daily quota means billing.
        let openai = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3. Please add a payment method to your account to increase your rate limit. Visit https://platform.openai.com/account/billing to add a payment method.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let f = Failure::from_status(429, None, sluice_llm::openai::decode_error(openai), openai);
        assert_eq!(f.class, FailureClass::RateLimited);

        let per_minute = br#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}"#;
        let f = Failure::from_status(
            429,
            None,
            sluice_llm::gemini::decode_error(per_minute),
            per_minute,
        );
        assert_eq!(f.class, FailureClass::RateLimited);
        assert_eq!(
            f.retry_after,
            Some(Duration::from_secs(17)),
            "Gemini's retryDelay is honoured"
        );

        let per_day = String::from_utf8_lossy(per_minute).replace("PerMinute", "PerDay");
        let f = Failure::from_status(
            429,
            None,
            sluice_llm::gemini::decode_error(per_day.as_bytes()),
            per_day.as_bytes(),
        );
        assert_eq!(
            f.class,
            FailureClass::Billing,
            "a daily quota is out until it resets"
        );

        let gemini_bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let f = Failure::from_status(
            400,
            None,
            sluice_llm::gemini::decode_error(gemini_bad_key),
            gemini_bad_key,
        );
        assert_eq!(f.class, FailureClass::Auth);

        assert_eq!(
            Failure::from_status(403, None, None, b"").class,
            FailureClass::Forbidden
        );
        assert_eq!(
            Failure::from_status(302, None, None, b"").class,
            FailureClass::Server
        );
    }

    #[test]
    fn huge_retry_after_is_clamped_not_a_panic() {
        let now = std::time::SystemTime::UNIX_EPOCH;
        for v in ["1e20", "1e300", "99999999999999999999"] {
            let mut h = http::HeaderMap::new();
            h.insert("retry-after", v.parse().unwrap());
            assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER), "{v}");
            let mut h = http::HeaderMap::new();
            h.insert("retry-after-ms", v.parse().unwrap());
            assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER), "{v}");
        }
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
