//! Golden tests for the Anthropic Messages translation: request JSON in → Anthropic body
//! out, Anthropic body in → canonical response out, and SSE transcripts, byte for byte as
//! Anthropic sends them, in → canonical chunks out. Everything compares as JSON values.

mod common;

use common::{Fixtures, sse_events};

const FIXTURES: Fixtures = Fixtures("anthropic");
use serde_json::{Value, json};
use sluice_llm::anthropic::{self, Stream};
use sluice_llm::{
    ChatChunk, ChatRequest, DecodeError, Decoded, ResponseMeta, StreamDecoder, TranslateError,
    UpstreamError,
};

const MODEL: &str = "claude-sonnet-4-5-20250929";
const DEFAULT_MAX_TOKENS: u32 = 1024;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-sluice-1".to_owned(),
        created: 1_735_689_600,
        model: "claude-requested".to_owned(),
    }
}

fn request(v: Value) -> ChatRequest {
    serde_json::from_value(v).expect("fixture is a valid canonical request")
}

fn encode(v: Value) -> Result<Value, TranslateError> {
    anthropic::encode_request(&request(v), MODEL, DEFAULT_MAX_TOKENS)
}

fn check_request(name: &str) {
    let input = FIXTURES.json(&format!("request/{name}.in.json"));
    let expected = FIXTURES.json(&format!("request/{name}.out.json"));
    let got = encode(input).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Field by field first, so a failure points at the part that differs.
    let fields = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    for field in fields(&got).into_iter().chain(fields(&expected)).flatten() {
        assert_eq!(
            got.get(&field),
            expected.get(&field),
            "request/{name}: field `{field}`"
        );
    }
    assert_eq!(
        got, expected,
        "request/{name}: encoded body differs from the golden file"
    );
}

fn check_response(name: &str) {
    let body = FIXTURES.text(&format!("response/{name}.in.json"));
    let expected = FIXTURES.json(&format!("response/{name}.out.json"));
    let got = anthropic::decode_response(body.as_bytes(), &meta())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = serde_json::to_value(got).expect("responses serialize");
    assert_eq!(
        got, expected,
        "response/{name}: decoded response differs from the golden file"
    );
}

/// Feeds a transcript to a fresh decoder, as the router would, and records what came out:
/// the chunks, and whether the stream ended (`done`), failed, or just stopped (`cut`).
fn run_stream(name: &str) -> (Vec<ChatChunk>, Value) {
    let mut stream = Stream::new(meta());
    let mut chunks = Vec::new();
    let events = sse_events(&FIXTURES.text(&format!("stream/{name}.sse")));
    for (i, (event, data)) in events.iter().enumerate() {
        match stream.decode(event, data, &mut chunks) {
            Ok(Decoded::More) => {}
            Ok(Decoded::Done) => {
                assert_eq!(i + 1, events.len(), "{name}: nothing follows message_stop");
                return (chunks, json!("done"));
            }
            Err(DecodeError::Upstream(UpstreamError { kind, message, .. })) => {
                let outcome = json!({"upstream": {"kind": kind, "message": message}});
                return (chunks, outcome);
            }
            Err(e) => panic!("{name}: event {i} ({event}): {e}"),
        }
    }
    (chunks, json!("cut"))
}

fn check_stream(name: &str) {
    let expected = FIXTURES.json(&format!("stream/{name}.json"));
    let (chunks, outcome) = run_stream(name);
    let got = json!({"outcome": outcome, "chunks": chunks});
    assert_eq!(
        got["outcome"], expected["outcome"],
        "stream/{name}: how the stream ended"
    );
    let got = got["chunks"]
        .as_array()
        .expect("chunks serialize as a list");
    let expected = expected["chunks"]
        .as_array()
        .expect("expected file has a chunk list");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "stream/{name}: chunk {i}");
    }
    assert_eq!(got.len(), expected.len(), "stream/{name}: number of chunks");
}

// Requests.

#[test]
fn request_system_multiturn_image() {
    check_request("system_multiturn_image");
}

#[test]
fn request_tool_round_trip() {
    check_request("tool_round_trip");
}

#[test]
fn request_tool_choice_variants() {
    let cases = FIXTURES.json("request/tool_choice.cases.json");
    for case in cases.as_array().unwrap() {
        let name = &case["name"];
        let mut req = json!({
            "model": "smart",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        });
        if case["no_tools"] == true {
            req.as_object_mut().unwrap().remove("tools");
        }
        for field in ["tool_choice", "parallel_tool_calls"] {
            if let Some(v) = case.get(field).filter(|v| !v.is_null()) {
                req[field] = v.clone();
            }
        }
        let body = encode(req).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = body.get("tool_choice").cloned().unwrap_or(Value::Null);
        assert_eq!(got, case["expect"], "tool_choice case {name}");
    }
}

