//! Sluice's configuration: the TOML file an operator writes, `${ENV}` interpolation, the
//! provider presets, and validation that reports every problem with its field path before
//! the gateway starts.
//!
//! Flow: text → [`interpolate`] (env vars, on the parsed TOML tree) → [`raw`] (serde
//! structs with defaults, unknown fields refused) → [`validate`] → [`Config`] (typed,
//! resolved: presets applied, chains parsed, secrets wrapped). This crate does no I/O but
//! reading the file and the environment it is handed.
//!
//! Plain data only, with no dependency on the limits engine: [`Limits`] and [`PriceList`]
//! say what the operator wrote; what a limit or a price does at run time (buckets, costs in
//! nano-dollars) belongs to `sluice-limits`, which builds on these types.

pub mod agents;
pub mod cache;
pub mod channels;
pub mod guard;
mod interpolate;
mod kind;
mod prices;
pub mod raw;
pub mod raw_cache;
pub mod raw_channels;
pub mod raw_guard;
mod secret;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use agents::{AgentBounds, AgentConfig, HttpFetchConfig, Schedule, ToolRef, parse_cron};
pub use channels::{
    Binding, ChannelPolicy, ChannelsConfig, SlackChannel, Streaming, TelegramBot, WhatsAppChannel,
};
pub use kind::{AuthStyle, ProviderKind, Wire};
pub use prices::{ModelPrice, PriceList};
pub use raw::{Affinity, Strategy};
pub use secret::Secret;

/// Every problem found in a config file, each as `field.path: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in every string of a parsed TOML tree, as the
/// gateway's config is expanded, for other config files of the project (the node's).
/// Returns every problem as `field.path: what is wrong`; a missing variable expands to
/// nothing, so the rest of the file can still be checked.
pub fn interpolate(tree: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    interpolate::table(tree, "", env)
        .into_iter()
        .map(|(path, problem)| format!("{path}: {problem}"))
        .collect()
}

/// Whether `problem` (`field.path: what`) is about the field at `path` where a variable was
/// unset: that field, a field inside it, or the list it is an element of.
fn same_field(problem: &str, path: &str) -> bool {
    let Some((field, _)) = problem.split_once(": ") else {
        return false;
    };
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    inside(path, field) || path.strip_prefix(field).is_some_and(|r| r.starts_with('['))
}

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub keys: Vec<GatewayKey>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelAlias>,
    pub routing: RoutingConfig,
    pub database: DatabaseConfig,
    /// The shipped price table (or `[prices] file`) with the operator's `[prices.models]`.
    pub prices: PriceList,
    pub limits: LimitsConfig,
    pub websocket: WebSocketConfig,
    /// `[agents.NAME]`, by name.
    pub agents: BTreeMap<String, AgentConfig>,
    /// `[tools.http_fetch]`; `None`: no agent may use `http_fetch`.
    pub http_fetch: Option<HttpFetchConfig>,
    /// `[channels]`: Slack, Telegram and WhatsApp into agents.
    pub channels: ChannelsConfig,
    /// `[guard]`: prompt screening and output filtering (docs/guard.md).
    pub guard: guard::GuardConfig,
    /// `[cache]`: the exact and semantic response cache (docs/cache.md).
    pub cache: cache::CacheConfig,
}

/// `[websocket]`: the `/ws` sessions (docs/protocol.md).
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// The gateway pings this often; a peer silent for twice as long is dropped.
    pub heartbeat: Duration,
    /// The first frame (`connect`) must arrive within this.
    pub connect_timeout: Duration,
    pub max_frame_bytes: usize,
    /// Events a session keeps for replay after a reconnect: at most this many, and at
    /// most this many bytes of them.
    pub replay_events: usize,
    pub replay_bytes: usize,
    /// How long a session (its calls and its events) waits for its client to resume.
    pub resume_grace: Duration,
    pub max_sessions_per_key: usize,
    pub max_pending_requests: usize,
    /// Browser origins allowed to open a socket (`*`: any); requests without `Origin`
    /// (programs) are not affected.
    pub allowed_origins: Vec<String>,
}

