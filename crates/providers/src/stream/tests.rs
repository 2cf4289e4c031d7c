use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_llm::{ResponseMeta, openai};

use super::*;

const MIB: usize = 1024 * 1024;

fn decoder() -> Box<dyn StreamDecoder> {
    Box::new(openai::Stream::new(ResponseMeta {
        id: "chatcmpl-test".into(),
        created: 1,
        model: "m".into(),
    }))
}

/// Deadlines far away, so only the bound under test can end the stream.
fn rules() -> StreamRules {
    let far = Instant::now() + Duration::from_secs(86_400);
    StreamRules {
        first_deadline: far,
        idle: Duration::from_secs(86_400),
        end: far,
        limit: Duration::from_secs(86_400),
        max_event_bytes: MIB,
    }
}

fn content(text: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn empty_delta() -> String {
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":null}]}\n\n".to_owned()
}

fn role_only() -> String {
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n".to_owned()
}

type Source = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Events as a byte stream, each after `gap` (paused time in these tests).
fn paced(events: impl Iterator<Item = String> + Send + 'static, gap: Duration) -> Source {
    Box::pin(futures_util::stream::unfold(
        events,
        move |mut events| async move {
            let event = events.next()?;
            tokio::time::sleep(gap).await;
            Some((Ok(Bytes::from(event)), events))
        },
    ))
}

async fn last_error(mut stream: ChunkStream) -> Option<StreamError> {
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            return Some(e);
        }
    }
    None
}

#[tokio::test]
async fn a_ten_megabyte_line_is_refused_after_about_one_mebibyte() {
    const PIECE: usize = 64 * 1024;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    // `data: xxxx…` with no newline, 10 MB in 64 KiB pieces.
    let pieces = (0..10 * MIB / PIECE).map(move |i| {
        let piece = if i == 0 {
            let mut p = b"data: ".to_vec();
            p.resize(PIECE, b'x');
            Bytes::from(p)
        } else {
            Bytes::from(vec![b'x'; PIECE])
        };
        counter.fetch_add(piece.len(), Ordering::Relaxed);
        Ok::<_, std::io::Error>(piece)
    });
    let mut stream = sse_chunks(futures_util::stream::iter(pieces), decoder(), rules());
    let first = stream.next().await.expect("the stream ends with an error");
    let Err(StreamError::Upstream(f)) = first else {
        panic!("expected a bad-answer error, got {first:?}");
    };
    assert_eq!(f.class, FailureClass::BadResponse);
    let read = pulled.load(Ordering::Relaxed);
    assert!(
        read <= MIB + PIECE,
        "the line should be refused once it passes 1 MiB, not after {read} bytes"
    );
    assert!(stream.next().await.is_none(), "nothing follows the error");
}

#[test]
fn event_length_counts_lines_events_and_not_comments() {
    let feed = |bytes: &[u8], max: usize| EventLen::default().feed(bytes, max).is_none();
    assert!(
        feed(b"data: 12345\n\ndata: 12345\r\n\r\n", 11),
        "two short events"
    );
    assert!(!feed(b"data: 123456\n\n", 11), "one line over the cap");
    assert!(
        !feed(b"data: 1234\ndata: 1234\n\n", 11),
        "an event of two lines over the cap"
    );
    assert!(
        feed(b": ping\n: ping\n: ping\ndata: 1234567\n\n", 13),
        "comment lines are not event data"
    );
    assert!(
        !feed(&[b':'; 20], 11),
        "but an endless comment line is still a line"
    );
    // A line that crosses chunk boundaries is counted across them.
    let mut len = EventLen::default();
    assert_eq!(len.feed(b"data: 12", 11), None);
    assert_eq!(len.feed(b"3456", 11), Some(3), "the 12th byte of the line");
    // CRLF is one line end, not a line end and a blank line.
    let mut len = EventLen::default();
    assert_eq!(len.feed(b"data: 1234\r", 21), None);
    assert_eq!(len.feed(b"\ndata: 1234\r\n", 21), None);
    assert!(
        len.feed(b"data: 1\n", 21).is_some(),
        "the event goes on past the CRLF"
    );
}

