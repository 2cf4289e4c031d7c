//! Scripts, counting, recording, timing, cuts, hangs and shutdown, over real sockets.

mod common;

use common::{client, json, post, read_all, read_timed};
use serde_json::{Value, json};
use sluice_mock::{MockProvider, Step, Wire};
use std::time::{Duration, Instant};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn ask(mock: &MockProvider, key: &str, model: &str) -> (u16, Option<String>, Value) {
    let auth = format!("Bearer {key}");
    let url = format!("{}/chat/completions", mock.base_url());
    json(post(&url, &[("authorization", &auth)], &chat(model, false)).await).await
}

fn text_of(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("a text answer")
}

#[tokio::test]
async fn scripts_advance_and_the_last_step_repeats() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m",
        vec![
            Step::RateLimited {
                retry_after_secs: Some(2),
            },
            Step::Text("second".into()),
        ],
    );
    let (status, retry_after, _) = ask(&mock, "k", "m").await;
    assert_eq!(
        (status, retry_after.as_deref()),
        (429, Some("2")),
        "first step: rate limited"
    );
    for call in 2..=4 {
        let (status, _, body) = ask(&mock, "k", "m").await;
        assert_eq!(status, 200, "call {call} repeats the last step");
        assert_eq!(text_of(&body), "second");
    }
    let (_, _, body) = ask(&mock, "k", "other").await;
    assert_eq!(
        text_of(&body),
        "Hello from other",
        "unscripted models say hello"
    );
    assert_eq!(mock.calls_for("m"), 4);
    assert_eq!(mock.calls_for("other"), 1);
    assert_eq!(mock.calls(), 5);
}

#[tokio::test]
async fn a_key_script_wins_over_a_model_script() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m", vec![Step::Text("by model".into())]);
    mock.script_key("bad-key", vec![Step::Unauthorized]);
    let (status, _, _) = ask(&mock, "bad-key", "m").await;
    assert_eq!(status, 401, "the key script applies whatever the model");
    let (status, _, body) = ask(&mock, "good-key", "m").await;
    assert_eq!((status, text_of(&body)), (200, "by model"));
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let url = format!("{}/messages", mock.base_url());
    let headers = [("x-api-key", "key-1"), ("anthropic-version", "2023-06-01")];
    let body = json!({"model": "c", "max_tokens": 5, "stream": true, "messages": []});
    read_all(post(&url, &headers, &body).await).await;
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 1);
    let call = &recorded[0];
    assert_eq!(call.model, "c");
    assert_eq!(call.api_key, "key-1");
    assert!(call.stream);
    assert_eq!(call.path, "/v1/messages");
    assert_eq!(call.body, body);
    assert!(
        call.headers
            .iter()
            .any(|(name, value)| name == "anthropic-version" && value == "2023-06-01")
    );
}

#[tokio::test]
async fn health_answers_and_is_not_a_call() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let response = client()
        .get(format!("http://{}/health", mock.addr()))
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), 200);
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn cut_stream_ends_without_the_end_marker() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m", vec![Step::CutAfter(2)]);
    let url = format!("{}/chat/completions", mock.base_url());
    let response = post(&url, &[("authorization", "Bearer k")], &chat("m", true)).await;
    assert_eq!(response.status(), 200, "headers go out before the cut");
    let (raw, cut) = read_all(response).await;
    assert!(cut, "the body ends in an error, not cleanly: {raw}");
    assert!(!raw.contains("[DONE]"));
    assert!(!raw.contains("finish_reason\":\"stop"));
    let contents = raw.matches("\"delta\":{\"content\":").count();
    assert_eq!(
        contents, 2,
        "exactly two content chunks before the cut: {raw}"
    );
}

