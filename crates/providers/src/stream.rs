//! Provider streams as canonical chunks: SSE parsed by `eventsource-stream`, decoded by
//! the wire format's [`StreamDecoder`], with the stream's bounds (first-byte deadline, idle
//! gap between substantive chunks, whole-stream duration, event size) and the rule that a
//! stream which stops without its end marker is an error, never a finished answer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use sluice_llm::{ChatChunk, Decoded, StreamDecoder};
use tokio::time::Instant;

use crate::failure::{Failure, FailureClass};

/// Canonical chunks as they arrive. After an `Err` the stream ends.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, StreamError>> + Send>>;

/// How a provider's stream broke. `Display` is the log form (it may hold a [`Failure`]'s
/// detail); what a client is told is the gateway's to word.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// Nothing substantive (text, tool call, finish, usage) for this long after the first
    /// token; empty deltas, pings and keep-alive comments do not count.
    #[error("the provider sent nothing substantive for {0:?}")]
    Idle(Duration),
    #[error("no first token before the first-byte deadline")]
    NoFirstToken,
    /// The whole stream ran past the provider's `stream_timeout_ms`.
    #[error("the stream ran past its limit of {0:?}")]
    TooLong(Duration),
    #[error("the provider's stream ended before the answer was complete")]
    Cut,
    #[error("{0}")]
    Upstream(Failure),
}

impl StreamError {
    /// The failure class, for the router's decision before the first byte is committed.
    pub fn into_failure(self) -> Failure {
        match self {
            StreamError::Idle(d) => Failure::new(
                FailureClass::Timeout,
                format!("no stream data for {}s", d.as_secs()),
            ),
            StreamError::NoFirstToken => {
                Failure::new(FailureClass::Timeout, StreamError::NoFirstToken.to_string())
            }
            StreamError::TooLong(d) => Failure::new(
                FailureClass::Timeout,
                format!("the stream ran past its limit of {}s", d.as_secs()),
            ),
            StreamError::Cut => Failure::new(FailureClass::Connect, StreamError::Cut.to_string()),
            StreamError::Upstream(f) => f,
        }
    }
}

/// The bounds of one provider stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamRules {
    /// The first substantive chunk must come by then.
    pub first_deadline: Instant,
    /// The longest gap between two substantive chunks after the first.
    pub idle: Duration,
    /// The whole stream must end by then (`stream_timeout_ms` after the request was sent).
    pub end: Instant,
    /// `stream_timeout_ms`, for the error.
    pub limit: Duration,
    /// The longest SSE event (or line) accepted.
    pub max_event_bytes: usize,
}

/// The most chunks held back before the first substantive one. Providers open with one or
/// two (a role-only chunk, an empty content delta); a provider sending more is answering
/// with nothing, and the held chunks would grow without bound.
pub(crate) const MAX_HELD_CHUNKS: usize = 64;
/// The most bytes (as JSON) of chunks held back before the first substantive one.
pub(crate) const MAX_HELD_BYTES: usize = 64 * 1024;

struct SseState<S> {
    events: S,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<ChatChunk>,
    scratch: Vec<ChatChunk>,
    done: bool,
    finished: bool,
    /// Until the first substantive chunk, the first-byte deadline applies; after it, the
    /// idle gap. A model that thinks a while before its first token is not cut by `idle`.
    first_deadline: Option<Instant>,
    /// When the current idle window closes; opened when the stream is next polled after a
    /// substantive chunk (so time the client takes to read is not counted) and not moved
    /// by empty chunks.
    idle_deadline: Option<Instant>,
    rules: StreamRules,
}

impl<S> SseState<S> {
    /// The next deadline and the error it means.
    fn deadline(&mut self, now: Instant) -> (Instant, StreamError) {
        let (at, err) = match self.first_deadline {
            Some(at) => (at, StreamError::NoFirstToken),
            None => (
                *self.idle_deadline.get_or_insert(now + self.rules.idle),
                StreamError::Idle(self.rules.idle),
            ),
        };
        if self.rules.end <= at {
            (self.rules.end, StreamError::TooLong(self.rules.limit))
        } else {
            (at, err)
        }
    }
}

