//! The closed list of error codes a `res` (or a failed call's event) may carry. The
//! completion service's codes (`sluice_service::ErrorInfo::code`: the same as the HTTP
//! API's) plus the protocol's own below; the spec lists them all (docs/protocol.md).

/// The frame is not JSON, or not a frame the protocol knows.
pub const INVALID_FRAME: &str = "invalid_frame";
/// The method is not one the gateway serves (see `hello.methods`).
pub const UNKNOWN_METHOD: &str = "unknown_method";
/// The params are missing a field or have one of the wrong type; the message says which.
pub const INVALID_PARAMS: &str = "invalid_params";
/// A request id is already in flight on this connection, empty, or longer than 128 bytes.
pub const INVALID_REQUEST_ID: &str = "invalid_request_id";
/// The connection has `max_pending_requests` unanswered already.
pub const TOO_MANY_PENDING: &str = "too_many_pending_requests";
/// The session does not exist or belongs to another key.
pub const SESSION_NOT_FOUND: &str = "session_not_found";
/// A tool call went to a node that disconnected (or never had the tool) before it
/// answered.
pub const NODE_UNAVAILABLE: &str = "node_unavailable";
/// A tool call got no answer within its timeout.
pub const TOOL_TIMEOUT: &str = "tool_timeout";
/// The gateway failed in a way the client cannot fix (the store, for one).
pub const INTERNAL: &str = "internal_error";
/// `agent.run` named an agent the gateway's config does not have.
pub const AGENT_NOT_FOUND: &str = "agent_not_found";
/// The agent's runs kept failing: its breaker refuses new runs until it half-opens
/// (`retry_after_ms`), or an operator resets it.
pub const AGENT_BREAKER_OPEN: &str = "agent_breaker_open";
/// The agent already has `max_concurrent_runs` runs going.
pub const TOO_MANY_RUNS: &str = "too_many_runs";
/// No run with this id belongs to the key.
pub const RUN_NOT_FOUND: &str = "run_not_found";
/// The idempotency key was used before, by this gateway key, for a different request.
pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
/// A run's bound or breaker stopped it (`run.failed` names the breaker).
pub const BREAKER_TRIPPED: &str = "breaker_tripped";
/// The run was cancelled.
pub const CANCELLED: &str = "cancelled";
/// The gateway stopped while the run was in flight.
pub const INTERRUPTED: &str = "interrupted";
/// The run's history and input do not fit the agent's `context_tokens`.
pub const CONTEXT_OVERFLOW: &str = "context_overflow";