#[tokio::test]
async fn cut_anthropic_stream_has_no_message_stop() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    mock.script("c", vec![Step::CutAfter(1)]);
    let url = format!("{}/messages", mock.base_url());
    let headers = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let body = json!({"model": "c", "max_tokens": 5, "stream": true, "messages": []});
    let (raw, cut) = read_all(post(&url, &headers, &body).await).await;
    assert!(cut);
    assert_eq!(raw.matches("event: content_block_delta").count(), 1);
    assert!(!raw.contains("message_stop"));
}

#[tokio::test]
async fn cut_without_stream_drops_the_connection_unanswered() {
    let mock = MockProvider::start(Wire::Gemini).await;
    mock.script("g", vec![Step::CutAfter(0)]);
    let url = format!("{}/models/g:generateContent", mock.base_url());
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let result = client()
        .post(&url)
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await;
    let error = result.expect_err("no response at all");
    assert!(!error.is_timeout(), "dropped, not timed out: {error}");
    assert_eq!(mock.calls(), 1);
}

#[tokio::test]
async fn hang_holds_until_the_client_gives_up() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m", vec![Step::Hang]);
    let url = format!("{}/chat/completions", mock.base_url());
    let started = Instant::now();
    let result = client()
        .post(&url)
        .bearer_auth("k")
        .json(&chat("m", false))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    let error = result.expect_err("a hung call never answers");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(mock.calls(), 1, "the hung call was received");
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_ends_hung_calls() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m", vec![Step::Hang]);
    let url = format!("{}/chat/completions", mock.base_url());
    let hung = tokio::spawn(
        client()
            .post(&url)
            .bearer_auth("k")
            .json(&chat("m", false))
            .send(),
    );
    while mock.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    mock.shutdown();
    let connect = tokio::net::TcpStream::connect(mock.addr()).await;
    assert!(connect.is_err(), "connects after shutdown are refused");
    let result = tokio::time::timeout(Duration::from_secs(5), hung).await;
    let result = result
        .expect("the hung call ends promptly")
        .expect("task joins");
    assert!(result.is_err(), "the hung call's connection was closed");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let addr = mock.addr();
    let clone = mock.clone();
    drop(mock);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_ok(),
        "a clone keeps it running"
    );
    drop(clone);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn delay_comes_before_the_headers() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m",
        vec![Step::Delay {
            ms: 200,
            then: Box::new(Step::Text("late".into())),
        }],
    );
    let started = Instant::now();
    let (status, _, body) = ask(&mock, "k", "m").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((status, text_of(&body)), (200, "late"));
}

#[tokio::test]
async fn chunk_gap_paces_the_stream() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    mock.script(
        "c",
        vec![Step::ChunkGap {
            ms: 400,
            text: "one two three".into(),
        }],
    );
    let url = format!("{}/messages", mock.base_url());
    let headers = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let body = json!({"model": "c", "max_tokens": 5, "stream": true, "messages": []});
    let started = Instant::now();
    let response = post(&url, &headers, &body).await;
    let chunks = read_timed(response, started).await;
    let arrival = |word: &str| {
        chunks
            .iter()
            .find(|(_, text)| text.contains(&format!("\"text\":\"{word}\"")))
            .map(|(at, _)| *at)
            .expect("word arrived")
    };
    let first = arrival("one");
    let last = arrival(" three");
    assert!(
        last - first >= Duration::from_millis(700),
        "two gaps of 400ms: {first:?} → {last:?}"
    );
    // Not after a gap of its own: well within one gap even on a busy machine (the bound
    // is a whole gap wide so that load alone cannot break it).
    assert!(
        first < Duration::from_millis(400),
        "the first chunk comes at once: {first:?}"
    );
}

#[tokio::test]
async fn mocks_run_side_by_side_on_their_own_ports() {
    let (a, b) = tokio::join!(
        MockProvider::start(Wire::OpenAi),
        MockProvider::start(Wire::OpenAi)
    );
    assert_ne!(a.addr().port(), b.addr().port());
    ask(&a, "k", "m").await;
    assert_eq!((a.calls(), b.calls()), (1, 0));
    assert_eq!(a.wire(), Wire::OpenAi);
}
