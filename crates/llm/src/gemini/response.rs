//! Gemini `GenerateContentResponse` → canonical response. The wire types here are shared
//! with the stream decoder, whose events are whole responses.

use serde::Deserialize;
use serde_json::{Value, json};

use super::ErrorBody;
use crate::{
    ChatResponse, Choice, DecodeError, FunctionCall, Message, ResponseMeta, Rest, Role, ToolCall,
    Usage,
};

/// The parts of a `GenerateContentResponse` Sluice reads. `error` is here so a stream event
/// is parsed once whether it is an answer or an error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    pub prompt_feedback: Option<PromptFeedback>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub error: Option<ErrorBody>,
}

impl GenerateContentResponse {
    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let resp: Self = serde_json::from_slice(body).map_err(DecodeError::malformed)?;
        match resp.error {
            Some(err) => Err(DecodeError::Upstream(err.into_upstream())),
            None => Ok(resp),
        }
    }

    /// Why the prompt was refused, when Gemini answered with no candidate at all.
    pub fn block_reason(&self) -> Option<&str> {
        self.prompt_feedback.as_ref()?.block_reason.as_deref()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    pub content: Option<WireContent>,
    pub finish_reason: Option<String>,
}

impl Candidate {
    pub fn parts(&self) -> &[Part] {
        self.content.as_ref().map_or(&[], |c| &c.parts)
    }

    /// The answer's text: every text part that is not a thought summary.
    pub fn text(&self) -> String {
        self.parts()
            .iter()
            .filter(|p| !p.thought)
            .filter_map(|p| p.text.as_deref())
            .collect()
    }

    pub fn function_calls(&self) -> impl Iterator<Item = &WireFunctionCall> {
        self.parts().iter().filter_map(|p| p.function_call.as_ref())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireContent {
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    pub text: Option<String>,
    #[serde(default)]
    pub thought: bool,
    pub function_call: Option<WireFunctionCall>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireFunctionCall {
    pub id: Option<String>,
    pub name: String,
    pub args: Option<Value>,
}

impl WireFunctionCall {
    /// The call id clients see: Gemini's own when it sent one, else one made from the
    /// stream's id and the call's position, so the streamed and whole answers agree.
    pub fn call_id(&self, meta: &ResponseMeta, n: usize) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("call_{}_{}", meta.id, n))
    }

    /// The arguments as compact JSON, `{}` when Gemini sent none.
    pub fn arguments(&self) -> String {
        match &self.args {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(args) => args.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    pub block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub thoughts_token_count: u64,
    pub cached_content_token_count: u64,
}

impl UsageMetadata {
    /// Thinking is billed as output, so it counts as completion tokens and is also
    /// reported as OpenAI's `completion_tokens_details.reasoning_tokens`.
    pub fn to_usage(&self) -> Usage {
        let completion = self.candidates_token_count + self.thoughts_token_count;
        let mut usage = Usage::new(
            self.prompt_token_count,
            completion,
            self.cached_content_token_count,
            0,
        );
        if self.thoughts_token_count > 0 {
            usage.completion_tokens_details =
                Some(json!({"reasoning_tokens": self.thoughts_token_count}));
        }
        usage
    }
}

/// Gemini's `finishReason` in OpenAI's terms. A call to a function ends with `STOP`, which
/// clients know as `tool_calls`.
pub(super) fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        "STOP" if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

pub fn decode_response(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, DecodeError> {
    let resp = GenerateContentResponse::parse(body)?;
    let (message, finish) = match resp.candidates.first() {
        Some(candidate) => {
            let calls: Vec<ToolCall> = candidate
                .function_calls()
                .enumerate()
                .map(|(n, call)| ToolCall {
                    id: call.call_id(meta, n),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: call.arguments(),
                    },
                })
                .collect();
            let mut message = Message::text(Role::Assistant, candidate.text());
            let finish = finish_reason(
                candidate.finish_reason.as_deref().unwrap_or("STOP"),
                !calls.is_empty(),
            );
            if !calls.is_empty() {
                if message.text_content().is_empty() {
                    message.content = None;
                }
                message.tool_calls = Some(calls);
            }
            (message, finish)
        }
        None if resp.block_reason().is_some() => {
            (Message::text(Role::Assistant, ""), "content_filter")
        }
        None => {
            return Err(DecodeError::Malformed(
                "Gemini response has no candidates".into(),
            ));
        }
    };
    Ok(ChatResponse {
        id: resp.response_id.unwrap_or_else(|| meta.id.clone()),
        object: "chat.completion".to_owned(),
        created: meta.created,
        model: resp.model_version.unwrap_or_else(|| meta.model.clone()),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
            rest: Rest::new(),
        }],
        usage: resp.usage_metadata.as_ref().map(UsageMetadata::to_usage),
        system_fingerprint: None,
        rest: Rest::new(),
    })
}
