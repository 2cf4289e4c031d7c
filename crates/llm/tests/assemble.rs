//! Real provider streams, through the provider's decoder and then the [`Assembler`], come
//! out as the assistant message the provider meant: the agent loop's view of a streamed
//! call. Arguments compare as JSON values.
//!
//! Transcripts are byte for byte as the providers sent them. The OpenAI ones,
//! `openai/stream_parallel_tool_calls.in.sse` and `openai/stream_refusal.in.sse`, are
//! `gpt-4o-2024-08-06` streams recorded by openai-python's test suite
//! (`.inline-snapshot/external/<sha256>.bin`, named by the hash of their content:
//! `f82268f2…` and `173417d5…`); the Anthropic and Gemini ones are those their decoders'
//! golden tests use.

mod common;

use common::{Fixtures, sse_events};
use serde_json::{Value, json};
use sluice_llm::assemble::{Assembled, Assembler};
use sluice_llm::{
    Content, Decoded, ResponseMeta, StreamDecoder, ToolCall, anthropic, gemini, openai,
};

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-sluice-1".into(),
        created: 1_754_000_000,
        model: "requested".into(),
    }
}

/// Feeds a transcript to `decoder` event by event and each chunk to an assembler as soon as
/// it is decoded, as the agent loop does while forwarding.
fn assemble(decoder: &mut dyn StreamDecoder, assembler: Assembler, sse: &str) -> Assembled {
    let mut assembler = assembler;
    let mut chunks = Vec::new();
    let mut done = false;
    for (event, data) in sse_events(sse) {
        assert!(!done, "nothing follows the end of the stream");
        let status = decoder
            .decode(&event, &data, &mut chunks)
            .unwrap_or_else(|e| panic!("event {event:?} {data}: {e}"));
        done = status == Decoded::Done;
        chunks.drain(..).for_each(|chunk| assembler.push(&chunk));
    }
    assert!(done, "the transcript is a whole answer");
    assembler.finish()
}

fn openai_case(name: &str) -> Assembled {
    let sse = Fixtures("openai").text(&format!("{name}.in.sse"));
    assemble(&mut openai::Stream::new(meta()), Assembler::default(), &sse)
}

fn anthropic_case(name: &str, assembler: Assembler) -> Assembled {
    let sse = Fixtures("anthropic").text(&format!("stream/{name}.sse"));
    assemble(&mut anthropic::Stream::new(meta()), assembler, &sse)
}

fn tool_calls(out: &Assembled) -> &[ToolCall] {
    out.message.tool_calls.as_deref().unwrap_or_default()
}

/// `(id, name, arguments as JSON)` of every call, in order.
fn summary(out: &Assembled) -> Vec<(&str, &str, Value)> {
    tool_calls(out)
        .iter()
        .map(|call| {
            let args = serde_json::from_str(&call.function.arguments)
                .unwrap_or_else(|e| panic!("{}: arguments are not JSON: {e}", call.function.name));
            (call.id.as_str(), call.function.name.as_str(), args)
        })
        .collect()
}

fn text(out: &Assembled) -> Option<&str> {
    match &out.message.content {
        Some(Content::Text(text)) => Some(text),
        other => panic!("content is a string or nothing, got {other:?}"),
    }
}

#[test]
fn openai_parallel_tool_calls() {
    let out = openai_case("stream_parallel_tool_calls");
    assert_eq!(
        summary(&out),
        [
            (
                "call_JMW1whyEaYG438VE1OIflxA2",
                "GetWeatherArgs",
                json!({"city": "Edinburgh", "country": "GB", "units": "c"})
            ),
            (
                "call_DNYTawLBoN8fj3KN6qU9N1Ou",
                "get_stock_price",
                json!({"ticker": "AAPL", "exchange": "NASDAQ"})
            ),
        ],
        "both calls, each from its own argument pieces, in index order"
    );
    assert_eq!(out.message.content, None, "the answer is tool calls only");
    assert_eq!(out.finish_reason.as_deref(), Some("tool_calls"));
    let usage = out
        .usage
        .as_ref()
        .expect("the usage chunk after the finish");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (149, 60));
    assert!(!out.truncated);
    assert_eq!(out.malformed_tool_calls().count(), 0);
}