#[test]
fn request_invalid_tool_arguments_name_the_message() {
    let err = encode(FIXTURES.json("request/invalid_tool_arguments.in.json")).unwrap_err();
    let TranslateError::InvalidMessage { index, reason } = err else {
        panic!("expected InvalidMessage, got {err:?}");
    };
    assert_eq!(index, 1, "the assistant message holding the bad call");
    assert!(reason.contains("call_1"), "reason names the call: {reason}");
}

#[test]
fn request_tool_arguments_must_be_an_object() {
    let err = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "[1, 2]"}}]}
    ]}))
    .unwrap_err();
    assert!(
        matches!(err, TranslateError::InvalidMessage { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn request_rejects_what_anthropic_cannot_take() {
    let cases = [
        (
            "tool message without tool_call_id",
            json!([{"role": "user", "content": "hi"}, {"role": "tool", "content": "18°C"}]),
            1,
        ),
        (
            "unknown part type",
            json!([{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]),
            0,
        ),
        (
            "image URL of another scheme",
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]),
            0,
        ),
        (
            "data URL not in base64",
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]),
            0,
        ),
        (
            "image in a system message",
            json!([{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]),
            0,
        ),
    ];
    for (what, messages, want) in cases {
        let err = encode(json!({"model": "m", "messages": messages})).unwrap_err();
        let TranslateError::InvalidMessage { index, .. } = err else {
            panic!("{what}: expected InvalidMessage, got {err:?}");
        };
        assert_eq!(index, want, "{what}: index of the offending message");
    }
}

#[test]
fn request_rejects_tool_choice_and_tools_without_an_equivalent() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}]});
    let mut bad_choice = base.clone();
    bad_choice["tool_choice"] = json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto"}});
    let mut bad_tool = base;
    bad_tool["tools"] = json!([{"type": "custom", "function": {"name": "f"}}]);
    for req in [bad_choice, bad_tool] {
        let err = encode(req).unwrap_err();
        assert!(matches!(err, TranslateError::Unsupported(_)), "{err:?}");
    }
}

#[test]
fn request_max_tokens_prefers_the_clients_cap() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let body = encode(json!({"model": "m", "messages": msgs})).unwrap();
    assert_eq!(
        body["max_tokens"], DEFAULT_MAX_TOKENS,
        "Anthropic requires one: the default"
    );
    let body = encode(
        json!({"model": "m", "messages": msgs, "max_tokens": 10, "max_completion_tokens": 20}),
    )
    .unwrap();
    assert_eq!(
        body["max_tokens"], 20,
        "max_completion_tokens wins over the legacy field"
    );
    let body = encode(json!({"model": "m", "messages": msgs, "stream": false})).unwrap();
    assert!(body.get("stream").is_none(), "stream only when asked for");
    assert!(body.get("system").is_none(), "no system prompt, no field");
}

// Whole responses.

#[test]
fn response_text_tool_use_and_cache_usage() {
    check_response("text_tool_use_cache");
}

#[test]
fn response_skips_thinking_and_falls_back_to_meta() {
    check_response("thinking_max_tokens");
}

#[test]
fn response_error_envelope_is_an_upstream_error() {
    let body = FIXTURES.text("response/overloaded.in.json");
    let err = anthropic::decode_response(body.as_bytes(), &meta()).unwrap_err();
    let want = UpstreamError {
        kind: "overloaded_error".into(),
        message: "Overloaded".into(),
        retry_after: None,
    };
    assert_eq!(err, DecodeError::Upstream(want.clone()));
    assert_eq!(anthropic::decode_error(body.as_bytes()), Some(want));
}

