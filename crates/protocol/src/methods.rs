//! The methods and events of protocol 1, with the shapes of their params, results and
//! event data. Adding a method: a name here, its types, and one arm in the gateway's
//! method table (`gateway/src/ws/methods.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frame::ErrorBody;

/// A streamed model call. Params: an OpenAI chat-completions request (`stream` is
/// implied). Result: [`ChatStarted`] once the call is admitted; then `chat.delta`
/// events, and `chat.completed` or `chat.failed`.
pub const CHAT_COMPLETIONS: &str = "chat.completions";
/// The session's stored messages. Params: [`HistoryParams`]; result: [`History`].
pub const SESSION_HISTORY: &str = "session.history";
/// What the session has used so far. Result: [`Usage`].
pub const USAGE_GET: &str = "usage.get";
/// Answered at once with `{"pong": true}`: an application-level liveness check.
pub const PING: &str = "ping";
/// Gateway → node: run one of the node's tools. Params: [`ToolInvoke`]; result:
/// [`ToolResult`].
pub const TOOL_INVOKE: &str = "tool.invoke";

/// The methods a client may call, as `hello.methods` lists them.
pub const CLIENT_METHODS: &[&str] = &[
    CHAT_COMPLETIONS,
    SESSION_HISTORY,
    USAGE_GET,
    PING,
    crate::runs::AGENT_RUN,
    crate::runs::RUN_SUBSCRIBE,
    crate::runs::RUN_CANCEL,
];

pub mod events {
    /// A piece of a streamed answer: [`super::ChatDelta`].
    pub const CHAT_DELTA: &str = "chat.delta";
    /// The call ended with an answer: [`super::ChatCompleted`].
    pub const CHAT_COMPLETED: &str = "chat.completed";
    /// The call broke after it started: [`super::ChatFailed`].
    pub const CHAT_FAILED: &str = "chat.failed";

    use crate::runs::events as run;

    pub const ALL: &[&str] = &[
        CHAT_DELTA,
        CHAT_COMPLETED,
        CHAT_FAILED,
        run::STARTED,
        run::DELTA,
        run::TOOL_CALL,
        run::TOOL_RESULT,
        run::COMPLETED,
        run::FAILED,
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatStarted {
    /// The gateway's id of the call (its ledger rows' request id); every event of the
    /// call carries it.
    pub call_id: String,
    /// Present when the gateway's prompt guard flagged the request (its policy is
    /// `flag`): the same as HTTP's `x-sluice-guard: flagged` (docs/guard.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardFlag>,
    /// What the response cache did, when the model alias caches: `hit`, `semantic-hit`,
    /// `miss` or `bypass`, as HTTP's `x-sluice-cache` (docs/cache.md). A hit streams the
    /// cached answer as `chat.delta` events like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

/// What the prompt guard found in a request it let through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GuardFlag {
    /// `"flagged"`.
    pub verdict: String,
    /// The total score, 0 to 1.
    pub score: f32,
    /// The detectors' stable ids (never the text they matched).
    pub detectors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatDelta {
    pub call_id: String,
    /// The id of the `req` that started the call.
    pub req_id: String,
    /// An OpenAI `chat.completion.chunk` object. A slow reader may get several
    /// provider chunks merged into one (their text concatenated).
    pub chunk: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompleted {
    pub call_id: String,
    pub req_id: String,
    /// OpenAI `usage`, when the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// `provider:model` of the chain entry that answered.
    pub served_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatFailed {
    pub call_id: String,
    pub req_id: String,
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Messages with a seq below this only (page backwards); default: the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct History {
    pub session_id: String,
    /// Oldest first: the newest that fit in one frame of `hello.limits.max_frame_bytes`
    /// (a single message larger than that comes alone).
    pub messages: Vec<HistoryMessage>,
    /// Older messages exist: ask again with `before_seq` = the first message's `seq`.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryMessage {
    pub seq: u64,
    /// An OpenAI chat message (`role`, `content`, …).
    pub message: Value,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub session_id: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In US dollars, as a decimal string with nine places (exact).
    pub cost_usd: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolInvoke {
    pub tool: String,
    pub arguments: Value,
    /// How long the gateway waits for the result.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolResult {
    /// What the tool returned (text or JSON), given to the model as the tool's answer.
    pub output: Value,
}
