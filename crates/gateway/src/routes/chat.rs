//! `POST /v1/chat/completions`, JSON and SSE.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sluice_config::Target;
use std::time::Instant;

use sluice_limits::tokens::{prompt_tokens, text_tokens, tokens_from_bytes};
use sluice_llm::{ChatRequest, Usage};
use sluice_providers::ChatReply;

use crate::auth::Caller;
use crate::auth::now_ms;
use crate::limits::{Estimate, apply_snapshot};
use crate::request_id::RequestId;
use crate::spend::{Begun, Spend};
use crate::{ApiError, AppState, sse};

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut req: ChatRequest = super::body::parse(body, state.max_body_bytes)?;
    if req.messages.is_empty() {
        return Err(ApiError::InvalidRequest(
            "`messages` must contain at least one message".into(),
        ));
    }
    if !caller.may_use(&req.model) {
        return Err(ApiError::ModelNotAllowed(req.model.clone()));
    }
    let agent = super::agent(&headers)?;
    state.spend_breaker.check(&caller.key_ref, now_ms())?;
    // The reservation is for what the client asked for, or `output_reserve` when it
    // asked for nothing; the cap, sent upstream, is what bounds a stream's overshoot of
    // that reservation (docs/limits.md, "the bound").
    let asked = req.max_output_tokens();
    if let Some(cap) = state.gate.cfg.max_output_tokens {
        match asked {
            Some(asked) if asked > cap => {
                return Err(ApiError::MaxTokensTooLarge { asked, cap });
            }
            Some(_) => {}
            None => req.max_tokens = Some(cap),
        }
    }
    let req = Arc::new(req);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let estimate = || Estimate {
        prompt: prompt_tokens(&req, &req.model).tokens,
        output: asked.map_or(state.gate.cfg.output_reserve, u64::from),
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
    let Some(result) = state.until_cut(state.router.chat(&req, &route, &ctx)).await else {
        spend.cut(&ctx, &route, |target| {
            prompt_tokens(&req, &target.model).tokens
        });
        return Err(ApiError::ShuttingDown);
    };
    let seq = spend.failed_calls(&ctx);
    let routed = result?;
    let mut resp = match routed.value {
        ChatReply::Complete { response, raw } => {
            spend.answered(seq, &routed.target, response.usage.as_ref(), "ok", || {
                let model = &routed.target.model;
                let text = response
                    .choices
                    .iter()
                    .map(|c| c.message.text_content())
                    .collect::<String>();
                (
                    prompt_tokens(&req, model).tokens,
                    text_tokens(&text, model).tokens,
                )
            });
            let bytes = match raw {
                Some(raw) => raw,
                None => Bytes::from(
                    serde_json::to_vec(&response)
                        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
                ),
            };
            json_response(bytes)
        }
        ChatReply::Stream(stream) => {
            let target = routed.target.clone();
            let req = req.clone();
            let on_end = Box::new(
                move |usage: Option<Usage>, streamed_bytes: u64, status: &str| {
                    spend.answered(seq, &target, usage.as_ref(), status, || {
                        (
                            prompt_tokens(&req, &target.model).tokens,
                            tokens_from_bytes(streamed_bytes),
                        )
                    });
                },
            );
            sse::response(
                stream,
                include_usage,
                request_id,
                state.stream_cut_signal(),
                on_end,
            )
        }
    };
    served_by(&mut resp, &routed.target, routed.attempts);
    if let Some(limits) = limits {
        apply_snapshot(&limits, resp.headers_mut());
    }
    Ok(resp)
}

pub(super) fn json_response(bytes: Bytes) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `x-sluice-provider` / `x-sluice-model`: which chain entry answered; `x-sluice-attempts`:
/// how many provider calls it took.
pub(super) fn served_by(resp: &mut Response, target: &Target, attempts: u32) {
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
}
