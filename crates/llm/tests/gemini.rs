//! Golden files for the Gemini translation, under `tests/fixtures/gemini/`:
//! `<case>.in.json` (a canonical request, or a Gemini body) or `<case>.in.sse` (a stream
//! transcript, byte for byte as Gemini sends it with `alt=sse`) → `<case>.out.json`.
//! Run with `SLUICE_BLESS=1` to rewrite the `.out.json` files from the current output,
//! then review the diff.

#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers should fail the test loudly"
)]

mod common;

use common::{Fixtures, sse_events};

const FIXTURES: Fixtures = Fixtures("gemini");
use serde_json::json;
use sluice_llm::{
    ChatChunk, ChatRequest, DecodeError, Decoded, EmbeddingsRequest, ResponseMeta, StreamDecoder,
    TranslateError, UpstreamError, gemini,
};

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-gem1".into(),
        created: 1_754_000_000,
        model: "gemini-flash-latest".into(),
    }
}

fn request(case: &str) -> ChatRequest {
    serde_json::from_value(FIXTURES.json(&format!("{case}.in.json"))).unwrap()
}

fn encode_case(case: &str) {
    let body = gemini::encode_request(&request(case)).unwrap_or_else(|e| panic!("{case}: {e}"));
    FIXTURES.assert_golden(case, &body);
}

fn decode_case(case: &str) {
    let resp = gemini::decode_response(&FIXTURES.read(&format!("{case}.in.json")), &meta())
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    FIXTURES.assert_golden(case, &serde_json::to_value(resp).unwrap());
}

/// Feeds a transcript to a fresh decoder: the chunks it produced and how it stopped (an
/// error, or the status of the last event). Nothing may follow `Done`.
fn run_stream(case: &str) -> (Vec<ChatChunk>, Result<Decoded, DecodeError>) {
    let events = sse_events(&FIXTURES.text(&format!("{case}.in.sse")));
    let mut stream = gemini::Stream::new(meta());
    let mut chunks = Vec::new();
    let mut status = Ok(Decoded::More);
    for (i, (event, data)) in events.iter().enumerate() {
        status = stream.decode(event, data, &mut chunks);
        match status {
            Ok(Decoded::More) => {}
            Ok(Decoded::Done) => assert_eq!(i + 1, events.len(), "{case}: events after the end"),
            Err(_) => break,
        }
    }
    (chunks, status)
}

fn stream_case(case: &str) {
    let (chunks, status) = run_stream(case);
    assert_eq!(
        status,
        Ok(Decoded::Done),
        "{case}: a finished answer ends the stream"
    );
    FIXTURES.assert_golden(case, &serde_json::to_value(chunks).unwrap());
}

#[test]
fn request_system_multiturn_image() {
    encode_case("system_multiturn_image");
}

#[test]
fn request_tool_round_trip() {
    encode_case("tool_round_trip");
}

#[test]
fn request_named_tool_choice_and_schema_sanitising() {
    encode_case("tool_choice_named_schema");
}

#[test]
fn request_tool_choice_modes() {
    let mut req = request("tool_round_trip");
    for (choice, config) in [
        (json!("auto"), json!({"mode": "AUTO"})),
        (json!("none"), json!({"mode": "NONE"})),
        (json!("required"), json!({"mode": "ANY"})),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        ),
    ] {
        req.tool_choice = Some(choice.clone());
        let body = gemini::encode_request(&req).unwrap();
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"], config,
            "tool_choice {choice}"
        );
    }

    req.tool_choice = Some(json!("sometimes"));
    assert!(matches!(
        gemini::encode_request(&req),
        Err(TranslateError::Unsupported(_))
    ));

    req.tool_choice = None;
    let body = gemini::encode_request(&req).unwrap();
    assert!(
        body.get("toolConfig").is_none(),
        "no tool_choice, no toolConfig"
    );
}

#[test]
fn request_without_options_has_no_generation_config() {
    let req: ChatRequest = serde_json::from_value(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let body = gemini::encode_request(&req).unwrap();
    assert_eq!(
        body,
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
}

#[test]
fn request_json_schema_becomes_a_response_schema() {
    let req: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "List two colours."}],
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "stop": ["a", "b"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "colours", "strict": true, "schema": {
            "type": "object", "additionalProperties": false,
            "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
            "required": ["colours"]
        }}}
    }))
    .unwrap();
    let body = gemini::encode_request(&req).unwrap();
    assert_eq!(
        body["generationConfig"],
        json!({
            "maxOutputTokens": 100,
            "stopSequences": ["a", "b"],
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "object",
                "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
                "required": ["colours"]
            }
        }),
        "max_completion_tokens wins over max_tokens; the schema is sanitised"
    );
}

