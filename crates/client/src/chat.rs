//! A streamed `chat.completions` call: its `chat.delta` chunks as they arrive, ending
//! with the completion or the error. The call belongs to the session, so its stream
//! survives a reconnect: the events the client missed are replayed on resume.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sluice_protocol::ErrorBody;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::client::Client;
use crate::error::CloseReason;
use crate::events::Gap;

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// An OpenAI `chat.completion.chunk`. A slow reader may get several provider
    /// chunks merged into one (their text concatenated).
    Delta { seq: u64, chunk: Value },
    /// The call ended with an answer; the stream's last item.
    Completed {
        seq: u64,
        /// OpenAI `usage`, when the provider reported it.
        usage: Option<Value>,
        /// `provider:model` of the chain entry that answered.
        served_by: String,
    },
}

impl ChatEvent {
    /// The session seq of the event.
    pub fn seq(&self) -> u64 {
        match self {
            ChatEvent::Delta { seq, .. } | ChatEvent::Completed { seq, .. } => *seq,
        }
    }

    /// The text a delta adds (empty for anything else).
    pub fn text(&self) -> &str {
        match self {
            ChatEvent::Delta { chunk, .. } => chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
            ChatEvent::Completed { .. } => "",
        }
    }
}

/// Why a chat stream ended without its completion. The stream yields one of these as
/// its last item.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    /// The call broke after it started (`chat.failed`).
    #[error("the call failed: {}: {}", .error.code, .error.message)]
    Failed { seq: u64, error: ErrorBody },
    /// Events of the session were lost while the client was away, so this answer is
    /// incomplete (`session.history` has the stored turn once the call ends).
    #[error("events {} to {} were lost", .0.last_seq + 1, .0.oldest_seq.saturating_sub(1))]
    Gap(Gap),
    /// The client reconnected but the gateway no longer had the session: the call was
    /// cancelled with it.
    #[error("the session ended while the client was away")]
    SessionLost,
    /// No event for [`crate::ClientConfig::chat_idle_timeout`].
    #[error("no event for {0:?}")]
    IdleTimeout(Duration),
    /// The client stopped for good.
    #[error("the client is closed: {0}")]
    Closed(CloseReason),
}

/// What the client's connection task sends a chat stream.
pub(crate) type ChatItem = Result<ChatEvent, ChatError>;

/// The connection task's end of a chat stream. Its events go through a bounded
/// channel; why the stream was cut short goes in `end`, which never waits for room, and
/// is read once the events before it have been.
#[derive(Debug)]
pub(crate) struct ChatSink {
    pub tx: mpsc::Sender<ChatItem>,
    pub end: Arc<OnceLock<ChatError>>,
}

impl ChatSink {
    /// Ends the stream with `error` after the events already sent.
    pub(crate) fn cut(self, error: ChatError) {
        let _ = self.end.set(error);
    }
}

/// A chat stream's two ends.
pub(crate) fn channel(
    buffer: usize,
) -> (ChatSink, mpsc::Receiver<ChatItem>, Arc<OnceLock<ChatError>>) {
    let (tx, rx) = mpsc::channel(buffer);
    let end = Arc::new(OnceLock::new());
    (
        ChatSink {
            tx,
            end: end.clone(),
        },
        rx,
        end,
    )
}

/// The events of one `chat.completions` call: `Ok` deltas, then `Ok(Completed)` or an
/// `Err`, then `None`. Keeps the client's connection open while it lives.
///
/// Read it (or drop it): while its buffer is full the connection reads nothing more,
/// as a socket would, and a gateway kept waiting long enough closes the connection as
/// a slow consumer (the client then resumes).
pub struct ChatStream {
    call_id: String,
    req_id: String,
    rx: mpsc::Receiver<ChatItem>,
    /// Why the connection task cut the stream short, read after its last event.
    end: Arc<OnceLock<ChatError>>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    done: bool,
    client: Client,
}

impl ChatStream {
    pub(crate) fn new(
        client: Client,
        call_id: String,
        req_id: String,
        rx: mpsc::Receiver<ChatItem>,
        end: Arc<OnceLock<ChatError>>,
        idle: Duration,
    ) -> ChatStream {
        ChatStream {
            call_id,
            req_id,
            rx,
            end,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            done: false,
            client,
        }
    }

    /// The gateway's id of the call (its spend-ledger rows' request id).
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The id of the request that started the call.
    pub fn req_id(&self) -> &str {
        &self.req_id
    }

    /// Reads the stream to its end: the whole answer, or why it did not complete.
    pub async fn answer(mut self) -> Result<ChatAnswer, ChatError> {
        let mut text = String::new();
        let mut finish_reason = None;
        while let Some(item) = self.next().await {
            match item? {
                e @ ChatEvent::Delta { .. } => {
                    text.push_str(e.text());
                    if let ChatEvent::Delta { chunk, .. } = &e
                        && let Some(r) = chunk["choices"][0]["finish_reason"].as_str()
                    {
                        finish_reason = Some(r.to_owned());
                    }
                }
                ChatEvent::Completed {
                    usage, served_by, ..
                } => {
                    return Ok(ChatAnswer {
                        call_id: self.call_id.clone(),
                        text,
                        finish_reason,
                        usage,
                        served_by,
                    });
                }
            }
        }
        Err(ChatError::Closed(
            self.client.close_reason().unwrap_or(CloseReason::ByClient),
        ))
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("call_id", &self.call_id)
            .field("req_id", &self.req_id)
            .finish_non_exhaustive()
    }
}

impl Stream for ChatStream {
    type Item = ChatItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChatItem>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                let last = matches!(item, Ok(ChatEvent::Completed { .. }) | Err(_));
                self.done = last;
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.done = true;
                let error = self.end.get().cloned().unwrap_or_else(|| {
                    ChatError::Closed(self.client.close_reason().unwrap_or(CloseReason::ByClient))
                });
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.done = true;
                    return Poll::Ready(Some(Err(ChatError::IdleTimeout(self.idle))));
                }
                Poll::Pending
            }
        }
    }
}

/// A whole streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    pub call_id: String,
    /// The deltas' text, concatenated.
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub served_by: String,
}
