//! `[guard]` → [`GuardConfig`]: actions spelled right, thresholds in (0, 1], the
//! operator's patterns compile, overrides name models and agents that exist.

use std::collections::BTreeMap;

use crate::guard::{GuardAction, GuardConfig, GuardOverride, GuardPolicy, OutputAction};
use crate::raw_guard::{RawGuard, RawGuardPolicy};
use crate::{AgentConfig, ModelAlias};

/// The longest pattern an operator may write: patterns run on every prompt.
const MAX_PATTERN: usize = 1_000;

pub(super) fn guard(
    raw: RawGuard,
    models: &BTreeMap<String, ModelAlias>,
    agents: &BTreeMap<String, AgentConfig>,
    p: &mut Vec<String>,
) -> GuardConfig {
    let top = over("guard", &raw.policy, p);
    let mut default = GuardPolicy::default();
    if let Some(a) = top.action {
        default.action = a;
    }
    default.threshold = top.threshold;
    if let Some(t) = top.tool_results {
        default.tool_results = t;
    }
    for (set, value) in [
        (&mut default.secrets, top.secrets),
        (&mut default.pii, top.pii),
        (&mut default.canary, top.canary),
    ] {
        if let Some(v) = value {
            *set = v;
        }
    }
    for (list, patterns) in [("deny", &raw.deny), ("allow", &raw.allow)] {
        for (i, pat) in patterns.iter().enumerate() {
            if pat.len() > MAX_PATTERN {
                p.push(format!(
                    "guard.{list}[{i}]: at most {MAX_PATTERN} characters"
                ));
            } else if let Err(e) = regex::RegexBuilder::new(pat).size_limit(1 << 20).build() {
                p.push(format!("guard.{list}[{i}]: not a regular expression ({e})"));
            }
        }
    }
    if raw.window_bytes == 0 || raw.window_bytes > 4_096 {
        p.push("guard.window_bytes: 1 to 4096".into());
    }
    let table = |section: &str,
                 map: BTreeMap<String, RawGuardPolicy>,
                 known: &dyn Fn(&str) -> bool,
                 p: &mut Vec<String>| {
        map.into_iter()
            .map(|(name, o)| {
                let at = format!("guard.{section}.{name}");
                if !known(&name) {
                    p.push(format!("{at}: no such {}", &section[..section.len() - 1]));
                }
                let o = over(&at, &o, p);
                (name, o)
            })
            .collect::<BTreeMap<_, _>>()
    };
    GuardConfig {
        default,
        deny: raw.deny,
        allow: raw.allow,
        window_bytes: usize::try_from(raw.window_bytes).unwrap_or(4_096),
        models: table("models", raw.models, &|m| models.contains_key(m), p),
        agents: table("agents", raw.agents, &|a| agents.contains_key(a), p),
        // Keys may live in the store (created with `sluice keys`), not only in `[[keys]]`.
        keys: table("keys", raw.keys, &|_| true, p),
    }
}

fn over(at: &str, raw: &RawGuardPolicy, p: &mut Vec<String>) -> GuardOverride {
    let action = raw.action.as_deref().and_then(|a| match a {
        "off" => Some(GuardAction::Off),
        "log" => Some(GuardAction::Log),
        "flag" => Some(GuardAction::Flag),
        "block" => Some(GuardAction::Block),
        other => {
            p.push(format!(
                "{at}.action: `{other}` is not one of off, log, flag, block"
            ));
            None
        }
    });
    let threshold = raw.threshold.and_then(|t| {
        if t > 0.0 && t <= 1.0 {
            #[allow(clippy::cast_possible_truncation, reason = "checked to be in (0, 1]")]
            Some(t as f32)
        } else {
            p.push(format!("{at}.threshold: greater than 0 and at most 1"));
            None
        }
    });
    let output = |field: &str, v: &Option<String>, p: &mut Vec<String>| {
        v.as_deref().and_then(|a| match a {
            "off" => Some(OutputAction::Off),
            "redact" => Some(OutputAction::Redact),
            "block" => Some(OutputAction::Block),
            other => {
                p.push(format!(
                    "{at}.{field}: `{other}` is not one of off, redact, block"
                ));
                None
            }
        })
    };
    GuardOverride {
        action,
        threshold,
        tool_results: raw.tool_results,
        secrets: output("secrets", &raw.secrets, p),
        pii: output("pii", &raw.pii, p),
        canary: output("canary", &raw.canary, p),
    }
}
