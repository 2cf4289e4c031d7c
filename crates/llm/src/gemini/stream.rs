//! `streamGenerateContent?alt=sse`: every `data:` event is a whole
//! `GenerateContentResponse` holding the next piece of the answer. There is no `[DONE]`;
//! the event whose candidate has a `finishReason` is the last.

use super::response::{GenerateContentResponse, finish_reason};
use crate::{
    ChatChunk, ChunkChoice, DecodeError, Decoded, Delta, FunctionDelta, ResponseMeta, Role,
    StreamDecoder, ToolCallDelta, Usage,
};

/// Decodes one Gemini stream into canonical chunks: a content/tool-call chunk per event,
/// then a finish chunk and a usage-only chunk when the answer ends.
#[derive(Debug)]
pub struct Stream {
    meta: ResponseMeta,
    /// Gemini's `responseId`/`modelVersion`, taken from the first event that has them so
    /// every chunk of the stream carries the same identity.
    id: Option<String>,
    model: Option<String>,
    role_sent: bool,
    /// Tool calls seen so far: the next call's `index`.
    tool_calls: u32,
    /// Gemini repeats running totals on every event; the latest is the answer's usage.
    usage: Option<Usage>,
    done: bool,
}

impl Stream {
    pub fn new(meta: ResponseMeta) -> Self {
        Stream {
            meta,
            id: None,
            model: None,
            role_sent: false,
            tool_calls: 0,
            usage: None,
            done: false,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        let mut chunk = ChatChunk::new(&self.meta);
        if let Some(id) = &self.id {
            chunk.id.clone_from(id);
        }
        if let Some(model) = &self.model {
            chunk.model.clone_from(model);
        }
        chunk.choices = choices;
        chunk
    }

    /// A chunk with one choice; the first one of the stream says who is speaking.
    fn delta_chunk(&mut self, mut delta: Delta, finish: Option<&str>) -> ChatChunk {
        if !self.role_sent {
            delta.role = Some(Role::Assistant);
            self.role_sent = true;
        }
        let mut choice = ChunkChoice::new(delta);
        choice.finish_reason = finish.map(str::to_owned);
        self.chunk(vec![choice])
    }
}

impl StreamDecoder for Stream {
    /// Gemini names no events; an `event: ping` (from a proxy in front of it) is a
    /// keep-alive whatever its data.
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Decoded, DecodeError> {
        let data = data.trim();
        if self.done {
            return Ok(Decoded::Done);
        }
        if data.is_empty() || event == "ping" {
            return Ok(Decoded::More);
        }
        let resp = GenerateContentResponse::parse(data.as_bytes())?;
        if self.id.is_none() {
            self.id.clone_from(&resp.response_id);
        }
        if self.model.is_none() {
            self.model.clone_from(&resp.model_version);
        }
        if let Some(usage) = &resp.usage_metadata {
            self.usage = Some(usage.to_usage());
        }

        let candidate = resp.candidates.first();
        let finish = match candidate {
            Some(c) => c.finish_reason.as_deref().filter(|r| !r.is_empty()),
            None => resp.block_reason().map(|_| "SAFETY"),
        };
        if let Some(candidate) = candidate {
            let text = candidate.text();
            let calls: Vec<ToolCallDelta> = candidate
                .function_calls()
                .map(|call| {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    ToolCallDelta {
                        index,
                        id: Some(call.call_id(&self.meta, index as usize)),
                        kind: Some("function".to_owned()),
                        function: Some(FunctionDelta {
                            name: Some(call.name.clone()),
                            arguments: Some(call.arguments()),
                        }),
                    }
                })
                .collect();
            if !text.is_empty() || !calls.is_empty() {
                let delta = Delta {
                    content: (!text.is_empty()).then_some(text),
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    ..Delta::default()
                };
                out.push(self.delta_chunk(delta, None));
            }
        }

        let Some(reason) = finish else {
            return Ok(Decoded::More);
        };
        let reason = finish_reason(reason, self.tool_calls > 0);
        out.push(self.delta_chunk(Delta::default(), Some(reason)));
        if let Some(usage) = self.usage.take() {
            let mut chunk = self.chunk(Vec::new());
            chunk.usage = Some(usage);
            out.push(chunk);
        }
        self.done = true;
        Ok(Decoded::Done)
    }
}
