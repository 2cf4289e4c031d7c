//! The methods a client may call, one arm each in [`dispatch`]: adding a method is a name
//! in `sluice_protocol::methods`, its types there, and an arm here.
//!
//! `chat.completions` goes through the completion service like `POST
//! /v1/chat/completions`; once admitted, its stream is pumped into the session's events by
//! a task of the session's (not the connection's), so it keeps running while the client
//! is away, and its turn is stored in the session's history.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_llm::{ChatRequest, Message, Role};
use sluice_protocol::methods::{self as m, events};
use sluice_protocol::runs;
use sluice_protocol::{ErrorBody, Request, Response, codes};
use sluice_service::{CacheControl, CallMeta, MeteredStream, Reply, ServiceError};
use sluice_store::sessions::{MessageRow as SessionMessageRow, NewMessage, SessionRow};

use super::connection::{Conn, error};
use super::session::Session;
use crate::AppState;

pub(super) async fn dispatch(conn: &Arc<Conn>, req: Request) -> Response {
    let id = req.id.clone();
    let result = match req.method.as_str() {
        m::PING => Ok(json!({"pong": true})),
        m::USAGE_GET => usage(conn),
        m::SESSION_HISTORY => history(conn, req.params).await,
        m::CHAT_COMPLETIONS => chat(conn, &req.id, req.params).await,
        runs::AGENT_RUN => super::runs::run(conn, req.params).await,
        runs::RUN_SUBSCRIBE => super::runs::subscribe(conn, req.params).await,
        runs::RUN_CANCEL => super::runs::cancel(conn, req.params).await,
        other => Err(error(
            codes::UNKNOWN_METHOD,
            &format!(
                "no method `{}`; hello.methods lists them",
                super::prefix(other, 64)
            ),
        )),
    };
    match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    }
}

/// Params that must be given (an object of the method's shape).
pub(super) fn params_of<T: DeserializeOwned>(params: Value) -> Result<T, ErrorBody> {
    serde_json::from_value(params).map_err(|e| error(codes::INVALID_PARAMS, &e.to_string()))
}

fn params<T: DeserializeOwned + Default>(params: Value) -> Result<T, ErrorBody> {
    if params.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(params).map_err(|e| error(codes::INVALID_PARAMS, &e.to_string()))
}

/// A service error as the protocol carries it: the same codes as HTTP.
pub(super) fn service_error(e: &ServiceError) -> ErrorBody {
    sluice_scheduler::error::service_body(e)
}

fn usage(conn: &Conn) -> Result<Value, ErrorBody> {
    let u = conn.session.usage();
    let usage = m::Usage {
        session_id: conn.session.id.clone(),
        calls: u.calls,
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cost_usd: crate::routes::admin::usd(i64::try_from(u.cost_nanos).unwrap_or(i64::MAX)),
    };
    serde_json::to_value(usage).map_err(|e| error(codes::INTERNAL, &e.to_string()))
}

async fn history(conn: &Conn, raw: Value) -> Result<Value, ErrorBody> {
    let p: m::HistoryParams = params(raw)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let before = p.before_seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    // One more than asked: whether older messages exist.
    let rows = conn
        .state
        .service
        .store()
        .session_messages(&conn.session.id, before, limit + 1)
        .await
        .map_err(|e| {
            tracing::warn!(session = %conn.session.id, "cannot read session history: {e}");
            ErrorBody {
                retryable: true,
                ..error(codes::INTERNAL, "the session's history could not be read")
            }
        })?;
    let history = page(
        conn.session.id.clone(),
        rows,
        limit as usize,
        conn.hub.cfg.max_frame_bytes,
    );
    serde_json::to_value(history).map_err(|e| error(codes::INTERNAL, &e.to_string()))
}

/// Room in a history answer's frame for everything but its messages.
const HISTORY_FRAME_OVERHEAD: usize = 512;

