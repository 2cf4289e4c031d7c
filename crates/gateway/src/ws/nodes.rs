//! Tool nodes: connections with `role: "node"` that serve tools. The gateway asks a node
//! with a `tool.invoke` request on its socket and waits for the answer, bounded by a
//! timeout. Nodes are a key's own: a node registered with one key serves only calls made
//! for that key. A node that disconnects (or is replaced by a new connection of the same
//! name) fails its invocations in flight with `node_unavailable`, at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;
use sluice_protocol::methods::{TOOL_INVOKE, ToolInvoke, ToolResult};
use sluice_protocol::{ErrorBody, Frame, Request, Response, ToolSpec, codes};
use tokio::sync::oneshot;

type Answer = oneshot::Sender<Result<Value, ErrorBody>>;

#[derive(Default)]
pub struct Nodes {
    nodes: DashMap<(Arc<str>, String), Arc<Node>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

pub struct Node {
    pub name: String,
    pub tools: Vec<ToolSpec>,
    /// The node's connection: its writer sends what is put here.
    out: Arc<super::outbox::Outbox>,
    /// `None` once the node is gone: no call may wait on it any more.
    pending: Mutex<Option<HashMap<String, Answer>>>,
}

impl Node {
    /// An answer from the node to one of the gateway's requests.
    pub(super) fn answered(&self, res: Response) {
        let Some(tx) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|p| p.remove(&res.id))
        else {
            return; // late (timed out) or unknown: nobody waits
        };
        let result = if res.ok {
            match res.result.map(serde_json::from_value::<ToolResult>) {
                Some(Ok(r)) => Ok(r.output),
                _ => Err(unavailable("the node's answer has no `output`")),
            }
        } else {
            Err(res
                .error
                .unwrap_or_else(|| unavailable("the node failed without saying why")))
        };
        let _ = tx.send(result);
    }

    /// The node is gone: its calls fail now, and later ones at once.
    fn fail_all(&self, why: &str) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        for (_, tx) in pending {
            let _ = tx.send(Err(unavailable(why)));
        }
    }

    fn forget(&self, id: &str) {
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            p.remove(id);
        }
    }
}

fn unavailable(message: &str) -> ErrorBody {
    ErrorBody {
        code: codes::NODE_UNAVAILABLE.to_owned(),
        message: message.to_owned(),
        retryable: true,
        retry_after_ms: None,
    }
}

/// Removes a call's pending entry when the call ends, however it ends.
struct Forget<'a> {
    node: &'a Node,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.node.forget(self.id);
    }
}

impl Nodes {
    /// A node connected; one of the same name and key is replaced (its calls fail).
    pub(super) fn register(
        &self,
        key_ref: &Arc<str>,
        name: &str,
        tools: Vec<ToolSpec>,
        out: Arc<super::outbox::Outbox>,
    ) -> Arc<Node> {
        let node = Arc::new(Node {
            name: name.to_owned(),
            tools,
            out,
            pending: Mutex::new(Some(HashMap::new())),
        });
        if let Some(old) = self
            .nodes
            .insert((key_ref.clone(), name.to_owned()), node.clone())
        {
            old.fail_all("the node reconnected; its earlier connection's calls are lost");
        }
        node
    }

    /// The node's connection ended: its calls in flight fail now.
    pub(super) fn unregister(&self, key_ref: &Arc<str>, node: &Arc<Node>) {
        self.nodes
            .remove_if(&(key_ref.clone(), node.name.clone()), |_, n| {
                Arc::ptr_eq(n, node)
            });
        node.fail_all("the node disconnected before it answered");
    }

    /// The nodes of a key, with their tools.
    pub fn list(&self, key_ref: &str) -> Vec<(String, Vec<ToolSpec>)> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .filter(|e| &*e.key().0 == key_ref)
            .map(|e| (e.name.clone(), e.tools.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Runs `tool` on the node `node` of the key, waiting at most `timeout`.
    pub async fn invoke(
        &self,
        key_ref: &str,
        node: &str,
        tool: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, ErrorBody> {
        let Some(n) = self
            .nodes
            .get(&(Arc::from(key_ref), node.to_owned()))
            .map(|n| n.clone())
        else {
            return Err(unavailable(&format!("no node `{node}` is connected")));
        };
        if !n.tools.iter().any(|t| t.name == tool) {
            return Err(unavailable(&format!("node `{node}` has no tool `{tool}`")));
        }
        let id = format!("g{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = n.pending.lock().unwrap_or_else(|p| p.into_inner());
            let Some(pending) = pending.as_mut() else {
                return Err(unavailable("the node disconnected"));
            };
            pending.insert(id.clone(), tx);
        }
        // A caller that gives up (its run cancelled) takes its entry with it.
        let _forget = Forget { node: &n, id: &id };
        let req = Frame::Req(Request {
            id: id.clone(),
            method: TOOL_INVOKE.to_owned(),
            params: serde_json::to_value(ToolInvoke {
                tool: tool.to_owned(),
                arguments,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
            .unwrap_or(Value::Null),
        });
        if n.out.push(sluice_protocol::encode(&req)).is_err() {
            return Err(unavailable("the node's connection is not taking requests"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unavailable("the node disconnected before it answered")),
            Err(_) => Err(ErrorBody {
                code: codes::TOOL_TIMEOUT.to_owned(),
                message: format!(
                    "node `{node}` did not answer `{tool}` within {} ms",
                    timeout.as_millis()
                ),
                retryable: true,
                retry_after_ms: None,
            }),
        }
    }
}

/// The scheduler runs node tools through this: the nodes connected with the run's key.
impl sluice_scheduler::NodeTools for Nodes {
    fn tools(&self, key_ref: &str) -> Vec<sluice_scheduler::NodeToolDef> {
        self.list(key_ref)
            .into_iter()
            .flat_map(|(node, tools)| {
                tools
                    .into_iter()
                    .map(move |t| sluice_scheduler::NodeToolDef {
                        node: node.clone(),
                        name: t.name,
                        description: t.description,
                        parameters: t.parameters,
                    })
            })
            .collect()
    }

    fn invoke<'a>(
        &'a self,
        key_ref: &'a str,
        node: &'a str,
        tool: &'a str,
        arguments: Value,
        timeout: Duration,
    ) -> sluice_scheduler::tools::node::Invoked<'a> {
        use sluice_scheduler::NodeFailure;
        Box::pin(async move {
            Nodes::invoke(self, key_ref, node, tool, arguments, timeout)
                .await
                .map_err(|e| match e.code.as_str() {
                    codes::NODE_UNAVAILABLE => NodeFailure::Unavailable(e.message),
                    codes::TOOL_TIMEOUT => NodeFailure::Timeout(e.message),
                    _ => NodeFailure::Failed {
                        code: e.code,
                        message: e.message,
                    },
                })
        })
    }
}
