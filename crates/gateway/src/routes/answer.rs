//! What the model routes share: the call's metadata from the request's headers, and the
//! answer's body and headers.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sluice_config::Target;
use sluice_service::call::{PLAIN_NAME_RULE, is_plain_name};
use sluice_service::{CacheControl, CacheStatus, CallMeta, Headroom};

use crate::ApiError;

/// The call's metadata: the request id, when the request arrived (before its body was
/// read), and the agent it is made for, from `x-sluice-agent` (its budgets apply and the
/// ledger records it; a key cannot escape its own or its user's limits by naming one).
/// An agent the scheduler runs (`[agents.NAME]`) cannot be named: its budget is spent by
/// its runs only, so a key cannot spend it from outside a run.
pub(super) fn meta(
    request_id: String,
    started: std::time::Instant,
    headers: &HeaderMap,
    scheduler: &sluice_scheduler::Scheduler,
) -> Result<CallMeta, ApiError> {
    let mut meta = CallMeta::new(request_id);
    meta.started = started;
    meta.cache = cache_control(headers);
    let Some(v) = headers.get("x-sluice-agent") else {
        return Ok(meta);
    };
    match v.to_str().ok().filter(|s| is_plain_name(s)) {
        Some(agent) if scheduler.has_agent(agent) => Err(ApiError::invalid(format!(
            "x-sluice-agent: `{agent}` is an agent of this gateway's scheduler; start a run of it (POST /v1/runs) instead"
        ))),
        Some(agent) => Ok(meta.with_agent(agent)?),
        None => Err(ApiError::invalid(format!(
            "x-sluice-agent: {PLAIN_NAME_RULE}"
        ))),
    }
}

/// What the client asks of the response cache (docs/cache.md): `Cache-Control: no-cache`
/// (or `max-age=0`) or `x-sluice-cache: bypass` is not served from the cache;
/// `Cache-Control: no-store` (or `x-sluice-cache: no-store`) is neither served nor stored.
pub(super) fn cache_control(headers: &HeaderMap) -> CacheControl {
    let mut c = CacheControl::default();
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or_default().split(',') {
            match d.trim().to_ascii_lowercase().as_str() {
                "no-cache" | "max-age=0" => c.no_lookup = true,
                "no-store" => {
                    c.no_lookup = true;
                    c.no_store = true;
                }
                _ => {}
            }
        }
    }
    match headers
        .get("x-sluice-cache")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("bypass") => c.no_lookup = true,
        Some("no-store") => {
            c.no_lookup = true;
            c.no_store = true;
        }
        _ => {}
    }
    c
}

/// `x-sluice-cache: hit | semantic-hit | miss | bypass` when the alias caches.
pub(super) fn cached(mut resp: Response, status: Option<CacheStatus>) -> Response {
    if let Some(s) = status {
        resp.headers_mut()
            .insert("x-sluice-cache", HeaderValue::from_static(s.as_str()));
    }
    resp
}

/// The provider's own bytes when it spoke the OpenAI format, else ours.
pub(super) fn encoded<T: serde::Serialize>(
    value: &T,
    raw: Option<Bytes>,
) -> Result<Bytes, ApiError> {
    match raw {
        Some(raw) => Ok(raw),
        None => serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| ApiError::invalid(e.to_string())),
    }
}

pub(super) fn json_response(bytes: Bytes) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `x-sluice-provider` / `x-sluice-model`: which chain entry answered;
/// `x-sluice-attempts`: how many provider calls it took; `x-ratelimit-limit-*` /
/// `x-ratelimit-remaining-*`: the tightest per-minute limits, when a limit applied.
/// The prompt guard's marks: `x-sluice-guard: flagged` with the detectors and score when
/// the request was flagged; `x-sluice-guard-redacted` with the kinds the output filter
/// took out of a whole answer.
pub(super) fn guarded(
    mut resp: Response,
    flagged: Option<&sluice_service::Flagged>,
    redacted: &[&str],
) -> Response {
    let h = resp.headers_mut();
    if let Some(f) = flagged {
        h.insert("x-sluice-guard", HeaderValue::from_static("flagged"));
        if let Ok(v) = HeaderValue::from_str(&f.detectors.join(",")) {
            h.insert("x-sluice-guard-detectors", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", f.score)) {
            h.insert("x-sluice-guard-score", v);
        }
    }
    if !redacted.is_empty()
        && let Ok(v) = HeaderValue::from_str(&redacted.join(","))
    {
        h.insert("x-sluice-guard-redacted", v);
    }
    resp
}

pub(super) fn served(
    mut resp: Response,
    target: &Target,
    attempts: u32,
    headroom: Option<&Headroom>,
) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-sluice-provider", target.provider.as_str()),
        ("x-sluice-model", target.model.as_str()),
        ("x-sluice-attempts", &attempts.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    if let Some(s) = headroom {
        for (name, v) in [
            ("x-ratelimit-limit-requests", s.limit_requests),
            ("x-ratelimit-remaining-requests", s.remaining_requests),
            ("x-ratelimit-limit-tokens", s.limit_tokens),
            ("x-ratelimit-remaining-tokens", s.remaining_tokens),
        ] {
            if let Some(v) = v {
                h.insert(name, HeaderValue::from(v));
            }
        }
    }
    resp
}