#[test]
fn request_invalid_tool_arguments_name_the_message() {
    let err = gemini::encode_request(&request("invalid_tool_arguments")).unwrap_err();
    let TranslateError::InvalidMessage { index, reason } = err else {
        panic!("expected InvalidMessage, got {err:?}");
    };
    assert_eq!(index, 1, "the assistant message holding the call");
    assert!(
        reason.contains("call_bad") && reason.contains("not valid JSON"),
        "{reason}"
    );
}

#[test]
fn request_rejects_what_gemini_cannot_take() {
    let cases = [
        (
            json!([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_nope", "content": "x"}]),
            1,
            "call_nope",
        ),
        (json!([{"role": "tool", "content": "x"}]), 0, "tool_call_id"),
        (
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]),
            0,
            "input_audio",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
            0,
            "not a JSON object",
        ),
    ];
    for (messages, want_index, want_reason) in cases {
        let req: ChatRequest =
            serde_json::from_value(json!({"model": "m", "messages": messages})).unwrap();
        match gemini::encode_request(&req) {
            Err(TranslateError::InvalidMessage { index, reason }) => {
                assert_eq!(index, want_index, "{reason}");
                assert!(
                    reason.contains(want_reason),
                    "{reason:?} should mention {want_reason:?}"
                );
            }
            other => panic!("{messages}: expected InvalidMessage, got {other:?}"),
        }
    }
}

#[test]
fn response_text_function_call_and_cached_usage() {
    decode_case("text_function_call_cached");
}

#[test]
fn response_safety_block() {
    decode_case("safety_block");
}

#[test]
fn response_finish_reasons() {
    for (reason, expected) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
    ] {
        let body = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]});
        let resp = gemini::decode_response(body.to_string().as_bytes(), &meta()).unwrap();
        assert_eq!(
            resp.choices[0].finish_reason.as_deref(),
            Some(expected),
            "finishReason {reason}"
        );
        assert_eq!(resp.id, "chatcmpl-gem1", "no responseId: the caller's id");
        assert_eq!(
            resp.model, "gemini-flash-latest",
            "no modelVersion: the model asked for"
        );
        assert!(resp.usage.is_none(), "no usageMetadata, no usage");
    }

    // Thinking can spend the whole budget: a candidate with no parts at all.
    let body = br#"{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS"}]}"#;
    let resp = gemini::decode_response(body, &meta()).unwrap();
    assert_eq!(resp.choices[0].message.text_content(), "");
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("length"));
}

#[test]
fn response_errors() {
    let body = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
    let expected = UpstreamError {
        kind: "RESOURCE_EXHAUSTED".into(),
        message: "Resource has been exhausted (e.g. check quota).".into(),
        retry_after: None,
    };
    assert_eq!(gemini::decode_error(body), Some(expected.clone()));
    assert_eq!(
        gemini::decode_response(body, &meta()),
        Err(DecodeError::Upstream(expected))
    );

    // The wait Google asks for, from its RetryInfo detail (and only from that detail); a
    // detail of another shape is skipped, not a reason to lose the error.
    let body = br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"X"}],"retryDelay":"99s"},{"@type":"type.googleapis.com/google.rpc.Help","links":"odd"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17.5s"}]}}"#;
    let err = gemini::decode_error(body).expect("decoded");
    assert_eq!(err.kind, "RESOURCE_EXHAUSTED");
    assert_eq!(
        err.retry_after,
        Some(std::time::Duration::from_millis(17_500))
    );
    let body = br#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":3}}]}}"#;
    assert_eq!(
        gemini::decode_error(body).expect("decoded").retry_after,
        None,
        "a retryDelay not in the documented form is no wait"
    );

    assert!(matches!(
        gemini::decode_response(b"{\"candidates\": [", &meta()),
        Err(DecodeError::Malformed(_))
    ));
    assert!(
        matches!(
            gemini::decode_response(b"{}", &meta()),
            Err(DecodeError::Malformed(_))
        ),
        "no candidates"
    );
}

#[test]
fn stream_text() {
    stream_case("stream_text");
}

#[test]
fn stream_tool_call() {
    stream_case("stream_tool_call");
}

#[test]
fn stream_error_event() {
    let (chunks, status) = run_stream("stream_error");
    assert_eq!(
        status,
        Err(DecodeError::Upstream(UpstreamError {
            kind: "UNAVAILABLE".into(),
            message: "The model is overloaded. Please try again later.".into(),
            retry_after: None,
        }))
    );
    FIXTURES.assert_golden("stream_error", &serde_json::to_value(chunks).unwrap());
}