#[test]
fn openai_refusal() {
    let out = openai_case("stream_refusal");
    assert_eq!(
        out.message.refusal.as_deref(),
        Some("I'm sorry, I can't assist with that request.")
    );
    assert_eq!(text(&out), Some(""), "no text, but replayable content");
    assert_eq!(out.message.tool_calls, None);
    assert_eq!(out.finish_reason.as_deref(), Some("stop"));
}

#[test]
fn anthropic_text_then_tool_use() {
    let out = anthropic_case("tool_use", Assembler::default());
    assert_eq!(
        text(&out),
        Some("Okay, let's check the weather for San Francisco, CA:")
    );
    assert_eq!(
        summary(&out),
        [(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "get_weather",
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        )]
    );
    assert_eq!(out.finish_reason.as_deref(), Some("tool_calls"));
    let usage = out.usage.as_ref().expect("message_stop carries the usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (472, 89));
}

#[test]
fn anthropic_parallel_tool_use_with_cache() {
    let out = anthropic_case("parallel_tools_cached", Assembler::default());
    assert_eq!(text(&out), Some("I'll look up both cities."));
    assert_eq!(
        summary(&out),
        [
            (
                "toolu_01QfZ8Ws7dG5X4qeHnU2VRyd",
                "get_weather",
                json!({"city": "Paris"})
            ),
            (
                "toolu_01Hm4aS3cW2GxJzLqK9pR7tB",
                "get_weather",
                json!({"city": "Tokyo"})
            ),
        ]
    );
    let usage = out.usage.as_ref().expect("message_stop carries the usage");
    assert_eq!(usage.cached_tokens(), 2841);
    assert_eq!(usage.prompt_tokens, 9 + 2841, "cache reads count as input");
}

/// A cap that falls inside the arguments leaves a call the loop must not run, and says so.
#[test]
fn anthropic_tool_use_cut_by_the_cap() {
    let whole = anthropic_case("tool_use", Assembler::default());
    let whole_args = &tool_calls(&whole)[0].function.arguments;
    let text_len = "Okay, let's check the weather for San Francisco, CA:".len();
    // Room for the text, the call (id, type, name and its fixed charge) and a few bytes
    // of its arguments.
    let out = anthropic_case("tool_use", Assembler::with_limit(text_len + 120));
    assert!(out.truncated);
    assert_eq!(
        text(&out),
        Some("Okay, let's check the weather for San Francisco, CA:"),
        "text before the cap is whole"
    );
    let [cut] = tool_calls(&out) else {
        panic!("one call: {:?}", out.message.tool_calls);
    };
    assert_eq!(cut.function.name, "get_weather");
    assert!(
        !cut.function.arguments.is_empty()
            && whole_args.starts_with(&cut.function.arguments)
            && cut.function.arguments.len() < whole_args.len(),
        "arguments cut at the cap: {:?}",
        cut.function.arguments
    );
    let malformed: Vec<&str> = out
        .malformed_tool_calls()
        .map(|call| call.id.as_str())
        .collect();
    assert_eq!(malformed, ["toolu_01T1x1fJ34qAmk2tNTrN7Up6"]);
    assert_eq!(
        out.finish_reason.as_deref(),
        Some("tool_calls"),
        "still known"
    );
}

#[test]
fn gemini_text_and_parallel_function_calls() {
    let sse = Fixtures("gemini").text("stream_tool_call.in.sse");
    let out = assemble(&mut gemini::Stream::new(meta()), Assembler::default(), &sse);
    assert_eq!(text(&out), Some("I'll check both cities."));
    assert_eq!(
        summary(&out),
        [
            (
                "call_chatcmpl-sluice-1_0",
                "get_weather",
                json!({"city": "Paris", "unit": "celsius"})
            ),
            (
                "call_chatcmpl-sluice-1_1",
                "get_weather",
                json!({"city": "Tokyo", "unit": "celsius"})
            ),
        ]
    );
    assert_eq!(out.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(out.usage.map(|u| u.completion_tokens), Some(144));
}
