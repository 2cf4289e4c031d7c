//! Event streams (`text/event-stream`), written as they arrive. Only formatting happens
//! here.
//!
//! - [`response`]: a metered model stream, one `data:` event per chunk, then `data:
//!   [DONE]`. A stream that breaks (or is cut by the shutdown) ends with an error event
//!   and no `[DONE]`, which OpenAI SDKs raise as an error: a cut answer never looks
//!   finished. The stream settles itself (`sluice_service::MeteredStream`), also when the
//!   client goes away and this body is dropped.
//! - [`run_events`]: a run's events (`id:` its seq, `event:` its name, `data:` the JSON
//!   the WebSocket sends), until the run's own end, with a `: ping` comment while it is
//!   quiet. Dropping it (the client went away) only stops the following: a run is
//!   durable and goes on.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderValue;
use sluice_scheduler::{Follow, RunEvent};
use sluice_service::MeteredStream;
use tokio_util::sync::CancellationToken;

use crate::error::stream_error_body;

/// A run's stream with no event for this long gets a comment, so proxies and clients
/// with read timeouts see it is alive.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING: &[u8] = b": ping\n\n";

pub fn response(stream: MeteredStream) -> Response {
    let events = futures_util::stream::unfold(Some(stream), |st| async move {
        let mut st = st?;
        match st.next().await {
            None => {
                let done = Bytes::from_static(b"data: [DONE]\n\n");
                Some((Ok::<_, std::convert::Infallible>(done), None))
            }
            Some(Ok(chunk)) => Some((Ok(event(None, &chunk)), Some(st))),
            Some(Err(e)) => Some((Ok(event(None, &stream_error_body(&e))), None)),
        }
    });
    event_stream(Body::from_stream(events))
}

/// A run's events from a follower, until the run's own terminal event (or, for a run not
/// running here, the last stored one), or until `stop` (the gateway is draining: the
/// client resumes with `Last-Event-ID`, here after a restart or on another instance).
pub fn run_events(follow: Follow, stop: CancellationToken) -> Response {
    // The follower's `next` lives inside this stream between polls, so a ping never
    // interrupts a read half-way.
    let events = Box::pin(futures_util::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|e| (e, f))
    }));
    let frames = futures_util::stream::unfold((events, stop), |(mut events, stop)| async move {
        let frame = tokio::select! {
            () = stop.cancelled() => return None,
            next = tokio::time::timeout(PING_EVERY, events.next()) => match next {
                Ok(Some(e)) => run_event(&e),
                Ok(None) => return None,
                Err(_) => Bytes::from_static(PING),
            },
        };
        Some((Ok::<_, std::convert::Infallible>(frame), (events, stop)))
    });
    event_stream(Body::from_stream(frames))
}

/// The headers of every event stream: no caching, no buffering by a proxy in front.
fn event_stream(body: Body) -> Response {
    let mut resp = Response::new(body);
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

fn run_event(e: &RunEvent) -> Bytes {
    event(Some((e.seq, e.event)), &*e.data)
}

/// One event: `id:` and `event:` lines when given, one `data:` line (compact JSON has no
/// newline), a blank line.
fn event<T: serde::Serialize + ?Sized>(named: Option<(u64, &str)>, value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    if let Some((id, name)) = named {
        let head = format!("id: {id}\nevent: {name}\n");
        buf.get_mut().put_slice(head.as_bytes());
    }
    buf.get_mut().put_slice(b"data: ");
    // Serialising our own types to memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    let mut buf = buf.into_inner();
    buf.put_slice(b"\n\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_event_has_its_seq_as_id_and_its_name_as_event() {
        let e = RunEvent {
            seq: 7,
            event: "run.delta",
            data: std::sync::Arc::new(serde_json::json!({"run_id": "r", "seq": 7, "text": "a\nb"})),
        };
        let text = String::from_utf8(run_event(&e).to_vec()).unwrap();
        assert_eq!(
            text,
            "id: 7\nevent: run.delta\ndata: {\"run_id\":\"r\",\"seq\":7,\"text\":\"a\\nb\"}\n\n",
            "a newline in the text stays escaped inside the one data line"
        );
    }
}
