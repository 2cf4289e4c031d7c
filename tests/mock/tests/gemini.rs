//! The Gemini mock over a real socket: generateContent, SSE streams, function calls, safety,
//! embeddings and errors.

mod common;

use common::{data_lines, json, post, read_all};
use serde_json::{Value, json};
use sluice_mock::{MockProvider, Step, Wire};

const KEY: (&str, &str) = ("x-goog-api-key", "AIza-test");

fn url(mock: &MockProvider, model: &str, action: &str) -> String {
    format!("{}/models/{model}:{action}", mock.base_url())
}

fn request() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "say hi"}]}]})
}

#[tokio::test]
async fn json_answer_is_a_generate_content_response() {
    let mock = MockProvider::start(Wire::Gemini).await;
    assert_eq!(mock.base_url(), format!("http://{}/v1beta", mock.addr()));
    let response = post(
        &url(&mock, "gemini-test", "generateContent"),
        &[KEY],
        &request(),
    )
    .await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200);
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"text": "Hello from gemini-test"}])
    );
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(body["usageMetadata"]["promptTokenCount"], 5);
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(body["usageMetadata"]["totalTokenCount"], 8);
    assert_eq!(body["modelVersion"], "gemini-test");
    assert!(body["responseId"].is_string());
    assert_eq!(
        mock.calls_for("gemini-test"),
        1,
        "the model comes from the path"
    );
}

#[tokio::test]
async fn sse_stream_is_the_exact_transcript() {
    let mock = MockProvider::start(Wire::Gemini).await;
    mock.script("gemini-test", vec![Step::Text("Hi there".into())]);
    let url = format!(
        "{}?alt=sse",
        url(&mock, "gemini-test", "streamGenerateContent")
    );
    let response = post(&url, &[KEY], &request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (raw, cut) = read_all(response).await;
    assert!(!cut);
    let expected = concat!(
        r#"data: {"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 5}]},"modelVersion": "gemini-test","responseId": "mock000001"}"#,
        "\r\n\r\n",
        r#"data: {"candidates": [{"content": {"parts": [{"text": " there"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 5}]},"modelVersion": "gemini-test","responseId": "mock000001"}"#,
        "\r\n\r\n",
        r#"data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 2,"totalTokenCount": 7,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 5}]},"modelVersion": "gemini-test","responseId": "mock000001"}"#,
        "\r\n\r\n",
    );
    assert_eq!(raw, expected);
    assert!(
        mock.requests()[0].stream,
        "the stream path marks the call as streaming"
    );
    assert_eq!(mock.requests()[0].query, "alt=sse");
}

#[tokio::test]
async fn stream_without_alt_sse_is_a_json_array() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let response = post(
        &url(&mock, "g", "streamGenerateContent"),
        &[KEY],
        &request(),
    )
    .await;
    let (raw, _) = read_all(response).await;
    let chunks: Value = serde_json::from_str(&raw).expect("the whole body is one JSON array");
    let chunks = chunks.as_array().expect("array");
    assert_eq!(chunks.len(), 4, "3 words and the finish chunk");
    assert!(
        raw.contains("\n,\r\n"),
        "elements are separated as the API separates them"
    );
}

#[tokio::test]
async fn key_comes_from_header_or_query() {
    let mock = MockProvider::start(Wire::Gemini).await;
    mock.script_key("query-key", vec![Step::Text("by query".into())]);
    let with_query = format!("{}?key=query-key", url(&mock, "g", "generateContent"));
    let (status, _, body) = json(post(&with_query, &[], &request()).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "by query"
    );
    let (status, _, body) =
        json(post(&url(&mock, "g", "generateContent"), &[], &request()).await).await;
    assert_eq!(status, 403, "no key at all");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    let keys: Vec<String> = mock.requests().into_iter().map(|r| r.api_key).collect();
    assert_eq!(keys, ["query-key", ""]);
}

#[tokio::test]
async fn function_call_comes_whole_with_finish_reason() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let arguments = json!({"city": "Paris"});
    mock.script(
        "g",
        vec![Step::ToolCall {
            name: "get_weather".into(),
            arguments: arguments.clone(),
        }],
    );
    let (_, _, body) =
        json(post(&url(&mock, "g", "generateContent"), &[KEY], &request()).await).await;
    let part = &body["candidates"][0]["content"]["parts"][0];
    assert_eq!(
        part["functionCall"],
        json!({"name": "get_weather", "args": arguments})
    );

    let sse = format!("{}?alt=sse", url(&mock, "g", "streamGenerateContent"));
    let (raw, _) = read_all(post(&sse, &[KEY], &request()).await).await;
    let chunks = data_lines(&raw, "\r\n\r\n");
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
}

/// Three calls in one answer, two of them to the same function.
fn parallel_calls() -> Vec<(String, Value)> {
    vec![
        ("get_weather".into(), json!({"city": "Paris"})),
        ("get_weather".into(), json!({"city": "London"})),
        ("get_time".into(), json!({"tz": "UTC"})),
    ]
}

/// The `functionCall` parts a candidate carries for `calls`, in order.
fn function_call_parts(calls: &[(String, Value)]) -> Value {
    calls
        .iter()
        .map(|(name, arguments)| json!({"functionCall": {"name": name, "args": arguments}}))
        .collect()
}

