//! The frames of protocol 1: JSON text frames told apart by `type`.
//!
//! ```text
//! → connect   (first frame; the client's versions, auth, role, node tools, resume)
//! ← hello     (the version chosen, the session, heartbeat, limits, methods, events)
//! ↔ req       {id, method, params}          either side may ask
//! ↔ res       {id, ok, result | error}      every req is answered, also when it fails
//! ← event     {seq, event, data}            per-session sequence, replayed on resume
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One frame, either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Connect(Connect),
    Hello(Hello),
    Req(Request),
    Res(Response),
    Event(Event),
}

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// The oldest protocol version the client speaks.
    #[serde(default = "one")]
    pub min_protocol: u32,
    /// The newest protocol version the client speaks.
    #[serde(default = "one")]
    pub max_protocol: u32,
    /// Shorthand for `min_protocol = max_protocol = protocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// The gateway key. Absent when an identity-aware proxy in front of the gateway
    /// vouches for the client (`[server] auth = "trusted_proxy"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub role: Role,
    /// Required when `role` is `node`: its name and the tools it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeInfo>,
    /// Continue a session after a reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// The client program, for logs: `{"name": "…", "version": "…"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

fn one() -> u32 {
    1
}

impl Connect {
    /// The versions the client speaks, `protocol` taken as both ends when given.
    pub fn versions(&self) -> (u32, u32) {
        match self.protocol {
            Some(p) => (p, p),
            None => (self.min_protocol, self.max_protocol),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub token: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Calls methods and receives events.
    #[default]
    Client,
    /// Also serves tools: the gateway sends it `tool.invoke` requests.
    Node,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub name: String,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

/// A tool a node serves, as a model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema of the tool's arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub session_id: String,
    /// The last event seq the client has; events after it are replayed.
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// The gateway's answer to `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hello {
    /// The version chosen: the newest both sides speak.
    pub protocol: u32,
    pub session_id: String,
    /// Whether this continues the session named in `resume`.
    pub resumed: bool,
    /// The seq of the last event the session has sent so far (0: none).
    pub last_seq: u64,
    /// On a resume that could not be served whole: events after `last_seq` up to
    /// `replay_gap.oldest_seq - 1` are gone; replay starts at `oldest_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_gap: Option<ReplayGap>,
    /// The gateway pings this often; a peer silent for twice as long is dropped.
    pub heartbeat_ms: u64,
    pub limits: ServerLimits,
    /// The methods the gateway serves, so a client can detect features.
    pub methods: Vec<String>,
    /// The events it may send.
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayGap {
    /// The oldest event the session still holds.
    pub oldest_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerLimits {
    /// Frames larger than this close the socket (1009).
    pub max_frame_bytes: u64,
    /// Events a session keeps for replay, at most (count and bytes).
    pub replay_events: u64,
    pub replay_bytes: u64,
    /// How long a session's work and events wait for a client that went away.
    pub resume_grace_ms: u64,
    /// Requests a connection may have unanswered at once.
    pub max_pending_requests: u64,
}

/// A request, either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the sender, unique among its requests in flight (1 to 128 bytes).
    pub id: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: impl Into<String>, result: Value) -> Self {
        Response {
            id: id.into(),
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: impl Into<String>, error: ErrorBody) -> Self {
        Response {
            id: id.into(),
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// Why a request failed: a code from the closed list of [`crate::codes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// Whether the same request may succeed if sent again (after `retry_after_ms`).
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Something that happened in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// 1, 2, 3… per session, across reconnects: a gap means events were missed.
    pub seq: u64,
    pub event: String,
    pub data: Value,
}
