//! Golden files for the OpenAI-compatible stream decoder, under `tests/fixtures/openai/`:
//! `<case>.in.sse` (a transcript, byte for byte as a server sends it) → `<case>.out.json`
//! (the canonical chunks). Run with `SLUICE_BLESS=1` to rewrite the `.out.json` files from
//! the current output, then review the diff.

mod common;

use common::{Fixtures, sse_events};

const FIXTURES: Fixtures = Fixtures("openai");
use sluice_llm::{ChatChunk, DecodeError, Decoded, ResponseMeta, StreamDecoder, openai};

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
    let (chunks, status) = decode_all(&sse_events(&FIXTURES.text(&format!("{case}.in.sse"))));
    assert_eq!(status, Ok(Decoded::Done), "{case}: ends with [DONE]");
    assert!(
        chunks
            .iter()
            .all(|c| !c.id.is_empty() && !c.model.is_empty() && c.created > 0),
        "every chunk has an identity"
    );
    FIXTURES.assert_golden(case, &serde_json::to_value(chunks).unwrap());
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
