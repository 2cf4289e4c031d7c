//! What can go wrong: a submission or a follow refused ([`SchedulerError`], answered at
//! once), and a run that ends without an answer ([`RunFailure`], its `run.failed`). Each
//! maps to one stable code in one match, so a transport never decides a code.

use std::time::Duration;

use sluice_limits::lease::Refusal;
use sluice_limits::spec::Meter;
use sluice_protocol::runs::BreakerTrip;
use sluice_protocol::{ErrorBody, codes};
use sluice_service::ServiceError;
use sluice_store::runs::status;

/// A request about runs refused before any run is started or followed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("no agent `{0}` in this gateway's config")]
    AgentNotFound(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("agent `{agent}` already has {max} runs going; wait for one to end")]
    TooManyRuns { agent: String, max: u32 },
    #[error(
        "agent `{agent}`'s runs keep failing ({reason}): its breaker refuses new runs for now; an operator can reset it"
    )]
    AgentBreakerOpen {
        agent: String,
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("no run `{0}` for this key")]
    RunNotFound(String),
    #[error(
        "idempotency key `{0}` was already used by this key for a different request; use a new key"
    )]
    IdempotencyKeyReused(String),
    #[error("the gateway is shutting down; retry shortly")]
    ShuttingDown,
    /// The detail (a database error) goes to the log, never to the client.
    #[error("the run store could not be reached; retry shortly")]
    Store(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// At start: a setting the config check could not judge.
    #[error("{0}")]
    Config(String),
}

impl SchedulerError {
    /// The protocol's error body (the HTTP API uses the same code).
    pub fn body(&self) -> ErrorBody {
        let body = |code: &str, retryable: bool, retry_after: Option<Duration>| ErrorBody {
            code: code.to_owned(),
            message: self.to_string(),
            retryable,
            retry_after_ms: retry_after.map(ms),
        };
        match self {
            SchedulerError::AgentNotFound(_) => body(codes::AGENT_NOT_FOUND, false, None),
            SchedulerError::InvalidInput(_) => body(codes::INVALID_PARAMS, false, None),
            SchedulerError::TooManyRuns { .. } => body(codes::TOO_MANY_RUNS, true, None),
            SchedulerError::AgentBreakerOpen { retry_after, .. } => {
                body(codes::AGENT_BREAKER_OPEN, true, *retry_after)
            }
            SchedulerError::RunNotFound(_) => body(codes::RUN_NOT_FOUND, false, None),
            SchedulerError::IdempotencyKeyReused(_) => {
                body(codes::IDEMPOTENCY_KEY_REUSED, false, None)
            }
            SchedulerError::ShuttingDown => {
                body("shutting_down", true, Some(Duration::from_secs(1)))
            }
            SchedulerError::Store(_) => body(codes::INTERNAL, true, Some(Duration::from_secs(1))),
            SchedulerError::Service(e) => service_body(e),
            SchedulerError::Config(_) => body(codes::INTERNAL, false, None),
        }
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A service error as the protocol carries it: the same codes as HTTP.
pub fn service_body(e: &ServiceError) -> ErrorBody {
    let info = e.info();
    ErrorBody {
        code: info.code.to_owned(),
        message: info.message,
        retryable: info.retryable,
        retry_after_ms: info.retry_after.map(ms),
    }
}

/// Why a run ended without an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    /// The run's final status: `failed`, `cancelled` or `interrupted`.
    pub status: &'static str,
    pub error: ErrorBody,
    pub breaker: Option<Box<BreakerTrip>>,
}

/// The breakers a run can trip, by the names `run.failed` gives them.
pub mod breaker {
    pub const MAX_STEPS: &str = "max_steps";
    pub const MAX_LLM_CALLS: &str = "max_llm_calls";
    pub const MAX_RETRIES: &str = "max_retries";
    pub const MAX_TOKENS: &str = "max_tokens";
    pub const MAX_COST: &str = "max_cost_usd";
    pub const DEADLINE: &str = "deadline";
    pub const LOOP_TOOL_CALL: &str = "loop_tool_call";
    pub const LOOP_FAILING_REQUEST: &str = "loop_failing_request";
    pub const PROVIDER: &str = "provider";
    pub const SPEND_VELOCITY: &str = "spend_velocity";
}

impl RunFailure {
    /// A breaker stopped the run.
    pub fn tripped(name: &str, reason: impl Into<String>) -> RunFailure {
        let reason = reason.into();
        RunFailure {
            status: status::FAILED,
            error: ErrorBody {
                code: codes::BREAKER_TRIPPED.to_owned(),
                message: format!("the run's `{name}` breaker tripped: {reason}"),
                retryable: false,
                retry_after_ms: None,
            },
            breaker: Some(Box::new(BreakerTrip {
                name: name.to_owned(),
                reason,
            })),
        }
    }

    pub fn cancelled() -> RunFailure {
        RunFailure {
            status: status::CANCELLED,
            error: plain(codes::CANCELLED, "the run was cancelled"),
            breaker: None,
        }
    }

    pub fn interrupted() -> RunFailure {
        RunFailure {
            status: status::INTERRUPTED,
            error: ErrorBody {
                retryable: true,
                ..plain(
                    codes::INTERRUPTED,
                    "the gateway stopped while the run was in flight",
                )
            },
            breaker: None,
        }
    }

    pub fn failed(code: &str, message: impl Into<String>) -> RunFailure {
        RunFailure {
            status: status::FAILED,
            error: plain(code, &message.into()),
            breaker: None,
        }
    }

    /// A model call's error that ends the run: the run's own budget, the provider's
    /// breaker and the key's spend breaker are breakers of the run; anything else keeps
    /// the service's code.
    pub fn from_service(e: &ServiceError) -> RunFailure {
        match e {
            ServiceError::LimitReached(r) if r.scope.starts_with("run:") => {
                RunFailure::tripped(run_bound(r), e.to_string())
            }
            ServiceError::SpendBreakerOpen { .. } => {
                RunFailure::tripped(breaker::SPEND_VELOCITY, e.to_string())
            }
            _ if e.code() == "circuit_open" => {
                RunFailure::tripped(breaker::PROVIDER, e.info().message)
            }
            _ => RunFailure {
                status: status::FAILED,
                error: service_body(e),
                breaker: None,
            },
        }
    }
}

/// The run bound a refusal of the run's budget names.
fn run_bound(r: &Refusal) -> &'static str {
    match r.meter {
        Meter::Tokens => breaker::MAX_TOKENS,
        Meter::UsdNanos => breaker::MAX_COST,
        Meter::Requests => breaker::MAX_LLM_CALLS,
    }
}

fn plain(code: &str, message: &str) -> ErrorBody {
    ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
        retryable: false,
        retry_after_ms: None,
    }
}
