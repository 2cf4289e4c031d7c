//! Node tools: what the scheduler needs from the gateway's connected nodes. The gateway
//! holds the nodes (their WebSocket connections) and implements [`NodeTools`]; the
//! scheduler sits below it and sees only this trait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

/// A tool a connected node offers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeToolDef {
    pub node: String,
    pub name: String,
    pub description: String,
    /// A JSON Schema of the arguments.
    pub parameters: Value,
}

/// Why a node tool gave no result.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeFailure {
    /// The node is not connected, lacks the tool, or went away before it answered.
    Unavailable(String),
    /// No answer within the timeout.
    Timeout(String),
    /// The node answered with an error.
    Failed { code: String, message: String },
}

pub type Invoked<'a> = Pin<Box<dyn Future<Output = Result<Value, NodeFailure>> + Send + 'a>>;

pub trait NodeTools: Send + Sync + 'static {
    /// The tools of the nodes connected for this gateway key, now.
    fn tools(&self, key_ref: &str) -> Vec<NodeToolDef>;

    /// Runs `tool` on `node` with `arguments`, waiting at most `timeout`. Dropping the
    /// future gives up the call.
    fn invoke<'a>(
        &'a self,
        key_ref: &'a str,
        node: &'a str,
        tool: &'a str,
        arguments: Value,
        timeout: Duration,
    ) -> Invoked<'a>;
}

/// No nodes at all (a process without the WebSocket gateway; tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNodes;

impl NodeTools for NoNodes {
    fn tools(&self, _key_ref: &str) -> Vec<NodeToolDef> {
        Vec::new()
    }

    fn invoke<'a>(
        &'a self,
        _key_ref: &'a str,
        node: &'a str,
        _tool: &'a str,
        _arguments: Value,
        _timeout: Duration,
    ) -> Invoked<'a> {
        Box::pin(async move {
            Err(NodeFailure::Unavailable(format!(
                "no node `{node}` is connected"
            )))
        })
    }
}
