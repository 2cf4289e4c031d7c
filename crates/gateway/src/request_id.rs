//! Request ids. Every request gets a fresh id of the gateway's own
//! (`sluice_service::ids::request_id`, a UUIDv7): it keys the spend ledger's rows and
//! names the request in the log, and answers carry it as `x-sluice-request-id`.
//! `x-request-id` echoes the client's own id when it sent a sane one (for its tracing),
//! else carries the gateway's. A client id is never the ledger's key: two requests that
//! reuse one must not collapse into one row.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

/// The gateway's own id of a request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub const HEADER: &str = "x-request-id";
pub const OWN_HEADER: &str = "x-sluice-request-id";

pub async fn assign(mut req: Request, next: Next) -> Response {
    let own = sluice_service::ids::request_id();
    let client = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    req.extensions_mut().insert(RequestId(own.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %own,
        client_request_id = client.as_deref().unwrap_or(""),
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    let echoed = client.as_deref().unwrap_or(&own);
    for (name, value) in [(HEADER, echoed), (OWN_HEADER, own.as_str())] {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}
