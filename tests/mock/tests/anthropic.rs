//! The Anthropic mock over a real socket: messages, event streams, tool use, errors.

mod common;

use common::{data_lines, json, post, read_all};
use serde_json::{Value, json};
use sluice_mock::{MockProvider, Step, Wire};

const KEY: (&str, &str) = ("x-api-key", "sk-ant-test");
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

fn url(mock: &MockProvider) -> String {
    format!("{}/messages", mock.base_url())
}

fn request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "say hi"}]
    })
}

#[tokio::test]
async fn json_answer_is_a_message_with_usage() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    assert_eq!(mock.base_url(), format!("http://{}/v1", mock.addr()));
    let (status, _, body) =
        json(post(&url(&mock), &[KEY, VERSION], &request("claude-test", false)).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Hello from claude-test"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["stop_sequence"].is_null());
    assert_eq!(body["usage"]["input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 3);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 0);
}

#[tokio::test]
async fn cached_tokens_are_reported_apart_from_input_tokens() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let body = json!({
        "model": "c", "max_tokens": 8,
        "system": [{"type": "text", "text": "a long cached preamble"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    });
    let (_, _, answer) = json(post(&url(&mock), &[KEY, VERSION], &body).await).await;
    // 4 + 1 words + 3 = 8 prompt tokens, half of them read from the cache.
    assert_eq!(answer["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(
        answer["usage"]["input_tokens"], 4,
        "input_tokens excludes cache reads"
    );
}

#[tokio::test]
async fn stream_is_the_exact_event_transcript() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    mock.script("claude-test", vec![Step::Text("Hi there".into())]);
    let response = post(&url(&mock), &[KEY, VERSION], &request("claude-test", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (raw, cut) = read_all(response).await;
    assert!(!cut);
    let expected = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_mock000001","type":"message","role":"assistant","model":"claude-test","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\nevent: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#,
        "\n\nevent: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}"#,
        "\n\nevent: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );
    assert_eq!(raw, expected);
}

#[tokio::test]
async fn tool_use_streams_input_json_deltas() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let arguments = json!({"query": "rust sse", "limit": 3});
    mock.script(
        "c",
        vec![Step::ToolCall {
            name: "search".into(),
            arguments: arguments.clone(),
        }],
    );

    let (_, _, body) = json(post(&url(&mock), &[KEY, VERSION], &request("c", false)).await).await;
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["type"], "tool_use");
    assert_eq!(body["content"][0]["name"], "search");
    assert_eq!(body["content"][0]["input"], arguments);

    let (raw, _) = read_all(post(&url(&mock), &[KEY, VERSION], &request("c", true)).await).await;
    let events = data_lines(&raw, "\n\n");
    let start = events
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .expect("block start");
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["input"], json!({}));
    let pieces: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| {
            assert_eq!(e["delta"]["type"], "input_json_delta");
            e["delta"]["partial_json"].as_str().expect("piece")
        })
        .collect();
    assert!((2..=3).contains(&pieces.len()));
    assert_eq!(
        serde_json::from_str::<Value>(&pieces.concat()).expect("JSON"),
        arguments
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

/// Three calls in one answer, two of them to the same tool.
fn parallel_calls() -> Vec<(String, Value)> {
    vec![
        ("search".into(), json!({"query": "rust sse"})),
        ("search".into(), json!({"query": "tokio", "limit": 3})),
        ("get_time".into(), json!({"tz": "UTC"})),
    ]
}

/// A quarter of each call's arguments JSON, rounded up: 20, 27 and 12 characters.
const PARALLEL_OUTPUT_TOKENS: u64 = 5 + 7 + 3;

fn assert_distinct_tool_use_ids(ids: &[&str]) {
    assert!(
        ids.iter().all(|id| id.starts_with("toolu_")),
        "Anthropic tool_use ids start with toolu_: {ids:?}"
    );
    let distinct: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "every block has its own id: {ids:?}"
    );
}

#[tokio::test]
async fn parallel_tool_use_is_one_block_per_call() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let calls = parallel_calls();
    mock.script("c", vec![Step::ToolCalls(calls.clone())]);

    let (status, _, body) =
        json(post(&url(&mock), &[KEY, VERSION], &request("c", false)).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["stop_reason"], "tool_use");
    let blocks = body["content"].as_array().expect("content");
    assert_eq!(
        blocks.len(),
        calls.len(),
        "one tool_use block per call: {body}"
    );
    for (block, (name, arguments)) in blocks.iter().zip(&calls) {
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], name.as_str());
        assert_eq!(&block["input"], arguments, "{name}: input is the arguments");
    }
    let ids: Vec<&str> = blocks
        .iter()
        .map(|block| block["id"].as_str().expect("id"))
        .collect();
    assert_distinct_tool_use_ids(&ids);
    assert_eq!(body["usage"]["output_tokens"], PARALLEL_OUTPUT_TOKENS);
}