/// Decodes an SSE byte stream. Ends with `Err(Cut)` if the bytes stop before the format's
/// end marker, `Err(NoFirstToken)` if nothing substantive came by the first deadline,
/// `Err(Idle)` if a later gap between substantive chunks exceeds `idle`, `Err(TooLong)` at
/// the stream's end deadline, and a [`FailureClass::BadResponse`] once an event passes
/// `max_event_bytes`. The deadlines are checked before every read, so a provider that
/// sends empty chunks without pause is stopped too.
pub(crate) fn sse_chunks<B, E>(
    bytes: B,
    decoder: Box<dyn StreamDecoder>,
    rules: StreamRules,
) -> ChunkStream
where
    B: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let guarded = EventGuard::new(bytes, rules.max_event_bytes);
    let state = SseState {
        events: Box::pin(guarded.eventsource()),
        decoder,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        done: false,
        finished: false,
        first_deadline: Some(rules.first_deadline),
        idle_deadline: None,
        rules,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(chunk) = st.pending.pop_front() {
                if is_substantive(&chunk) {
                    st.first_deadline = None;
                    st.idle_deadline = None;
                }
                return Some((Ok(chunk), st));
            }
            if st.finished || st.done {
                return None;
            }
            let now = Instant::now();
            let (deadline, on_timeout) = st.deadline(now);
            let next = if now < deadline {
                tokio::time::timeout_at(deadline, st.events.next())
                    .await
                    .ok()
            } else {
                None
            };
            let err = match next {
                None => on_timeout,
                Some(None) => StreamError::Cut,
                Some(Some(Err(EventStreamError::Transport(GuardError::TooLong(max))))) => {
                    StreamError::Upstream(event_too_long(max))
                }
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "provider stream broke");
                    StreamError::Cut
                }
                Some(Some(Ok(ev))) => {
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

fn event_too_long(max: usize) -> Failure {
    Failure::new(
        FailureClass::BadResponse,
        "the provider's stream sent an event larger than the gateway accepts",
    )
    .with_detail(format!(
        "an SSE event or line passed max_stream_event_bytes ({max})"
    ))
}

/// Whether a chunk carries something the client must see (text, a tool call, a refusal,
/// reasoning or another non-empty delta field, an end or usage), as opposed to the
/// role-only or empty opener that may be held back until then.
pub(crate) fn is_substantive(chunk: &ChatChunk) -> bool {
    chunk.usage.is_some()
        || chunk.choices.iter().any(|c| {
            c.finish_reason.is_some()
                || c.delta.content.as_deref().is_some_and(|s| !s.is_empty())
                || c.delta.tool_calls.is_some()
                || c.delta.refusal.is_some()
                // `reasoning_content` (DeepSeek, vLLM), `audio` and fields added later.
                || c.delta.rest.values().any(|v| match v {
                    serde_json::Value::Null => false,
                    serde_json::Value::String(s) => !s.is_empty(),
                    serde_json::Value::Array(a) => !a.is_empty(),
                    serde_json::Value::Object(o) => !o.is_empty(),
                    _ => true,
                })
        })
}

/// Waits until the stream yields something substantive (the stream itself enforces the
/// first-byte deadline), so that a provider which fails right after opening its stream
/// can still be failed over. Returns the whole stream, held-back chunks first. More than
/// [`MAX_HELD_CHUNKS`] or [`MAX_HELD_BYTES`] held back is a bad answer, before commit.
pub(crate) async fn commit_first(mut stream: ChunkStream) -> Result<ChunkStream, Failure> {
    let mut held = Vec::new();
    let mut held_bytes = 0;
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let substantive = is_substantive(&chunk);
                if !substantive {
                    held_bytes += json_len(&chunk);
                }
                held.push(chunk);
                if substantive {
                    break;
                }
                if held.len() > MAX_HELD_CHUNKS || held_bytes > MAX_HELD_BYTES {
                    return Err(Failure::new(
                        FailureClass::BadResponse,
                        "the provider's stream sent only empty chunks",
                    )
                    .with_detail(format!(
                        "{} chunks ({held_bytes} bytes) without content before the first token",
                        held.len()
                    )));
                }
            }
            Some(Err(e)) => return Err(e.into_failure()),
            None => break,
        }
    }
    let head = futures_util::stream::iter(held.into_iter().map(Ok));
    Ok(Box::pin(head.chain(stream)))
}

