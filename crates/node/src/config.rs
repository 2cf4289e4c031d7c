//! The node's TOML file: which gateway, which key, the node's name, and its tools, each
//! a command. Text → `${ENV}` interpolation (as the gateway's config) → [`raw`] serde
//! structs (unknown fields refused) → [`validate`], which reports every problem with
//! its field path → [`Config`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sluice_client::protocol::ToolSpec;
use sluice_config::{ConfigError, Secret};

use crate::exec::ToolCommand;

/// Defaults, in one place.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Bounds a config may not pass.
const MAX_TIMEOUT_MS: u64 = 60 * 60 * 1000;
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// A validated node config.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ws://…/ws` or `wss://…/ws`.
    pub url: String,
    pub token: Secret,
    pub name: String,
    pub max_concurrent: usize,
    pub tools: Vec<Tool>,
}

#[derive(Debug, Clone)]
pub struct Tool {
    /// What the gateway (and the model) is told.
    pub spec: ToolSpec,
    pub command: ToolCommand,
}

pub mod raw {
    //! The file as written, with its defaults.

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawConfig {
        pub gateway: RawGateway,
        pub node: RawNode,
        #[serde(default)]
        pub tools: Vec<RawTool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawGateway {
        pub url: String,
        pub token: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawNode {
        pub name: String,
        #[serde(default = "max_concurrent")]
        pub max_concurrent: usize,
    }

    fn max_concurrent() -> usize {
        DEFAULT_MAX_CONCURRENT
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawTool {
        pub name: String,
        #[serde(default)]
        pub description: String,
        /// A JSON Schema of the arguments, written as TOML.
        #[serde(default)]
        pub parameters: Option<toml::Table>,
        /// Program and arguments, no shell.
        pub command: Vec<String>,
        #[serde(default)]
        pub cwd: Option<String>,
        #[serde(default)]
        pub env: BTreeMap<String, String>,
        #[serde(default = "timeout_ms")]
        pub timeout_ms: u64,
        #[serde(default = "max_output_bytes")]
        pub max_output_bytes: u64,
    }

    fn timeout_ms() -> u64 {
        DEFAULT_TIMEOUT_MS
    }

    fn max_output_bytes() -> u64 {
        DEFAULT_MAX_OUTPUT_BYTES
    }
}

impl Config {
    /// Reads, interpolates and validates a node config with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("{}: cannot read: {e}", path.display())],
        })?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse_in(&text, &|name| std::env::var(name).ok(), dir)
    }