#[test]
fn stream_malformed_event() {
    let mut stream = gemini::Stream::new(meta());
    let mut out = Vec::new();
    let status = stream.decode("", r#"{"candidates": [{"content": "#, &mut out);
    assert!(
        matches!(status, Err(DecodeError::Malformed(_))),
        "{status:?}"
    );
    assert_eq!(
        stream.decode("", "", &mut out),
        Ok(Decoded::More),
        "blank data is skipped"
    );
    assert!(out.is_empty());
}

#[test]
fn stream_prompt_block_ends_the_stream() {
    let mut stream = gemini::Stream::new(meta());
    let mut out = Vec::new();
    let event = r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5}}"#;
    assert_eq!(stream.decode("", event, &mut out), Ok(Decoded::Done));
    let out = serde_json::to_value(out).unwrap();
    assert_eq!(out[0]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        out[0]["choices"][0]["delta"]["role"], "assistant",
        "the only chunk says who speaks"
    );
    assert_eq!(out[1]["usage"]["prompt_tokens"], 5);
}

/// The same answer asked for with and without streaming gives the same tool calls: ids,
/// names, and arguments once the streamed pieces are put back together.
#[test]
fn streamed_tool_calls_match_the_whole_response() {
    let whole =
        gemini::decode_response(&FIXTURES.read("stream_tool_call.whole.json"), &meta()).unwrap();
    let (chunks, status) = run_stream("stream_tool_call");
    assert_eq!(status, Ok(Decoded::Done));

    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut content = String::new();
    let mut finish = None;
    for choice in chunks.iter().flat_map(|c| &c.choices) {
        content.push_str(choice.delta.content.as_deref().unwrap_or(""));
        finish = choice.finish_reason.clone().or(finish);
        for delta in choice.delta.tool_calls.iter().flatten() {
            let i = delta.index as usize;
            if i == calls.len() {
                calls.push(Default::default());
            }
            let call = &mut calls[i];
            call.0.push_str(delta.id.as_deref().unwrap_or(""));
            let function = delta.function.clone().unwrap_or_default();
            call.1.push_str(function.name.as_deref().unwrap_or(""));
            call.2.push_str(function.arguments.as_deref().unwrap_or(""));
        }
    }

    let choice = &whole.choices[0];
    let expected: Vec<(String, String, String)> = choice
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| {
            (
                c.id.clone(),
                c.function.name.clone(),
                c.function.arguments.clone(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(
        calls, expected,
        "streamed tool calls equal the whole response's"
    );
    assert_eq!(content, choice.message.text_content());
    assert_eq!(finish, choice.finish_reason);
    assert_eq!(
        chunks.last().and_then(|c| c.usage.clone()),
        whole.usage,
        "same usage"
    );
}

#[test]
fn embeddings_request() {
    let req: EmbeddingsRequest =
        serde_json::from_value(FIXTURES.json("embeddings.in.json")).unwrap();
    let body = gemini::encode_embeddings(&req, "gemini-embedding-001").unwrap();
    FIXTURES.assert_golden("embeddings", &body);

    let one: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "e", "input": "hello"})).unwrap();
    let body = gemini::encode_embeddings(&one, "models/gemini-embedding-001").unwrap();
    assert_eq!(
        body,
        json!({"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}}]}),
        "a single string, and a model already prefixed"
    );

    for input in [json!([1, 2, 3]), json!([[1, 2], [3]]), json!([]), json!(7)] {
        let req: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": input})).unwrap();
        let result = gemini::encode_embeddings(&req, "gemini-embedding-001");
        assert!(
            matches!(result, Err(TranslateError::Unsupported(_))),
            "input {input}: {result:?}"
        );
    }
}

#[test]
fn embeddings_response() {
    let resp = gemini::decode_embeddings(
        &FIXTURES.read("embeddings_response.in.json"),
        "gemini-embedding-001",
    )
    .unwrap();
    FIXTURES.assert_golden("embeddings_response", &serde_json::to_value(resp).unwrap());

    let err =
        br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
    let result = gemini::decode_embeddings(err, "gemini-embedding-001");
    assert!(matches!(result, Err(DecodeError::Upstream(e)) if e.kind == "INVALID_ARGUMENT"));
    assert!(matches!(
        gemini::decode_embeddings(b"[]", "m"),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn stream_ping_frames_and_empty_objects_are_skipped() {
    let mut stream = gemini::Stream::new(meta());
    let mut out = Vec::new();
    for (event, data) in [("ping", "{}"), ("ping", "keep-alive"), ("", "{}")] {
        assert_eq!(
            stream.decode(event, data, &mut out),
            Ok(Decoded::More),
            "{event}: {data}"
        );
    }
    assert!(out.is_empty(), "no chunk from a keep-alive: {out:?}");
    assert!(
        matches!(
            stream.decode("", "not json", &mut out),
            Err(DecodeError::Malformed(_))
        ),
        "data that is not JSON still fails"
    );
}
