//! `POST /v1/embeddings`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use sluice_llm::EmbeddingsRequest;
use sluice_providers::CallContext;

use super::chat::{json_response, served_by};
use crate::request_id::RequestId;
use crate::{ApiError, AppState};

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: EmbeddingsRequest = super::body::parse(body, state.max_body_bytes)?;
    let empty = match &req.input {
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => true,
    };
    if empty {
        return Err(ApiError::InvalidRequest(
            "`input` must be a non-empty string or array".into(),
        ));
    }
    let routed = state
        .router
        .embeddings(&req, &CallContext { request_id })
        .await?;
    let bytes = match routed.value.raw {
        Some(raw) => raw,
        None => Bytes::from(
            serde_json::to_vec(&routed.value.response)
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        ),
    };
    let mut resp = json_response(bytes);
    served_by(&mut resp, &routed.target, routed.attempts);
    Ok(resp)
}
