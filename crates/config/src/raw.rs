//! The config file as written: serde structs, every default in one place, unknown fields
//! refused so a typo is an error rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ProviderKind;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub prices: RawPrices,
    #[serde(default)]
    pub limits: RawLimitsSection,
    #[serde(default)]
    pub websocket: RawWebSocket,
    #[serde(default)]
    pub agents: BTreeMap<String, RawAgent>,
    #[serde(default)]
    pub tools: RawTools,
    #[serde(default)]
    pub channels: crate::raw_channels::RawChannels,
    #[serde(default)]
    pub guard: crate::raw_guard::RawGuard,
    #[serde(default)]
    pub cache: crate::raw_cache::RawCache,
}

/// `[tools]`: settings of the built-in tools agents may use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTools {
    pub http_fetch: Option<RawHttpFetch>,
}

/// `[tools.http_fetch]` (docs/agents.md#http_fetch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttpFetch {
    pub allow_hosts: Vec<String>,
    pub allow_networks: Vec<String>,
    pub max_bytes: u64,
    pub timeout_s: u64,
    pub max_redirects: u64,
}

impl Default for RawHttpFetch {
    fn default() -> Self {
        RawHttpFetch {
            allow_hosts: Vec::new(),
            allow_networks: Vec::new(),
            max_bytes: 256 * 1024,
            timeout_s: 10,
            max_redirects: 3,
        }
    }
}

/// `[agents.NAME]` (docs/agents.md). Bounds left out take their default; none can be
/// turned off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAgent {
    pub model: String,
    pub system: Option<String>,
    pub tools: Vec<String>,
    pub max_steps: u64,
    pub max_llm_calls: u64,
    pub max_retries: u64,
    pub max_tokens: u64,
    pub max_cost_usd: f64,
    pub deadline_s: u64,
    pub max_concurrent_runs: u64,
    pub max_output_tokens: u64,
    pub context_tokens: u64,
    pub tool_timeout_s: u64,
    pub max_tool_result_bytes: u64,
    pub max_parallel_tools: u64,
    pub loop_repeat: u64,
    pub loop_failing_requests: u64,
    pub breaker_failures: u64,
    pub breaker_open_s: u64,
    /// A cron pattern (UTC): runs of the agent started by the clock.
    pub schedule: Option<String>,
    /// The input of every scheduled run (required with `schedule`).
    pub schedule_input: Option<String>,
    /// The `[[keys]]` name scheduled runs are made as (required with `schedule`).
    pub run_as: Option<String>,
}

impl Default for RawAgent {
    fn default() -> Self {
        RawAgent {
            model: String::new(),
            system: None,
            tools: Vec::new(),
            max_steps: 8,
            max_llm_calls: 16,
            max_retries: 2,
            max_tokens: 100_000,
            max_cost_usd: 1.0,
            deadline_s: 300,
            max_concurrent_runs: 4,
            max_output_tokens: 4096,
            context_tokens: 32_000,
            tool_timeout_s: 30,
            max_tool_result_bytes: 16 * 1024,
            max_parallel_tools: 4,
            loop_repeat: 3,
            loop_failing_requests: 3,
            breaker_failures: 5,
            breaker_open_s: 60,
            schedule: None,
            schedule_input: None,
            run_as: None,
        }
    }
}

/// `[websocket]`: the `/ws` sessions (docs/protocol.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebSocket {
    pub heartbeat_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_frame_bytes: u64,
    pub replay_events: u64,
    pub replay_bytes: u64,
    pub resume_grace_ms: u64,
    pub max_sessions_per_key: u64,
    pub max_pending_requests: u64,
    /// Browser origins allowed to open a socket; `"*"`: any. Empty: none.
    pub allowed_origins: Vec<String>,
}

