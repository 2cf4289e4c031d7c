//! Gemini (v1beta): `POST /v1beta/models/{model}:{action}` for `generateContent`,
//! `streamGenerateContent`, `embedContent` and `batchEmbedContents`; key in `x-goog-api-key`
//! or `?key=`.
//!
//! JSON is printed with 2-space indents; SSE events (`?alt=sse`) are Google's one-line layout
//! ending in `\r\n\r\n`. Without `alt=sse` a stream is one JSON array sent piece by piece, as
//! the API does. Zero counts are left out, as proto3 JSON leaves them out.

use crate::json::{self, J, obj};
use crate::script::{Failure, Reply, ToolCall, settle};
use crate::server::Conn;
use crate::sse::{self, Pacing, Transcript};
use crate::state::{Call, Received, Shared};
use crate::tokens;
use axum::Router;
use axum::extract::{self, Extension, Path};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1beta/models/{target}", post(models))
}

const JSON: &str = "application/json; charset=UTF-8";
const EVENT_STREAM: &str = "text/event-stream";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Generate,
    Stream,
    Embed,
    BatchEmbed,
}

async fn models(
    extract::State(state): extract::State<Shared>,
    Extension(conn): Extension<Conn>,
    Path(target): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, action) = target.rsplit_once(':').unwrap_or((target.as_str(), ""));
    let action = match action {
        "generateContent" => Action::Generate,
        "streamGenerateContent" => Action::Stream,
        "embedContent" => Action::Embed,
        "batchEmbedContents" => Action::BatchEmbed,
        _ => {
            let message = format!(
                "models/{model} is not found for API version v1beta, or is not supported for \
                 {action}. Call ListModels to see the list of available models and their \
                 supported methods."
            );
            return error(404, &message, "NOT_FOUND", Vec::new());
        }
    };
    let received = Received {
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let (body, is_json) = match received.json() {
        Ok(body) => (body, true),
        Err(raw) => (raw, false),
    };
    let api_key = received
        .header("x-goog-api-key")
        .or_else(|| received.query("key"))
        .unwrap_or_default()
        .to_owned();
    let stream = action == Action::Stream;
    let sse = received.query("alt") == Some("sse");
    let call = state.receive(&received, model.to_owned(), api_key, stream, body);
    if call.api_key.is_empty() {
        let message = "Method doesn't allow unregistered callers (callers without established \
            identity). Please use API key or other form of API consumer identity to call this API.";
        return error(403, message, "PERMISSION_DENIED", Vec::new());
    }
    if !is_json {
        return error(
            400,
            "Invalid JSON payload received.",
            "INVALID_ARGUMENT",
            Vec::new(),
        );
    }

    let reply = settle(state.next_step(&call), &call.model, call.stream, &conn).await;
    let embedding = matches!(action, Action::Embed | Action::BatchEmbed);
    let (answer, pacing) = match reply {
        Reply::Fail(failure) => return fail(&call, &failure),
        _ if embedding => return embed(&call, action),
        Reply::Text(answer) => {
            let pacing = Pacing::of(&answer);
            (Answer::Text(answer.text), pacing)
        }
        Reply::ToolCalls(tool_calls) => (Answer::Calls(tool_calls), Pacing::default()),
        Reply::Filtered => (Answer::Safety, Pacing::default()),
    };
    if !stream {
        let body = answer.whole(&call);
        return json::response(200, JSON, json::pretty(&body, b"  "));
    }
    let (content, tail) = answer.chunks(&call);
    if sse {
        let event = |chunk: &J| format!("data: {}\r\n\r\n", json::google_line(chunk));
        let transcript = Transcript {
            head: Vec::new(),
            content: content.iter().map(event).collect(),
            tail: tail.iter().map(event).collect(),
        };
        return sse::response(EVENT_STREAM, transcript, pacing);
    }
    // `[{…}\n,\r\n{…}\n]`: each element printed whole, the separator before all but the first.
    let element = |(i, chunk): (usize, &J)| {
        let separator = if i == 0 { "" } else { ",\r\n" };
        format!("{separator}{}", json::pretty(chunk, b"  "))
    };
    let mut pieces: Vec<String> = content
        .iter()
        .chain(&tail)
        .enumerate()
        .map(element)
        .collect();
    let tail_pieces = pieces.split_off(content.len());
    let transcript = Transcript {
        head: vec!["[".to_owned()],
        content: pieces,
        tail: tail_pieces.into_iter().chain(["]".to_owned()]).collect(),
    };
    sse::response(JSON, transcript, pacing)
}

