//! Streamed chunks → the one assistant message they spell out.
//!
//! A caller that forwards a stream as it arrives (the agent loop) still needs the whole
//! answer afterwards: its text to append to history, its tool calls to run. [`Assembler`]
//! folds the canonical chunks of any provider's stream into that message, with the finish
//! reason and the usage, and nothing else: no I/O, no clock, no parsing of arguments.
//!
//! Rules, in the order a stream exercises them:
//! - Only choice 0 counts; chunks for other choices (`n > 1`) are ignored.
//! - Text and refusal pieces are concatenated. Empty pieces are not text: Anthropic's
//!   `message_start` and OpenAI's first chunk carry `""` before any word.
//! - Tool call pieces are grouped by [`ToolCallDelta::index`], which need not start at 0,
//!   be contiguous or arrive in order; the message lists the calls by ascending index.
//! - Per call, the first non-empty `id` and `type` win (some servers repeat them on every
//!   piece); `arguments` pieces are concatenated; `name` pieces are concatenated too,
//!   except that a piece equal to the whole name so far is a repeat and is skipped, so a
//!   server that resends the full name with every piece does not get it doubled (the cost:
//!   a name genuinely split into two equal halves, `ab` + `ab`, reads as `ab`).
//! - A call that never got an id is given `call_{index}`, stable for a given stream.
//! - The finish reason is the last one choice 0 named; the usage is the last one any chunk
//!   carried (OpenAI and Anthropic send it on a final chunk with no choices).
//! - Reasoning and any delta field outside text, refusal and tool calls is not kept.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::{
    ChatChunk, Content, Delta, FunctionCall, Message, Rest, Role, ToolCall, ToolCallDelta, Usage,
};

/// What a tool call costs against the byte cap before any of its text: a stream that opens
/// call after call with empty pieces would otherwise grow without bound at no cost.
const TOOL_CALL_OVERHEAD: usize = 64;

/// Folds a stream's chunks, in order, into one [`Assembled`] answer.
///
/// Memory is bounded only with [`Assembler::with_limit`]; [`Assembler::default`] keeps
/// everything, for callers whose stream is already capped upstream.
#[derive(Debug, Default)]
pub struct Assembler {
    budget: Budget,
    text: String,
    refusal: String,
    /// Calls by their stream index; a `BTreeMap` so they come out in index order.
    tool_calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

/// The assembled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    /// Role `assistant`. `content` is `None` when the answer is tool calls and no text;
    /// an answer with neither (empty, refusal only, or cut before any output) gets
    /// `Some("")`, since OpenAI refuses an assistant message with neither content nor tool
    /// calls when history is replayed. `tool_calls` is `None` when there are none.
    pub message: Message,
    /// The last finish reason choice 0 named; `None` when the stream was cut before it.
    pub finish_reason: Option<String>,
    /// The last usage the stream reported.
    pub usage: Option<Usage>,
    /// The byte cap was reached: text, refusal or tool calls past it were dropped, so the
    /// message is incomplete and a cut tool call's arguments are likely not valid JSON.
    pub truncated: bool,
}

impl Assembler {
    /// An assembler that keeps at most `bytes` bytes of text, refusal, tool call ids,
    /// names and arguments together (plus a small fixed charge per tool call). Past the
    /// cap, further content is dropped and [`Assembled::truncated`] is set; the finish
    /// reason and usage are still recorded.
    pub fn with_limit(bytes: usize) -> Self {
        Assembler {
            budget: Budget {
                limit: Some(bytes),
                ..Budget::default()
            },
            ..Assembler::default()
        }
    }

    /// Adds one chunk. Chunks must come in stream order.
    pub fn push(&mut self, chunk: &ChatChunk) {
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            self.push_delta(&choice.delta);
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
            }
        }
    }

    fn push_delta(&mut self, delta: &Delta) {
        if let Some(text) = &delta.content {
            self.budget.append(&mut self.text, text);
        }
        if let Some(refusal) = &delta.refusal {
            self.budget.append(&mut self.refusal, refusal);
        }
        for call in delta.tool_calls.iter().flatten() {
            self.push_tool_call(call);
        }
    }

    fn push_tool_call(&mut self, piece: &ToolCallDelta) {
        let budget = &mut self.budget;
        let call = match self.tool_calls.entry(piece.index) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                if !budget.admit(TOOL_CALL_OVERHEAD) {
                    return;
                }
                entry.insert(PartialCall::default())
            }
        };
        call.push(budget, piece);
    }

    /// The answer as it stands: complete when the stream ended with a finish reason.
    pub fn finish(self) -> Assembled {
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .into_iter()
            .map(|(index, call)| call.finish(index))
            .collect();
        let content = match (self.text.is_empty(), tool_calls.is_empty()) {
            (false, _) => Some(Content::Text(self.text)),
            (true, false) => None,
            (true, true) => Some(Content::Text(String::new())),
        };
        let message = Message {
            role: Role::Assistant,
            content,
            name: None,
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            tool_call_id: None,
            refusal: (!self.refusal.is_empty()).then_some(self.refusal),
            rest: Rest::new(),
        };
        Assembled {
            message,
            finish_reason: self.finish_reason,
            usage: self.usage,
            truncated: self.budget.exhausted,
        }
    }
}

