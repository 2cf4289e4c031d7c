//! `[agents.NAME]` → [`AgentConfig`]: the model must be an alias, every tool must exist,
//! delegation must not loop, every bound is within its range (none can be off), and a
//! schedule has a pattern that parses, an input and a `[[keys]]` entry to run as.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::ModelAlias;
use crate::agents::{
    AgentBounds, AgentConfig, BUILTIN_TOOLS, HttpFetchConfig, Schedule, ToolRef, parse_cron,
};
use crate::raw::{RawAgent, RawHttpFetch};

/// A name an agent, a node or a tool may have: it appears in scopes, ledger rows and
/// tool names sent to models.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

pub(super) fn agents(
    raw: BTreeMap<String, RawAgent>,
    models: &BTreeMap<String, ModelAlias>,
    http_fetch: bool,
    keys: &HashSet<String>,
    p: &mut Vec<String>,
) -> BTreeMap<String, AgentConfig> {
    let names: HashSet<&str> = raw.keys().map(String::as_str).collect();
    let mut out = BTreeMap::new();
    for (name, a) in &raw {
        let at = format!("agents.{name}");
        if !plain(name) {
            p.push(format!(
                "{at}: an agent's name is 1 to 64 letters, digits, `_`, `-` or `.`"
            ));
        }
        if a.model.is_empty() {
            p.push(format!("{at}.model: required (a [models] alias)"));
        } else if !models.contains_key(&a.model) {
            p.push(format!("{at}.model: `{}` is not a [models] alias", a.model));
        }
        let mut tools = Vec::new();
        let mut seen = HashSet::new();
        for (i, t) in a.tools.iter().enumerate() {
            match tool(t, &names) {
                Ok(r) if r == ToolRef::Agent(name.clone()) => {
                    p.push(format!(
                        "{at}.tools[{i}]: an agent cannot delegate to itself"
                    ));
                }
                Ok(ToolRef::Builtin(b)) if b == "http_fetch" && !http_fetch => {
                    p.push(format!(
                        "{at}.tools[{i}]: http_fetch needs [tools.http_fetch] with allow_hosts (what it may reach)"
                    ));
                }
                Ok(r) => {
                    if !seen.insert(r.clone()) {
                        p.push(format!("{at}.tools[{i}]: `{t}` is listed twice"));
                    }
                    tools.push(r);
                }
                Err(e) => p.push(format!("{at}.tools[{i}]: {e}")),
            }
        }
        let bounds = bounds(a, &at, p);
        let schedule = schedule(a, &at, keys, p);
        out.insert(
            name.clone(),
            AgentConfig {
                name: name.clone(),
                model: a.model.clone(),
                system: a.system.clone().filter(|s| !s.trim().is_empty()),
                tools,
                bounds,
                schedule,
            },
        );
    }
    if let Some(cycle) = delegation_cycle(&out) {
        p.push(format!("agents: delegation loops: {}", cycle.join(" → ")));
    }
    out
}

fn tool(t: &str, agents: &HashSet<&str>) -> Result<ToolRef, String> {
    if let Some(rest) = t.strip_prefix("node:") {
        let Some((node, tool)) = rest.split_once('/') else {
            return Err(format!(
                "`{t}`: a node tool is node:NAME/TOOL or node:*/TOOL"
            ));
        };
        if !plain(tool) || (node != "*" && !plain(node)) {
            return Err(format!(
                "`{t}`: node and tool names are 1 to 64 letters, digits, `_`, `-` or `.`"
            ));
        }
        return Ok(if node == "*" {
            ToolRef::AnyNode { tool: tool.into() }
        } else {
            ToolRef::Node {
                node: node.into(),
                tool: tool.into(),
            }
        });
    }
    if let Some(other) = t.strip_prefix("agent:") {
        if !agents.contains(other) {
            return Err(format!("`{t}`: no agent `{other}` under [agents]"));
        }
        return Ok(ToolRef::Agent(other.into()));
    }
    if BUILTIN_TOOLS.contains(&t) {
        return Ok(ToolRef::Builtin(t.into()));
    }
    Err(format!(
        "`{t}` is not a built-in tool ({}), node:NAME/TOOL, node:*/TOOL or agent:NAME",
        BUILTIN_TOOLS.join(", ")
    ))
}

/// `[tools.http_fetch]`: the caps within range; a table that allows nothing is refused.
/// The host patterns are checked by `sluice-fetch` when the gateway starts.
pub(super) fn http_fetch(
    raw: Option<RawHttpFetch>,
    p: &mut Vec<String>,
) -> Option<HttpFetchConfig> {
    let raw = raw?;
    let at = "tools.http_fetch";
    if raw.allow_hosts.is_empty() && raw.allow_networks.is_empty() {
        p.push(format!(
            "{at}.allow_hosts: empty (with no allow_networks), so the tool could fetch nothing; list the hosts it may reach"
        ));
    }
    let mut allow_networks = Vec::new();
    for (i, n) in raw.allow_networks.iter().enumerate() {
        match n.parse::<ipnet::IpNet>() {
            Ok(net) => allow_networks.push(net),
            Err(_) => p.push(format!(
                "{at}.allow_networks[{i}]: `{n}` is not a network like 10.1.2.0/24"
            )),
        }
    }
    let mut within = |field: &str, v: u64, min: u64, max: u64| {
        if v < min || v > max {
            p.push(format!("{at}.{field}: {v} is not within {min}..={max}"));
        }
        v.clamp(min, max)
    };
    let max_bytes = within("max_bytes", raw.max_bytes, 1, 16 * 1024 * 1024);
    let timeout_s = within("timeout_s", raw.timeout_s, 1, 300);
    let max_redirects = within("max_redirects", raw.max_redirects, 0, 10);
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Some(HttpFetchConfig {
        allow_hosts: raw.allow_hosts,
        allow_networks,
        max_bytes: size(max_bytes),
        timeout: Duration::from_secs(timeout_s),
        max_redirects: size(max_redirects),
    })
}

