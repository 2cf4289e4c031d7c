//! `POST /v1/embeddings`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use sluice_limits::tokens::text_tokens;
use sluice_llm::EmbeddingsRequest;

use super::chat::{json_response, served_by};
use crate::auth::{Caller, now_ms};
use crate::limits::{Estimate, apply_snapshot};
use crate::request_id::RequestId;
use crate::spend::{Begun, Spend};
use crate::{ApiError, AppState};

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req: EmbeddingsRequest = super::body::parse(body, state.max_body_bytes)?;
    if !caller.may_use(&req.model) {
        return Err(ApiError::ModelNotAllowed(req.model));
    }
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
    let agent = super::agent(&headers)?;
    state.spend_breaker.check(&caller.key_ref, now_ms())?;
    let estimate = || Estimate {
        prompt: text_tokens(&req.input.to_string(), &req.model).tokens,
        output: 0,
    };
    let Begun {
        spend,
        route,
        ctx,
        limits,
    } = Spend::begin(
        &state,
        &request_id,
        caller,
        agent,
        &req.model,
        started,
        estimate,
    )
    .await?;
    let Some(result) = state
        .until_cut(state.router.embeddings(&req, &route, &ctx))
        .await
    else {
        spend.cut(&ctx, &route, |target| {
            text_tokens(&req.input.to_string(), &target.model).tokens
        });
        return Err(ApiError::ShuttingDown);
    };
    let seq = spend.failed_calls(&ctx);
    let routed = result?;
    spend.answered(
        seq,
        &routed.target,
        routed.value.response.usage.as_ref(),
        "ok",
        || {
            let text = match &req.input {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text_tokens(&text, &routed.target.model).tokens, 0)
        },
    );
    let bytes = match routed.value.raw {
        Some(raw) => raw,
        None => Bytes::from(
            serde_json::to_vec(&routed.value.response)
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        ),
    };
    let mut resp = json_response(bytes);
    served_by(&mut resp, &routed.target, routed.attempts);
    if let Some(limits) = limits {
        apply_snapshot(&limits, resp.headers_mut());
    }
    Ok(resp)
}
