//! `[agents.NAME]`: the agents the scheduler runs, each with its model, prompt, tools and
//! the bounds that keep a run from becoming a runaway bill. Every bound has a default and
//! a ceiling; none can be switched off (docs/agents.md).

use std::time::Duration;

/// One agent, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub name: String,
    /// A `[models]` alias.
    pub model: String,
    pub system: Option<String>,
    /// The tools it may use, in the order written.
    pub tools: Vec<ToolRef>,
    pub bounds: AgentBounds,
    /// Runs started by the clock, if the agent has a `schedule`.
    pub schedule: Option<Schedule>,
}

/// `schedule`, `schedule_input` and `run_as`: a run of the agent at every fire of a cron
/// pattern, read in UTC (docs/agents.md, "Schedules").
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The pattern as written, for the admin API and the log.
    pub text: String,
    pub cron: croner::Cron,
    /// The input of every scheduled run: one user message.
    pub input: String,
    /// The `[[keys]]` entry the runs are made as: its limits and budgets apply, and the
    /// runs are its runs.
    pub run_as: String,
}

/// Reads a cron pattern as `schedule` takes it: 5 fields (minute, hour, day of month,
/// month, day of week), or 6 with seconds first, or an alias (`@yearly`, `@annually`,
/// `@monthly`, `@weekly`, `@daily`, `@hourly`). No year field. Steps are written
/// `*/5` or `5-59/5` (not `5/5`).
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| e.to_string())
}

/// What one run of the agent may use at most. A child run (`agent:OTHER`) gets the
/// smaller of its own bounds and what is left of its parent's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentBounds {
    /// Model turns (a model answer, and the tools it asked for).
    pub max_steps: u32,
    /// Model calls, retries included.
    pub max_llm_calls: u32,
    /// Retries of one failed model call (a retryable error).
    pub max_retries: u32,
    /// Prompt and completion tokens over the run.
    pub max_tokens: u64,
    /// Cost over the run, in nano-dollars.
    pub max_cost_nanos: u64,
    pub deadline: Duration,
    /// Runs of this agent at once, in this process.
    pub max_concurrent_runs: u32,
    /// `max_tokens` of each model call.
    pub max_output_tokens: u32,
    /// The model's context window: history is trimmed to fit it.
    pub context_tokens: u32,
    pub tool_timeout: Duration,
    /// A tool's result is cut to this before the model sees it.
    pub max_tool_result_bytes: u32,
    /// Tool calls of one step run at once, at most this many.
    pub max_parallel_tools: u32,
    /// The same tool call (name and arguments) this many times in a run is not run again
    /// (the model is told); two more and the run's `loop_tool_call` breaker trips.
    pub loop_repeat: u32,
    /// The same model request failing this many times in a run (retries included) trips
    /// its `loop_failing_request` breaker.
    pub loop_failing_requests: u32,
    /// The agent's breaker opens after this many failed runs in a row...
    pub breaker_failures: u32,
    /// ...for this long (doubling at each re-open, at most an hour), then lets one probe
    /// run through.
    pub breaker_open: Duration,
}

/// A tool an agent may use, as written in `tools`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ToolRef {
    /// A tool built into the gateway (`time_now`).
    Builtin(String),
    /// `node:NAME/TOOL`: that tool of the node called NAME (of the run's key).
    Node { node: String, tool: String },
    /// `node:*/TOOL`: that tool of any node of the run's key that has it.
    AnyNode { tool: String },
    /// `agent:OTHER`: another agent, run as a child of this run.
    Agent(String),
}

/// The tools built into the gateway: safe to run on it. `http_fetch` needs
/// `[tools.http_fetch]` (its allowlist).
pub const BUILTIN_TOOLS: &[&str] = &["time_now", "http_fetch"];

/// `[tools.http_fetch]`: what the `http_fetch` tool may reach (the host allowlist and
/// networks opted in), and its caps. The SSRF guard itself is `sluice-fetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFetchConfig {
    /// `api.example.com`, `*.example.org`, each with an optional `:port`.
    pub allow_hosts: Vec<String>,
    /// Networks let through although private or local (an internal service; tests).
    pub allow_networks: Vec<ipnet::IpNet>,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl std::fmt::Display for ToolRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolRef::Builtin(name) => f.write_str(name),
            ToolRef::Node { node, tool } => write!(f, "node:{node}/{tool}"),
            ToolRef::AnyNode { tool } => write!(f, "node:*/{tool}"),
            ToolRef::Agent(name) => write!(f, "agent:{name}"),
        }
    }
}
