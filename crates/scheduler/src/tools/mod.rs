//! The tools of a run: resolved once at its start from its agent's `tools` and the nodes
//! its key has connected then ([`ToolSet::resolve`]), offered to the model as functions,
//! and run when the model asks ([`ToolSet::run`]).
//!
//! A tool's failure (unknown name, arguments that are not JSON or do not fit its
//! schema, a timeout, a node that went away) does not end the run: it goes back to the
//! model as the tool's result, `{"error": {"code", "message"}}`, and the run's bounds
//! and loop detection keep that from going on forever. Every result is cut to the
//! agent's `max_tool_result_bytes` before the model sees it.

pub mod builtin;
pub mod node;
pub mod schema;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_config::{AgentConfig, ToolRef};
use sluice_llm::{FunctionDef, Tool};
use sluice_protocol::ErrorBody;

pub use node::{NodeFailure, NodeToolDef, NodeTools};
use schema::ArgsSchema;

/// What runs a tool.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    TimeNow,
    HttpFetch,
    /// A node tool; `nodes`: the nodes that offered it when the run started, tried in
    /// order when one is unavailable (one for `node:NAME/TOOL`, any for `node:*/TOOL`).
    Node {
        nodes: Vec<String>,
        tool: String,
    },
    /// Another agent, run as a child of this run.
    Agent(String),
}

/// One tool offered to the model.
#[derive(Debug)]
pub struct Entry {
    /// The function name the model calls.
    pub name: String,
    /// As the agent's config names it.
    pub tool: String,
    pub kind: Kind,
    def: Tool,
    schema: ArgsSchema,
}

/// The tools of one run.
#[derive(Debug, Default)]
pub struct ToolSet {
    entries: Vec<Entry>,
}

/// A tool's answer for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What the model is given as the tool's result.
    pub output: Value,
    pub error: Option<ErrorBody>,
}

impl Outcome {
    pub fn ok(output: Value) -> Outcome {
        Outcome {
            output,
            error: None,
        }
    }

    pub fn err(code: &str, message: impl Into<String>) -> Outcome {
        let error = ErrorBody {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
            retry_after_ms: None,
        };
        Outcome {
            output: json!({"error": {"code": error.code, "message": error.message}}),
            error: Some(error),
        }
    }
}

/// The tool codes the model may see.
pub mod codes {
    pub const UNKNOWN_TOOL: &str = "unknown_tool";
    pub const INVALID_ARGUMENTS: &str = "invalid_arguments";
    pub const REPEATED_CALL: &str = "repeated_call";
    pub use sluice_protocol::codes::{NODE_UNAVAILABLE, TOOL_TIMEOUT};
    pub const TOOL_FAILED: &str = "tool_failed";
}

/// An OpenAI function name: `^[A-Za-z0-9_-]{1,64}$`. Other characters become `_`.
fn function_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

