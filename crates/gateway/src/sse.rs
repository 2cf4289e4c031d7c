//! Canonical chunks → `text/event-stream`, one `data:` event per chunk as it arrives, then
//! `data: [DONE]`. A stream that breaks ends with an error event and no `[DONE]`, which
//! OpenAI SDKs raise as an error: a cut answer never looks finished. That includes streams
//! still running when the shutdown grace period ends.

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderValue;
use sluice_llm::Usage;
use sluice_providers::ChunkStream;
use tokio::sync::watch;

use crate::error::{error_body, stream_error};

/// Called once when the stream ends, with the usage it reported, the bytes of text and
/// tool-call arguments it streamed (for an estimate when it reported no usage), and how
/// it ended (`ok`, an error code, or `client_closed` when the client went away first).
pub type OnEnd = Box<dyn FnOnce(Option<Usage>, u64, &str) + Send>;

/// Calls [`OnEnd`] exactly once: at the end, or on drop when the client disconnects.
struct EndGuard {
    on_end: Option<OnEnd>,
    usage: Option<Usage>,
    streamed_bytes: u64,
}

impl EndGuard {
    fn finish(&mut self, status: &str) {
        if let Some(f) = self.on_end.take() {
            f(self.usage.take(), self.streamed_bytes, status);
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.finish("client_closed");
    }
}

struct State {
    stream: ChunkStream,
    include_usage: bool,
    request_id: String,
    /// Turns true when the shutdown grace period is over.
    cut: watch::Receiver<bool>,
    end: EndGuard,
}

pub fn response(
    stream: ChunkStream,
    include_usage: bool,
    request_id: String,
    cut: watch::Receiver<bool>,
    on_end: OnEnd,
) -> Response {
    let end = EndGuard {
        on_end: Some(on_end),
        usage: None,
        streamed_bytes: 0,
    };
    let state = State {
        stream,
        include_usage,
        request_id,
        cut,
        end,
    };
    let events = futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            let next = tokio::select! {
                biased;
                _ = st.cut.wait_for(|cut| *cut) => {
                    tracing::warn!(request_id = %st.request_id, "stream cut: shutdown grace period over");
                    st.end.finish("shutting_down");
                    let body = error_body(
                        "the gateway is shutting down; the answer is incomplete",
                        "api_error",
                        "shutting_down",
                    );
                    return Some((Ok(event(&body)), None));
                }
                next = st.stream.next() => next,
            };
            match next {
                None => {
                    st.end.finish("ok");
                    let done = Bytes::from_static(b"data: [DONE]\n\n");
                    return Some((Ok::<_, std::convert::Infallible>(done), None));
                }
                Some(Ok(mut chunk)) => {
                    if let Some(u) = &chunk.usage {
                        st.end.usage = Some(u.clone());
                    }
                    st.end.streamed_bytes += streamed_bytes(&chunk);
                    if !st.include_usage {
                        // The usage chunk was asked for by Sluice, not by the client.
                        if chunk.choices.is_empty() && chunk.usage.is_some() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    return Some((Ok(event(&chunk)), Some(st)));
                }
                Some(Err(e)) => {
                    // The client gets a stable code and our wording; the detail (which may
                    // name the upstream) goes to the log with the request id.
                    let (code, message) = stream_error(&e);
                    tracing::warn!(request_id = %st.request_id, code, "stream broke after it was committed: {e}");
                    st.end.finish(code);
                    let body = error_body(&message, "api_error", code);
                    return Some((Ok(event(&body)), None));
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Bytes of text and tool-call arguments in a chunk.
fn streamed_bytes(chunk: &sluice_llm::ChatChunk) -> u64 {
    chunk
        .choices
        .iter()
        .map(|c| {
            let text = c.delta.content.as_ref().map_or(0, String::len);
            let args: usize = c
                .delta
                .tool_calls
                .iter()
                .flatten()
                .filter_map(|t| t.function.as_ref()?.arguments.as_ref().map(String::len))
                .sum();
            (text + args) as u64
        })
        .sum()
}

fn event<T: serde::Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    buf.get_mut().put_slice(b"data: ");
    // Serialising our own types to memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    let mut buf = buf.into_inner();
    buf.put_slice(b"\n\n");
    buf.freeze()
}