#[tokio::test]
async fn parallel_tool_use_streams_block_after_block() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let calls = parallel_calls();
    mock.script("c", vec![Step::ToolCalls(calls.clone())]);

    let (raw, cut) = read_all(post(&url(&mock), &[KEY, VERSION], &request("c", true)).await).await;
    assert!(!cut, "a complete stream ends cleanly");
    let names: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let events = data_lines(&raw, "\n\n");
    assert_eq!(names.len(), events.len());
    for (name, event) in names.iter().zip(&events) {
        assert_eq!(event["type"], *name, "the event name is the data's type");
    }
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);

    // The rest, ping aside: per block a start, its deltas, a stop, blocks in order.
    let mut blocks = events[1..events.len() - 2]
        .iter()
        .filter(|event| event["type"] != "ping")
        .peekable();
    let mut ids = Vec::new();
    for (index, (name, arguments)) in calls.iter().enumerate() {
        let start = blocks.next().expect("a block start");
        assert_eq!(start["type"], "content_block_start", "{start}");
        assert_eq!(start["index"], index, "{start}");
        let block = &start["content_block"];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], name.as_str());
        assert_eq!(block["input"], json!({}), "input opens empty");
        ids.push(block["id"].as_str().expect("id"));
        let mut pieces = Vec::new();
        while let Some(delta) = blocks.next_if(|e| e["type"] == "content_block_delta") {
            assert_eq!(delta["index"], index, "{delta}");
            assert_eq!(delta["delta"]["type"], "input_json_delta", "{delta}");
            pieces.push(delta["delta"]["partial_json"].as_str().expect("piece"));
        }
        assert!(
            (2..=3).contains(&pieces.len()),
            "{name}: input comes in 2-3 pieces: {pieces:?}"
        );
        let joined: Value = serde_json::from_str(&pieces.concat()).expect("pieces rejoin");
        assert_eq!(&joined, arguments, "{name}: pieces rebuild the input");
        let stop = blocks.next().expect("a block stop");
        assert_eq!(stop, &json!({"type": "content_block_stop", "index": index}));
    }
    assert!(blocks.next().is_none(), "no block beyond the calls: {raw}");
    assert_distinct_tool_use_ids(&ids);

    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], PARALLEL_OUTPUT_TOKENS);
}

#[tokio::test]
async fn refusal_is_a_200_with_stop_reason_refusal() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    mock.script("c", vec![Step::ContentFiltered]);
    let (status, _, body) =
        json(post(&url(&mock), &[KEY, VERSION], &request("c", false)).await).await;
    assert_eq!((status, &body["stop_reason"]), (200, &json!("refusal")));
    let (raw, _) = read_all(post(&url(&mock), &[KEY, VERSION], &request("c", true)).await).await;
    let names: Vec<&str> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    assert!(raw.contains(r#""stop_reason":"refusal""#));
}

#[tokio::test]
async fn missing_version_header_is_rejected_like_the_real_api() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let (status, _, body) = json(post(&url(&mock), &[KEY], &request("c", false)).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        body["error"]["message"],
        "anthropic-version: header is required"
    );
    let (status, _, body) = json(post(&url(&mock), &[VERSION], &request("c", false)).await).await;
    assert_eq!(
        (status, &body["error"]["type"]),
        (401, &json!("authentication_error"))
    );
}

#[tokio::test]
async fn errors_use_the_anthropic_error_body() {
    let mock = MockProvider::start(Wire::Anthropic).await;
    let cases = vec![
        (
            Step::RateLimited {
                retry_after_secs: Some(3),
            },
            429,
            "rate_limit_error",
        ),
        (Step::Unauthorized, 401, "authentication_error"),
        (Step::InsufficientQuota, 400, "invalid_request_error"),
        (Step::PaymentRequired, 402, "billing_error"),
        (Step::ServerError(500), 500, "api_error"),
        (Step::ServerError(529), 529, "overloaded_error"),
        (
            Step::BadRequest("bad field".into()),
            400,
            "invalid_request_error",
        ),
        (Step::ContextOverflow, 400, "invalid_request_error"),
    ];
    for (i, (step, status, kind)) in cases.into_iter().enumerate() {
        let model = format!("c{i}");
        mock.script(&model, vec![step.clone()]);
        let (got, retry_after, body) =
            json(post(&url(&mock), &[KEY, VERSION], &request(&model, true)).await).await;
        assert_eq!(got, status, "{step:?}");
        assert_eq!(body["type"], "error", "{step:?}");
        assert_eq!(body["error"]["type"], kind, "{step:?}");
        assert!(body["request_id"].is_string());
        let message = body["error"]["message"].as_str().expect("message");
        match step {
            Step::RateLimited { .. } => assert_eq!(retry_after.as_deref(), Some("3")),
            Step::InsufficientQuota => {
                assert!(message.starts_with("Your credit balance is too low"))
            }
            Step::ContextOverflow => assert!(
                message.starts_with("prompt is too long: ")
                    && message.ends_with(" tokens > 200000 maximum"),
                "{message}"
            ),
            Step::BadRequest(expected) => assert_eq!(message, expected),
            _ => {}
        }
    }
}