/// `schedule` with its input and its key, all three or none.
fn schedule(
    a: &RawAgent,
    at: &str,
    keys: &HashSet<String>,
    p: &mut Vec<String>,
) -> Option<Schedule> {
    let Some(text) = &a.schedule else {
        for (field, set) in [
            ("schedule_input", a.schedule_input.is_some()),
            ("run_as", a.run_as.is_some()),
        ] {
            if set {
                p.push(format!("{at}.{field}: only with `schedule`"));
            }
        }
        return None;
    };
    let cron = parse_cron(text)
        .map_err(|e| {
            p.push(format!(
                "{at}.schedule: `{text}` is not a cron pattern (5 fields, 6 with seconds first, or @daily, @hourly…; read in UTC): {e}"
            ));
        })
        .ok();
    let input = a.schedule_input.clone().filter(|s| !s.trim().is_empty());
    if input.is_none() {
        p.push(format!(
            "{at}.schedule_input: required with `schedule` (the input of each scheduled run)"
        ));
    }
    let run_as = match &a.run_as {
        None => {
            p.push(format!(
                "{at}.run_as: required with `schedule` (a [[keys]] name: its limits and budgets apply to the runs)"
            ));
            None
        }
        Some(k) if !keys.contains(k) => {
            p.push(format!(
                "{at}.run_as: `{k}` is not the name of a [[keys]] entry"
            ));
            None
        }
        Some(k) => Some(k.clone()),
    };
    Some(Schedule {
        text: text.clone(),
        cron: cron?,
        input: input?,
        run_as: run_as?,
    })
}

/// Each bound with its allowed range: the defaults are in `RawAgent::default`.
fn bounds(a: &RawAgent, at: &str, p: &mut Vec<String>) -> AgentBounds {
    let mut within = |field: &str, v: u64, min: u64, max: u64| {
        if v < min || v > max {
            p.push(format!("{at}.{field}: {v} is not within {min}..={max}"));
        }
        v.clamp(min, max)
    };
    let max_steps = within("max_steps", a.max_steps, 1, 100);
    let max_llm_calls = within("max_llm_calls", a.max_llm_calls, 1, 500);
    let max_retries = within("max_retries", a.max_retries, 0, 10);
    let max_tokens = within("max_tokens", a.max_tokens, 1, 10_000_000);
    let deadline_s = within("deadline_s", a.deadline_s, 1, 86_400);
    let max_concurrent_runs = within("max_concurrent_runs", a.max_concurrent_runs, 1, 1000);
    let max_output_tokens = within("max_output_tokens", a.max_output_tokens, 1, max_tokens);
    let context_tokens = within(
        "context_tokens",
        a.context_tokens,
        max_output_tokens + 1,
        10_000_000,
    );
    let tool_timeout_s = within("tool_timeout_s", a.tool_timeout_s, 1, deadline_s);
    let max_tool_result_bytes = within(
        "max_tool_result_bytes",
        a.max_tool_result_bytes,
        1,
        1024 * 1024,
    );
    let max_parallel_tools = within("max_parallel_tools", a.max_parallel_tools, 1, 32);
    let loop_repeat = within("loop_repeat", a.loop_repeat, 2, 20);
    let loop_failing_requests = within("loop_failing_requests", a.loop_failing_requests, 1, 20);
    let breaker_failures = within("breaker_failures", a.breaker_failures, 1, 100);
    let breaker_open_s = within("breaker_open_s", a.breaker_open_s, 1, 3600);
    let cost = a.max_cost_usd;
    if !(cost.is_finite() && cost > 0.0 && cost <= 1000.0) {
        p.push(format!(
            "{at}.max_cost_usd: {cost} is not within (0, 1000] (an agent without a cost bound cannot be configured)"
        ));
    }
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    AgentBounds {
        max_steps: small(max_steps),
        max_llm_calls: small(max_llm_calls),
        max_retries: small(max_retries),
        max_tokens,
        max_cost_nanos: (cost.clamp(0.0, 1000.0) * 1e9).round() as u64,
        deadline: Duration::from_secs(deadline_s),
        max_concurrent_runs: small(max_concurrent_runs),
        max_output_tokens: small(max_output_tokens),
        context_tokens: small(context_tokens),
        tool_timeout: Duration::from_secs(tool_timeout_s),
        max_tool_result_bytes: small(max_tool_result_bytes),
        max_parallel_tools: small(max_parallel_tools),
        loop_repeat: small(loop_repeat),
        loop_failing_requests: small(loop_failing_requests),
        breaker_failures: small(breaker_failures),
        breaker_open: Duration::from_secs(breaker_open_s),
    }
}

/// A loop in who delegates to whom, if any, as the names along it.
fn delegation_cycle(agents: &BTreeMap<String, AgentConfig>) -> Option<Vec<String>> {
    // Depth-first, with the path on a stack: 0 unvisited, 1 on the path, 2 done.
    fn visit(
        name: &str,
        agents: &BTreeMap<String, AgentConfig>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(name).copied().unwrap_or(0) {
            1 => {
                let from = path.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            2 => return None,
            _ => {}
        }
        state.insert(name.to_owned(), 1);
        path.push(name.to_owned());
        let children = agents.get(name).map(|a| a.tools.as_slice()).unwrap_or(&[]);
        for t in children {
            if let ToolRef::Agent(child) = t
                && let Some(c) = visit(child, agents, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state.insert(name.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for name in agents.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(name, agents, &mut state, &mut path) {
            return Some(c);
        }
    }
    None
}