#[tokio::test]
async fn lines_split_across_chunks_are_passed_on_whole() {
    // One event cut at every byte: the guard holds each unfinished line and the decoder
    // sees every event once.
    let text = format!("{}{}data: [DONE]\n\n", content("Hel"), content("lo"));
    let pieces: Vec<Result<Bytes, std::io::Error>> = text
        .as_bytes()
        .iter()
        .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
        .collect();
    let mut stream = sse_chunks(futures_util::stream::iter(pieces), decoder(), rules());
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        let chunk = item.expect("a clean stream");
        text.push_str(
            chunk.choices[0]
                .delta
                .content
                .as_deref()
                .unwrap_or_default(),
        );
    }
    assert_eq!(text, "Hello");
}

#[tokio::test]
async fn events_before_an_oversized_line_in_the_same_chunk_still_arrive() {
    let text = format!("{}data: {}", content("Hi"), "x".repeat(4096));
    let one = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(text))]);
    let rules = StreamRules {
        max_event_bytes: 1024,
        ..rules()
    };
    let mut stream = sse_chunks(one, decoder(), rules);
    let first = stream
        .next()
        .await
        .expect("a chunk")
        .expect("the event before");
    assert_eq!(first.choices[0].delta.content.as_deref(), Some("Hi"));
    let next = stream.next().await;
    assert!(
        matches!(next, Some(Err(StreamError::Upstream(ref f))) if f.class == FailureClass::BadResponse),
        "{next:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn empty_chunks_after_the_first_token_do_not_hold_off_the_idle_timeout() {
    // One token, then an empty delta every second (for a day of paused time).
    let events = std::iter::once(role_only())
        .chain(std::iter::once(content("Hi")))
        .chain(std::iter::repeat_with(empty_delta).take(86_400));
    let rules = StreamRules {
        idle: Duration::from_secs(30),
        ..rules()
    };
    let stream = sse_chunks(paced(events, Duration::from_secs(1)), decoder(), rules);
    let err = last_error(stream).await;
    assert!(
        matches!(err, Some(StreamError::Idle(_))),
        "empty chunks are no progress: expected the idle timeout, got {err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_runs_past_its_limit_ends_with_an_error() {
    // A token every second, for a day of paused time; the stream may last 10 minutes.
    let events = std::iter::repeat_with(|| content("x")).take(86_400);
    let start = Instant::now();
    let rules = StreamRules {
        idle: Duration::from_secs(30),
        end: start + Duration::from_secs(600),
        limit: Duration::from_secs(600),
        ..rules()
    };
    let stream = sse_chunks(paced(events, Duration::from_secs(1)), decoder(), rules);
    let err = last_error(stream).await;
    assert!(
        matches!(err, Some(StreamError::TooLong(d)) if d == Duration::from_secs(600)),
        "expected the stream limit, got {err:?}"
    );
}

#[tokio::test]
async fn too_many_empty_chunks_before_the_first_token_is_a_bad_answer() {
    let events = std::iter::once(role_only())
        .chain(std::iter::repeat_with(empty_delta).take(10_000))
        .chain(std::iter::once(content("late")))
        .map(|e| Ok::<_, std::io::Error>(Bytes::from(e)));
    let stream = sse_chunks(futures_util::stream::iter(events), decoder(), rules());
    let Err(f) = commit_first(stream).await else {
        panic!("a stream of 10,000 empty chunks should not be committed");
    };
    assert_eq!(f.class, FailureClass::BadResponse);
}

#[tokio::test]
async fn a_few_openers_are_held_back_and_replayed() {
    let events = [role_only(), empty_delta(), content("Hi")]
        .into_iter()
        .map(|e| Ok::<_, std::io::Error>(Bytes::from(e)));
    let stream = sse_chunks(futures_util::stream::iter(events), decoder(), rules());
    let mut committed = commit_first(stream)
        .await
        .expect("commits at the first token");
    let mut seen = 0;
    while let Some(Ok(_)) = committed.next().await {
        seen += 1;
    }
    assert_eq!(seen, 3, "the held-back openers come first");
}

#[test]
fn reasoning_deltas_are_substantive() {
    let chunk: ChatChunk = serde_json::from_str(
        r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me think"}}]}"#,
    )
    .expect("a chunk");
    assert!(is_substantive(&chunk));
    let chunk: ChatChunk = serde_json::from_str(
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null}}]}"#,
    )
    .expect("a chunk");
    assert!(!is_substantive(&chunk));
}
