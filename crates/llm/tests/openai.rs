//! Golden files for the OpenAI-compatible stream decoder, under `tests/fixtures/openai/`:
//! `<case>.in.sse` (a transcript, byte for byte as a server sends it) → `<case>.out.json`
//! (the canonical chunks). Run with `SLUICE_BLESS=1` to rewrite the `.out.json` files from
//! the current output, then review the diff.

#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers should fail the test loudly"
)]

mod common;

use common::sse_events;
use std::path::PathBuf;

use serde_json::Value;
use sluice_llm::{ChatChunk, DecodeError, Decoded, ResponseMeta, StreamDecoder, openai};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openai")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn assert_golden(case: &str, actual: &Value) {
    let name = format!("{case}.out.json");
    if std::env::var_os("SLUICE_BLESS").is_some() {
        let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        std::fs::write(path(&name), text).unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(&read(&name)).unwrap();
    assert!(
        *actual == expected,
        "{case}: output differs from {name}\n--- expected\n{}\n--- actual\n{}",
        serde_json::to_string_pretty(&expected).unwrap(),
        serde_json::to_string_pretty(actual).unwrap(),
    );
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-sluice-req".into(),
        created: 1_754_000_000,
        model: "qwen-upstream".into(),
    }
}

fn decode_all(events: &[(String, String)]) -> (Vec<ChatChunk>, Result<Decoded, DecodeError>) {
    let mut stream = openai::Stream::new(meta());
    let mut chunks = Vec::new();
    let mut status = Ok(Decoded::More);
    for (event, data) in events {
        status = stream.decode(event, data, &mut chunks);
        if status.is_err() {
            break;
        }
    }
    (chunks, status)
}

/// vLLM, Ollama and LM Studio leave out or null `id`, `created` and `model`, proxies send
/// `event: ping` with `data: {}`, and the last chunk may carry no `delta`: the stream
/// still decodes, each chunk with an identity (the request's until the server names its
/// own), and the keep-alives produce no chunk.
#[test]
fn stream_with_missing_fields_and_pings_decodes() {
    let case = "stream_missing_fields";
    let (chunks, status) = decode_all(&sse_events(&read(&format!("{case}.in.sse"))));
    assert_eq!(status, Ok(Decoded::Done), "{case}: ends with [DONE]");
    assert!(
        chunks
            .iter()
            .all(|c| !c.id.is_empty() && !c.model.is_empty() && c.created > 0),
        "every chunk has an identity"
    );
    assert_golden(case, &serde_json::to_value(chunks).unwrap());
}

/// What the gateway needs stays strict: data that is not a JSON object, or an error object
/// however it is spelled, fails the stream.
#[test]
fn stream_still_refuses_what_is_not_a_chunk() {
    let upstream = |data: &str| {
        let mut out = Vec::new();
        openai::Stream::new(meta()).decode("", data, &mut out)
    };
    for data in ["not json", "{nope", "42", r#""text""#, "[1,2]"] {
        assert!(
            matches!(upstream(data), Err(DecodeError::Malformed(_))),
            "{data}: {:?}",
            upstream(data)
        );
    }
    for data in [
        r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
        r#"{ "error" : {"message":"overloaded","type":"server_error"}}"#,
        r#"{"id":"c","error":{"message":"overloaded","code":"server_error"}}"#,
        r#"{"error":"overloaded"}"#,
    ] {
        assert!(
            matches!(upstream(data), Err(DecodeError::Upstream(ref e)) if e.message == "overloaded"),
            "{data}: {:?}",
            upstream(data)
        );
    }
    assert!(
        matches!(upstream(r#"{"error":42}"#), Err(DecodeError::Malformed(_))),
        "an error in no known shape is still an error"
    );
    // A ping is skipped whatever its data.
    assert_eq!(
        openai::Stream::new(meta()).decode("ping", "not json", &mut Vec::new()),
        Ok(Decoded::More)
    );
}