impl Assembled {
    /// The tool calls a caller cannot run as they are: an empty name, or arguments that
    /// are not a JSON object (see [`ToolCall::arguments_object`]; empty arguments are
    /// `{}` and fine). The agent loop still owes each of them a tool message, an error,
    /// since the model's next turn expects a result for every call id.
    pub fn malformed_tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.message
            .tool_calls
            .iter()
            .flatten()
            .filter(|call| call.function.name.trim().is_empty() || call.arguments_object().is_err())
    }
}

/// One tool call while its pieces arrive.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

impl PartialCall {
    fn push(&mut self, budget: &mut Budget, piece: &ToolCallDelta) {
        set_once(budget, &mut self.id, piece.id.as_deref());
        set_once(budget, &mut self.kind, piece.kind.as_deref());
        let Some(function) = &piece.function else {
            return;
        };
        if let Some(name) = function.name.as_deref()
            && name != self.name
        {
            budget.append(&mut self.name, name);
        }
        if let Some(arguments) = &function.arguments {
            budget.append(&mut self.arguments, arguments);
        }
    }

    fn finish(self, index: u32) -> ToolCall {
        ToolCall {
            id: self.id.unwrap_or_else(|| format!("call_{index}")),
            kind: self.kind.unwrap_or_else(|| "function".to_owned()),
            function: FunctionCall {
                name: self.name,
                arguments: self.arguments,
            },
        }
    }
}

/// Keeps the first non-empty value offered, if the budget allows all of it: a cut id or
/// type would name something else.
fn set_once(budget: &mut Budget, slot: &mut Option<String>, value: Option<&str>) {
    if slot.is_some() {
        return;
    }
    if let Some(value) = value.filter(|v| !v.is_empty())
        && budget.admit(value.len())
    {
        *slot = Some(value.to_owned());
    }
}

/// The byte cap. Once anything is refused, everything after is refused too, so the kept
/// message is a prefix of the stream rather than a sample of it.
#[derive(Debug, Default)]
struct Budget {
    limit: Option<usize>,
    used: usize,
    exhausted: bool,
}

impl Budget {
    /// Takes `cost` bytes if they fit whole.
    fn admit(&mut self, cost: usize) -> bool {
        if self.exhausted {
            return false;
        }
        if self
            .limit
            .is_some_and(|limit| self.used.saturating_add(cost) > limit)
        {
            self.exhausted = true;
            return false;
        }
        self.used += cost;
        true
    }

    /// Appends as much of `piece` as fits, cut on a character boundary.
    fn append(&mut self, into: &mut String, piece: &str) {
        if self.exhausted || piece.is_empty() {
            return;
        }
        let room = self
            .limit
            .map_or(piece.len(), |limit| limit.saturating_sub(self.used));
        let kept = if piece.len() <= room {
            piece
        } else {
            self.exhausted = true;
            &piece[..piece.floor_char_boundary(room)]
        };
        into.push_str(kept);
        self.used += kept.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkChoice, FunctionDelta};
    use serde_json::json;

    /// A chunk for choice 0 with the given delta.
    fn chunk(delta: Delta) -> ChatChunk {
        choice_chunk(0, delta, None)
    }

    fn choice_chunk(index: u32, delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        let mut chunk: ChatChunk =
            serde_json::from_value(json!({"id": "c", "created": 1, "model": "m"})).unwrap();
        chunk.choices.push(ChunkChoice {
            index,
            finish_reason: finish_reason.map(str::to_owned),
            ..ChunkChoice::new(delta)
        });
        chunk
    }

