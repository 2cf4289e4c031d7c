//! OpenAI: `POST /v1/chat/completions` and `POST /v1/embeddings`, key in `Authorization: Bearer`.
//!
//! JSON answers are printed with 2-space indents and errors with 4, as the API prints them;
//! stream chunks are compact `data: {…}\n\n` lines ending with `data: [DONE]\n\n`.

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
use serde_json::Value;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        // Azure OpenAI's layout: the deployment in the path, `?api-version=` required,
        // the key in an `api-key` header.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(embeddings),
        )
}

/// For an Azure path, the deployment name (Azure ignores the body's `model`).
fn azure_deployment(uri: &Uri) -> Option<&str> {
    uri.path()
        .strip_prefix("/openai/deployments/")?
        .split('/')
        .next()
}

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

/// What both routes do before answering: record, check the key, play the step out.
async fn accept(
    state: &Shared,
    conn: &Conn,
    received: &Received<'_>,
) -> Result<(Call, Reply), Response> {
    let (body, is_json) = match received.json() {
        Ok(body) => (body, true),
        Err(raw) => (raw, false),
    };
    let azure = azure_deployment(received.uri);
    let api_key = match azure {
        Some(_) => received.header("api-key"),
        None => received
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer ")),
    }
    .unwrap_or_default()
    .to_owned();
    let model = azure
        .map(str::to_owned)
        .unwrap_or_else(|| body["model"].as_str().unwrap_or_default().to_owned());
    let api_version_missing = azure.is_some()
        && !received
            .uri
            .query()
            .unwrap_or_default()
            .contains("api-version=");
    let stream = body["stream"].as_bool().unwrap_or(false);
    let call = state.receive(received, model, api_key, stream, body);
    if api_version_missing {
        let message = "Missing required query parameter: api-version";
        return Err(error(
            &call,
            404,
            message,
            "invalid_request_error",
            None,
            J::Null,
        ));
    }
    if call.api_key.is_empty() {
        return Err(error(
            &call,
            401,
            MISSING_KEY,
            "invalid_request_error",
            None,
            J::Null,
        ));
    }
    if !is_json {
        return Err(error(
            &call,
            400,
            BAD_JSON,
            "invalid_request_error",
            None,
            J::Null,
        ));
    }
    if call.model.is_empty() {
        let message = "you must provide a model parameter";
        return Err(error(
            &call,
            400,
            message,
            "invalid_request_error",
            None,
            J::Null,
        ));
    }
    let reply = settle(state.next_step(&call), &call.model, call.stream, conn).await;
    Ok((call, reply))
}

async fn chat(
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
    let (call, reply) = match accept(&state, &conn, &received).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match reply {
        Reply::Fail(failure) => fail(&call, &failure),
        Reply::Filtered => error(
            &call,
            400,
            FILTERED,
            "invalid_request_error",
            Some("prompt"),
            "content_filter".into(),
        ),
        Reply::Text(answer) if call.stream => {
            let transcript = text_transcript(&call, &answer.text);
            sse::response(EVENT_STREAM, transcript, Pacing::of(&answer))
        }
        Reply::Text(answer) => {
            let message = obj! {
                "role": "assistant",
                "content": answer.text.as_str(),
                "refusal": J::Null,
                "annotations": Vec::<J>::new(),
            };
            completion(&call, message, "stop", tokens::words(&answer.text))
        }
        Reply::ToolCalls(tool_calls) if call.stream => {
            let transcript = tool_transcript(&call, &tool_calls);
            sse::response(EVENT_STREAM, transcript, Pacing::default())
        }
        Reply::ToolCalls(tool_calls) => {
            let entries: Vec<J> = tool_calls
                .iter()
                .enumerate()
                .map(|(index, tool_call)| {
                    obj! {
                        "id": tool_call_id(&call, index),
                        "type": "function",
                        "function": obj! {
                            "name": tool_call.name.as_str(),
                            "arguments": tool_call.arguments_json(),
                        },
                    }
                })
                .collect();
            let message = obj! {
                "role": "assistant",
                "content": J::Null,
                "tool_calls": entries,
                "refusal": J::Null,
                "annotations": Vec::<J>::new(),
            };
            let completion_tokens = tokens::tool_call_tokens(&tool_calls);
            completion(&call, message, "tool_calls", completion_tokens)
        }
    }
}