/// The newest of `rows` (oldest first) that number at most `limit` and fit in a frame of
/// `frame_bytes` (at least one, however large), oldest first.
fn page(
    session_id: String,
    rows: Vec<SessionMessageRow>,
    limit: usize,
    frame_bytes: usize,
) -> m::History {
    let budget = frame_bytes.saturating_sub(HISTORY_FRAME_OVERHEAD + session_id.len());
    let mut more = rows.len() > limit;
    let mut used = 0;
    let mut messages = Vec::new();
    for r in rows.into_iter().rev().take(limit) {
        let m = m::HistoryMessage {
            seq: u64::try_from(r.seq).unwrap_or(0),
            message: r.content,
            created_at_ms: r.created_at_ms,
        };
        // Its size in the frame, with the comma that separates it.
        let size = serde_json::to_string(&m).map_or(0, |s| s.len()) + 1;
        if !messages.is_empty() && used + size > budget {
            more = true;
            break;
        }
        used += size;
        messages.push(m);
    }
    messages.reverse();
    m::History {
        session_id,
        messages,
        more,
    }
}

async fn chat(conn: &Arc<Conn>, req_id: &str, raw: Value) -> Result<Value, ErrorBody> {
    if !raw.is_object() {
        return Err(error(
            codes::INVALID_PARAMS,
            "params: an OpenAI chat-completions request object",
        ));
    }
    let mut raw = raw;
    let control = cache_control(&mut raw)?;
    let mut req: ChatRequest =
        serde_json::from_value(raw).map_err(|e| error(codes::INVALID_PARAMS, &e.to_string()))?;
    // A place among the session's streaming calls, held until its stream ends.
    let slot =
        StreamSlot::take(&conn.session, conn.hub.cfg.max_pending_requests).ok_or_else(|| {
            ErrorBody {
                retryable: true,
                ..error(
                    codes::TOO_MANY_PENDING,
                    "too many calls streaming in this session; wait for one to end",
                )
            }
        })?;
    req.stream = Some(true);
    let turn = new_turn(&req);
    let mut meta = CallMeta::fresh();
    meta.session = Some(conn.session.id.clone());
    meta.cache = control;
    let call_id = meta.request_id.clone();
    let answer = conn
        .state
        .service
        .chat(&conn.principal, meta, req)
        .await
        .map_err(|e| service_error(&e))?;
    let served_by = answer.target.to_string();
    let answer_cache = answer.cache;
    let guard = answer.flagged.as_ref().map(|f| m::GuardFlag {
        verdict: "flagged".into(),
        score: f.score,
        detectors: f.detectors.iter().map(|d| (*d).to_owned()).collect(),
    });
    let session = conn.session.clone();
    let state = conn.state.clone();
    let ids = (call_id.clone(), req_id.to_owned());
    match answer.value {
        Reply::Stream(stream) => {
            tokio::spawn(pump(state, session, stream, ids, served_by, turn, slot));
        }
        // A provider that answered whole although a stream was asked for: one delta.
        Reply::Whole { response, .. } => {
            let text: String = response
                .choices
                .iter()
                .map(|c| c.message.text_content())
                .collect();
            let chunk = json!({
                "id": response.id, "object": "chat.completion.chunk", "created": response.created,
                "model": response.model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": response.choices.first().and_then(|c| c.finish_reason.clone())}],
            });
            session.emit_delta(m::ChatDelta {
                call_id: ids.0.clone(),
                req_id: ids.1.clone(),
                chunk,
            });
            session.emit(
                events::CHAT_COMPLETED,
                json!({"call_id": ids.0, "req_id": ids.1, "usage": response.usage, "served_by": served_by}),
            );
            let answer = Message::text(Role::Assistant, text);
            tokio::spawn(store_turn(state, session, turn, answer));
        }
    }
    let cache = answer_cache.map(|c| c.as_str().to_owned());
    Ok(serde_json::to_value(m::ChatStarted {
        call_id,
        guard,
        cache,
    })
    .unwrap_or(Value::Null))
}

/// The gateway's own `cache` param of `chat.completions` (taken out before the request is
/// read): `"bypass"` is not served from the response cache, `"no-store"` is neither
/// served nor stored (docs/cache.md).
fn cache_control(raw: &mut Value) -> Result<CacheControl, ErrorBody> {
    let Some(v) = raw.as_object_mut().and_then(|o| o.remove("cache")) else {
        return Ok(CacheControl::default());
    };
    match v.as_str() {
        Some("bypass") => Ok(CacheControl {
            no_lookup: true,
            no_store: false,
        }),
        Some("no-store") => Ok(CacheControl {
            no_lookup: true,
            no_store: true,
        }),
        _ => Err(error(
            codes::INVALID_PARAMS,
            "params.cache: \"bypass\" or \"no-store\"",
        )),
    }
}