    /// Parses config text, looking variables up with `env`; a relative `cwd` is taken
    /// from `dir` (the config file's directory).
    pub fn parse_in(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        dir: &Path,
    ) -> Result<Config, ConfigError> {
        let one = |p: String| ConfigError { problems: vec![p] };
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|e| one(format!("syntax: {e}")))?;
        let unset = sluice_config::interpolate(&mut tree, env);
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                let mut problems = unset.clone();
                problems.push(format!("{}: {}", e.path(), e.inner()));
                ConfigError { problems }
            })?;
        let mut problems = unset.clone();
        let checked = validate(raw, dir, &mut problems);
        // A field whose variable is unset is reported once, as unset.
        let mut seen = Vec::new();
        problems.retain(|p| {
            let field = p.split_once(": ").map_or(p.as_str(), |(f, _)| f);
            let keep = !seen.contains(&field.to_owned());
            seen.push(field.to_owned());
            keep
        });
        match checked {
            Some(cfg) if problems.is_empty() => Ok(cfg),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Checks every field, pushing each problem as `field.path: what is wrong`; the config
/// when there were none.
fn validate(raw: raw::RawConfig, dir: &Path, problems: &mut Vec<String>) -> Option<Config> {
    let before = problems.len();
    let url = raw.gateway.url.trim().to_owned();
    if !(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() <= "wss://".len() {
        problems.push(format!(
            "gateway.url: {url:?} is not a ws:// or wss:// URL (the gateway's /ws endpoint)"
        ));
    }
    if raw.gateway.token.is_empty() {
        problems.push("gateway.token: empty (a gateway key, e.g. \"${SLUICE_NODE_TOKEN}\")".into());
    }
    let name = raw.node.name.trim().to_owned();
    if !valid_name(&name) {
        problems.push(format!(
            "node.name: {name:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
        ));
    }
    if raw.node.max_concurrent == 0 {
        problems.push("node.max_concurrent: must be at least 1".into());
    }
    if raw.tools.is_empty() {
        problems.push("tools: a node serves at least one tool ([[tools]])".into());
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut tools = Vec::new();
    for (i, t) in raw.tools.into_iter().enumerate() {
        if let Some(tool) = tool(i, t, dir, &mut first, problems) {
            tools.push(tool);
        }
    }
    (problems.len() == before).then(|| Config {
        url,
        token: Secret::new(raw.gateway.token),
        name,
        max_concurrent: raw.node.max_concurrent,
        tools,
    })
}

fn tool(
    i: usize,
    t: raw::RawTool,
    dir: &Path,
    first: &mut HashMap<String, usize>,
    problems: &mut Vec<String>,
) -> Option<Tool> {
    let at = |field: &str| format!("tools[{i}].{field}");
    let before = problems.len();
    if !valid_tool_name(&t.name) {
        problems.push(format!(
            "{}: {:?} must be 1 to 64 letters, digits, '_' or '-' (what a model may call)",
            at("name"),
            t.name
        ));
    } else if let Some(j) = first.get(&t.name) {
        problems.push(format!(
            "{}: {:?} is declared twice (also tools[{j}])",
            at("name"),
            t.name
        ));
    } else {
        first.insert(t.name.clone(), i);
    }
    let parameters = match t.parameters {
        None => serde_json::json!({"type": "object"}),
        Some(table) => {
            let schema = serde_json::to_value(&table).unwrap_or(Value::Null);
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                problems.push(format!(
                    "{}: a JSON Schema of an object: type = \"object\"",
                    at("parameters")
                ));
            }
            schema
        }
    };
    match t.command.first() {
        None => problems.push(format!(
            "{}: empty; give the program and its arguments, e.g. [\"git\", \"status\"]",
            at("command")
        )),
        Some(p) if p.trim().is_empty() => {
            problems.push(format!("{}: the program is empty", at("command[0]")));
        }
        Some(_) => {}
    }
    let cwd = t.cwd.as_deref().map(|c| dir.join(c));
    if let Some(c) = &cwd
        && !c.is_dir()
    {
        problems.push(format!("{}: {} is not a directory", at("cwd"), c.display()));
    }
    for k in t.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            problems.push(format!("{}: {k:?} is not a variable name", at("env")));
        }
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&t.timeout_ms) {
        problems.push(format!(
            "{}: {} is not between 1 and {MAX_TIMEOUT_MS}",
            at("timeout_ms"),
            t.timeout_ms
        ));
    }
    if !(1..=MAX_OUTPUT_BYTES).contains(&t.max_output_bytes) {
        problems.push(format!(
            "{}: {} is not between 1 and {MAX_OUTPUT_BYTES}",
            at("max_output_bytes"),
            t.max_output_bytes
        ));
    }
    if problems.len() > before {
        return None;
    }
    let mut command = t.command.into_iter();
    Some(Tool {
        spec: ToolSpec {
            name: t.name,
            description: t.description,
            parameters,
        },
        command: ToolCommand {
            program: command.next().unwrap_or_default(),
            args: command.collect(),
            cwd,
            env: t.env.into_iter().collect(),
            timeout: Duration::from_millis(t.timeout_ms),
            max_output_bytes: usize::try_from(t.max_output_bytes).unwrap_or(usize::MAX),
        },
    })
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// OpenAI's rule for function names, which a tool's name becomes.
fn valid_tool_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| (name == "NODE_TOKEN").then(|| "sk-node".to_owned());
        Config::parse_in(text, &env, Path::new("."))
    }

    const GOOD: &str = r#"
