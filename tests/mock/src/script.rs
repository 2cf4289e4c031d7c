//! What a mock answers: the [`Step`]s a test scripts, and how a step turns into a [`Reply`].
//!
//! Timing (delays, hangs, chunk gaps, dropped connections) is settled here, once for every wire
//! format; the format modules only print a [`Reply`].

use crate::server::Conn;
use crate::tokens;
use std::collections::HashMap;
use std::time::Duration;

/// One scripted behaviour of the mock for one call.
#[derive(Clone, Debug)]
pub enum Step {
    /// A normal answer; streamed as one chunk per word when the request streams.
    Text(String),
    /// The model calls one tool; streamed as 2–3 argument pieces where the format streams them.
    /// The same answer as `ToolCalls` with this one call.
    ToolCall {
        name: String,
        arguments: serde_json::Value,
    },
    /// The model calls several tools in one answer (parallel tool calls): `(name, arguments)`
    /// in the order the answer lists them, each with its own id (OpenAI `call_…`, Anthropic
    /// `toolu_…`). OpenAI: N `tool_calls`, streamed call after call, each opened with its
    /// `index`, id and name and then its 2–3 argument pieces under the same `index`.
    /// Anthropic: N `tool_use` blocks, streamed block after block (start, `input_json_delta`
    /// pieces, stop). Gemini: N `functionCall` parts in one candidate, streamed whole in one
    /// closing chunk. An empty list is an answer with the tool-call finish reason and no call,
    /// which no real provider sends.
    ToolCalls(Vec<(String, serde_json::Value)>),
    /// 429 (with `Retry-After` when given) and the format's rate-limit error body.
    RateLimited { retry_after_secs: Option<u64> },
    /// 401 and the format's authentication error body.
    Unauthorized,
    /// Out of credit, as each provider says it: OpenAI 429 `insufficient_quota`, Anthropic 400
    /// "Your credit balance is too low…", Gemini 429 `RESOURCE_EXHAUSTED` naming a daily quota.
    InsufficientQuota,
    /// 402 and a billing error body.
    PaymentRequired,
    /// This status (500, 502, 503, 529…) with the format's server error body; Anthropic's 529
    /// is `overloaded_error`.
    ServerError(u16),
    /// 400 with this message in the format's invalid-request body.
    BadRequest(String),
    /// 400 with the format's real context-length message.
    ContextOverflow,
    /// OpenAI: 400 `content_filter`; Anthropic: 200 with `stop_reason: "refusal"`; Gemini: 200
    /// with `finishReason: "SAFETY"`.
    ContentFiltered,
    /// Accept the request and never answer; the connection closes on shutdown.
    Hang,
    /// Streaming: 200, the opening events and N content chunks, then the connection drops with
    /// no end marker. Not streaming: the connection drops without a response.
    CutAfter(usize),
    /// Wait, then do `then`; the wait comes before the response headers.
    Delay { ms: u64, then: Box<Step> },
    /// Streaming: the first chunk at once, then one chunk every `ms`. Not streaming: the whole
    /// text after the time the chunks would have taken.
    ChunkGap { ms: u64, text: String },
    /// Streaming: the opening events (role chunk, `message_start`) at once, then a pause of
    /// `ms` before the first content chunk, then the rest at once: a model that thinks
    /// before it answers. Not streaming: the whole text after `ms`.
    SlowFirstToken { ms: u64, text: String },
}

/// A step after its timing has been played out: what the format module has to print.
#[derive(Debug)]
pub(crate) enum Reply {
    Text(Answer),
    /// One or more tool calls in one answer; `Step::ToolCall` is the one-call case.
    ToolCalls(Vec<ToolCall>),
    Filtered,
    Fail(Failure),
}

/// A text answer and how its stream is paced.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) text: String,
    /// Pause before every content chunk but the first.
    pub(crate) gap: Option<Duration>,
    /// Drop the connection after this many content chunks, before the end marker.
    pub(crate) cut_after: Option<usize>,
    /// Pause before the first content chunk.
    pub(crate) first_gap: Option<Duration>,
}

/// One tool call of an answer.
#[derive(Debug)]
pub(crate) struct ToolCall {
    pub(crate) name: String,
    pub(crate) arguments: serde_json::Value,
}

impl ToolCall {
    /// The arguments as the wire carries them: compact JSON text.
    pub(crate) fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }
}

/// An error answer, printed by each format in its own words.
#[derive(Debug)]
pub(crate) enum Failure {
    RateLimited { retry_after_secs: Option<u64> },
    Unauthorized,
    InsufficientQuota,
    PaymentRequired,
    Server(u16),
    BadRequest(String),
    ContextOverflow,
}

impl Reply {
    fn text(text: String) -> Reply {
        Reply::Text(Answer {
            text,
            gap: None,
            cut_after: None,
            first_gap: None,
        })
    }
}

/// The answer a model gives when no script names it or its key.
pub(crate) fn default_step(model: &str) -> Step {
    Step::Text(format!("Hello from {model}"))
}