/// One of a session's streaming calls: given back when dropped.
pub(super) struct StreamSlot(Arc<Session>);

impl StreamSlot {
    pub(super) fn take(session: &Arc<Session>, max: usize) -> Option<StreamSlot> {
        use std::sync::atomic::Ordering;
        session
            .streaming
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(session.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0
            .streaming
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The request's new turn: its messages after the last assistant message (the whole
/// request when it has none), as the session's history keeps them.
fn new_turn(req: &ChatRequest) -> Vec<Message> {
    let start = req
        .messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    req.messages[start..].to_vec()
}

/// Streams a call's chunks into the session's events until it ends, or the session does
/// (then the stream is dropped, and settles as `client_closed`).
async fn pump(
    state: Arc<AppState>,
    session: Arc<Session>,
    mut stream: MeteredStream,
    (call_id, req_id): (String, String),
    served_by: String,
    turn: Vec<Message>,
    slot: StreamSlot,
) {
    let mut text = String::new();
    loop {
        let item = tokio::select! {
            () = session.ended.cancelled() => return,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(chunk)) => {
                for c in &chunk.choices {
                    text.push_str(c.delta.content.as_deref().unwrap_or(""));
                }
                session.emit_delta(m::ChatDelta {
                    call_id: call_id.clone(),
                    req_id: req_id.clone(),
                    chunk: serde_json::to_value(&chunk).unwrap_or(Value::Null),
                });
            }
            Some(Err(e)) => {
                if let Some(s) = stream.settled() {
                    session.add_usage(s);
                }
                // The place is free before the client hears the call ended.
                drop(slot);
                let failed = m::ChatFailed {
                    call_id,
                    req_id,
                    error: service_error(&e),
                };
                session.emit(
                    events::CHAT_FAILED,
                    serde_json::to_value(failed).unwrap_or(Value::Null),
                );
                return;
            }
            None => break,
        }
    }
    if let Some(s) = stream.settled() {
        session.add_usage(s);
    }
    drop(slot);
    let usage = stream.usage().and_then(|u| serde_json::to_value(u).ok());
    let done = m::ChatCompleted {
        call_id,
        req_id,
        usage,
        served_by,
    };
    session.emit(
        events::CHAT_COMPLETED,
        serde_json::to_value(done).unwrap_or(Value::Null),
    );
    drop(stream);
    store_turn(state, session, turn, Message::text(Role::Assistant, text)).await;
}

/// Writes a call's turn and its answer to the session's history (creating the session's
/// row first if this is its first turn). Off the call's path; a failure is logged.
async fn store_turn(
    state: Arc<AppState>,
    session: Arc<Session>,
    turn: Vec<Message>,
    answer: Message,
) {
    let store = state.service.store();
    let now = sluice_service::ids::now_ms();
    let mut created = session.store.lock().await;
    if !*created {
        let row = SessionRow {
            id: session.id.clone(),
            session_key: format!("ws:{}", session.id),
            key_id: Some(session.principal.key_ref.to_string()),
            agent: None,
            channel: None,
            metadata: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        if let Err(e) = store.create_session(&row).await {
            tracing::warn!(session = %session.id, "cannot store the session: {e}");
            return;
        }
        *created = true;
    }
    let messages: Vec<NewMessage> = turn
        .iter()
        .chain(std::iter::once(&answer))
        .map(|m| NewMessage {
            role: m.role.as_str().to_owned(),
            content: serde_json::to_value(m).unwrap_or(Value::Null),
            created_at_ms: now,
        })
        .collect();
    if let Err(e) = store.append_messages(&session.id, &messages).await {
        tracing::warn!(session = %session.id, "cannot store the session's messages: {e}");
    }
    let _ = store.touch_session(&session.id, now).await;
}