fn completion(call: &Call, message: J, finish_reason: &str, completion_tokens: u64) -> Response {
    let body = obj! {
        "id": completion_id(call),
        "object": "chat.completion",
        "created": call.created,
        "model": call.model.as_str(),
        "choices": vec![obj! {
            "index": 0u64,
            "message": message,
            "logprobs": J::Null,
            "finish_reason": finish_reason,
        }],
        "usage": usage(call, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    };
    with_request_id(call, json::response(200, JSON, json::pretty(&body, b"  ")))
}

fn usage(call: &Call, completion_tokens: u64) -> J {
    obj! {
        "prompt_tokens": call.prompt.total,
        "completion_tokens": completion_tokens,
        "total_tokens": call.prompt.total + completion_tokens,
        "prompt_tokens_details": obj! { "cached_tokens": call.prompt.cached, "audio_tokens": 0u64 },
        "completion_tokens_details": obj! {
            "reasoning_tokens": 0u64,
            "audio_tokens": 0u64,
            "accepted_prediction_tokens": 0u64,
            "rejected_prediction_tokens": 0u64,
        },
    }
}

/// Builds `data:` lines that share the call's id; `usage: null` rides on every chunk only when
/// the request asked for `stream_options.include_usage`, as the API does.
struct Chunks<'a> {
    call: &'a Call,
    include_usage: bool,
}

impl Chunks<'_> {
    fn new(call: &Call) -> Chunks<'_> {
        let include_usage = call.body["stream_options"]["include_usage"].as_bool() == Some(true);
        Chunks {
            call,
            include_usage,
        }
    }

    fn line(&self, choices: Vec<J>, usage: J) -> String {
        let mut chunk = obj! {
            "id": completion_id(self.call),
            "object": "chat.completion.chunk",
            "created": self.call.created,
            "model": self.call.model.as_str(),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": choices,
        };
        if self.include_usage {
            chunk.push("usage", usage);
        }
        format!("data: {}\n\n", json::compact(&chunk))
    }

    fn delta(&self, delta: J, finish_reason: Option<&str>) -> String {
        let choice = obj! {
            "index": 0u64,
            "delta": delta,
            "logprobs": J::Null,
            "finish_reason": finish_reason,
        };
        self.line(vec![choice], J::Null)
    }

    /// The finish chunk, the usage chunk when asked for, and `[DONE]`.
    fn tail(&self, finish_reason: &str, completion_tokens: u64) -> Vec<String> {
        let mut tail = vec![self.delta(obj! {}, Some(finish_reason))];
        if self.include_usage {
            tail.push(self.line(Vec::new(), usage(self.call, completion_tokens)));
        }
        tail.push("data: [DONE]\n\n".to_owned());
        tail
    }
}

fn text_transcript(call: &Call, text: &str) -> Transcript {
    let chunks = Chunks::new(call);
    let first = obj! { "role": "assistant", "content": "", "refusal": J::Null };
    Transcript {
        head: vec![chunks.delta(first, None)],
        content: tokens::pieces(text)
            .into_iter()
            .map(|piece| chunks.delta(obj! { "content": piece }, None))
            .collect(),
        tail: chunks.tail("stop", tokens::words(text)),
    }
}

/// Call after call, as the API streams parallel tool calls: an opening chunk with the call's
/// `index`, id, name and empty arguments (the first one also carrying the role), then its
/// argument pieces under the same `index`.
fn tool_transcript(call: &Call, tool_calls: &[ToolCall]) -> Transcript {
    let chunks = Chunks::new(call);
    let mut events = Vec::new();
    for (index, tool_call) in tool_calls.iter().enumerate() {
        let opening = vec![obj! {
            "index": index,
            "id": tool_call_id(call, index),
            "type": "function",
            "function": obj! { "name": tool_call.name.as_str(), "arguments": "" },
        }];
        let delta = if index == 0 {
            obj! {
                "role": "assistant",
                "content": J::Null,
                "tool_calls": opening,
                "refusal": J::Null,
            }
        } else {
            obj! { "tool_calls": opening }
        };
        events.push(chunks.delta(delta, None));
        for piece in tokens::argument_pieces(&tool_call.arguments_json()) {
            let tool_call = obj! { "index": index, "function": obj! { "arguments": piece } };
            events.push(chunks.delta(obj! { "tool_calls": vec![tool_call] }, None));
        }
    }
    // The first opening goes out with the headers, as a text answer's role chunk does.
    let content = events.split_off(events.len().min(1));
    Transcript {
        head: events,
        content,
        tail: chunks.tail("tool_calls", tokens::tool_call_tokens(tool_calls)),
    }
}

async fn embeddings(
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
    let (call, reply) = match accept(&state, &conn, &received).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    if let Reply::Fail(failure) = reply {
        return fail(&call, &failure);
    }
    // Token-id inputs are embedded from their JSON text and count one token per id.
    let inputs: Vec<(String, u64)> = match &call.body["input"] {
        Value::String(text) => vec![(text.clone(), tokens::words(text))],
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![(call.body["input"].to_string(), items.len() as u64)]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => (text.clone(), tokens::words(text)),
                other => (
                    other.to_string(),
                    other.as_array().map_or(1, Vec::len) as u64,
                ),
            })
            .collect(),
        _ => {
            let message = "'input' is a required property";
            return error(&call, 400, message, "invalid_request_error", None, J::Null);
        }
    };
    let base64 = call.body["encoding_format"].as_str() == Some("base64");
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let vector = tokens::embedding(text);
            let embedding = if base64 {
                J::from(tokens::base64_f32(&vector))
            } else {
                J::Arr(vector.into_iter().map(J::from).collect())
            };
            obj! { "object": "embedding", "index": index, "embedding": embedding }
        })
        .collect::<Vec<J>>();
    let prompt_tokens: u64 = inputs.iter().map(|(_, count)| count).sum();
    let body = obj! {
        "object": "list",
        "data": data,
        "model": call.model.as_str(),
        "usage": obj! { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    };
    with_request_id(&call, json::response(200, JSON, json::pretty(&body, b"  ")))
}