impl WebSocketConfig {
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// `[limits]`: rate limits and budgets per scope, and how instances share them.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub output_reserve: u64,
    /// Sent as `max_tokens` when a request names none; requests asking for more are
    /// refused. `None`: no cap (a request without `max_tokens` may then overshoot its
    /// reservation by whatever the model writes).
    pub max_output_tokens: Option<u32>,
    pub lease_slices: u64,
    pub lease_idle: Duration,
    pub sync_every: Duration,
    pub users: HashMap<String, Limits>,
    pub agents: HashMap<String, Limits>,
    /// By alias (or `provider:model` asked for directly).
    pub models: HashMap<String, Limits>,
    /// By chain entry: a target at its limit is skipped like a rate-limited one.
    pub upstream: HashMap<Target, Limits>,
    pub spend_breaker: Option<SpendBreakerConfig>,
}

/// The limits one scope (a key, user, agent, model alias or upstream model) carries;
/// `None` = unlimited. USD amounts in nano-dollars, so that sums are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub usd_day_nanos: Option<u64>,
    pub usd_month_nanos: Option<u64>,
    pub usd_total_nanos: Option<u64>,
    pub tokens_day: Option<u64>,
    pub tokens_month: Option<u64>,
    pub tokens_total: Option<u64>,
}

/// When a key's spend over a short window trips it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendBreakerConfig {
    pub window: Duration,
    pub baseline: Duration,
    /// Trip past this multiple of the key's normal rate (`None`: only the ceiling).
    pub multiple: Option<f64>,
    pub min_nanos: u64,
    /// Trip past this spend in the window, whatever the normal rate.
    pub max_nanos: Option<u64>,
    /// `None`: stays open until an operator resets it.
    pub cooldown: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Clients may ask for `provider:model` directly, not only for aliases.
    pub allow_direct_models: bool,
    pub max_body_bytes: usize,
    /// How long in-flight requests and streams may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Bearer token of the `/admin` API; `None`: the API is off.
    pub admin_token: Option<Secret>,
    /// Threads serving requests; `None`: one per CPU.
    pub worker_threads: Option<usize>,
    pub conn: ConnLimits,
    pub auth: AuthMode,
    /// Serve `GET /metrics` (Prometheus text format, no key needed).
    pub metrics: bool,
}

/// How clients are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// By gateway key only (`Authorization: Bearer`, a WebSocket connect token).
    Key,
    /// Also by an identity header set by an identity-aware proxy: believed only from
    /// `proxies`; a request from anywhere else carrying it is refused. Gateway keys still
    /// work.
    TrustedProxy {
        proxies: Vec<ipnet::IpNet>,
        /// Lower case.
        user_header: String,
    },
}

impl AuthMode {
    /// Whether `addr` is one of the trusted proxies.
    pub fn trusts(&self, addr: std::net::IpAddr) -> bool {
        match self {
            AuthMode::Key => false,
            AuthMode::TrustedProxy { proxies, .. } => {
                let addr = match addr {
                    std::net::IpAddr::V6(v6) => {
                        v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4)
                    }
                    v4 => v4,
                };
                proxies.iter().any(|net| net.contains(&addr))
            }
        }
    }
}

/// How long a client connection may take over each part of its life, and how many may be
/// open: the bounds that keep slow or idle clients from holding the gateway's resources.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From a request's first byte to the end of its headers.
    pub header_read: Duration,
    /// A kept-alive connection with no request in progress.
    pub idle: Duration,
    /// A whole request body.
    pub body_read: Duration,
    /// A client that takes none of the bytes written to it for this long is dropped.
    pub write: Duration,
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub key_refresh: Duration,
    pub ledger_flush: Duration,
    pub ledger_batch: usize,
    /// Where spend rows go that the database cannot take; read back at the next start.
    pub ledger_spill_file: std::path::PathBuf,
}

