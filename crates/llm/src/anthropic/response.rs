//! Anthropic Messages response body → canonical response.

use serde::Deserialize;
use serde_json::Value;

use super::{WireUsage, decode_error, finish_reason};
use crate::{
    ChatResponse, Choice, Content, DecodeError, FunctionCall, Message, ResponseMeta, Rest, Role,
    ToolCall,
};

#[derive(Deserialize)]
struct WireMessage {
    id: Option<String>,
    model: Option<String>,
    /// Required, though it may be empty: a body without it is not a message.
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, redacted thinking, server tool blocks and any type added later: none has
    /// a place in a chat completion.
    #[serde(other)]
    Other,
}

/// A whole (non-streamed) response. The id and model are the provider's when it gives
/// them, else `meta`'s; `created` is always `meta`'s.
pub fn decode_response(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, DecodeError> {
    if let Some(err) = decode_error(body) {
        return Err(DecodeError::Upstream(err));
    }
    let wire: WireMessage = serde_json::from_slice(body).map_err(DecodeError::malformed)?;

    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in wire.content {
        match block {
            WireBlock::Text { text: t } => text.push_str(&t),
            WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name,
                    arguments: arguments(&input),
                },
            }),
            WireBlock::Other => {}
        }
    }

    let message = Message {
        role: Role::Assistant,
        content: (!text.is_empty()).then_some(Content::Text(text)),
        name: None,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        tool_call_id: None,
        refusal: None,
        rest: Rest::new(),
    };
    let choice = Choice {
        index: 0,
        message,
        finish_reason: wire.stop_reason.as_deref().map(finish_reason),
        logprobs: None,
        rest: Rest::new(),
    };
    Ok(ChatResponse {
        id: wire.id.unwrap_or_else(|| meta.id.clone()),
        object: "chat.completion".to_owned(),
        created: meta.created,
        model: wire.model.unwrap_or_else(|| meta.model.clone()),
        choices: vec![choice],
        usage: wire.usage.map(WireUsage::to_usage),
        system_fingerprint: None,
        rest: Rest::new(),
    })
}

/// A tool_use `input` as OpenAI's `arguments`: compact JSON, `{}` when absent.
fn arguments(input: &Value) -> String {
    if input.is_null() {
        "{}".to_owned()
    } else {
        input.to_string()
    }
}