#[tokio::test]
async fn parallel_function_calls_are_parts_of_one_candidate() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let calls = parallel_calls();
    mock.script("g", vec![Step::ToolCalls(calls.clone())]);
    let parts = function_call_parts(&calls);

    let (status, _, body) =
        json(post(&url(&mock, "g", "generateContent"), &[KEY], &request()).await).await;
    assert_eq!(status, 200);
    let candidates = body["candidates"].as_array().expect("candidates");
    assert_eq!(
        candidates.len(),
        1,
        "one candidate holds every call: {body}"
    );
    assert_eq!(candidates[0]["content"]["role"], "model");
    assert_eq!(
        candidates[0]["content"]["parts"], parts,
        "one part per call, in order"
    );
    assert_eq!(candidates[0]["finishReason"], "STOP");
    assert_eq!(
        body["usageMetadata"]["candidatesTokenCount"],
        4 + 5 + 3,
        "a quarter of each call's arguments JSON (16, 17, 12 characters), rounded up"
    );

    // Streamed, the calls come whole in the closing chunk, over SSE and as a JSON array.
    let sse = format!("{}?alt=sse", url(&mock, "g", "streamGenerateContent"));
    let (raw, cut) = read_all(post(&sse, &[KEY], &request()).await).await;
    assert!(!cut, "a complete stream ends cleanly");
    let chunks = data_lines(&raw, "\r\n\r\n");
    assert_eq!(chunks.len(), 1, "{raw}");
    assert_eq!(chunks[0]["candidates"][0]["content"]["parts"], parts);
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");

    let array = url(&mock, "g", "streamGenerateContent");
    let (raw, _) = read_all(post(&array, &[KEY], &request()).await).await;
    let chunks: Value = serde_json::from_str(&raw).expect("the whole body is one JSON array");
    assert_eq!(chunks.as_array().map(Vec::len), Some(1), "{raw}");
    assert_eq!(chunks[0]["candidates"][0]["content"]["parts"], parts);
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn safety_block_is_a_200_with_finish_reason_safety() {
    let mock = MockProvider::start(Wire::Gemini).await;
    mock.script("g", vec![Step::ContentFiltered]);
    let (status, _, body) =
        json(post(&url(&mock, "g", "generateContent"), &[KEY], &request()).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["candidates"][0]["finishReason"], "SAFETY");
    assert!(body["candidates"][0].get("content").is_none());
    assert!(
        body["usageMetadata"].get("candidatesTokenCount").is_none(),
        "zero counts are omitted"
    );
}

#[tokio::test]
async fn batch_embed_answers_one_vector_per_request() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let body = json!({"requests": [
        {"model": "models/emb", "content": {"parts": [{"text": "one"}]}},
        {"model": "models/emb", "content": {"parts": [{"text": "two"}]}}
    ]});
    let (status, _, answer) =
        json(post(&url(&mock, "emb", "batchEmbedContents"), &[KEY], &body).await).await;
    assert_eq!(status, 200);
    let embeddings = answer["embeddings"].as_array().expect("embeddings");
    assert_eq!(embeddings.len(), 2);
    assert_eq!(embeddings[0]["values"].as_array().expect("values").len(), 8);
    assert_ne!(embeddings[0], embeddings[1]);
    assert_eq!(mock.calls_for("emb"), 1);
}

#[tokio::test]
async fn errors_use_the_google_error_body() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let cases = vec![
        (
            Step::RateLimited {
                retry_after_secs: Some(9),
            },
            429,
            "RESOURCE_EXHAUSTED",
        ),
        (Step::Unauthorized, 401, "UNAUTHENTICATED"),
        (Step::InsufficientQuota, 429, "RESOURCE_EXHAUSTED"),
        (Step::ServerError(500), 500, "INTERNAL"),
        (Step::ServerError(503), 503, "UNAVAILABLE"),
        (Step::BadRequest("bad part".into()), 400, "INVALID_ARGUMENT"),
        (Step::ContextOverflow, 400, "INVALID_ARGUMENT"),
    ];
    for (i, (step, status, google_status)) in cases.into_iter().enumerate() {
        let model = format!("g{i}");
        mock.script(&model, vec![step.clone()]);
        let sse = format!("{}?alt=sse", url(&mock, &model, "streamGenerateContent"));
        let (got, retry_after, body) = json(post(&sse, &[KEY], &request()).await).await;
        assert_eq!(got, status, "{step:?}");
        assert_eq!(body["error"]["code"], status, "{step:?}");
        assert_eq!(body["error"]["status"], google_status, "{step:?}");
        let message = body["error"]["message"].as_str().expect("message");
        match step {
            Step::RateLimited { .. } => {
                assert_eq!(retry_after.as_deref(), Some("9"));
                assert_eq!(body["error"]["details"][0]["retryDelay"], "9s");
            }
            Step::InsufficientQuota => assert!(message.contains("exceeded your current quota")),
            Step::ContextOverflow => assert!(
                message.contains("exceeds the maximum number of tokens"),
                "{message}"
            ),
            Step::BadRequest(expected) => assert_eq!(message, expected),
            _ => {}
        }
    }
}

#[tokio::test]
async fn unknown_actions_are_404_and_not_counted() {
    let mock = MockProvider::start(Wire::Gemini).await;
    let (status, _, body) =
        json(post(&url(&mock, "g", "countTokens"), &[KEY], &request()).await).await;
    assert_eq!(
        (status, &body["error"]["status"]),
        (404, &json!("NOT_FOUND"))
    );
    assert_eq!(mock.calls(), 0);
}