impl Default for RawWebSocket {
    fn default() -> Self {
        RawWebSocket {
            heartbeat_ms: 15_000,
            connect_timeout_ms: 10_000,
            max_frame_bytes: 1024 * 1024,
            replay_events: 1024,
            replay_bytes: 1024 * 1024,
            resume_grace_ms: 60_000,
            max_sessions_per_key: 100,
            max_pending_requests: 64,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub allow_direct_models: bool,
    pub max_body_bytes: u64,
    pub shutdown_grace_ms: u64,
    /// Bearer token of the `/admin` API; the API is off when unset or empty.
    pub admin_token: Option<String>,
    /// Threads serving requests: 0 = one per CPU; 1 = a single-threaded runtime.
    pub worker_threads: u64,
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request in progress is closed after this long.
    pub idle_timeout_ms: u64,
    /// A whole request body, from the end of its headers.
    pub body_read_timeout_ms: u64,
    /// A client that takes none of what the gateway writes for this long is dropped.
    pub write_timeout_ms: u64,
    /// Open client connections at most; more are answered 503 and closed.
    pub max_connections: u64,
    /// `key` (gateway keys only) or `trusted_proxy` (also an identity header set by an
    /// identity-aware proxy at one of `trusted_proxies`).
    pub auth: String,
    /// CIDRs of the proxies whose identity header is believed.
    pub trusted_proxies: Vec<String>,
    /// The header naming the user (`trusted_proxy` mode).
    pub user_header: String,
    /// Serve `GET /metrics` (Prometheus text format) without a key.
    pub metrics: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            allow_direct_models: false,
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            admin_token: None,
            worker_threads: 0,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            max_connections: 10_000,
            auth: "key".into(),
            trusted_proxies: Vec::new(),
            user_header: "x-forwarded-user".into(),
            metrics: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    pub key: String,
    /// The user the key belongs to (for per-user limits and the ledger).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub limits: RawLimits,
}

/// Limits of one scope (a key, user, agent, model alias or upstream model).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_usd_day: Option<f64>,
    pub budget_usd_month: Option<f64>,
    pub budget_usd_total: Option<f64>,
    pub budget_tokens_day: Option<u64>,
    pub budget_tokens_month: Option<u64>,
    pub budget_tokens_total: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimitsSection {
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub output_reserve: u64,
    /// The per-request output cap: sent as `max_tokens` when a request names none, and
    /// the most a request may ask for. 0: no cap.
    pub max_output_tokens: u64,
    /// A lease takes 1/`lease_slices` of a limit from the shared counter.
    pub lease_slices: u64,
    /// An instance gives a bucket's unused allowance back after it sat idle this long.
    pub lease_idle_ms: u64,
    /// How often debts and idle allowances are written back.
    pub sync_ms: u64,
    pub users: BTreeMap<String, RawLimits>,
    pub agents: BTreeMap<String, RawLimits>,
    pub models: BTreeMap<String, RawLimits>,
    pub upstream: BTreeMap<String, RawLimits>,
    pub spend_breaker: RawSpendBreaker,
}

impl Default for RawLimitsSection {
    fn default() -> Self {
        RawLimitsSection {
            output_reserve: 1024,
            max_output_tokens: 0,
            lease_slices: 20,
            lease_idle_ms: 2_000,
            sync_ms: 500,
            users: BTreeMap::new(),
            agents: BTreeMap::new(),
            models: BTreeMap::new(),
            upstream: BTreeMap::new(),
            spend_breaker: RawSpendBreaker::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpendBreaker {
    /// The short window whose spend is watched.
    pub window_ms: u64,
    /// The longer run the key's normal rate is learned over.
    pub baseline_ms: u64,
    /// Trip when the window's spend rate passes this multiple of the normal rate. 0: off.
    pub multiple: f64,
    /// ...but never below this much spend in the window (a quiet key's first burst).
    pub min_usd: f64,
    /// Trip when the window's spend passes this, whatever the normal rate. Unset: off.
    pub max_usd: Option<f64>,
    /// A tripped key opens again by itself after this long; 0: only an operator's reset.
    pub cooldown_ms: u64,
}

impl Default for RawSpendBreaker {
    fn default() -> Self {
        RawSpendBreaker {
            window_ms: 60_000,
            baseline_ms: 3_600_000,
            multiple: 0.0,
            min_usd: 1.0,
            max_usd: None,
            cooldown_ms: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Whole non-streamed call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// The longest a stream may run in all, from sending the request to its end.
    #[serde(default = "default_stream_timeout_ms")]
    pub stream_timeout_ms: u64,
    /// The largest non-streamed answer (chat or embeddings) read from the provider.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// The longest event (and so line) of a provider's stream.
    #[serde(default = "default_max_stream_event_bytes")]
    pub max_stream_event_bytes: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub stream_usage: Option<bool>,
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// `mock` kind: delay before the first byte.
    #[serde(default)]
    pub latency_ms: u64,
    /// `mock` kind: delay between streamed chunks.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// `mock` kind: words in each answer.
    #[serde(default = "default_mock_words")]
    pub words: u32,
}

fn default_timeout_ms() -> u64 {
    120_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_first_byte_timeout_ms() -> u64 {
    60_000
}
fn default_idle_timeout_ms() -> u64 {
    30_000
}
fn default_stream_timeout_ms() -> u64 {
    30 * 60_000
}
fn default_max_answer_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_max_stream_event_bytes() -> u64 {
    1024 * 1024
}
fn default_max_tokens() -> u32 {
    4096
}
fn default_mock_words() -> u32 {
    12
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub chain: Vec<RawEntry>,
}

/// A chain entry: `"provider:model"`, or a balanced group of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawEntry {
    Target(String),
    Group(RawGroup),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// `weighted` only: one per target.
    #[serde(default)]
    pub weights: Option<Vec<u32>>,
    #[serde(default)]
    pub affinity: Option<Affinity>,
}

/// How a group picks among its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Weighted,
    #[default]
    RoundRobin,
    LeastBusy,
    Latency,
    Headroom,
}

/// `prefix`: requests with the same prompt prefix stay on one target while it is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    Prefix,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// Retries of one chain entry after its first attempt.
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub max_retry_after_ms: u64,
    pub rate_limit_cooldown_ms: u64,
    pub billing_cooldown_ms: u64,
    /// The whole routing of one request, retries and fallbacks included, until an answer
    /// is committed (a stream's later duration is bounded by the idle timeout instead).
    pub request_timeout_ms: u64,
    pub breaker: RawBreaker,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            max_retries: 2,
            backoff_base_ms: 250,
            backoff_max_ms: 8_000,
            max_retry_after_ms: 10_000,
            rate_limit_cooldown_ms: 30_000,
            billing_cooldown_ms: 3_600_000,
            request_timeout_ms: 300_000,
            breaker: RawBreaker::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBreaker {
    pub failure_threshold: u32,
    pub open_ms: u64,
    pub half_open_probes: u32,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failure_threshold: 5,
            open_ms: 30_000,
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    /// `sqlite://PATH` (created on first start) or `postgres://…`.
    pub url: String,
    /// How often each instance reloads changed API keys (revocations take effect within it).
    pub key_refresh_ms: u64,
    /// The spend ledger writes a batch at least this often.
    pub ledger_flush_ms: u64,
    pub ledger_batch: u64,
    /// Where spend rows go that the database cannot take (empty: beside the SQLite file,
    /// or `data/ledger-spill.jsonl` for Postgres).
    pub ledger_spill_file: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: "sqlite://data/sluice.db".into(),
            key_refresh_ms: 1_000,
            ledger_flush_ms: 500,
            ledger_batch: 500,
            ledger_spill_file: String::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrices {
    /// A price table to use instead of the shipped one (relative to the config file).
    #[serde(default)]
    pub file: Option<String>,
    /// Models added to or overriding the table.
    #[serde(default)]
    pub models: std::collections::HashMap<String, crate::ModelPrice>,
}
