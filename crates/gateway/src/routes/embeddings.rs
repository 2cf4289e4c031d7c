//! `POST /v1/embeddings`: parse, call the service, encode.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use sluice_llm::EmbeddingsRequest;
use sluice_service::Principal;

use super::answer::{encoded, json_response, meta, served};
use crate::request_id::RequestId;
use crate::{ApiError, AppState};

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(who): Extension<Arc<Principal>>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req: EmbeddingsRequest = super::body::parse(body, state.max_body_bytes)?;
    let meta = meta(request_id, started, &headers, &state.scheduler)?;
    let answer = state.service.embeddings(&who, meta, req).await?;
    let reply = answer.value;
    let resp = json_response(encoded(&reply.response, reply.raw)?);
    Ok(served(
        resp,
        &answer.target,
        answer.attempts,
        answer.headroom.as_ref(),
    ))
}
