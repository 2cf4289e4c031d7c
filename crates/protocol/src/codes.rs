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
