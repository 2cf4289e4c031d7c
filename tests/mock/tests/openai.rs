//! The OpenAI mock over a real socket: answers, streams, tool calls, embeddings, errors.

mod common;

use common::{data_lines, json, post, read_all};
use serde_json::{Value, json};
use sluice_mock::{MockProvider, Step, Wire};

const KEY: (&str, &str) = ("authorization", "Bearer sk-test-1234567890");

fn chat_url(mock: &MockProvider) -> String {
    format!("{}/chat/completions", mock.base_url())
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "say hi"}]
    })
}

#[tokio::test]
async fn json_answer_has_the_completion_shape_and_usage() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    assert_eq!(mock.base_url(), format!("http://{}/v1", mock.addr()));
    let response = post(&chat_url(&mock), &[KEY], &chat("gpt-test", false)).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "OpenAI answers plain JSON"
    );
    let raw = response.text().await.expect("body");
    assert!(
        raw.starts_with("{\n  \"id\": \"chatcmpl-"),
        "2-space pretty JSON: {raw}"
    );
    let body: Value = serde_json::from_str(&raw).expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from gpt-test"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 5, "2 words + 3");
    assert_eq!(usage["completion_tokens"], 3, "Hello from gpt-test");
    assert_eq!(usage["total_tokens"], 8);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(mock.calls(), 1);
}

#[tokio::test]
async fn the_word_cached_reports_cached_tokens() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "this was cached"}]});
    let (_, _, answer) = json(post(&chat_url(&mock), &[KEY], &body).await).await;
    assert_eq!(answer["usage"]["prompt_tokens"], 6);
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
}

#[tokio::test]
async fn stream_is_role_content_finish_usage_done() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("gpt-test", vec![Step::Text("Hi there you".into())]);
    let mut body = chat("gpt-test", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&chat_url(&mock), &[KEY], &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (raw, cut) = read_all(response).await;
    assert!(!cut, "a complete stream ends cleanly");
    assert!(
        raw.ends_with("\n\ndata: [DONE]\n\n"),
        "ends with [DONE]: {raw}"
    );
    assert!(
        raw.split("\n\n")
            .filter(|f| !f.is_empty())
            .all(|f| f.starts_with("data: {") || f == "data: [DONE]")
    );

    let chunks = data_lines(&raw, "\n\n");
    assert_eq!(chunks.len(), 1 + 3 + 1 + 1, "role, 3 words, finish, usage");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"])
    );
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let text: String = chunks[1..4]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content piece")
        })
        .collect();
    assert_eq!(text, "Hi there you");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert!(
        chunks[..5]
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(
        chunks[5]["choices"],
        json!([]),
        "the usage chunk has no choices"
    );
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    assert_eq!(chunks[5]["usage"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_at_all() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let (raw, _) = read_all(post(&chat_url(&mock), &[KEY], &chat("m", true)).await).await;
    let chunks = data_lines(&raw, "\n\n");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{raw}");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"].as_array().is_some_and(|a| a.len() == 1))
    );
}