impl ToolSet {
    /// The tools `agent` may use, with `nodes` (the key's connected node tools now);
    /// also the agent's tools that cannot be offered (no node has them).
    /// `describe_agent` gives an agent tool's description.
    pub fn resolve(
        agent: &AgentConfig,
        nodes: &[NodeToolDef],
        fetch: bool,
        describe_agent: impl Fn(&str) -> Option<String>,
    ) -> (ToolSet, Vec<String>) {
        let mut set = ToolSet::default();
        let mut unavailable = Vec::new();
        let mut taken = HashSet::new();
        for r in &agent.tools {
            let (base, kind, description, parameters) = match r {
                ToolRef::Builtin(name) if name == builtin::TIME_NOW => (
                    name.clone(),
                    Kind::TimeNow,
                    builtin::TIME_NOW_DESCRIPTION.to_owned(),
                    builtin::time_now_schema(),
                ),
                ToolRef::Builtin(name) if name == builtin::HTTP_FETCH && fetch => (
                    name.clone(),
                    Kind::HttpFetch,
                    builtin::HTTP_FETCH_DESCRIPTION.to_owned(),
                    builtin::http_fetch_schema(),
                ),
                ToolRef::Builtin(name) => {
                    unavailable.push(name.clone());
                    continue;
                }
                ToolRef::Node { node, tool } => {
                    let Some(def) = nodes.iter().find(|d| &d.node == node && &d.name == tool)
                    else {
                        unavailable.push(r.to_string());
                        continue;
                    };
                    (
                        format!("{node}__{tool}"),
                        Kind::Node {
                            nodes: vec![node.clone()],
                            tool: tool.clone(),
                        },
                        def.description.clone(),
                        def.parameters.clone(),
                    )
                }
                ToolRef::AnyNode { tool } => {
                    let offering: Vec<&NodeToolDef> =
                        nodes.iter().filter(|d| &d.name == tool).collect();
                    let Some(first) = offering.first() else {
                        unavailable.push(r.to_string());
                        continue;
                    };
                    (
                        tool.clone(),
                        Kind::Node {
                            nodes: offering.iter().map(|d| d.node.clone()).collect(),
                            tool: tool.clone(),
                        },
                        first.description.clone(),
                        first.parameters.clone(),
                    )
                }
                ToolRef::Agent(other) => (
                    format!("agent__{other}"),
                    Kind::Agent(other.clone()),
                    describe_agent(other)
                        .unwrap_or_else(|| format!("Ask the `{other}` agent to do a task.")),
                    json!({
                        "type": "object",
                        "properties": {"input": {"type": "string", "description": "The task, in words."}},
                        "required": ["input"],
                        "additionalProperties": false
                    }),
                ),
            };
            // ASCII only, so any cut is at a character boundary.
            let base = function_name(&base);
            let mut name = base.clone();
            let mut n = 2;
            while taken.contains(&name) {
                let suffix = format!("_{n}");
                let keep = base.len().min(64 - suffix.len());
                name = format!("{}{suffix}", &base[..keep]);
                n += 1;
            }
            taken.insert(name.clone());
            let schema = ArgsSchema::compile(&parameters);
            set.entries.push(Entry {
                def: Tool {
                    kind: "function".to_owned(),
                    function: FunctionDef {
                        name: name.clone(),
                        description: Some(description),
                        parameters: Some(parameters),
                        strict: None,
                    },
                },
                name,
                tool: r.to_string(),
                kind,
                schema,
            });
        }
        (set, unavailable)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The function definitions the model is offered.
    pub fn defs(&self) -> Vec<Tool> {
        self.entries.iter().map(|e| e.def.clone()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

impl Entry {
    /// The call's arguments as the tool takes them, or why they are refused.
    pub fn arguments(&self, raw: &str) -> Result<Value, Outcome> {
        let raw = raw.trim();
        let args = if raw.is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(raw).map_err(|e| {
                Outcome::err(
                    codes::INVALID_ARGUMENTS,
                    format!("the arguments are not JSON: {e}"),
                )
            })?
        };
        self.schema.check(&args).map_err(|problems| {
            Outcome::err(
                codes::INVALID_ARGUMENTS,
                format!("the arguments do not fit the tool's schema:\n{problems}"),
            )
        })?;
        Ok(args)
    }

    /// Runs a built-in or node tool (agents are run by the engine).
    pub async fn run(&self, env: &Env<'_>, args: Value) -> Outcome {
        let (nodes, key_ref, timeout) = (env.nodes, env.key_ref, env.timeout);
        match &self.kind {
            Kind::TimeNow => builtin::time_now(sluice_service::ids::now_ms()),
            Kind::HttpFetch => match env.fetcher {
                Some(f) => builtin::http_fetch(f, &args).await,
                None => Outcome::err(codes::TOOL_FAILED, "http_fetch is not configured"),
            },
            Kind::Node {
                nodes: offering,
                tool,
            } => {
                let mut last = Outcome::err(codes::NODE_UNAVAILABLE, "no node offers the tool");
                for node in offering {
                    match nodes
                        .invoke(key_ref, node, tool, args.clone(), timeout)
                        .await
                    {
                        Ok(output) => return Outcome::ok(output),
                        // Another node with the tool may answer.
                        Err(NodeFailure::Unavailable(m)) => {
                            last = Outcome::err(codes::NODE_UNAVAILABLE, m);
                        }
                        Err(NodeFailure::Timeout(m)) => {
                            return Outcome::err(codes::TOOL_TIMEOUT, m);
                        }
                        Err(NodeFailure::Failed { code, message }) => {
                            return Outcome::err(&code, message);
                        }
                    }
                }
                last
            }
            Kind::Agent(_) => Outcome::err(
                codes::TOOL_FAILED,
                "an agent tool is run by the scheduler, not here",
            ),
        }
    }
}

/// What running a tool needs from its run.
pub struct Env<'a> {
    pub nodes: &'a Arc<dyn NodeTools>,
    pub fetcher: Option<&'a sluice_fetch::Fetcher>,
    /// The run's gateway key: its nodes.
    pub key_ref: &'a str,
    pub timeout: Duration,
}

/// The tool's output as the text the model gets, cut to `max` bytes (at a character
/// boundary, saying how much was cut). Returns whether it was cut.
pub fn capped(output: &Value, max: usize) -> (String, bool) {
    let text = match output {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    (format!("{}…[truncated {cut} bytes]", &text[..end]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_function_rule() {
        assert_eq!(function_name("laptop__shell"), "laptop__shell");
        assert_eq!(
            function_name("my node.local__run it"),
            "my_node_local__run_it"
        );
        assert_eq!(function_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn results_are_cut_at_a_character_boundary() {
        let (t, cut) = capped(&json!("héllo wörld"), 3);
        assert!(cut);
        assert!(t.starts_with("h"), "{t}");
        assert!(t.contains("truncated"), "{t}");
        let (t, cut) = capped(&json!({"a": 1}), 100);
        assert_eq!((t.as_str(), cut), ("{\"a\":1}", false));
    }
}
