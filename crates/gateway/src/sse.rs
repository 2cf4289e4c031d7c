//! A metered stream → `text/event-stream`: one `data:` event per chunk as it arrives, then
//! `data: [DONE]`. A stream that breaks (or is cut by the shutdown) ends with an error
//! event and no `[DONE]`, which OpenAI SDKs raise as an error: a cut answer never looks
//! finished. Only formatting happens here; the stream settles itself
//! (`sluice_service::MeteredStream`), also when the client goes away and this body is
//! dropped.

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderValue;
use sluice_service::MeteredStream;

use crate::error::stream_error_body;

pub fn response(stream: MeteredStream) -> Response {
    let events = futures_util::stream::unfold(Some(stream), |st| async move {
        let mut st = st?;
        match st.next().await {
            None => {
                let done = Bytes::from_static(b"data: [DONE]\n\n");
                Some((Ok::<_, std::convert::Infallible>(done), None))
            }
            Some(Ok(chunk)) => Some((Ok(event(&chunk)), Some(st))),
            Some(Err(e)) => Some((Ok(event(&stream_error_body(&e))), None)),
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

fn event<T: serde::Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    buf.get_mut().put_slice(b"data: ");
    // Serialising our own types to memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    let mut buf = buf.into_inner();
    buf.put_slice(b"\n\n");
    buf.freeze()
}
