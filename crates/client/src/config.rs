//! What [`crate::Client::connect`] is given: where the gateway is, the key, who is
//! connecting (a client, or a node with its tools), and how long to wait for what.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_protocol::{Resume, ToolSpec};

use crate::node::ToolHandler;

/// A gateway key. `Debug` and `Display` print `***`, so a config can be logged without
/// leaking it; [`Token::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Token {
    fn from(s: String) -> Token {
        Token(s)
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Token {
        Token(s.to_owned())
    }
}

/// How to connect. Build it with [`ClientConfig::new`] and change the fields you need:
///
/// ```
/// # use std::time::Duration;
/// let mut config = sluice_client::ClientConfig::new("ws://127.0.0.1:8080/ws", "sk-…");
/// config.name = "my-agent".into();
/// config.call_timeout = Duration::from_secs(10);
/// config.reconnect.max_attempts = Some(20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The gateway's WebSocket endpoint: `ws://host:port/ws` (`wss://` needs the
    /// `rustls-tls-native-roots` feature).
    pub url: String,
    pub token: Token,
    /// This program's name and version, sent in `connect` for the gateway's logs.
    pub name: String,
    pub version: String,
    /// `Some`: connect as a node serving these tools (`role: "node"`).
    pub node: Option<NodeConfig>,
    /// Continue this session instead of starting one (for a program that restarts and
    /// kept its session id and last seq). `None`: a new session.
    pub resume: Option<Resume>,
    /// From opening the socket to `hello`, for each connection attempt.
    pub connect_timeout: Duration,
    /// How long [`crate::Client::call`] waits for its answer (including a wait for a
    /// reconnect, when the call is made while the connection is down).
    pub call_timeout: Duration,
    /// How long a [`crate::ChatStream`] waits for its next event before it ends with
    /// [`crate::ChatError::IdleTimeout`].
    pub chat_idle_timeout: Duration,
    pub heartbeat: Heartbeat,
    pub reconnect: Reconnect,
    /// Items [`crate::Client::events`] subscribers may fall behind by before they miss
    /// some (and are told how many, [`crate::SessionEvent::Lagged`]).
    pub event_buffer: usize,
}

impl ClientConfig {
    /// A client (not a node) with the defaults: 10 s to connect, 30 s per call, 5 min of
    /// silence in a chat stream, reconnecting without limit with a backoff from 100 ms to
    /// 10 s.
    pub fn new(url: impl Into<String>, token: impl Into<Token>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: token.into(),
            name: "sluice-client".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: None,
            resume: None,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            chat_idle_timeout: Duration::from_secs(300),
            heartbeat: Heartbeat::default(),
            reconnect: Reconnect::default(),
            event_buffer: 1024,
        }
    }
}

/// When a silent gateway counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Nothing (no frame, no ping) from the gateway for this long drops the connection,
    /// and the client reconnects. `None`: twice the gateway's `hello.heartbeat_ms`, as
    /// the protocol recommends.
    pub silence: Option<Duration>,
}

/// Reconnecting after the connection drops or the gateway asks for it (close codes for
/// which `sluice_protocol::close::should_reconnect` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// `false`: a dropped connection closes the client for good.
    pub enabled: bool,
    /// The backoff's first ceiling; each failed attempt doubles it up to `max_delay`.
    /// Delays are drawn with full jitter, so clients dropped together do not return
    /// together.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failed attempts before the client gives up. `None`: never.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            enabled: true,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

/// The node role: a name, the tools it serves, and the handler that runs them.
#[derive(Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    pub name: String,
    pub tools: Vec<ToolSpec>,
    pub handler: Arc<dyn ToolHandler>,
    /// Invocations run at once, at most; more wait (within their own timeout).
    pub max_concurrent: usize,
}

impl NodeConfig {
    /// A node serving `tools` with `handler`, which may be an async closure
    /// `|call: ToolCall| async move { … }` returning `Result<Value, ToolError>`.
    pub fn new(
        name: impl Into<String>,
        tools: Vec<ToolSpec>,
        handler: impl ToolHandler,
    ) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            tools,
            handler: Arc::new(handler),
            max_concurrent: 64,
        }
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("tools", &self.tools)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_reaches_a_log() {
        let c = ClientConfig::new("ws://h/ws", "sk-very-secret");
        let shown = format!("{c:?} {}", c.token);
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(c.token.expose(), "sk-very-secret");
    }
}
