//! `sluice node`: a tool node whose tools are commands. It reads a node config
//! ([`config`]), connects to the gateway as a node with `sluice-client` (which
//! reconnects and resumes by itself), and answers each `tool.invoke` by running the
//! tool's command ([`exec`]): the arguments as JSON on stdin, stdout as the output,
//! bounded in time and size. The gateway side of nodes is not here.
//!
//! # Layout
//! - [`config`]: the node's TOML file, raw → validated, every problem with its path.
//! - [`exec`]: running one command with a timeout and an output cap.
//! - [`run`]: connect, serve until shutdown or until the client stops for good.

pub mod config;
pub mod exec;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sluice_backoff::Backoff;
use sluice_client::protocol::codes;
use sluice_client::{
    Client, ClientConfig, ClientError, CloseReason, NodeConfig, ToolCall, ToolError,
};

pub use config::Config;
use exec::{ExecError, ToolCommand};

/// Why a node stopped other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The first connection was refused for good (a bad key, a wrong URL…).
    #[error("cannot connect to the gateway: {0}")]
    Connect(#[from] ClientError),
    /// The connection ended for good (the gateway refused the key on a reconnect, or
    /// closed with a code that says not to come back).
    #[error("the connection to the gateway ended: {0}")]
    Closed(CloseReason),
}

/// Serves the config's tools until `shutdown` completes (then the connection is closed
/// cleanly and this returns `Ok`) or the client stops for good. A gateway that cannot be
/// reached yet is waited for, with backoff; one that refuses the key is an error at once.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let client_config = client_config(&cfg);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let client = loop {
        match Client::connect(client_config.clone()).await {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                tracing::warn!(url = %cfg.url, "cannot connect to the gateway yet: {e}");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(e) => return Err(RunError::Connect(e)),
        }
    };
    // Tests and scripts wait for this line.
    tracing::info!(
        node = %cfg.name,
        session = %client.session_id(),
        tools = cfg.tools.len(),
        "sluice node connected to {}", cfg.url
    );
    tokio::select! {
        () = &mut shutdown => {
            client.close().await;
            tracing::info!(node = %cfg.name, "sluice node stopped");
            Ok(())
        }
        reason = client.closed() => Err(RunError::Closed(reason)),
    }
}

fn client_config(cfg: &Config) -> ClientConfig {
    let commands: Arc<HashMap<String, ToolCommand>> = Arc::new(
        cfg.tools
            .iter()
            .map(|t| (t.spec.name.clone(), t.command.clone()))
            .collect(),
    );
    let specs = cfg.tools.iter().map(|t| t.spec.clone()).collect();
    let handler = move |call: ToolCall| {
        let commands = commands.clone();
        async move {
            let Some(cmd) = commands.get(&call.tool) else {
                return Err(ToolError::new(
                    codes::NODE_UNAVAILABLE,
                    format!("no tool {}", call.tool),
                    false,
                ));
            };
            let started = std::time::Instant::now();
            let result = exec::run(cmd, &call.arguments).await;
            let ms = started.elapsed().as_millis();
            match &result {
                Ok(_) => tracing::info!(tool = %call.tool, ms, "tool ran"),
                Err(e) => tracing::warn!(tool = %call.tool, ms, "tool failed: {e}"),
            }
            result.map_err(tool_error)
        }
    };
    let mut node = NodeConfig::new(cfg.name.clone(), specs, handler);
    node.max_concurrent = cfg.max_concurrent;
    let mut c = ClientConfig::new(cfg.url.clone(), cfg.token.expose());
    c.name = "sluice-node".into();
    c.node = Some(node);
    c
}

/// A command's failure as the gateway (and the model) sees it.
fn tool_error(e: ExecError) -> ToolError {
    match e {
        ExecError::TimedOut(_) => ToolError::new(codes::TOOL_TIMEOUT, e.to_string(), true),
        ExecError::Spawn { .. }
        | ExecError::OutputTooLarge { .. }
        | ExecError::Failed { .. }
        | ExecError::Io(_) => ToolError::failed(e.to_string()),
    }
}