#[tokio::test]
async fn tool_call_json_and_stream() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let arguments = json!({"city": "Paris", "unit": "celsius"});
    mock.script(
        "m",
        vec![Step::ToolCall {
            name: "get_weather".into(),
            arguments: arguments.clone(),
        }],
    );

    let (status, _, body) = json(post(&chat_url(&mock), &[KEY], &chat("m", false)).await).await;
    assert_eq!(status, 200);
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert!(message["content"].is_null());
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let sent: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
        .expect("JSON");
    assert_eq!(sent, arguments);

    let (raw, _) = read_all(post(&chat_url(&mock), &[KEY], &chat("m", true)).await).await;
    let chunks = data_lines(&raw, "\n\n");
    let head = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert_eq!(head["function"]["name"], "get_weather");
    assert!(
        head["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    let pieces: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .expect("piece")
        })
        .collect();
    assert!(
        (2..=3).contains(&pieces.len()),
        "arguments come in 2-3 pieces: {pieces:?}"
    );
    let joined: Value = serde_json::from_str(&pieces.concat()).expect("pieces rejoin to JSON");
    assert_eq!(joined, arguments);
    assert_eq!(
        chunks.last().expect("finish")["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

/// Three calls in one answer, two of them to the same tool, as a model asking for the weather
/// in two cities and the time at once does.
fn parallel_calls() -> Vec<(String, Value)> {
    vec![
        ("get_weather".into(), json!({"city": "Paris"})),
        ("get_weather".into(), json!({"city": "London"})),
        ("get_time".into(), json!({"tz": "UTC"})),
    ]
}

/// A quarter of each call's arguments JSON, rounded up: 16, 17 and 12 characters.
const PARALLEL_COMPLETION_TOKENS: u64 = 4 + 5 + 3;

fn assert_distinct_call_ids(ids: &[&str]) {
    assert!(
        ids.iter().all(|id| id.starts_with("call_")),
        "OpenAI tool call ids start with call_: {ids:?}"
    );
    let distinct: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "every call has its own id: {ids:?}"
    );
}

#[tokio::test]
async fn parallel_tool_calls_as_json() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let calls = parallel_calls();
    mock.script("m", vec![Step::ToolCalls(calls.clone())]);

    let (status, _, body) = json(post(&chat_url(&mock), &[KEY], &chat("m", false)).await).await;
    assert_eq!(status, 200);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let sent = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(sent.len(), calls.len(), "one entry per call: {body}");
    for (entry, (name, arguments)) in sent.iter().zip(&calls) {
        assert_eq!(entry["type"], "function");
        assert_eq!(entry["function"]["name"], name.as_str());
        let got: Value =
            serde_json::from_str(entry["function"]["arguments"].as_str().expect("string"))
                .expect("arguments are JSON text");
        assert_eq!(&got, arguments, "{name}: arguments survive as given");
    }
    let ids: Vec<&str> = sent
        .iter()
        .map(|entry| entry["id"].as_str().expect("id"))
        .collect();
    assert_distinct_call_ids(&ids);
    assert_eq!(
        body["usage"]["completion_tokens"], PARALLEL_COMPLETION_TOKENS,
        "every call's arguments count"
    );
}

#[tokio::test]
async fn parallel_tool_calls_stream_call_after_call_by_index() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let calls = parallel_calls();
    mock.script("m", vec![Step::ToolCalls(calls.clone())]);
    let mut body = chat("m", true);
    body["stream_options"] = json!({"include_usage": true});

    let (raw, cut) = read_all(post(&chat_url(&mock), &[KEY], &body).await).await;
    assert!(!cut, "a complete stream ends cleanly");
    assert!(
        raw.ends_with("\n\ndata: [DONE]\n\n"),
        "ends with [DONE]: {raw}"
    );
    let chunks = data_lines(&raw, "\n\n");
    let (usage, chunks) = chunks.split_last().expect("a usage chunk");
    let (finish, chunks) = chunks.split_last().expect("a finish chunk");
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(
        usage["choices"],
        json!([]),
        "the usage chunk has no choices"
    );
    assert_eq!(
        usage["usage"]["completion_tokens"],
        PARALLEL_COMPLETION_TOKENS
    );

    // (id, name, arguments pieces) per index, in the order the chunks open them.
    let mut streamed: Vec<(String, String, Vec<String>)> = Vec::new();
    for (n, chunk) in chunks.iter().enumerate() {
        let choice = &chunk["choices"][0];
        assert!(choice["finish_reason"].is_null(), "chunk {n}: {chunk}");
        let delta = &choice["delta"];
        let entries = delta["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(entries.len(), 1, "one call per chunk: {chunk}");
        let entry = &entries[0];
        let index = entry["index"].as_u64().expect("index") as usize;
        if entry.get("id").is_some() {
            assert_eq!(index, streamed.len(), "calls open in order: {chunk}");
            assert_eq!(entry["type"], "function", "{chunk}");
            assert_eq!(entry["function"]["arguments"], "", "opens empty: {chunk}");
            if index == 0 {
                assert_eq!(delta["role"], "assistant", "the first chunk has the role");
                assert!(delta["content"].is_null() && delta.get("content").is_some());
            } else {
                assert_eq!(
                    delta.as_object().map(|d| d.len()),
                    Some(1),
                    "a later call opens with tool_calls alone: {chunk}"
                );
            }
            let id = entry["id"].as_str().expect("id").to_owned();
            let name = entry["function"]["name"].as_str().expect("name").to_owned();
            streamed.push((id, name, Vec::new()));
        } else {
            assert_eq!(
                index + 1,
                streamed.len(),
                "pieces belong to the call opened last: {chunk}"
            );
            assert!(entry["function"].get("name").is_none(), "{chunk}");
            let piece = entry["function"]["arguments"].as_str().expect("piece");
            streamed[index].2.push(piece.to_owned());
        }
    }
    assert_eq!(streamed.len(), calls.len(), "every call streamed: {raw}");
    for ((_, name, pieces), (want_name, arguments)) in streamed.iter().zip(&calls) {
        assert_eq!(name, want_name);
        assert!(
            (2..=3).contains(&pieces.len()),
            "{name}: arguments come in 2-3 pieces: {pieces:?}"
        );
        let joined: Value = serde_json::from_str(&pieces.concat()).expect("pieces rejoin");
        assert_eq!(&joined, arguments, "{name}: pieces rebuild the arguments");
    }
    let ids: Vec<&str> = streamed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_distinct_call_ids(&ids);
}