#[test]
fn response_unparseable_body_is_malformed() {
    for body in [
        &b"<html>502 Bad Gateway</html>"[..],
        br#"{"content": "not a list"}"#,
        b"{}",
    ] {
        let err = anthropic::decode_response(body, &meta()).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }
    assert_eq!(
        anthropic::decode_error(br#"{"type": "message", "content": []}"#),
        None
    );
    assert_eq!(anthropic::decode_error(b"not json"), None);
}

#[test]
fn response_stop_reasons_map_to_finish_reasons() {
    let cases = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ];
    for (stop_reason, finish_reason) in cases {
        let body = json!({"content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason});
        let resp = anthropic::decode_response(body.to_string().as_bytes(), &meta()).unwrap();
        assert_eq!(
            resp.choices[0].finish_reason.as_deref(),
            Some(finish_reason),
            "stop_reason {stop_reason}"
        );
    }
}

// Streams.

#[test]
fn stream_text() {
    check_stream("text");
}

#[test]
fn stream_tool_use() {
    check_stream("tool_use");
}

#[test]
fn stream_parallel_tool_calls_count_from_zero_and_read_cache_usage() {
    check_stream("parallel_tools_cached");
}

#[test]
fn stream_thinking_is_dropped() {
    check_stream("thinking");
}

#[test]
fn stream_error_event_mid_stream() {
    check_stream("error_midstream");
}

/// A client that streams must end up with the same answer as one that does not: the same
/// text, and tool calls whose argument pieces join into the same JSON.
#[test]
fn streamed_tool_call_matches_the_whole_response() {
    let (chunks, outcome) = run_stream("tool_use");
    assert_eq!(outcome, "done");
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in &chunks {
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            for call in choice.delta.tool_calls.iter().flatten() {
                let i = call.index as usize;
                if i == calls.len() {
                    calls.push(Default::default());
                }
                let (id, name, arguments) = &mut calls[i];
                id.push_str(call.id.as_deref().unwrap_or(""));
                if let Some(f) = &call.function {
                    name.push_str(f.name.as_deref().unwrap_or(""));
                    arguments.push_str(f.arguments.as_deref().unwrap_or(""));
                }
            }
        }
    }

    let body = FIXTURES.text("response/tool_use_final.in.json");
    let whole = anthropic::decode_response(body.as_bytes(), &meta()).unwrap();
    let message = &whole.choices[0].message;
    assert_eq!(
        Some(text),
        message.content.as_ref().map(|_| message.text_content())
    );
    let want = message.tool_calls.as_ref().unwrap();
    assert_eq!(
        calls.len(),
        want.len(),
        "one streamed call per tool_use block"
    );
    for ((id, name, arguments), call) in calls.iter().zip(want) {
        assert_eq!((id, name), (&call.id, &call.function.name));
        let streamed: Value = serde_json::from_str(arguments).expect("pieces join into JSON");
        let whole: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(
            streamed, whole,
            "streamed arguments equal the non-streamed ones"
        );
    }
    let usage = chunks.last().and_then(|c| c.usage.clone());
    assert_eq!(
        usage, whole.usage,
        "the final chunk carries the whole response's usage"
    );
}

#[test]
fn stream_message_delta_usage_overrides_message_start() {
    let mut stream = Stream::new(meta());
    let mut out = Vec::new();
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":3,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7,"output_tokens":40}}"#,
    ];
    for data in events {
        assert_eq!(stream.decode("", data, &mut out).unwrap(), Decoded::More);
    }
    let done = stream
        .decode("message_stop", r#"{"type":"message_stop"}"#, &mut out)
        .unwrap();
    assert_eq!(done, Decoded::Done);
    assert_eq!(out[1].choices[0].finish_reason.as_deref(), Some("length"));
    let usage = serde_json::to_value(out[2].usage.as_ref().unwrap()).unwrap();
    assert_eq!(
        usage,
        json!({"prompt_tokens": 112, "completion_tokens": 40, "total_tokens": 152,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 7}}),
        "message_delta's cumulative counts replace message_start's"
    );
}

#[test]
fn stream_ignores_unknown_events_and_rejects_malformed_ones() {
    let mut stream = Stream::new(meta());
    let mut out = Vec::new();
    let ignored = [
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"some_future_event","payload":{"x":1}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\":"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
        "",
    ];
    for data in ignored {
        assert_eq!(
            stream.decode("", data, &mut out).unwrap(),
            Decoded::More,
            "{data}"
        );
    }
    assert!(out.is_empty(), "none of these is a chunk: {out:?}");
    for data in ["{nope", r#"{"type":"content_block_delta","index":0}"#] {
        let err = stream.decode("", data, &mut out).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{data}: {err:?}");
    }
}

#[test]
fn stream_chunks_use_meta_until_message_start() {
    let mut stream = Stream::new(meta());
    let mut out = Vec::new();
    stream
        .decode("message_stop", r#"{"type":"message_stop"}"#, &mut out)
        .unwrap();
    assert_eq!(
        (out[0].id.as_str(), out[0].model.as_str()),
        ("chatcmpl-sluice-1", "claude-requested")
    );
    assert_eq!(out[0].created, 1_735_689_600);
}

#[test]
fn api_version_is_the_one_the_translation_targets() {
    assert_eq!(anthropic::API_VERSION, "2023-06-01");
}

#[test]
fn stream_ping_frames_are_skipped_whatever_their_data() {
    // Proxies in front of Anthropic send `event: ping` with `data: {}`, which has no `type`.
    let mut stream = Stream::new(meta());
    let mut out = Vec::new();
    for data in ["{}", r#"{"type":"ping"}"#, ""] {
        assert_eq!(
            stream.decode("ping", data, &mut out),
            Ok(Decoded::More),
            "{data}"
        );
    }
    assert!(out.is_empty(), "a ping is no chunk: {out:?}");
    assert!(
        matches!(
            stream.decode("", "{}", &mut out),
            Err(DecodeError::Malformed(_))
        ),
        "an untyped event that is not a ping is still malformed"
    );
}
