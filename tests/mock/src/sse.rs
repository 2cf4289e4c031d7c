//! Streams a transcript of server-sent events with the pacing a step asks for.

use crate::script::Answer;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// The events of one streamed answer, already framed in the provider's SSE layout.
#[derive(Default)]
pub(crate) struct Transcript {
    /// Sent at once: `message_start`, the assistant role chunk…
    pub(crate) head: Vec<String>,
    /// One per text piece or argument piece, and between a tool call's pieces and the next
    /// call's, the events that close one call and open the next; these are what gaps and cuts
    /// count (only text answers are paced or cut, and theirs are all pieces).
    pub(crate) content: Vec<String>,
    /// The end: finish reason, usage, end marker.
    pub(crate) tail: Vec<String>,
}

/// How the content events are paced and whether the stream ends.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pacing {
    gap: Option<Duration>,
    cut_after: Option<usize>,
    first_gap: Option<Duration>,
}

impl Pacing {
    pub(crate) fn of(answer: &Answer) -> Pacing {
        Pacing {
            gap: answer.gap,
            cut_after: answer.cut_after,
            first_gap: answer.first_gap,
        }
    }
}

/// Long enough for hyper to flush the last chunk before the connection is dropped.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(20);

/// A 200 `text/event-stream` response playing `transcript`.
///
/// With a cut, the head and the first N content events are sent and then the body fails, which
/// makes hyper close the connection without the chunked terminator: the client sees a
/// truncated body, as when a provider's connection breaks.
pub(crate) fn response(
    content_type: &'static str,
    transcript: Transcript,
    pacing: Pacing,
) -> Response {
    let mut items: VecDeque<(Option<Duration>, io::Result<Bytes>)> = VecDeque::new();
    items.extend(
        transcript
            .head
            .into_iter()
            .map(|event| (None, Ok(Bytes::from(event)))),
    );
    let keep = pacing.cut_after.unwrap_or(usize::MAX);
    for (i, event) in transcript.content.into_iter().take(keep).enumerate() {
        let wait = if i == 0 { pacing.first_gap } else { pacing.gap };
        items.push_back((wait, Ok(Bytes::from(event))));
    }
    if pacing.cut_after.is_some() {
        let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "scripted cut");
        items.push_back((Some(FLUSH_BEFORE_CUT), Err(cut)));
    } else {
        items.extend(
            transcript
                .tail
                .into_iter()
                .map(|event| (None, Ok(Bytes::from(event)))),
        );
    }

    let stream = futures_util::stream::unfold(items, |mut items| async move {
        let (wait, item) = items.pop_front()?;
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        Some((item, items))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
