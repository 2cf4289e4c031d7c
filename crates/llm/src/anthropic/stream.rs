//! Anthropic Messages SSE events → canonical chunks.

use std::collections::HashMap;

use serde::Deserialize;

use super::{ErrorBody, WireUsage, finish_reason};
use crate::{
    ChatChunk, ChunkChoice, DecodeError, Decoded, Delta, FunctionDelta, ResponseMeta, Role,
    StreamDecoder, ToolCallDelta,
};

/// Decodes one Anthropic message stream.
///
/// Guarantees: the first chunk carries the assistant role; tool calls are numbered from 0
/// in the order they start (not by content block index), their first chunk carries id and
/// name and later ones only argument pieces; the finish reason comes on a chunk of its
/// own; `message_stop` yields one last chunk with no choices and the usage, then
/// [`Decoded::Done`]. Thinking is dropped.
#[derive(Debug)]
pub struct Stream {
    /// Stream identity: `meta`'s until `message_start` gives the provider's id and model.
    meta: ResponseMeta,
    /// Canonical tool call index of each `tool_use` content block, by block index.
    tool_blocks: HashMap<u64, u32>,
    usage: WireUsage,
}

impl Stream {
    pub fn new(meta: ResponseMeta) -> Self {
        Stream {
            meta,
            tool_blocks: HashMap::new(),
            usage: WireUsage::default(),
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        let mut chunk = ChatChunk::new(&self.meta);
        chunk.choices.push(ChunkChoice {
            finish_reason,
            ..ChunkChoice::new(delta)
        });
        chunk
    }

    fn content(&self, text: String) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_call(&self, call: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping`, `content_block_stop`, and event types added later, which Anthropic's
    /// versioning policy says clients must ignore.
    #[serde(other)]
    Ignored,
}

#[derive(Deserialize)]
struct StartMessage {
    id: Option<String>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    /// Thinking, server tool use and block types added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// `thinking_delta`, `signature_delta`, `citations_delta` and later ones.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

impl StreamDecoder for Stream {
    /// Events are told apart by their data's `type`, which Anthropic always sets to the
    /// SSE event name; the `event` argument only marks pings.
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Decoded, DecodeError> {
        let data = data.trim();
        // A `ping` is a keep-alive whatever its data (`{"type":"ping"}`, or `{}` from
        // proxies).
        if data.is_empty() || event == "ping" {
            return Ok(Decoded::More);
        }
        let event: Event = serde_json::from_str(data).map_err(DecodeError::malformed)?;
        match event {
            Event::MessageStart { message } => {
                if let Some(id) = message.id.filter(|id| !id.is_empty()) {
                    self.meta.id = id;
                }
                if let Some(model) = message.model.filter(|m| !m.is_empty()) {
                    self.meta.model = model;
                }
                if let Some(usage) = message.usage {
                    self.usage.merge(usage);
                }
                let delta = Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Delta::default()
                };
                out.push(self.chunk(delta, None));
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                StartBlock::Text { text } => {
                    if !text.is_empty() {
                        out.push(self.content(text));
                    }
                }
                StartBlock::ToolUse { id, name } => {
                    let n = u32::try_from(self.tool_blocks.len())
                        .map_err(|_| DecodeError::malformed("too many tool calls"))?;
                    self.tool_blocks.insert(index, n);
                    out.push(self.tool_call(ToolCallDelta {
                        index: n,
                        id: Some(id),
                        kind: Some("function".to_owned()),
                        function: Some(FunctionDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }));
                }
                StartBlock::Other => {}
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => {
                    if !text.is_empty() {
                        out.push(self.content(text));
                    }
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    // Server tool blocks (web search, …) also stream input; they are not
                    // the client's to run, so only blocks started as `tool_use` count.
                    if let Some(&n) = self.tool_blocks.get(&index)
                        && !partial_json.is_empty()
                    {
                        out.push(self.tool_call(ToolCallDelta {
                            index: n,
                            id: None,
                            kind: None,
                            function: Some(FunctionDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                        }));
                    }
                }
                BlockDelta::Other => {}
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.usage.merge(usage);
                }
                if let Some(reason) = delta.stop_reason {
                    out.push(self.chunk(Delta::default(), Some(finish_reason(&reason))));
                }
            }
            Event::MessageStop => {
                let mut chunk = ChatChunk::new(&self.meta);
                chunk.usage = Some(self.usage.to_usage());
                out.push(chunk);
                return Ok(Decoded::Done);
            }
            Event::Error { error } => return Err(DecodeError::Upstream(error.into())),
            Event::Ignored => {}
        }
        Ok(Decoded::More)
    }
}
