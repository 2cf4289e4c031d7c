//! Anthropic Messages: `POST /v1/messages`, key in `x-api-key`, `anthropic-version` required.
//!
//! Everything is compact JSON; streams are `event: NAME\ndata: {…}\n\n` from `message_start`
//! to `message_stop`.

use crate::json::{self, J, obj};
use crate::script::{Failure, Reply, ToolCall, settle};
use crate::server::Conn;
use crate::sse::{self, Pacing, Transcript};
use crate::state::{Call, Received, Shared};
use crate::tokens;
use axum::Router;
use axum::extract::{self, Extension};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1/messages", post(messages))
}

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

async fn messages(
    extract::State(state): extract::State<Shared>,
    Extension(conn): Extension<Conn>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Received {
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let (body, is_json) = match received.json() {
        Ok(body) => (body, true),
        Err(raw) => (raw, false),
    };
    let api_key = received.header("x-api-key").unwrap_or_default().to_owned();
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let has_version = received.header("anthropic-version").is_some();
    let call = state.receive(&received, model, api_key, stream, body);
    if call.api_key.is_empty() {
        let message = "x-api-key header is required";
        return error(&call, 401, "authentication_error", message);
    }
    if !has_version {
        let message = "anthropic-version: header is required";
        return error(&call, 400, "invalid_request_error", message);
    }
    if !is_json {
        let message = "There was an error parsing the body of your request as JSON.";
        return error(&call, 400, "invalid_request_error", message);
    }
    if call.model.is_empty() {
        return error(&call, 400, "invalid_request_error", "model: Field required");
    }

    match settle(state.next_step(&call), &call.model, call.stream, &conn).await {
        Reply::Fail(failure) => fail(&call, &failure),
        Reply::Text(answer) => {
            let blocks = [Block::Text(&answer.text)];
            if call.stream {
                return sse::response(
                    EVENT_STREAM,
                    transcript(&call, &blocks, "end_turn"),
                    Pacing::of(&answer),
                );
            }
            message(&call, &blocks, "end_turn")
        }
        Reply::ToolCalls(tool_calls) => {
            let blocks: Vec<Block<'_>> = tool_calls.iter().map(Block::ToolUse).collect();
            if call.stream {
                return sse::response(
                    EVENT_STREAM,
                    transcript(&call, &blocks, "tool_use"),
                    Pacing::default(),
                );
            }
            message(&call, &blocks, "tool_use")
        }
        // Claude's streaming classifiers stop a reply with `refusal`; nothing is said.
        Reply::Filtered if call.stream => sse::response(
            EVENT_STREAM,
            transcript(&call, &[], "refusal"),
            Pacing::default(),
        ),
        Reply::Filtered => message(&call, &[], "refusal"),
    }
}

/// A content block of an answer: one text block, or one `tool_use` block per tool call.
#[derive(Clone, Copy)]
enum Block<'a> {
    Text(&'a str),
    ToolUse(&'a ToolCall),
}

impl Block<'_> {
    fn output_tokens(self) -> u64 {
        match self {
            Block::Text(text) => tokens::words(text),
            Block::ToolUse(tool_call) => tokens::tool_call_tokens(std::slice::from_ref(tool_call)),
        }
    }

    /// The block at `index` whole, or as `content_block_start` opens it (empty text, empty
    /// input).
    fn json(self, call: &Call, index: usize, whole: bool) -> J {
        match self {
            Block::Text(text) => obj! { "type": "text", "text": if whole { text } else { "" } },
            Block::ToolUse(tool_call) => obj! {
                "type": "tool_use",
                "id": format!("toolu_mock{:06}_{index}", call.id),
                "name": tool_call.name.as_str(),
                "input": if whole { J::from(tool_call.arguments.clone()) } else { obj! {} },
            },
        }
    }

    fn deltas(self) -> Vec<J> {
        match self {
            Block::Text(text) => tokens::pieces(text)
                .into_iter()
                .map(|piece| obj! { "type": "text_delta", "text": piece })
                .collect(),
            Block::ToolUse(tool_call) => tokens::argument_pieces(&tool_call.arguments_json())
                .into_iter()
                .map(|piece| obj! { "type": "input_json_delta", "partial_json": piece })
                .collect(),
        }
    }
}

fn usage(call: &Call, output_tokens: u64) -> J {
    obj! {
        "input_tokens": call.prompt.total - call.prompt.cached,
        "cache_creation_input_tokens": 0u64,
        "cache_read_input_tokens": call.prompt.cached,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
}

fn message_json(call: &Call, content: Vec<J>, stop_reason: Option<&str>, output_tokens: u64) -> J {
    obj! {
        "id": format!("msg_mock{:06}", call.id),
        "type": "message",
        "role": "assistant",
        "model": call.model.as_str(),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": J::Null,
        "usage": usage(call, output_tokens),
    }
}

fn message(call: &Call, blocks: &[Block<'_>], stop_reason: &str) -> Response {
    let content = blocks
        .iter()
        .enumerate()
        .map(|(index, block)| block.json(call, index, true))
        .collect();
    let output_tokens = blocks.iter().map(|block| block.output_tokens()).sum();
    let body = message_json(call, content, Some(stop_reason), output_tokens);
    with_request_id(call, json::response(200, JSON, json::compact(&body)))
}

fn event(name: &str, data: &J) -> String {
    format!("event: {name}\ndata: {}\n\n", json::compact(data))
}

/// The API really sends the ping with a space after the colon.
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Block after block, as the API streams them: `content_block_start`, its deltas,
/// `content_block_stop`. The first block opens with the headers (the ping follows it); later
/// blocks' starts and stops go out between the deltas.
fn transcript(call: &Call, blocks: &[Block<'_>], stop_reason: &str) -> Transcript {
    let start =
        obj! { "type": "message_start", "message": message_json(call, Vec::new(), None, 1) };
    let mut head = vec![event("message_start", &start)];
    let mut content = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let open = obj! {
            "type": "content_block_start",
            "index": index,
            "content_block": block.json(call, index, false),
        };
        let open = event("content_block_start", &open);
        if index == 0 {
            head.push(open);
        } else {
            let stop = obj! { "type": "content_block_stop", "index": index - 1 };
            content.push(event("content_block_stop", &stop));
            content.push(open);
        }
        content.extend(block.deltas().into_iter().map(|delta| {
            let data = obj! { "type": "content_block_delta", "index": index, "delta": delta };
            event("content_block_delta", &data)
        }));
    }
    head.push(PING.to_owned());
    let mut tail = Vec::new();
    if let Some(last) = blocks.len().checked_sub(1) {
        let stop = obj! { "type": "content_block_stop", "index": last };
        tail.push(event("content_block_stop", &stop));
    }
    let output_tokens: u64 = blocks.iter().map(|block| block.output_tokens()).sum();
    let delta = obj! {
        "type": "message_delta",
        "delta": obj! { "stop_reason": stop_reason, "stop_sequence": J::Null },
        "usage": obj! { "output_tokens": output_tokens },
    };
    tail.push(event("message_delta", &delta));
    tail.push(event("message_stop", &obj! { "type": "message_stop" }));
    Transcript {
        head,
        content,
        tail,
    }
}

fn fail(call: &Call, failure: &Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let message = "This request would exceed the rate limit for your organization of 50 \
                requests per minute. For details, refer to: \
                https://docs.claude.com/en/api/rate-limits. You can see the response headers for \
                current usage. Please reduce the prompt length or the maximum tokens requested, \
                or try again later. You may also contact sales at \
                https://www.anthropic.com/contact-sales to discuss your options for a rate limit \
                increase.";
            let response = error(call, 429, "rate_limit_error", message);
            let response = json::with_header(response, "anthropic-ratelimit-requests-limit", "50");
            let response =
                json::with_header(response, "anthropic-ratelimit-requests-remaining", "0");
            match retry_after_secs {
                Some(secs) => json::with_header(response, "retry-after", &secs.to_string()),
                None => response,
            }
        }
        Failure::Unauthorized => error(call, 401, "authentication_error", "invalid x-api-key"),
        Failure::InsufficientQuota => {
            let message = "Your credit balance is too low to access the Anthropic API. Please go \
                to Plans & Billing to upgrade or purchase credits.";
            error(call, 400, "invalid_request_error", message)
        }
        Failure::PaymentRequired => {
            let message = "This request could not be billed. Please check the payment method in \
                Plans & Billing.";
            error(call, 402, "billing_error", message)
        }
        Failure::Server(529) => error(call, 529, "overloaded_error", "Overloaded"),
        Failure::Server(504) => error(call, 504, "timeout_error", "Request timed out"),
        Failure::Server(status) => error(call, *status, "api_error", "Internal server error"),
        Failure::BadRequest(message) => error(call, 400, "invalid_request_error", message),
        Failure::ContextOverflow => {
            let message = format!(
                "prompt is too long: {} tokens > 200000 maximum",
                200_000 + call.prompt.total
            );
            error(call, 400, "invalid_request_error", &message)
        }
    }
}

fn error(call: &Call, status: u16, kind: &str, message: &str) -> Response {
    let body = obj! {
        "type": "error",
        "error": obj! { "type": kind, "message": message },
        "request_id": request_id(call),
    };
    with_request_id(call, json::response(status, JSON, json::compact(&body)))
}

fn request_id(call: &Call) -> String {
    format!("req_mock{:06}", call.id)
}

fn with_request_id(call: &Call, response: Response) -> Response {
    json::with_header(response, "request-id", &request_id(call))
}
