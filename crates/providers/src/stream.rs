//! Provider streams as canonical chunks: SSE parsed by `eventsource-stream`, decoded by
//! the wire format's [`StreamDecoder`], with the idle-gap timeout and the rule that a
//! stream which stops without its end marker is an error, never a finished answer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use sluice_llm::{ChatChunk, Decoded, StreamDecoder};

use crate::failure::{Failure, FailureClass};

/// Canonical chunks as they arrive. After an `Err` the stream ends.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, StreamError>> + Send>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    #[error("the provider sent nothing for {0:?}")]
    Idle(Duration),
    #[error("no first token before the first-byte deadline")]
    NoFirstToken,
    #[error("the provider's stream ended before the answer was complete")]
    Cut,
    #[error("{}", .0.message)]
    Upstream(Failure),
}

impl StreamError {
    /// The failure class, for the router's decision before the first byte is committed.
    pub fn into_failure(self) -> Failure {
        match self {
            StreamError::Idle(d) => {
                Failure::new(FailureClass::Timeout, format!("no stream data for {d:?}"))
            }
            StreamError::NoFirstToken => {
                Failure::new(FailureClass::Timeout, StreamError::NoFirstToken.to_string())
            }
            StreamError::Cut => Failure::new(FailureClass::Connect, StreamError::Cut.to_string()),
            StreamError::Upstream(f) => f,
        }
    }
}

struct SseState<S> {
    events: S,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<ChatChunk>,
    scratch: Vec<ChatChunk>,
    done: bool,
    finished: bool,
    /// Until the first substantive chunk, the first-byte deadline applies; after it, the
    /// idle gap. A model that thinks a while before its first token is not cut by `idle`.
    first_deadline: Option<tokio::time::Instant>,
    idle: Duration,
}

/// Decodes an SSE byte stream. Ends with `Err(Cut)` if the bytes stop before the format's
/// end marker, `Err(NoFirstToken)` if nothing substantive came by `first_deadline`, and
/// `Err(Idle)` if a later gap exceeds `idle`.
pub(crate) fn sse_chunks<B, E>(
    bytes: B,
    decoder: Box<dyn StreamDecoder>,
    first_deadline: tokio::time::Instant,
    idle: Duration,
) -> ChunkStream
where
    B: Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let state = SseState {
        events: Box::pin(bytes.eventsource()),
        decoder,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
        finished: false,
        first_deadline: Some(first_deadline),
        idle,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(chunk) = st.pending.pop_front() {
                if is_substantive(&chunk) {
                    st.first_deadline = None;
                }
                return Some((Ok(chunk), st));
            }
            if st.finished || st.done {
                return None;
            }
            let next = match st.first_deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, st.events.next()).await,
                None => tokio::time::timeout(st.idle, st.events.next()).await,
            };
            let err = match next {
                Err(_) if st.first_deadline.is_some() => StreamError::NoFirstToken,
                Err(_) => StreamError::Idle(st.idle),
                Ok(None) => StreamError::Cut,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "provider stream broke");
                    StreamError::Cut
                }
                Ok(Some(Ok(ev))) => {
                    let event = if ev.event == "message" {
                        ""
                    } else {
                        ev.event.as_str()
                    };
                    match st.decoder.decode(event, &ev.data, &mut st.scratch) {
                        Ok(d) => {
                            st.pending.extend(st.scratch.drain(..));
                            st.done = d == Decoded::Done;
                            continue;
                        }
                        Err(e) => StreamError::Upstream(Failure::from_decode(e)),
                    }
                }
            };
            st.finished = true;
            return Some((Err(err), st));
        }
    }))
}

/// Whether a chunk carries something the client must see (text, a tool call, an end or
/// usage), as opposed to the role-only opener that may be held back until then.
pub(crate) fn is_substantive(chunk: &ChatChunk) -> bool {
    chunk.usage.is_some()
        || chunk.choices.iter().any(|c| {
            c.finish_reason.is_some()
                || c.delta.content.as_deref().is_some_and(|s| !s.is_empty())
                || c.delta.tool_calls.is_some()
                || c.delta.refusal.is_some()
        })
}

/// Waits until the stream yields something substantive (the stream itself enforces the
/// first-byte deadline), so that a provider which fails right after opening its stream
/// can still be failed over. Returns the whole stream, held-back chunks first.
pub(crate) async fn commit_first(mut stream: ChunkStream) -> Result<ChunkStream, Failure> {
    let mut held = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let substantive = is_substantive(&chunk);
                held.push(chunk);
                if substantive {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.into_failure()),
            None => break,
        }
    }
    let head = futures_util::stream::iter(held.into_iter().map(Ok));
    Ok(Box::pin(head.chain(stream)))
}
