//! Anthropic Messages API (`POST /v1/messages`): requests, whole responses and streams.
//!
//! The canonical model is OpenAI's, so this module bridges the differences: system prompts
//! move to a top-level `system`, tool calls become `tool_use` blocks, tool results become
//! `tool_result` blocks inside user turns (merged so roles alternate), and usage counts
//! cache reads and writes apart from `input_tokens`, so they are added back into
//! `prompt_tokens`.
//!
//! Layout: `request` encodes, `response` decodes a whole body, `stream` decodes the SSE
//! events; the error envelope and usage, which both decoders read, live here.

mod request;
mod response;
mod stream;

use serde::Deserialize;

use crate::{UpstreamError, Usage};

pub use request::encode_request;
pub use response::decode_response;
pub use stream::Stream;

/// The `anthropic-version` header value the translations in this module are written for.
pub const API_VERSION: &str = "2023-06-01";

/// Reads Anthropic's error envelope, `{"type":"error","error":{"type":…,"message":…}}`, as
/// sent in error bodies and in a stream's `error` event. `kind` is the error's `type`
/// (`overloaded_error`, `rate_limit_error`, …). `None` when the body is not one.
pub fn decode_error(body: &[u8]) -> Option<UpstreamError> {
    let env: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    if env.kind.as_deref().is_some_and(|k| k != "error") {
        return None;
    }
    Some(env.error.into())
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

impl From<ErrorBody> for UpstreamError {
    fn from(e: ErrorBody) -> Self {
        UpstreamError {
            kind: e.kind,
            message: e.message,
            retry_after: None,
        }
    }
}

/// Anthropic's `usage`. In a stream it arrives in pieces (`message_start`, then
/// `message_delta` with cumulative counts), so every field is optional and [`Self::merge`]
/// keeps the newest value of each.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    fn merge(&mut self, newer: WireUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    /// Canonical usage: Anthropic's `input_tokens` excludes cache reads and writes, while
    /// `prompt_tokens` counts every input token, so the three are summed.
    fn to_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let creation = self.cache_creation_input_tokens.unwrap_or(0);
        let input = self.input_tokens.unwrap_or(0) + read + creation;
        Usage::new(input, self.output_tokens.unwrap_or(0), read, creation)
    }
}

/// Maps a `stop_reason` to OpenAI's `finish_reason`. Reasons added after this was written
/// read as `stop`, the only value every client handles as a normal end.
fn finish_reason(stop_reason: &str) -> String {
    let reason = match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    };
    reason.to_owned()
}
