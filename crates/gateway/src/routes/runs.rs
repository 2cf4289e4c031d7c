//! `/v1/runs`: agent runs over HTTP. Parse, call the scheduler, encode; the events are
//! the WebSocket's (`run.*`, the same JSON), sent as SSE with `id:` the event's seq, so a
//! client resumes with `Last-Event-ID`.
//!
//! - `POST /v1/runs`: start a run (or get the one its idempotency key names); the run as
//!   JSON, or with `"stream": true` its events from the first.
//! - `GET /v1/runs/{id}`: the run as stored.
//! - `GET /v1/runs/{id}/events`: its events after `?after=SEQ` (or `Last-Event-ID`),
//!   replayed, then live until it ends.
//! - `POST /v1/runs/{id}/cancel`: stop it.
//!
//! A run belongs to the key that started it: another key's run is `run_not_found`. A
//! client that goes away from a stream stops following; the run goes on.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_protocol::runs::usd;
use sluice_scheduler::{Origin, Submission};
use sluice_service::Principal;
use sluice_store::runs::RunRow;

use crate::{ApiError, AppState, sse};

/// The run's id on every answer about one run, streamed or not.
const RUN_ID_HEADER: &str = "x-sluice-run-id";

/// `POST /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRun {
    agent: String,
    /// A string, or OpenAI chat messages (checked by the scheduler).
    input: Value,
    #[serde(default)]
    session_key: Option<String>,
    /// Or the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CreateRun = super::body::parse(body, state.max_body_bytes)?;
    let idempotency_key = idempotency_key(&headers, req.idempotency_key)?;
    let accepted = state
        .scheduler
        .submit(
            &who,
            Submission {
                agent: req.agent,
                input: req.input,
                session_key: req.session_key,
                idempotency_key,
                origin: Origin::Http,
                channel: None,
            },
        )
        .await?;
    if req.stream == Some(true) {
        let (_, follow) = state.scheduler.follow(&who, &accepted.run_id, 0).await?;
        let resp = sse::run_events(follow, state.draining());
        return Ok(with_run_id(resp, &accepted.run_id));
    }
    let row = state.scheduler.get(&who, &accepted.run_id).await?;
    let status = if accepted.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let view = RunView {
        existing: Some(accepted.existing),
        ..RunView::of(&row)
    };
    Ok(with_run_id((status, Json(view)).into_response(), &row.id))
}

/// `GET /v1/runs/{id}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Arc<Principal>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = run_id(id)?;
    let row = state.scheduler.get(&who, &id).await?;
    Ok(with_run_id(
        Json(RunView::of(&row)).into_response(),
        &row.id,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events with a seq above this (default 0: all of them).
    after: Option<u64>,
}

/// `GET /v1/runs/{id}/events`.
pub async fn events(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Arc<Principal>>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = run_id(id)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    // A reconnecting EventSource sends its URL again, with the `?after` it started from,
    // and `Last-Event-ID`: the header is where it got to.
    let after = match last_event_id(&headers)? {
        Some(seq) => seq,
        None => q.after.unwrap_or(0),
    };
    let (_, follow) = state.scheduler.follow(&who, &id, after).await?;
    Ok(with_run_id(sse::run_events(follow, state.draining()), &id))
}

/// `POST /v1/runs/{id}/cancel`: a run still going is stopped (its events end with
/// `run.failed`, code `cancelled`); one already ended is left as it is and its status
/// answered.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Arc<Principal>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = run_id(id)?;
    let st = state.scheduler.cancel(&who, &id).await?;
    let body = Json(serde_json::json!({"id": st.run_id, "status": st.status}));
    Ok(with_run_id(body.into_response(), &id))
}

/// A run as the HTTP API shows it: the store's row, its counters as `usage`.
#[derive(Debug, Serialize)]
struct RunView<'a> {
    id: &'a str,
    object: &'static str,
    agent: &'a str,
    /// `queued`, `running`, `completed`, `failed`, `cancelled` or `interrupted`.
    status: &'a str,
    input: &'a Value,
    /// The final answer's text, once completed.
    output: Option<&'a Value>,
    error: Option<RunErrorView<'a>>,
    usage: UsageView,
    parent_run_id: Option<&'a str>,
    session_id: Option<&'a str>,
    created_at_ms: i64,
    finished_at_ms: Option<i64>,
    /// On `POST /v1/runs` only: whether the idempotency key named a run that existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    existing: Option<bool>,
}

#[derive(Debug, Serialize)]
struct RunErrorView<'a> {
    code: &'a str,
    message: &'a str,
    /// The breaker that stopped the run, when `code` is `breaker_tripped`.
    breaker: Option<&'a str>,
}

/// What the run's own model calls and tools used (its ledger rows add up to `cost_usd`).
#[derive(Debug, Serialize)]
struct UsageView {
    steps: u64,
    llm_calls: u64,
    tool_calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// US dollars, a decimal string with nine places.
    cost_usd: String,
}

impl<'a> RunView<'a> {
    fn of(row: &'a RunRow) -> RunView<'a> {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let c = &row.counters;
        RunView {
            id: &row.id,
            object: "agent.run",
            agent: &row.agent,
            status: &row.status,
            input: &row.input,
            output: row.output.as_ref(),
            error: row.error_code.as_deref().map(|code| RunErrorView {
                code,
                message: row.error_message.as_deref().unwrap_or(""),
                breaker: row.breaker.as_deref(),
            }),
            usage: UsageView {
                steps: n(c.steps),
                llm_calls: n(c.llm_calls),
                tool_calls: n(c.tool_calls),
                prompt_tokens: n(c.prompt_tokens),
                completion_tokens: n(c.completion_tokens),
                cost_usd: usd(n(c.cost_nanos)),
            },
            parent_run_id: row.parent_run_id.as_deref(),
            session_id: row.session_id.as_deref(),
            created_at_ms: row.created_at_ms,
            finished_at_ms: row.finished_at_ms,
            existing: None,
        }
    }
}

/// The idempotency key: the body's field or the `Idempotency-Key` header (both: the same).
fn idempotency_key(headers: &HeaderMap, field: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(h) = headers.get("idempotency-key") else {
        return Ok(field);
    };
    let header = h
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key: visible ASCII only"))?;
    match field {
        Some(f) if f != header => Err(ApiError::invalid(
            "idempotency_key: the body and the Idempotency-Key header differ; send one",
        )),
        _ => Ok(Some(header.to_owned())),
    }
}

/// `Last-Event-ID`: the seq of the last event the client has (absent or empty: none).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(h) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = h.to_str().map(str::trim).unwrap_or("-");
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::invalid("Last-Event-ID: the seq of the last event received, a whole number")
    })
}

fn run_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(id)
}

fn with_run_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(RUN_ID_HEADER, v);
    }
    resp
}