#[tokio::test]
async fn embeddings_are_deterministic_per_input() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let url = format!("{}/embeddings", mock.base_url());
    let body = json!({"model": "emb", "input": ["one two", "three"]});
    let (status, _, first) = json(post(&url, &[KEY], &body).await).await;
    assert_eq!(status, 200);
    assert_eq!(first["object"], "list");
    assert_eq!(first["model"], "emb");
    assert_eq!(
        first["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = first["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "one vector per input");
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["embedding"].as_array().expect("floats").len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let (_, _, again) =
        json(post(&url, &[KEY], &json!({"model": "emb", "input": "three"})).await).await;
    assert_eq!(
        again["data"][0]["embedding"], data[1]["embedding"],
        "same text, same vector"
    );

    let base64 = json!({"model": "emb", "input": "three", "encoding_format": "base64"});
    let (_, _, encoded) = json(post(&url, &[KEY], &base64).await).await;
    assert_eq!(
        encoded["data"][0]["embedding"].as_str().map(str::len),
        Some(44),
        "32 bytes in base64"
    );
    assert_eq!(mock.calls_for("emb"), 3, "embeddings count as calls");
}

#[tokio::test]
async fn errors_use_the_openai_error_body() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let cases: Vec<(Step, u16, Value)> = vec![
        (
            Step::RateLimited {
                retry_after_secs: Some(7),
            },
            429,
            json!("rate_limit_exceeded"),
        ),
        (Step::Unauthorized, 401, json!("invalid_api_key")),
        (Step::InsufficientQuota, 429, json!("insufficient_quota")),
        (
            Step::PaymentRequired,
            402,
            json!("billing_hard_limit_reached"),
        ),
        (Step::ServerError(500), 500, Value::Null),
        (Step::ServerError(503), 503, Value::Null),
        (Step::BadRequest("no such thing".into()), 400, Value::Null),
        (Step::ContextOverflow, 400, json!("context_length_exceeded")),
        (Step::ContentFiltered, 400, json!("content_filter")),
    ];
    for (i, (step, status, code)) in cases.into_iter().enumerate() {
        let model = format!("m{i}");
        mock.script(&model, vec![step.clone()]);
        let response = post(&chat_url(&mock), &[KEY], &chat(&model, true)).await;
        let (got, retry_after, body) = json(response).await;
        assert_eq!(got, status, "{step:?}");
        assert_eq!(body["error"]["code"], code, "{step:?}: {body}");
        assert!(body["error"]["message"].is_string(), "{step:?}");
        if let Step::RateLimited { .. } = step {
            assert_eq!(retry_after.as_deref(), Some("7"));
            assert_eq!(body["error"]["type"], "requests");
        }
        if let Step::Unauthorized = step {
            let message = body["error"]["message"].as_str().expect("message");
            assert!(
                message.contains("sk-test-******7890"),
                "the key is echoed masked: {message}"
            );
        }
        if let Step::BadRequest(message) = &step {
            assert_eq!(body["error"]["message"], message.as_str());
            assert_eq!(body["error"]["type"], "invalid_request_error");
        }
    }
    mock.script("gw", vec![Step::ServerError(502)]);
    let (status, _, body) = json(post(&chat_url(&mock), &[KEY], &chat("gw", false)).await).await;
    assert_eq!(
        (status, &body["error"]["type"]),
        (502, &json!("cf_bad_gateway"))
    );
}

#[tokio::test]
async fn a_missing_key_is_401_and_still_recorded() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let (status, _, body) = json(post(&chat_url(&mock), &[], &chat("m", false)).await).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(mock.calls(), 1, "a rejected call still counts");
    assert_eq!(mock.requests()[0].api_key, "");
}
