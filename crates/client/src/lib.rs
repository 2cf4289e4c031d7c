//! A Rust client for Sluice's WebSocket protocol (docs/protocol.md), for agents and for
//! tool nodes: calls correlated by id with a timeout each, streamed chats, the session's
//! events, and a connection that comes back by itself (reconnect with backoff, `resume`
//! after the last event delivered, no event twice, every loss announced). It speaks the
//! frames of `sluice-protocol` and owns no policy of the gateway's.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use sluice_client::{Client, ClientConfig};
//!
//! let client = Client::connect(ClientConfig::new("ws://127.0.0.1:8080/ws", "sk-…")).await?;
//! let mut chat = client
//!     .chat(serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
//!     .await?;
//! while let Some(item) = chat.next().await {
//!     print!("{}", item?.text());
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`ClientConfig`] and its parts (heartbeat, reconnect, the node role).
//! - `client`: [`Client`], the cloneable handle: `call`, `chat`, `events`, `close`.
//! - `driver`: the connection task that owns the socket, delivers events and reconnects.
//! - `handshake`: one connection attempt, `connect` → `hello`.
//! - [`chat`]: [`ChatStream`], one call's events.
//! - [`events`]: [`Events`], everything that happens to the session.
//! - [`node`]: [`ToolHandler`], serving `tool.invoke` as a node.
//! - [`error`]: [`ClientError`], [`CallError`], [`CloseReason`].

pub mod chat;
mod client;
pub mod config;
mod driver;
pub mod error;
pub mod events;
mod handshake;
pub mod node;

pub use chat::{ChatAnswer, ChatError, ChatEvent, ChatStream};
pub use client::Client;
pub use config::{ClientConfig, Heartbeat, NodeConfig, Reconnect, Token};
pub use error::{CallError, ClientError, CloseReason, TransportError};
pub use events::{Events, Gap, SessionEvent};
pub use node::{ToolCall, ToolError, ToolFuture, ToolHandler};
/// The protocol's types, for params, results, tool specs and error bodies.
pub use sluice_protocol as protocol;