/// The length of a chunk as JSON, without building the JSON.
fn json_len(chunk: &ChatChunk) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing our own type to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, chunk);
    count.0
}

/// Why the guarded byte stream ended early.
#[derive(Debug)]
enum GuardError<E> {
    Transport(E),
    /// An event (or line) passed this many bytes.
    TooLong(usize),
}

impl<E: std::fmt::Display> std::fmt::Display for GuardError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::Transport(e) => e.fmt(f),
            GuardError::TooLong(max) => write!(f, "an SSE event passed {max} bytes"),
        }
    }
}

/// The bytes of a provider stream, passed on a whole line at a time and failed once an SSE
/// event (or a single line) passes `max`.
///
/// `eventsource-stream` re-parses an unfinished line from its start on every chunk, and
/// buffers an event's data until the blank line that ends it: without this, one endless
/// line costs memory without bound and time quadratic in its length (a 256 MB line pinned
/// a core for a minute). Holding the unfinished line here (at most `max` bytes) keeps the
/// parser's work linear; a chunk that ends on a line end, as providers' chunks do, passes
/// without a copy.
struct EventGuard<B> {
    inner: Pin<Box<B>>,
    max: usize,
    len: EventLen,
    /// The start of a line whose end has not come yet.
    tail: BytesMut,
    /// The cap was passed: the lines before it went out, the error is next.
    over: bool,
    done: bool,
}

impl<B> EventGuard<B> {
    fn new(inner: B, max: usize) -> Self {
        EventGuard {
            inner: Box::pin(inner),
            max,
            len: EventLen::default(),
            tail: BytesMut::new(),
            over: false,
            done: false,
        }
    }

    /// Takes the next bytes: the complete lines to pass on, if any.
    fn push(&mut self, bytes: Bytes) -> Option<Bytes> {
        let over = self.len.feed(&bytes, self.max);
        self.over = over.is_some();
        let upto = over.unwrap_or(bytes.len());
        let Some(end) = bytes[..upto]
            .iter()
            .rposition(|b| *b == b'\n' || *b == b'\r')
            .map(|i| i + 1)
        else {
            if !self.over {
                self.tail.extend_from_slice(&bytes);
            }
            return None;
        };
        let lines = if self.tail.is_empty() {
            bytes.slice(..end)
        } else {
            let mut lines = std::mem::take(&mut self.tail);
            lines.extend_from_slice(&bytes[..end]);
            lines.freeze()
        };
        if !self.over {
            self.tail.extend_from_slice(&bytes[end..]);
        }
        Some(lines)
    }
}

impl<B, E> Stream for EventGuard<B>
where
    B: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, GuardError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.over {
                self.done = true;
                return Poll::Ready(Some(Err(GuardError::TooLong(self.max))));
            }
            let item = std::task::ready!(self.inner.as_mut().poll_next(cx));
            match item {
                Some(Ok(bytes)) => {
                    if let Some(lines) = self.push(bytes) {
                        return Poll::Ready(Some(Ok(lines)));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(GuardError::Transport(e))));
                }
                None => {
                    // An unfinished last line goes to the parser, which ends the stream
                    // the way it always has.
                    self.done = true;
                    let tail = std::mem::take(&mut self.tail);
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(tail.freeze())));
                }
            }
        }
    }
}

/// Where the SSE parser is: bytes of the current event's field lines, of the current line,
/// and whether that line is a comment (not buffered as data, but still parsed whole).
#[derive(Debug, Default)]
struct EventLen {
    event: usize,
    line: usize,
    comment: bool,
    /// The last byte was `\r`: a `\n` now ends the same line.
    after_cr: bool,
}

impl EventLen {
    /// Feeds the next bytes; the index of the byte at which the event or a line passes
    /// `max`, if one does.
    fn feed(&mut self, bytes: &[u8], max: usize) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    // A blank line ends the event.
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                    self.comment = false;
                }
                _ => {
                    self.after_cr = false;
                    if self.line == 0 && b == b':' {
                        self.comment = true;
                    }
                    self.line += 1;
                    if !self.comment {
                        self.event += 1;
                    }
                    if self.line > max || self.event > max {
                        return Some(i);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