const MISSING_KEY: &str = "You didn't provide an API key. You need to provide your API key in an \
    Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the \
    password field (with blank username) if you're accessing the API from your browser and are \
    prompted for a username. You can obtain an API key from \
    https://platform.openai.com/account/api-keys.";
const BAD_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely \
    means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
    but what was sent was not valid JSON. If you have trouble figuring out how to fix this, \
    please contact us through our help center at help.openai.com.)";
const FILTERED: &str = "Your request was rejected as a result of our safety system. Your prompt \
    may contain text that is not allowed by our safety system.";
const QUOTA: &str = "You exceeded your current quota, please check your plan and billing \
    details. For more information on this error, read the docs: \
    https://platform.openai.com/docs/guides/error-codes/api-errors.";

fn fail(call: &Call, failure: &Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let wait = retry_after_secs.map_or(String::new(), |secs| {
                format!(" Please try again in {secs}s.")
            });
            let message = format!(
                "Rate limit reached for {} in organization org-mock on requests per min (RPM): \
                 Limit 3, Used 3, Requested 1.{wait} Visit \
                 https://platform.openai.com/account/rate-limits to learn more.",
                call.model
            );
            let response = error(
                call,
                429,
                &message,
                "requests",
                None,
                "rate_limit_exceeded".into(),
            );
            let response = json::with_header(response, "x-ratelimit-limit-requests", "3");
            let response = json::with_header(response, "x-ratelimit-remaining-requests", "0");
            match retry_after_secs {
                Some(secs) => {
                    let response = json::with_header(
                        response,
                        "x-ratelimit-reset-requests",
                        &format!("{secs}s"),
                    );
                    json::with_header(response, "retry-after", &secs.to_string())
                }
                None => response,
            }
        }
        Failure::Unauthorized => {
            let message = format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                mask(&call.api_key)
            );
            error(
                call,
                401,
                &message,
                "invalid_request_error",
                None,
                "invalid_api_key".into(),
            )
        }
        Failure::InsufficientQuota => error(
            call,
            429,
            QUOTA,
            "insufficient_quota",
            None,
            "insufficient_quota".into(),
        ),
        Failure::PaymentRequired => {
            let message = "Billing hard limit has been reached";
            error(
                call,
                402,
                message,
                "invalid_request_error",
                None,
                "billing_hard_limit_reached".into(),
            )
        }
        // Cloudflare answers OpenAI's 502s, with its own field order and a numeric code.
        Failure::Server(502) => {
            let body = obj! {
                "error": obj! {
                    "code": 502u64,
                    "message": "Bad gateway.",
                    "param": J::Null,
                    "type": "cf_bad_gateway",
                },
            };
            with_request_id(
                call,
                json::response(502, JSON, json::pretty(&body, b"    ")),
            )
        }
        Failure::Server(503) => {
            let message = "The server is overloaded or not ready yet.";
            error(call, 503, message, "server_error", None, J::Null)
        }
        Failure::Server(status) => {
            let message =
                "The server had an error while processing your request. Sorry about that!";
            error(call, *status, message, "server_error", None, J::Null)
        }
        Failure::BadRequest(message) => {
            error(call, 400, message, "invalid_request_error", None, J::Null)
        }
        Failure::ContextOverflow => {
            let message = format!(
                "This model's maximum context length is 128000 tokens. However, your messages \
                 resulted in {} tokens. Please reduce the length of the messages.",
                128_000 + call.prompt.total
            );
            error(
                call,
                400,
                &message,
                "invalid_request_error",
                Some("messages"),
                "context_length_exceeded".into(),
            )
        }
    }
}

fn error(
    call: &Call,
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: J,
) -> Response {
    let body = obj! {
        "error": obj! { "message": message, "type": kind, "param": param, "code": code },
    };
    with_request_id(
        call,
        json::response(status, JSON, json::pretty(&body, b"    ")),
    )
}

fn with_request_id(call: &Call, response: Response) -> Response {
    let mut response =
        json::with_header(response, "x-request-id", &format!("req_mock{:06}", call.id));
    for (name, value) in &call.answer_headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            axum::http::HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

fn completion_id(call: &Call) -> String {
    format!("chatcmpl-mock{:06}", call.id)
}

/// The id of the `index`-th tool call of an answer, distinct across calls and answers.
fn tool_call_id(call: &Call, index: usize) -> String {
    format!("call_mock{:06}_{index}", call.id)
}

/// A wrong key as OpenAI echoes it: the first 8 and last 4 characters, stars between.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}