[gateway]
url = "ws://127.0.0.1:8080/ws"
token = "${NODE_TOKEN}"
[node]
name = "build-box"
[[tools]]
name = "echo"
description = "Says it back"
command = ["cat"]
[[tools]]
name = "git_log"
command = ["git", "log", "--oneline", "-n", "5"]
cwd = "."
env = { GIT_PAGER = "cat" }
timeout_ms = 2000
max_output_bytes = 4096
[tools.parameters]
type = "object"
properties = { n = { type = "integer" } }
"#;

    #[test]
    fn a_good_config_becomes_typed_with_its_defaults() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.token.expose(), "sk-node", "interpolated");
        assert_eq!(
            (cfg.name.as_str(), cfg.max_concurrent),
            ("build-box", DEFAULT_MAX_CONCURRENT)
        );
        let echo = &cfg.tools[0];
        assert_eq!(echo.spec.parameters, json!({"type": "object"}));
        assert_eq!(
            echo.command.timeout,
            Duration::from_millis(DEFAULT_TIMEOUT_MS)
        );
        assert_eq!(echo.command.program, "cat");
        let git = &cfg.tools[1];
        assert_eq!(git.command.args, ["log", "--oneline", "-n", "5"]);
        assert_eq!(
            git.command.env,
            [("GIT_PAGER".to_owned(), "cat".to_owned())]
        );
        assert_eq!(git.command.max_output_bytes, 4096);
        assert_eq!(
            git.spec.parameters["properties"]["n"]["type"], "integer",
            "the schema is carried over as JSON"
        );
        assert!(
            !format!("{cfg:?}").contains("sk-node"),
            "the token is hidden"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let bad = r#"
[gateway]
url = "http://gateway"
token = "${UNSET_NODE_TOKEN}"
[node]
name = "has space"
max_concurrent = 0
[[tools]]
name = "ok"
command = []
timeout_ms = 0
[[tools]]
name = "ok"
command = [""]
max_output_bytes = 0
cwd = "/no/such/dir"
[tools.parameters]
type = "string"
[[tools]]
name = "bad name!"
command = ["x"]
env = { "A=B" = "c" }
"#;
        let e = parse(bad).unwrap_err();
        let all = e.problems.join("\n");
        for field in [
            "gateway.url:",
            "gateway.token: environment variable UNSET_NODE_TOKEN is not set",
            "node.name:",
            "node.max_concurrent:",
            "tools[0].command:",
            "tools[0].timeout_ms:",
            "tools[1].name: \"ok\" is declared twice (also tools[0])",
            "tools[1].command[0]:",
            "tools[1].max_output_bytes:",
            "tools[1].cwd:",
            "tools[1].parameters:",
            "tools[2].name:",
            "tools[2].env:",
        ] {
            assert!(all.contains(field), "{field} missing from:\n{all}");
        }
        assert_eq!(
            all.matches("gateway.token").count(),
            1,
            "an unset variable is not also reported as empty:\n{all}"
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let typo = GOOD.replace("description = ", "desciption = ");
        let e = parse(&typo).unwrap_err();
        assert!(e.problems[0].contains("desciption"), "{:?}", e.problems);
        let wrong = GOOD.replace("timeout_ms = 2000", "timeout_ms = \"soon\"");
        let e = parse(&wrong).unwrap_err();
        assert!(
            e.problems[0].starts_with("tools[1].timeout_ms"),
            "{:?}",
            e.problems
        );
        let e = parse(&GOOD.replace("[node]\nname = \"build-box\"", "")).unwrap_err();
        assert!(e.problems[0].contains("node"), "{:?}", e.problems);
    }
}