    fn text(s: &str) -> ChatChunk {
        chunk(Delta {
            content: Some(s.to_owned()),
            ..Delta::default()
        })
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> ChatChunk {
        chunk(Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                kind: id.map(|_| "function".to_owned()),
                function: Some(FunctionDelta {
                    name: name.map(str::to_owned),
                    arguments: Some(arguments.to_owned()),
                }),
            }]),
            ..Delta::default()
        })
    }

    fn finish(reason: &str) -> ChatChunk {
        choice_chunk(0, Delta::default(), Some(reason))
    }

    fn assemble<'a>(chunks: impl IntoIterator<Item = &'a ChatChunk>) -> Assembled {
        let mut assembler = Assembler::default();
        chunks.into_iter().for_each(|c| assembler.push(c));
        assembler.finish()
    }

    fn calls(out: &Assembled) -> &[ToolCall] {
        out.message.tool_calls.as_deref().unwrap_or_default()
    }

    fn args(call: &ToolCall) -> serde_json::Value {
        serde_json::from_str(&call.function.arguments).unwrap()
    }

    #[test]
    fn text_only() {
        let role = chunk(Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        });
        let out = assemble(&[
            role,
            text("Hello"),
            text(", "),
            text("world"),
            finish("stop"),
        ]);
        assert_eq!(out.message.role, Role::Assistant);
        assert_eq!(
            out.message.content,
            Some(Content::Text("Hello, world".into()))
        );
        assert_eq!(out.message.tool_calls, None, "no tool calls were streamed");
        assert_eq!(out.message.refusal, None);
        assert!(!out.truncated);
    }

    #[test]
    fn tool_call_with_arguments_split_across_many_chunks() {
        let mut chunks = vec![call(0, Some("call_abc"), Some("get_weather"), "")];
        let json = r#"{"city": "Paris", "unit": "celsius"}"#;
        // One chunk per character, as a slow model would send it.
        chunks.extend(json.chars().map(|c| call(0, None, None, &c.to_string())));
        chunks.push(finish("tool_calls"));
        let out = assemble(&chunks);
        assert_eq!(
            out.message.content, None,
            "a pure tool-call answer has no content"
        );
        let [only] = calls(&out) else {
            panic!("one call expected: {:?}", out.message.tool_calls);
        };
        assert_eq!(only.id, "call_abc");
        assert_eq!(only.kind, "function");
        assert_eq!(only.function.name, "get_weather");
        assert_eq!(args(only), json!({"city": "Paris", "unit": "celsius"}));
        assert_eq!(out.malformed_tool_calls().count(), 0);
    }

    #[test]
    fn parallel_tool_calls_interleaved_come_out_by_index() {
        // Indices 3 and 7: not from 0, not contiguous, and 7 starts first.
        let chunks = [
            call(7, Some("call_b"), Some("get_time"), ""),
            call(3, Some("call_a"), Some("get_weather"), "{\"city\":"),
            call(7, None, None, "{\"tz\":"),
            call(3, None, None, "\"Paris\"}"),
            call(7, None, None, "\"CET\"}"),
            finish("tool_calls"),
        ];
        let out = assemble(&chunks);
        let [first, second] = calls(&out) else {
            panic!("two calls expected: {:?}", out.message.tool_calls);
        };
        assert_eq!(
            (first.id.as_str(), first.function.name.as_str()),
            ("call_a", "get_weather"),
            "index 3 comes before index 7"
        );
        assert_eq!(args(first), json!({"city": "Paris"}));
        assert_eq!(
            (second.id.as_str(), second.function.name.as_str()),
            ("call_b", "get_time")
        );
        assert_eq!(args(second), json!({"tz": "CET"}));
    }

    #[test]
    fn tool_call_without_id_gets_a_stable_one() {
        let chunks = [
            call(2, None, Some("lookup"), "{}"),
            call(2, Some(""), None, ""),
        ];
        let out = assemble(&chunks);
        assert_eq!(calls(&out)[0].id, "call_2", "generated from the index");
        assert_eq!(assemble(&chunks), out, "the same stream gives the same id");
    }

    #[test]
    fn split_names_are_joined_and_repeated_names_are_not_doubled() {
        let split = [
            call(0, Some("c"), Some("get_"), ""),
            call(0, None, Some("weather"), ""),
        ];
        assert_eq!(calls(&assemble(&split))[0].function.name, "get_weather");
        let repeated = [
            call(0, Some("c"), Some("get_weather"), "{"),
            call(0, Some("c"), Some("get_weather"), "}"),
        ];
        let out = assemble(&repeated);
        assert_eq!(calls(&out)[0].function.name, "get_weather");
        assert_eq!(calls(&out)[0].id, "c", "a repeated id is kept once");
        assert_eq!(calls(&out)[0].function.arguments, "{}");
    }

    #[test]
    fn unnamed_or_broken_tool_calls_are_reported() {
        let chunks = [
            call(0, Some("ok"), Some("f"), ""),
            call(1, Some("unnamed"), None, "{}"),
            call(2, Some("broken"), Some("g"), "{\"a\":"),
        ];
        let out = assemble(&chunks);
        assert_eq!(calls(&out).len(), 3, "malformed calls are kept");
        let ids: Vec<&str> = out.malformed_tool_calls().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["unnamed", "broken"]);
    }

    #[test]
    fn usage_only_last_chunk_is_captured() {
        let mut last: ChatChunk = serde_json::from_value(json!({
            "id": "c", "created": 1, "model": "m", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        }))
        .unwrap();
        let out = assemble(&[text("Hi"), finish("stop"), last.clone()]);
        assert_eq!(out.usage.as_ref().map(|u| u.total_tokens), Some(11));
        assert_eq!(out.finish_reason.as_deref(), Some("stop"));

        last.usage = Some(Usage::new(9, 5, 0, 0));
        let out = assemble(&[text("Hi"), finish("stop"), last.clone(), last]);
        assert_eq!(
            out.usage.map(|u| u.completion_tokens),
            Some(5),
            "the last usage wins"
        );
    }

    #[test]
    fn finish_reason_is_captured_and_absent_when_cut() {
        let out = assemble(&[call(0, Some("c"), Some("f"), "{}"), finish("tool_calls")]);
        assert_eq!(out.finish_reason.as_deref(), Some("tool_calls"));
        let out = assemble(&[text("Hel")]);
        assert_eq!(out.finish_reason, None, "a cut stream names no reason");
    }

    #[test]
    fn other_choices_are_ignored() {
        let other = |delta| choice_chunk(1, delta, Some("length"));
        let chunks = [
            text("mine"),
            other(Delta {
                content: Some("theirs".into()),
                ..Delta::default()
            }),
            other(call(0, Some("x"), Some("f"), "{}").choices[0].delta.clone()),
            finish("stop"),
        ];
        let out = assemble(&chunks);
        assert_eq!(out.message.content, Some(Content::Text("mine".into())));
        assert_eq!(out.message.tool_calls, None);
        assert_eq!(out.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn refusal_is_concatenated_and_content_stays_replayable() {
        let refusal = |s: &str| {
            chunk(Delta {
                refusal: Some(s.to_owned()),
                ..Delta::default()
            })
        };
        let out = assemble(&[
            refusal(""),
            refusal("I can't"),
            refusal(" help."),
            finish("stop"),
        ]);
        assert_eq!(out.message.refusal.as_deref(), Some("I can't help."));
        assert_eq!(
            out.message.content,
            Some(Content::Text(String::new())),
            "an answer without tool calls always has content"
        );
    }

    #[test]
    fn cap_drops_what_does_not_fit_and_says_so() {
        let mut assembler = Assembler::with_limit(9);
        for piece in ["héllo", " wörld", "!"] {
            assembler.push(&text(piece));
        }
        assembler.push(&finish("length"));
        let out = assembler.finish();
        assert!(out.truncated, "14 bytes of text exceed a 9-byte cap");
        // "héllo" is 6 bytes; " w" fits, "ö" (2 bytes) would pass 9 and is cut whole.
        assert_eq!(out.message.content, Some(Content::Text("héllo w".into())));
        assert_eq!(
            out.finish_reason.as_deref(),
            Some("length"),
            "still recorded"
        );
    }

    #[test]
    fn cap_counts_tool_calls_too() {
        // The call costs 64 + id 6 + type 8 + name 6 + 5 bytes of arguments = 89 of 94.
        let mut assembler = Assembler::with_limit(TOOL_CALL_OVERHEAD + 30);
        assembler.push(&call(0, Some("call_1"), Some("search"), "{\"q\":"));
        assembler.push(&call(0, None, None, "\"a long query\"}"));
        assembler.push(&call(1, Some("call_2"), Some("other"), "{}"));
        assembler.push(&text("late"));
        let out = assembler.finish();
        assert!(out.truncated);
        let [kept] = calls(&out) else {
            panic!("the second call does not fit: {:?}", out.message.tool_calls);
        };
        assert_eq!(kept.function.arguments, "{\"q\":\"a lo", "cut at the cap");
        assert_eq!(
            out.malformed_tool_calls().count(),
            1,
            "cut arguments are not JSON"
        );
        assert_eq!(out.message.content, None, "nothing is kept after the cap");

        let mut unbounded = Assembler::with_limit(1 << 20);
        for index in 0..100_000 {
            unbounded.push(&call(index, None, None, ""));
        }
        let out = unbounded.finish();
        assert!(out.truncated, "empty calls still cost something");
        assert_eq!(calls(&out).len(), (1 << 20) / TOOL_CALL_OVERHEAD);
    }
}
