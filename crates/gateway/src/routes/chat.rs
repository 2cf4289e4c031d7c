//! `POST /v1/chat/completions`, JSON and SSE: parse, call the service, encode.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use sluice_llm::ChatRequest;
use sluice_service::{Principal, Reply};

use super::answer::{cached, encoded, guarded, json_response, meta, served};
use crate::request_id::RequestId;
use crate::{ApiError, AppState, sse};

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(who): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req: ChatRequest = super::body::parse(body, state.max_body_bytes)?;
    let meta = meta(request_id, started, &headers, &state.scheduler)?;
    let answer = state.service.chat(&who, meta, req).await?;
    let resp = match answer.value {
        Reply::Whole { response, raw } => json_response(encoded(&response, raw)?),
        Reply::Stream(stream) => sse::response(stream),
    };
    let resp = guarded(resp, answer.flagged.as_ref(), &answer.redacted);
    let resp = cached(resp, answer.cache);
    Ok(served(
        resp,
        &answer.target,
        answer.attempts,
        answer.headroom.as_ref(),
    ))
}