/// Plays out the timing of `step` and returns what to print.
///
/// Never returns for `Hang`, nor for `CutAfter` on a request that does not stream (the
/// connection is dropped instead); the connection task ends both on shutdown.
pub(crate) async fn settle(mut step: Step, model: &str, stream: bool, conn: &Conn) -> Reply {
    loop {
        step = match step {
            Step::Delay { ms, then } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                *then
            }
            Step::Hang => std::future::pending().await,
            Step::CutAfter(_) if !stream => match conn.drop_now().await {},
            Step::CutAfter(n) => {
                return Reply::Text(Answer {
                    text: long_answer(model, n),
                    gap: None,
                    cut_after: Some(n),
                    first_gap: None,
                });
            }
            Step::ChunkGap { ms, text } if !stream => {
                let gaps = tokens::pieces(&text).len().saturating_sub(1) as u64;
                tokio::time::sleep(Duration::from_millis(ms * gaps)).await;
                return Reply::text(text);
            }
            Step::ChunkGap { ms, text } => {
                return Reply::Text(Answer {
                    text,
                    gap: Some(Duration::from_millis(ms)),
                    cut_after: None,
                    first_gap: None,
                });
            }
            Step::SlowFirstToken { ms, text } if !stream => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Reply::text(text);
            }
            Step::SlowFirstToken { ms, text } => {
                return Reply::Text(Answer {
                    text,
                    gap: None,
                    cut_after: None,
                    first_gap: Some(Duration::from_millis(ms)),
                });
            }
            Step::Text(text) => return Reply::text(text),
            Step::ToolCall { name, arguments } => {
                return Reply::ToolCalls(vec![ToolCall { name, arguments }]);
            }
            Step::ToolCalls(calls) => {
                let calls = calls
                    .into_iter()
                    .map(|(name, arguments)| ToolCall { name, arguments })
                    .collect();
                return Reply::ToolCalls(calls);
            }
            Step::ContentFiltered => return Reply::Filtered,
            Step::RateLimited { retry_after_secs } => {
                return Reply::Fail(Failure::RateLimited { retry_after_secs });
            }
            Step::Unauthorized => return Reply::Fail(Failure::Unauthorized),
            Step::InsufficientQuota => return Reply::Fail(Failure::InsufficientQuota),
            Step::PaymentRequired => return Reply::Fail(Failure::PaymentRequired),
            Step::ServerError(status) => return Reply::Fail(Failure::Server(status)),
            Step::BadRequest(message) => return Reply::Fail(Failure::BadRequest(message)),
            Step::ContextOverflow => return Reply::Fail(Failure::ContextOverflow),
        }
    }
}

/// "Hello from <model>" padded with words so a stream cut after `n` chunks is really cut short.
fn long_answer(model: &str, n: usize) -> String {
    let mut text = format!("Hello from {model}");
    for i in 3..=n {
        text.push_str(&format!(" word{i}"));
    }
    text
}

/// Scripts by model and by API key; a key script wins over a model script.
#[derive(Default)]
pub(crate) struct Scripts {
    by_model: HashMap<String, Script>,
    by_key: HashMap<String, Script>,
}

struct Script {
    steps: Vec<Step>,
    next: usize,
}

impl Scripts {
    /// Replaces the script for `model`; an empty list removes it.
    pub(crate) fn set_model(&mut self, model: &str, steps: Vec<Step>) {
        set(&mut self.by_model, model, steps);
    }

    /// Replaces the script for `api_key`; an empty list removes it.
    pub(crate) fn set_key(&mut self, api_key: &str, steps: Vec<Step>) {
        set(&mut self.by_key, api_key, steps);
    }

    /// The step for the next call, advancing the script that supplied it.
    pub(crate) fn next(&mut self, model: &str, api_key: &str) -> Step {
        if let Some(script) = self.by_key.get_mut(api_key) {
            return script.advance();
        }
        if let Some(script) = self.by_model.get_mut(model) {
            return script.advance();
        }
        default_step(model)
    }
}

fn set(map: &mut HashMap<String, Script>, name: &str, steps: Vec<Step>) {
    if steps.is_empty() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), Script { steps, next: 0 });
    }
}

impl Script {
    /// Steps in order, then the last one forever.
    fn advance(&mut self) -> Step {
        let index = self.next.min(self.steps.len() - 1);
        self.next = (self.next + 1).min(self.steps.len());
        self.steps[index].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(step: Step) -> String {
        match step {
            Step::Text(text) => text,
            other => panic!("expected a text step, got {other:?}"),
        }
    }

    #[test]
    fn the_last_step_repeats() {
        let mut scripts = Scripts::default();
        scripts.set_model("m", vec![Step::Text("a".into()), Step::Text("b".into())]);
        let seen: Vec<String> = (0..4).map(|_| text_of(scripts.next("m", "k"))).collect();
        assert_eq!(seen, ["a", "b", "b", "b"]);
    }

    #[test]
    fn key_script_wins_and_unscripted_models_say_hello() {
        let mut scripts = Scripts::default();
        scripts.set_model("m", vec![Step::Text("model".into())]);
        scripts.set_key("k", vec![Step::Text("key".into())]);
        assert_eq!(text_of(scripts.next("m", "k")), "key");
        assert_eq!(text_of(scripts.next("m", "other")), "model");
        assert_eq!(text_of(scripts.next("x", "other")), "Hello from x");
        scripts.set_key("k", vec![]);
        assert_eq!(
            text_of(scripts.next("m", "k")),
            "model",
            "an empty script removes it"
        );
    }

    #[test]
    fn a_cut_answer_has_more_words_than_the_cut() {
        for n in 0..8 {
            assert!(
                tokens::pieces(&long_answer("m", n)).len() > n,
                "cut after {n}"
            );
        }
    }
}