/// A successful answer before it is laid out whole or in chunks.
enum Answer {
    Text(String),
    /// One `functionCall` part per call, in one candidate.
    Calls(Vec<ToolCall>),
    Safety,
}

impl Answer {
    fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(text) => tokens::words(text),
            Answer::Calls(tool_calls) => tokens::tool_call_tokens(tool_calls),
            Answer::Safety => 0,
        }
    }

    fn whole(&self, call: &Call) -> J {
        let candidate = match self {
            Answer::Text(text) => candidate(vec![obj! { "text": text }], Some("STOP")),
            Answer::Calls(tool_calls) => {
                let parts = tool_calls
                    .iter()
                    .map(|tool_call| {
                        let function_call = obj! {
                            "name": tool_call.name.as_str(),
                            "args": tool_call.arguments.clone(),
                        };
                        obj! { "functionCall": function_call }
                    })
                    .collect();
                candidate(parts, Some("STOP"))
            }
            Answer::Safety => blocked(),
        };
        response(call, candidate, usage(call, Some(self.output_tokens())))
    }

    /// The content chunks (one per word) and the closing chunk with the finish reason and the
    /// full usage. Function calls come whole in one closing chunk, parallel ones as parts of
    /// one candidate, as Gemini sends them.
    fn chunks(&self, call: &Call) -> (Vec<J>, Vec<J>) {
        match self {
            Answer::Text(text) => {
                let content = tokens::pieces(text)
                    .into_iter()
                    .map(|piece| {
                        let candidate = candidate(vec![obj! { "text": piece }], None);
                        response(call, candidate, usage(call, None))
                    })
                    .collect();
                let last = candidate(vec![obj! { "text": "" }], Some("STOP"));
                (
                    content,
                    vec![response(
                        call,
                        last,
                        usage(call, Some(self.output_tokens())),
                    )],
                )
            }
            Answer::Calls(_) | Answer::Safety => (Vec::new(), vec![self.whole(call)]),
        }
    }
}

fn candidate(parts: Vec<J>, finish_reason: Option<&str>) -> J {
    let mut candidate = obj! { "content": obj! { "parts": parts, "role": "model" } };
    if let Some(reason) = finish_reason {
        candidate.push("finishReason", reason);
    }
    candidate.push("index", 0u64);
    candidate
}

/// A candidate stopped by the safety filter: no content, the rating that blocked it.
fn blocked() -> J {
    let rating = |category: &str, probability: &str| obj! { "category": category, "probability": probability };
    let mut harassment = rating("HARM_CATEGORY_HARASSMENT", "HIGH");
    harassment.push("blocked", true);
    obj! {
        "finishReason": "SAFETY",
        "index": 0u64,
        "safetyRatings": vec![
            rating("HARM_CATEGORY_SEXUALLY_EXPLICIT", "NEGLIGIBLE"),
            rating("HARM_CATEGORY_HATE_SPEECH", "NEGLIGIBLE"),
            harassment,
            rating("HARM_CATEGORY_DANGEROUS_CONTENT", "NEGLIGIBLE"),
        ],
    }
}

fn response(call: &Call, candidate: J, usage: J) -> J {
    obj! {
        "candidates": vec![candidate],
        "usageMetadata": usage,
        "modelVersion": call.model.as_str(),
        "responseId": format!("mock{:06}", call.id),
    }
}

/// Usage so far: the prompt alone mid-stream (`None`), with the answer's tokens at the end.
fn usage(call: &Call, output_tokens: Option<u64>) -> J {
    let prompt = call.prompt.total;
    let output = output_tokens.unwrap_or(0);
    let mut usage = obj! { "promptTokenCount": prompt };
    if output > 0 {
        usage.push("candidatesTokenCount", output);
    }
    usage.push("totalTokenCount", prompt + output);
    if call.prompt.cached > 0 {
        usage.push("cachedContentTokenCount", call.prompt.cached);
    }
    let details = obj! { "modality": "TEXT", "tokenCount": prompt };
    usage.push("promptTokensDetails", vec![details]);
    usage
}

