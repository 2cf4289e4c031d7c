//! Agent runs: the methods that start and follow them, and the events of a run. One
//! shape for every transport: the WebSocket sends each event as an `event` frame, `POST
//! /v1/runs` as an SSE event (`id:` its seq), and the store keeps the same JSON in
//! `run_events.data`, so a replay is byte for byte what a live follower saw.
//!
//! Every event's data has `run_id` (the run it is about) and `seq` (its place in the
//! stream it is read from: 1, 2, 3… per run). A child run's events (an agent used as a
//! tool) appear in its parent's stream too, with the child's `run_id`, its
//! `parent_run_id`, and a seq of the parent's stream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frame::ErrorBody;

/// Starts a run. Params: [`AgentRun`]; result: [`RunAccepted`]; then the session gets the
/// run's events (`run.*`) as they happen.
pub const AGENT_RUN: &str = "agent.run";
/// Follows a run of the key's: its events after a seq (replayed from the store), then
/// live until it ends. Params: [`RunSubscribe`]; result: [`RunStatus`].
pub const RUN_SUBSCRIBE: &str = "run.subscribe";
/// Stops a run between or inside its steps. Params: [`RunRef`]; result: [`RunStatus`].
pub const RUN_CANCEL: &str = "run.cancel";

pub mod events {
    /// The run began: [`super::RunStarted`].
    pub const STARTED: &str = "run.started";
    /// Text of the model's answer: [`super::RunDelta`].
    pub const DELTA: &str = "run.delta";
    /// The model asked for a tool: [`super::RunToolCall`].
    pub const TOOL_CALL: &str = "run.tool_call";
    /// A tool answered (or failed): [`super::RunToolResult`].
    pub const TOOL_RESULT: &str = "run.tool_result";
    /// The run ended with an answer: [`super::RunCompleted`].
    pub const COMPLETED: &str = "run.completed";
    /// The run ended without one: [`super::RunFailed`].
    pub const FAILED: &str = "run.failed";

    pub const ALL: &[&str] = &[STARTED, DELTA, TOOL_CALL, TOOL_RESULT, COMPLETED, FAILED];

    /// Whether an event ends its run.
    pub fn is_terminal(event: &str) -> bool {
        event == COMPLETED || event == FAILED
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRun {
    /// An agent of the gateway's config (`[agents.NAME]`).
    pub agent: String,
    /// The task: a string (one user message), or OpenAI chat messages.
    pub input: Value,
    /// Continues a conversation: the agent sees the history of this key's earlier
    /// completed runs with the same session key. Runs of one session go one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Asking again with the same key (of the same gateway key) returns the run that
    /// exists, never a second one; with a different request it is refused
    /// (`idempotency_key_reused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunAccepted {
    pub run_id: String,
    pub status: String,
    /// The idempotency key named a run that already existed: this is it.
    pub existing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSubscribe {
    pub run_id: String,
    /// Events with a seq above this (default 0: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRef {
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStatus {
    pub run_id: String,
    /// `queued`, `running`, `completed`, `failed`, `cancelled` or `interrupted`.
    pub status: String,
    /// The seq of the run's newest event when this was answered.
    pub last_seq: u64,
}

/// The bounds a run got: its agent's, or for a child run the smaller of its agent's and
/// what its parent had left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunBounds {
    pub max_steps: u32,
    pub max_llm_calls: u64,
    pub max_tokens: u64,
    /// US dollars, as a decimal string with nine places.
    pub max_cost_usd: String,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    pub agent: String,
    pub bounds: RunBounds,
    /// The tools the model is offered, by the names it calls them.
    pub tools: Vec<String>,
    /// Tools of the agent that could not be offered (a node that is not connected).
    pub unavailable_tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunDelta {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// The model turn (1, 2, …).
    pub step: u32,
    /// The model call of the step (1, 2, … when a failed call was retried: the text of
    /// an earlier attempt is discarded).
    pub attempt: u32,
    /// Answer text, in order; a slow follower may get several pieces merged.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunToolCall {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    pub step: u32,
    /// The model's id of the call.
    pub call_id: String,
    /// The function name the model called.
    pub name: String,
    /// The tool as the agent's config names it (`time_now`, `node:laptop/shell`, …).
    pub tool: String,
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunToolResult {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    pub step: u32,
    pub call_id: String,
    pub name: String,
    /// What the model is given: the tool's output, or `{"error": {"code", "message"}}`.
    pub output: Value,
    /// The tool failed (its error went to the model; the run goes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The output was cut to the agent's `max_tool_result_bytes`.
    pub truncated: bool,
    pub duration_ms: u64,
}

/// What a run used: its own model calls (what its ledger rows add up to), and with its
/// child runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunUsage {
    pub steps: u32,
    pub llm_calls: u64,
    pub tool_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// US dollars, a decimal string with nine places: the sum of the run's ledger rows.
    pub cost_usd: String,
    /// With the runs it started (agents used as tools).
    pub total_cost_usd: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCompleted {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// The final answer's text.
    pub output: String,
    pub usage: RunUsage,
}

/// Which breaker stopped a run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BreakerTrip {
    /// `max_steps`, `max_llm_calls`, `max_retries`, `max_tokens`, `max_cost_usd`,
    /// `deadline`, `loop_tool_call`, `loop_failing_request`, `provider`, `spend_velocity`,
    /// `agent`.
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFailed {
    pub run_id: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// `code` is stable: `breaker_tripped`, `cancelled`, `interrupted`, `context_overflow`,
    /// `budget_exceeded`, or a model call's own code.
    pub error: ErrorBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerTrip>,
    pub usage: RunUsage,
}

/// Nano-dollars as the decimal string with nine places the protocol carries (exact).
pub fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}
