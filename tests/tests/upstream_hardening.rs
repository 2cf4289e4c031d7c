//! A hostile or broken provider, end to end through the real gateway: oversized answers,
//! endless SSE lines, streams that never say anything, streams that never end, non-SSE
//! answers to stream requests, model names that rewrite an Azure URL, lenient chunk
//! shapes, and no upstream detail (host, port, path, query, raw body) in any error a
//! client sees.
//!
//! The misbehaving providers are [`RawProvider`]s: a few lines of tokio TCP that read a
//! request and write exactly the bytes a test asks for, so the misbehaviour is byte for
//! byte. Every one of them stops by itself: bodies are bounded, pauses are bounded, and a
//! dropped provider aborts its connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Wire, ask, provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------
// The raw provider

/// What a raw provider does with one request: write to the socket as it likes, then return
/// (the connection closes).
type Answer = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// An [`Answer`] from an async closure.
fn answer<F, Fut>(f: F) -> Answer
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |sock| Box::pin(f(sock)))
}

/// A provider on 127.0.0.1:0 that answers every request with [`Answer`], counting calls and
/// recording their paths. Dropping it stops the accept loop and every connection.
struct RawProvider {
    port: u16,
    calls: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawProvider {
    async fn start(answer: Answer) -> RawProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let calls = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (c, p) = (calls.clone(), paths.clone());
        let task = tokio::spawn(async move {
            // Owned by the accept loop: aborting it aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut sock, _)) = accepted else { continue };
                        let (answer, c, p) = (answer.clone(), c.clone(), p.clone());
                        conns.spawn(async move {
                            let Some(path) = read_request(&mut sock).await else { return };
                            c.fetch_add(1, Ordering::SeqCst);
                            p.lock().unwrap_or_else(|e| e.into_inner()).push(path);
                            answer(sock).await;
                        });
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        RawProvider {
            port,
            calls,
            paths,
            task,
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for RawProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request's head and its `Content-Length` body; the request path.
async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let path = head.split_whitespace().nth(1)?.to_owned();
    Some(path)
}

/// A response head: status line, `connection: close`, the headers, blank line.
fn head(status: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (n, v) in headers {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Writes a fixed answer (close-delimited unless `headers` give a length).
fn fixed(
    status: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
) -> Answer {
    answer(move |mut sock: TcpStream| {
        let bytes = [head(status, headers), body.clone().into_bytes()].concat();
        async move {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
    })
}

/// A 200 `text/event-stream` answer: `events` in order, each after `gap`.
fn sse(events: Vec<String>, gap: Duration) -> Answer {
    answer(move |mut sock: TcpStream| {
        let events = events.clone();
        async move {
            if sock
                .write_all(&head("200 OK", &[("content-type", "text/event-stream")]))
                .await
                .is_err()
            {
                return;
            }
            for e in events {
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if sock.write_all(e.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = sock.shutdown().await;
        }
    })
}

/// Accepts the request and never answers (for 30 s at most).
fn hang() -> Answer {
    answer(|sock: TcpStream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(sock);
    })
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1_754_000_000,
        "model": "raw-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {c}\n\n")
}

fn text_chunk(text: &str) -> String {
    chunk(json!({"content": text}), None)
}

fn end_of_stream() -> Vec<String> {
    vec![
        chunk(json!({}), Some("stop")),
        "data: [DONE]\n\n".to_owned(),
    ]
}

/// A complete OpenAI chat completion.
fn completion(text: &str) -> String {
    json!({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1_754_000_000,
        "model": "raw-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    })
    .to_string()
}

/// `[providers.ID]` of kind openai at a raw provider, with `extra` settings.
fn raw_provider(id: &str, raw: &RawProvider, extra: &str) -> String {
    format!(
        "[providers.{id}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_keys = [\"sk-{id}\"]\nmax_retries = 0\n{extra}\n",
        raw.base_url()
    )
}

const ROUTING: &str = "[routing]\nmax_retries = 0\nbackoff_base_ms = 5\nbackoff_max_ms = 20\n";

/// A gateway with alias `m` = [bad:raw-model, good:good-model], `bad` a raw provider and
/// `good` a well-behaved mock.
async fn bad_then_good(raw: &RawProvider, bad_extra: &str) -> (MockProvider, Gateway) {
    let good = MockProvider::start(Wire::OpenAi).await;
    let config = format!(
        "{}{}[models.m]\nchain = [\"bad:raw-model\", \"good:good-model\"]\n\n[models.bad-only]\nchain = [\"bad:raw-model\"]\n\n{ROUTING}",
        raw_provider("bad", raw, bad_extra),
        provider("good", &good, &["sk-good"], ""),
    );
    (good, Gateway::start(&config).await)
}

/// Status and body text of a raw gateway call.
async fn call(gw: &Gateway, path: &str, body: &Value) -> (u16, String) {
    let resp = gw.post(path, body).await;
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn streamed(model: &str) -> Value {
    let mut body = ask(model, "hi");
    body["stream"] = json!(true);
    body
}

// ---------------------------------------------------------------------------------------
// 1. Non-streamed answers are capped

/// A close-delimited 200 of `total` bytes, written in 64 KiB pieces until the gateway
/// stops reading; `finished` says whether every byte went out.
fn huge_body(total: usize, content_length: bool, finished: Arc<AtomicBool>) -> Answer {
    answer(move |mut sock: TcpStream| {
        let finished = finished.clone();
        async move {
            let len = total.to_string();
            let mut headers = vec![("content-type", "application/json")];
            if content_length {
                headers.push(("content-length", len.as_str()));
            }
            if sock.write_all(&head("200 OK", &headers)).await.is_err() {
                return;
            }
            let piece = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                let n = piece.len().min(total - sent);
                if sock.write_all(&piece[..n]).await.is_err() {
                    return;
                }
                sent += n;
            }
            finished.store(true, Ordering::SeqCst);
            let _ = sock.shutdown().await;
        }
    })
}

#[tokio::test]
async fn an_oversized_answer_is_refused_while_it_arrives_and_the_chain_falls_back() {
    // 256 MiB with no Content-Length: the gateway must stop reading at 1 MiB and drop the
    // connection, so the provider can never write it all.
    let finished = Arc::new(AtomicBool::new(false));
    let raw = RawProvider::start(huge_body(256 << 20, false, finished.clone())).await;
    let (good, gw) = bad_then_good(&raw, "max_answer_bytes = 1048576").await;

    let r = gw.chat(ask("bad-only", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_bad_response"),
        "an answer over max_answer_bytes is a bad upstream answer: {}",
        r.json
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "the gateway should drop the connection instead of reading 256 MiB"
    );

    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        r.status, 200,
        "a bad answer fails over like a 5xx: {}",
        r.json
    );
    assert_eq!(r.header("x-sluice-provider"), "good");
    assert_eq!((raw.calls(), good.calls()), (2, 1));

    // An answer under the cap is served whole.
    let text = "y".repeat(200_000);
    let fine = RawProvider::start(fixed(
        "200 OK",
        &[("content-type", "application/json")],
        completion(&text),
    ))
    .await;
    let (_good, gw) = bad_then_good(&fine, "max_answer_bytes = 1048576").await;
    let r = gw.chat(ask("bad-only", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.text(), text, "a large answer under the cap arrives whole");
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_reading() {
    let finished = Arc::new(AtomicBool::new(false));
    let raw = RawProvider::start(huge_body(256 << 20, true, finished.clone())).await;
    let (_good, gw) = bad_then_good(&raw, "max_answer_bytes = 1048576").await;
    let r = gw.chat(ask("bad-only", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_bad_response"),
        "{}",
        r.json
    );
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn an_oversized_embeddings_answer_is_refused_too() {
    let finished = Arc::new(AtomicBool::new(false));
    let raw = RawProvider::start(huge_body(256 << 20, false, finished.clone())).await;
    let (_good, gw) = bad_then_good(&raw, "max_answer_bytes = 1048576").await;
    let (status, body) = call(
        &gw,
        "/v1/embeddings",
        &json!({"model": "bad-only", "input": "hi"}),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (502, "upstream_bad_response"),
        "{body}"
    );
    assert!(!finished.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------------------
// 2. The held-back prefix of a stream is bounded

#[tokio::test]
async fn a_stream_of_only_openers_is_a_bad_answer_before_commit() {
    // A role chunk, then 10,000 empty deltas before the first word.
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    events.extend((0..10_000).map(|_| chunk(json!({"content": ""}), None)));
    events.push(text_chunk("too late"));
    events.extend(end_of_stream());
    let raw = RawProvider::start(sse(events, Duration::ZERO)).await;
    let (good, gw) = bad_then_good(&raw, "").await;

    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(
        s.header("x-sluice-provider"),
        "good",
        "the endless openers are refused before commit, so the chain falls back"
    );
    assert_eq!(s.text(), "Hello from good-model");
    assert!(s.done);
    assert_eq!((raw.calls(), good.calls()), (1, 1));
}

// ---------------------------------------------------------------------------------------
// 3. An SSE line is capped

#[tokio::test]
async fn an_endless_sse_line_is_refused() {
    // `data: xxx…` for 3 MiB without a newline, then the connection closes.
    let line = format!("data: {}", "x".repeat(3 << 20));
    let raw = RawProvider::start(sse(vec![line], Duration::ZERO)).await;
    let (good, gw) = bad_then_good(&raw, "").await;

    let (status, body) = call(&gw, "/v1/chat/completions", &streamed("bad-only")).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (502, "upstream_bad_response"),
        "a line over max_stream_event_bytes is a bad answer, not a cut connection: {body}"
    );

    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.header("x-sluice-provider"), "good", "and it fails over");
    assert!(s.done);
    assert_eq!(good.calls(), 1);
}

#[tokio::test]
async fn an_oversized_event_after_commit_ends_the_stream_with_an_error() {
    let events = vec![
        text_chunk("Hello"),
        format!("data: {}\n", "x".repeat(8 * 1024)),
    ];
    let raw = RawProvider::start(sse(events, Duration::ZERO)).await;
    let (_good, gw) = bad_then_good(&raw, "max_stream_event_bytes = 4096").await;
    let s = gw.chat_stream(ask("bad-only", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text(), "Hello");
    assert!(!s.done, "a broken stream never ends with [DONE]");
    assert_eq!(
        s.error().and_then(|e| e["code"].as_str()),
        Some("upstream_bad_response"),
        "{:?}",
        s.events
    );
}

// ---------------------------------------------------------------------------------------
// 4. Streams are bounded in time, and empty chunks are no progress

#[tokio::test]
async fn a_stream_that_never_ends_is_stopped_at_stream_timeout() {
    // A word every 20 ms for up to 30 s; the stream may last 500 ms.
    let events: Vec<String> = (0..1500).map(|_| text_chunk("w ")).collect();
    let raw = RawProvider::start(sse(events, Duration::from_millis(20))).await;
    let (_good, gw) = bad_then_good(&raw, "stream_timeout_ms = 500").await;
    let s = gw.chat_stream(ask("bad-only", "hi")).await;
    assert_eq!(s.status, 200);
    assert!(s.text().starts_with("w "), "the stream was committed");
    assert!(!s.done);
    assert_eq!(
        s.error().and_then(|e| e["code"].as_str()),
        Some("upstream_stream_timeout"),
        "{:?}",
        s.error()
    );
}

#[tokio::test]
async fn empty_chunks_pings_and_comments_after_the_first_token_hit_the_idle_timeout() {
    // One word, then for up to 30 s only keep-alives: empty deltas, role-only chunks,
    // `event: ping` frames and comments, every 20 ms. Idle after 400 ms.
    let mut events = vec![text_chunk("Hello")];
    for i in 0..1500 {
        events.push(match i % 4 {
            0 => chunk(json!({"content": ""}), None),
            1 => "event: ping\ndata: {}\n\n".to_owned(),
            2 => ": keep-alive\n\n".to_owned(),
            _ => chunk(json!({"role": "assistant"}), None),
        });
    }
    events.extend(end_of_stream());
    let raw = RawProvider::start(sse(events, Duration::from_millis(20))).await;
    let (_good, gw) = bad_then_good(&raw, "idle_timeout_ms = 400").await;
    let s = gw.chat_stream(ask("bad-only", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text(), "Hello");
    assert!(
        !s.done,
        "the keep-alives must not carry the stream to its end"
    );
    assert_eq!(
        s.error().and_then(|e| e["code"].as_str()),
        Some("upstream_idle_timeout"),
        "{:?}",
        s.error()
    );
}

// ---------------------------------------------------------------------------------------
// 5. A 200 that is not SSE, to a stream request

#[tokio::test]
async fn a_non_sse_answer_to_a_stream_request_is_a_bad_answer() {
    for (content_type, body) in [
        ("application/json", completion("not a stream")),
        (
            "text/html; charset=utf-8",
            "<html><body>maintenance</body></html>".to_owned(),
        ),
    ] {
        let raw = RawProvider::start(answer(move |mut sock: TcpStream| {
            let bytes = [
                head("200 OK", &[("content-type", content_type)]),
                body.clone().into_bytes(),
            ]
            .concat();
            async move {
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            }
        }))
        .await;
        let (good, gw) = bad_then_good(&raw, "").await;
        let (status, text) = call(&gw, "/v1/chat/completions", &streamed("bad-only")).await;
        assert_eq!(
            (status, code_of(&text).as_str()),
            (502, "upstream_bad_response"),
            "{content_type}: not `upstream_unreachable`: {text}"
        );
        let s = gw.chat_stream(ask("m", "hi")).await;
        assert_eq!(s.header("x-sluice-provider"), "good", "{content_type}");
        assert!(s.done);
        assert_eq!(good.calls(), 1);
    }

    // `text/event-stream` with parameters is a stream.
    let mut events = vec![text_chunk("Hi")];
    events.extend(end_of_stream());
    let raw = RawProvider::start(answer(move |mut sock: TcpStream| {
        let bytes = [
            head(
                "200 OK",
                &[("content-type", "text/event-stream; charset=utf-8")],
            ),
            events.concat().into_bytes(),
        ]
        .concat();
        async move {
            let _ = sock.write_all(&bytes).await;
            let _ = sock.shutdown().await;
        }
    }))
    .await;
    let (_good, gw) = bad_then_good(&raw, "").await;
    let s = gw.chat_stream(ask("bad-only", "hi")).await;
    assert_eq!((s.status, s.text().as_str(), s.done), (200, "Hi", true));
}

// ---------------------------------------------------------------------------------------
// 6. Azure model names that are dot segments

#[tokio::test]
async fn an_azure_model_name_of_dots_is_refused_without_a_call() {
    let raw = RawProvider::start(fixed(
        "200 OK",
        &[("content-type", "application/json")],
        completion("you reached a path nobody configured"),
    ))
    .await;
    let config = format!(
        "[server]\nallow_direct_models = true\n\n[providers.az]\nkind = \"azure\"\nbase_url = \"http://127.0.0.1:{}\"\napi_version = \"2024-10-21\"\napi_keys = [\"sk-azure\"]\n\n[models.m]\nchain = [\"az:gpt-4o\"]\n\n{ROUTING}",
        raw.port
    );
    let gw = Gateway::start(&config).await;
    for model in ["az:.", "az:..", "az:...", "az:.%2e"] {
        let r = gw.chat(ask(model, "hi")).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "unsupported_by_provider"),
            "{model}: {}",
            r.json
        );
    }
    let (status, body) = call(
        &gw,
        "/v1/embeddings",
        &json!({"model": "az:.", "input": "hi"}),
    )
    .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "unsupported_by_provider")
    );
    assert_eq!(
        raw.calls(),
        0,
        "no request, and so no api-key, went upstream"
    );

    let r = gw.chat(ask("az:gpt-4o", "hi")).await;
    assert_eq!(r.status, 200, "a plain name still works: {}", r.json);
    assert_eq!(
        raw.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_slice(),
        ["/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"]
    );
}

// ---------------------------------------------------------------------------------------
// 7. Chunks without id/created/model, and ping frames

#[tokio::test]
async fn a_stream_of_chunks_without_identity_and_with_pings_is_served() {
    let events = vec![
        "event: ping\ndata: {}\n\n".to_owned(),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
            .to_owned(),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n"
            .to_owned(),
        "data: {}\n\n".to_owned(),
        "event: ping\ndata: {}\n\n".to_owned(),
        "data: {\"id\":null,\"model\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n"
            .to_owned(),
        "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ];
    let raw = RawProvider::start(sse(events, Duration::ZERO)).await;
    let (_good, gw) = bad_then_good(&raw, "").await;
    let s = gw.chat_stream(ask("bad-only", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text(), "Hello there");
    assert!(s.done, "{:?}", s.events);
    assert_eq!(s.finish_reason(), Some("stop"));
    for e in &s.events {
        assert!(
            e["id"].as_str().is_some_and(|id| !id.is_empty())
                && e["model"].as_str().is_some_and(|m| !m.is_empty())
                && e["created"].as_u64().is_some_and(|c| c > 0),
            "every chunk the client gets has an identity: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 8. Nothing internal reaches a client

/// A host name only the upstream's own error pages know.
const INTERNAL_HOST: &str = "db7.corp-internal.example";

fn html(status: &'static str) -> Answer {
    fixed(
        status,
        &[("content-type", "text/html")],
        format!("<html><body>upstream {INTERNAL_HOST}:5432 said no</body></html>"),
    )
}

#[tokio::test]
async fn no_error_names_the_upstream_url_host_or_raw_body() {
    // A port that refuses connections: bound (so no other test can take it) but not
    // listening, for as long as the test runs.
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();

    let internal_error = format!(
        "{{\"error\":{{\"message\":\"connection to {INTERNAL_HOST} lost\",\"type\":\"server_error\"}}}}"
    );
    let cases: Vec<(&str, Answer)> = vec![
        ("hang", hang()),
        ("html_500", html("500 Internal Server Error")),
        (
            "text_400",
            fixed(
                "400 Bad Request",
                &[("content-type", "text/plain")],
                format!("bad input at {INTERNAL_HOST}"),
            ),
        ),
        ("html_429", html("429 Too Many Requests")),
        ("html_401", html("401 Unauthorized")),
        ("html_402", html("402 Payment Required")),
        ("html_403", html("403 Forbidden")),
        ("html_404", html("404 Not Found")),
        (
            "redirect",
            fixed(
                "302 Found",
                &[("location", "http://db7.corp-internal.example/v1")],
                String::new(),
            ),
        ),
        ("html_200", html("200 OK")),
        (
            "oversized",
            fixed(
                "200 OK",
                &[("content-type", "application/json")],
                format!("{} {INTERNAL_HOST}", " ".repeat(4096)),
            ),
        ),
        (
            "json_error_200",
            fixed(
                "200 OK",
                &[("content-type", "application/json")],
                internal_error.clone(),
            ),
        ),
        (
            "error_event",
            sse(
                vec![text_chunk("Hello"), format!("data: {internal_error}\n\n")],
                Duration::ZERO,
            ),
        ),
    ];
    let mut raws = Vec::new();
    let mut config = String::new();
    // The provider's base URL has a path and a query that are the operator's business.
    let secret_base =
        |port: u16| format!("http://127.0.0.1:{port}/secret-deployment-path?internal=1");
    let settings = "max_retries = 0\ntimeout_ms = 300\nfirst_byte_timeout_ms = 300\nmax_answer_bytes = 1024\nmax_stream_event_bytes = 1024\n";
    let mut aliases = vec![("refused".to_owned(), closed_port)];
    for (name, answer) in cases {
        let raw = RawProvider::start(answer).await;
        aliases.push((name.to_owned(), raw.port));
        raws.push(raw);
    }
    for (name, port) in &aliases {
        for mode in ["plain", "stream"] {
            config.push_str(&format!(
                "[providers.{name}_{mode}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_keys = [\"sk-{name}\"]\n{settings}\n[models.{name}_{mode}]\nchain = [\"{name}_{mode}:secret-deployment-model\"]\n\n",
                secret_base(*port)
            ));
        }
    }
    // An Azure provider too: its deployment name is in the URL path.
    config.push_str(&format!(
        "[providers.azure_plain]\nkind = \"azure\"\nbase_url = \"{}\"\napi_version = \"2024-10-21\"\napi_keys = [\"sk-az\"]\n{settings}\n[models.azure_plain]\nchain = [\"azure_plain:secret-deployment-model\"]\n\n",
        secret_base(closed_port)
    ));
    aliases.push(("azure".to_owned(), closed_port));
    config.push_str(ROUTING);
    let gw = Gateway::start(&config).await;

    let mut seen_codes = std::collections::BTreeMap::new();
    for (name, port) in &aliases {
        for mode in ["plain", "stream"] {
            if name == "azure" && mode == "stream" {
                continue;
            }
            let model = format!("{name}_{mode}");
            let body = if mode == "stream" {
                streamed(&model)
            } else {
                ask(&model, "hi")
            };
            let (status, text) = call(&gw, "/v1/chat/completions", &body).await;
            let error_text = if status == 200 {
                // A stream broken after commit: the error event.
                let event = text
                    .split("\n\n")
                    .filter_map(|e| e.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .find(|v| v.get("error").is_some());
                let Some(event) = event else {
                    panic!("{model}: expected an error, got 200: {text}");
                };
                event.to_string()
            } else {
                text.clone()
            };
            let code = serde_json::from_str::<Value>(&error_text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_else(|| panic!("{model}: no error code in {error_text}"));
            seen_codes.insert(model.clone(), code);
            for needle in [
                "127.0.0.1",
                port.to_string().as_str(),
                "secret-deployment",
                "internal=",
                "corp-internal",
                "<html",
            ] {
                assert!(
                    !error_text.contains(needle),
                    "{model}: the client's error names `{needle}`: {error_text}"
                );
            }
        }
    }
    let expected = [
        ("refused_plain", "upstream_unreachable"),
        ("azure_plain", "upstream_unreachable"),
        ("hang_plain", "upstream_timeout"),
        ("hang_stream", "upstream_timeout"),
        ("html_500_plain", "upstream_error"),
        ("text_400_plain", "upstream_bad_request"),
        ("html_429_plain", "rate_limited"),
        ("html_401_plain", "upstream_auth_failed"),
        ("html_402_plain", "upstream_quota_exhausted"),
        ("html_403_plain", "upstream_forbidden"),
        ("html_404_plain", "upstream_model_not_found"),
        ("redirect_plain", "upstream_error"),
        ("html_200_plain", "upstream_bad_response"),
        ("html_200_stream", "upstream_bad_response"),
        ("oversized_plain", "upstream_bad_response"),
        ("oversized_stream", "upstream_bad_response"),
        ("json_error_200_plain", "upstream_error"),
        ("error_event_stream", "upstream_stream_error"),
    ];
    for (model, code) in expected {
        assert_eq!(
            seen_codes.get(model).map(String::as_str),
            Some(code),
            "{model} provokes its class"
        );
    }
    drop(raws);
}
