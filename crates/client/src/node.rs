//! The node role: the gateway sends `tool.invoke` requests, the node's [`ToolHandler`]
//! runs them, each answer goes back as a `res`. Invocations run concurrently, each
//! bounded by the `timeout_ms` the gateway gave it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};
use sluice_protocol::methods::{TOOL_INVOKE, ToolInvoke, ToolResult};
use sluice_protocol::{ErrorBody, Request, Response, codes};
use tokio::sync::Semaphore;

use crate::config::NodeConfig;

/// One invocation of a tool.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The tool's name, one of those the node declared.
    pub tool: String,
    /// The arguments, meant to match the tool's JSON Schema (the gateway passes what
    /// the model wrote; check them).
    pub arguments: Value,
    /// How long the gateway waits for the answer; the handler is cancelled after it.
    pub timeout: Duration,
}

impl ToolCall {
    /// A call, for testing a handler without a gateway.
    pub fn new(tool: impl Into<String>, arguments: Value, timeout: Duration) -> ToolCall {
        ToolCall {
            tool: tool.into(),
            arguments,
            timeout,
        }
    }
}

/// Why a tool failed, as the gateway (and the model) will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .0.code, .0.message)]
pub struct ToolError(pub ErrorBody);

impl ToolError {
    /// The tool ran and failed (`internal_error`, not retryable); the message is what
    /// the model is told.
    pub fn failed(message: impl Into<String>) -> ToolError {
        ToolError::new(codes::INTERNAL, message, false)
    }

    /// The arguments do not fit the tool's schema (`invalid_params`).
    pub fn invalid_arguments(message: impl Into<String>) -> ToolError {
        ToolError::new(codes::INVALID_PARAMS, message, false)
    }

    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> ToolError {
        ToolError(ErrorBody {
            code: code.to_owned(),
            message: message.into(),
            retryable,
            retry_after_ms: None,
        })
    }
}

/// What a boxed handler future looks like.
pub type ToolFuture = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send + 'static>>;

/// Runs a node's tools. An async closure `|call: ToolCall| async move { … }` returning
/// `Result<Value, ToolError>` is one; implement the trait for a type that needs more.
/// The `Ok` value is the tool's output (text or JSON), sent as `{"output": …}`.
pub trait ToolHandler: Send + Sync + 'static {
    fn invoke(&self, call: ToolCall) -> ToolFuture;
}

impl<F, Fut> ToolHandler for F
where
    F: Fn(ToolCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
{
    fn invoke(&self, call: ToolCall) -> ToolFuture {
        Box::pin(self(call))
    }
}

/// Serves one gateway request on a node: the answer to send back.
pub(crate) async fn serve(node: &NodeConfig, slots: Arc<Semaphore>, req: Request) -> Response {
    let id = req.id;
    if req.method != TOOL_INVOKE {
        let e = ToolError::new(
            codes::UNKNOWN_METHOD,
            format!("a node serves {TOOL_INVOKE}, not {}", req.method),
            false,
        );
        return Response::err(id, e.0);
    }
    let invoke: ToolInvoke = match serde_json::from_value(req.params) {
        Ok(i) => i,
        Err(e) => return Response::err(id, ToolError::invalid_arguments(e.to_string()).0),
    };
    if !node.tools.iter().any(|t| t.name == invoke.tool) {
        let e = ToolError::new(
            codes::NODE_UNAVAILABLE,
            format!("node {} has no tool {}", node.name, invoke.tool),
            false,
        );
        return Response::err(id, e.0);
    }
    let timeout = Duration::from_millis(invoke.timeout_ms);
    let call = ToolCall {
        tool: invoke.tool,
        arguments: invoke.arguments,
        timeout,
    };
    let run = async {
        // The semaphore lives as long as the node: acquiring cannot fail.
        let _slot = slots.acquire().await;
        // A handler that panics is a failed tool, answered as such, not a request the
        // gateway waits on until its timeout.
        AssertUnwindSafe(node.handler.invoke(call))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ToolError::failed("the tool's handler panicked")))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => Response::ok(
            id,
            serde_json::to_value(ToolResult { output }).unwrap_or_else(|_| json!({})),
        ),
        Ok(Err(ToolError(e))) => Response::err(id, e),
        Err(_) => Response::err(
            id,
            ToolError::new(
                codes::TOOL_TIMEOUT,
                format!("no result within {} ms", invoke.timeout_ms),
                true,
            )
            .0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::ToolSpec;

    fn node() -> NodeConfig {
        let tools = vec![ToolSpec {
            name: "echo".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }];
        NodeConfig::new("n", tools, |call: ToolCall| async move {
            match call.arguments.get("sleep_ms").and_then(Value::as_u64) {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!("slept"))
                }
                None if call.arguments.get("fail").is_some() => Err(ToolError::failed("asked to")),
                None if call.arguments.get("panic").is_some() => panic!("a bug in the tool"),
                None => Ok(call.arguments),
            }
        })
    }

    fn req(tool: &str, arguments: Value, timeout_ms: u64) -> Request {
        Request {
            id: "g1".into(),
            method: TOOL_INVOKE.into(),
            params: json!({"tool": tool, "arguments": arguments, "timeout_ms": timeout_ms}),
        }
    }

    async fn answer(r: Request) -> Response {
        serve(&node(), Arc::new(Semaphore::new(4)), r).await
    }

    #[tokio::test]
    async fn each_outcome_is_one_answer() {
        let ok = answer(req("echo", json!({"a": 1}), 1000)).await;
        assert_eq!(ok.result, Some(json!({"output": {"a": 1}})));
        let failed = answer(req("echo", json!({"fail": true}), 1000)).await;
        assert_eq!(failed.error.map(|e| e.code), Some("internal_error".into()));
        let panicked = answer(req("echo", json!({"panic": true}), 1000)).await;
        assert_eq!(
            panicked.error.map(|e| e.code),
            Some("internal_error".into()),
            "a panic is answered, not left to the gateway's timeout"
        );
        let unknown = answer(req("nope", json!({}), 1000)).await;
        assert_eq!(
            unknown.error.map(|e| e.code),
            Some("node_unavailable".into())
        );
        let slow = answer(req("echo", json!({"sleep_ms": 5000}), 50)).await;
        assert_eq!(
            slow.error.map(|e| e.code),
            Some("tool_timeout".into()),
            "the handler is cut at the request's timeout"
        );
        let mut other = req("echo", json!({}), 10);
        other.method = "chat.completions".into();
        assert_eq!(
            answer(other).await.error.map(|e| e.code),
            Some("unknown_method".into())
        );
        let mut bad = req("echo", json!({}), 10);
        bad.params = json!({"tool": 5});
        assert_eq!(
            answer(bad).await.error.map(|e| e.code),
            Some("invalid_params".into())
        );
    }
}