/// `embedContent` → `{"embedding": {"values": […]}}`; `batchEmbedContents` →
/// `{"embeddings": [{"values": […]}, …]}`, one per request, from the text of its parts.
fn embed(call: &Call, action: Action) -> Response {
    let values = |content: &Value| {
        let texts: Vec<&str> = content["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|part| part["text"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let vector = tokens::embedding(&texts.join(" "));
        obj! { "values": J::Arr(vector.into_iter().map(J::from).collect()) }
    };
    let body = if action == Action::Embed {
        obj! { "embedding": values(&call.body["content"]) }
    } else {
        let requests = call.body["requests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let embeddings: Vec<J> = requests
            .iter()
            .map(|request| values(&request["content"]))
            .collect();
        obj! { "embeddings": embeddings }
    };
    json::response(200, JSON, json::pretty(&body, b"  "))
}

const QUOTA: &str = "You exceeded your current quota, please check your plan and billing \
    details. For more information on this error, head to: \
    https://ai.google.dev/gemini-api/docs/rate-limits.";

fn fail(call: &Call, failure: &Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let details = retry_after_secs
                .map(|secs| {
                    obj! {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{secs}s"),
                    }
                })
                .into_iter()
                .collect();
            let message = "Resource has been exhausted (e.g. check quota).";
            let response = error(429, message, "RESOURCE_EXHAUSTED", details);
            match retry_after_secs {
                Some(secs) => json::with_header(response, "retry-after", &secs.to_string()),
                None => response,
            }
        }
        // The real API says 400 INVALID_ARGUMENT for a bad key; the mock answers 401 as every
        // format does, with the same `API_KEY_INVALID` reason.
        Failure::Unauthorized => {
            let info = obj! {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": obj! { "service": "generativelanguage.googleapis.com" },
            };
            let message = "API key not valid. Please pass a valid API key.";
            error(401, message, "UNAUTHENTICATED", vec![info])
        }
        Failure::InsufficientQuota => {
            let violation = obj! {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                "quotaDimensions": obj! { "location": "global", "model": call.model.as_str() },
                "quotaValue": "0",
            };
            let failure = obj! {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": vec![violation],
            };
            let help = obj! {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": vec![obj! {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }],
            };
            error(429, QUOTA, "RESOURCE_EXHAUSTED", vec![failure, help])
        }
        // Gemini has no 402; billing problems come as FAILED_PRECONDITION.
        Failure::PaymentRequired => {
            let message = "Billing is not enabled for this project. Enable billing on your \
                project in Google AI Studio to continue.";
            error(402, message, "FAILED_PRECONDITION", Vec::new())
        }
        Failure::Server(500) => {
            let message = "An internal error has occurred. Please retry or report in \
                https://developers.generativeai.google/guide/troubleshooting";
            error(500, message, "INTERNAL", Vec::new())
        }
        Failure::Server(503) => {
            let message = "The model is overloaded. Please try again later.";
            error(503, message, "UNAVAILABLE", Vec::new())
        }
        Failure::Server(504) => error(
            504,
            "Deadline expired before operation could complete.",
            "DEADLINE_EXCEEDED",
            Vec::new(),
        ),
        Failure::Server(status) => error(
            *status,
            "The service is currently unavailable.",
            "UNAVAILABLE",
            Vec::new(),
        ),
        Failure::BadRequest(message) => error(400, message, "INVALID_ARGUMENT", Vec::new()),
        Failure::ContextOverflow => {
            let message = format!(
                "The input token count ({}) exceeds the maximum number of tokens allowed \
                 (1048576).",
                1_048_576 + call.prompt.total
            );
            error(400, &message, "INVALID_ARGUMENT", Vec::new())
        }
    }
}

fn error(code: u16, message: &str, status: &str, details: Vec<J>) -> Response {
    let mut error = obj! { "code": code, "message": message, "status": status };
    if !details.is_empty() {
        error.push("details", details);
    }
    json::response(code, JSON, json::pretty(&obj! { "error": error }, b"  "))
}