/// A bearer token clients present to the gateway.
#[derive(Debug, Clone)]
pub struct GatewayKey {
    pub name: String,
    pub key: Secret,
    pub user: Option<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub kind: ProviderKind,
    /// No trailing slash.
    pub base_url: String,
    /// Auth profiles, rotated. Empty for providers that need no key (ollama, mock).
    pub api_keys: Vec<Secret>,
    pub timeouts: Timeouts,
    /// Extra headers sent on every upstream request (e.g. OpenRouter's `HTTP-Referer`).
    pub headers: BTreeMap<String, String>,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// Whether to inject `stream_options.include_usage` into streamed requests.
    pub stream_usage: bool,
    /// `max_tokens` sent to Anthropic when the client gives none (Anthropic requires it).
    pub default_max_tokens: u32,
    pub max_retries: u32,
    /// The largest non-streamed answer read; a larger one is a bad upstream answer and the
    /// connection is dropped as soon as that is known.
    pub max_answer_bytes: usize,
    /// The longest event (or line) of a provider's stream; a longer one breaks the stream
    /// as a bad upstream answer instead of being buffered.
    pub max_stream_event_bytes: usize,
    pub mock: MockSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the response headers (and, for streams, the first event).
    pub first_byte: Duration,
    /// Longest gap allowed between two substantive stream chunks (empty deltas, pings and
    /// keep-alive comments do not count as progress).
    pub idle: Duration,
    /// Whole non-streamed call.
    pub total: Duration,
    /// A whole stream, from sending the request to its last chunk.
    pub stream: Duration,
}

/// Behaviour of the built-in `mock` provider kind.
#[derive(Debug, Clone, Copy)]
pub struct MockSettings {
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub words: u32,
}

/// One `provider:model` entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone)]
pub struct ModelAlias {
    pub name: String,
    /// Every target of the chain in order, groups flattened (for pricing and limits).
    pub chain: Vec<Target>,
    /// The chain as written: single targets and balanced groups.
    pub entries: Vec<ChainEntry>,
}

/// One entry of a chain: a single target, or a group tried as one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEntry {
    Single(Target),
    Group(GroupSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub targets: Vec<Target>,
    /// One per target (all 1 unless `weighted`).
    pub weights: Vec<u32>,
    pub strategy: raw::Strategy,
    pub affinity: Option<raw::Affinity>,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this moves on to the next chain entry instead of waiting.
    pub max_retry_after: Duration,
    /// Cool-down of a key after a 429 that names no `Retry-After`.
    pub rate_limit_cooldown: Duration,
    /// How long a key refused for billing/quota stays out before it is tried again.
    pub billing_cooldown: Duration,
    /// Routing one request, all retries and fallbacks, until an answer is committed.
    pub request_timeout: Duration,
    pub breaker: BreakerConfig,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures (timeouts, connect errors, 5xx) that open the breaker.
    pub failure_threshold: u32,
    pub open_for: Duration,
    /// Trial requests let through while half-open; one success closes the breaker.
    pub half_open_probes: u32,
}

impl Config {
    /// Reads, interpolates and validates a config file with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse_in(&text, &|name| std::env::var(name).ok(), dir)
    }

    /// Parses config text, looking variables up with `env`; relative paths in it are taken
    /// from the working directory.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::parse_in(text, env, Path::new("."))
    }

    /// Parses config text whose relative paths start at `dir`.
    pub fn parse_in(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        dir: &Path,
    ) -> Result<Config, ConfigError> {
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::one(format!("syntax: {e}")))?;
        // Missing variables expand to nothing and checking goes on, so one run names every
        // unset variable and every other problem; a problem that only follows from an
        // unset variable (an empty key "too short") is not reported twice.
        let unset = interpolate::table(&mut tree, "", env);
        let checked = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| ConfigError::one(format!("{}: {}", e.path(), e.inner())))
            .and_then(|raw: raw::RawConfig| validate::validate(raw, dir));
        if unset.is_empty() {
            return checked;
        }
        let mut problems: Vec<String> = unset
            .iter()
            .map(|(path, problem)| format!("{path}: {problem}"))
            .collect();
        if let Err(e) = checked {
            problems.extend(
                e.problems
                    .into_iter()
                    .filter(|p| !unset.iter().any(|(path, _)| same_field(p, path))),
            );
        }
        Err(ConfigError { problems })
    }

    /// A one-line summary for `sluice check-config`.
    pub fn summary(&self) -> String {
        let chains: usize = self.models.values().map(|m| m.chain.len()).sum();
        format!(
            "ok: listen {}, {} provider(s), {} model alias(es) with {} chain entr{}, {} key(s), {} priced model(s)",
            self.server.listen,
            self.providers.len(),
            self.models.len(),
            chains,
            if chains == 1 { "y" } else { "ies" },
            self.keys.len(),
            self.prices.models.len()
        )
    }
}
