//! `[guard]`: the default policy, overrides per model, agent and key, and every mistake
//! named with its path.

use crate::Config;
use crate::guard::{GuardAction, OutputAction};

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse(text, &|_| None).map_err(|e| e.problems)
}

const BASE: &str = r#"
[providers.openai]
kind = "openai"
api_keys = ["k"]
[models.smart]
chain = ["openai:gpt-4o"]
[agents.helpdesk]
model = "smart"
"#;

#[test]
fn no_guard_section_flags_at_the_default_threshold_and_filters_nothing() {
    let g = parse(BASE).unwrap().guard;
    let p = g.policy("smart", None, None);
    assert_eq!(p.action, GuardAction::Flag);
    assert_eq!(p.threshold, None);
    assert!(p.tool_results);
    assert!(!p.filters_output());
    assert_eq!(g.window_bytes, 64);
}

#[test]
fn overrides_apply_per_model_agent_and_key() {
    let cfg = parse(&format!(
        r#"{BASE}
        [guard]
        action = "log"
        threshold = 0.6
        secrets = "redact"
        deny = ['(?i)project\s+nightingale']
        allow = ['(?i)ignore the previous build output']
        window_bytes = 128
        [guard.models.smart]
        action = "block"
        canary = "block"
        [guard.agents.helpdesk]
        pii = "redact"
        tool_results = false
        [guard.keys.redteam]
        action = "off"
        "#
    ))
    .unwrap();
    let g = cfg.guard;
    assert_eq!(g.deny.len(), 1);
    assert_eq!(g.window_bytes, 128);
    let p = g.policy("smart", Some("helpdesk"), Some("ci"));
    assert_eq!(p.action, GuardAction::Block);
    assert_eq!(p.threshold, Some(0.6));
    assert_eq!(
        (p.secrets, p.pii, p.canary),
        (
            OutputAction::Redact,
            OutputAction::Redact,
            OutputAction::Block
        )
    );
    assert!(!p.tool_results);
    assert_eq!(
        g.policy("smart", None, Some("redteam")).action,
        GuardAction::Off
    );
}

#[test]
fn every_mistake_is_named_with_its_path() {
    let problems = parse(&format!(
        r#"{BASE}
        [guard]
        action = "deny"
        threshold = 1.5
        pii = "mask"
        deny = ['(unclosed']
        window_bytes = 0
        [guard.models.nope]
        action = "block"
        [guard.agents.ghost]
        canary = "block"
        "#
    ))
    .unwrap_err();
    for want in [
        "guard.action: `deny`",
        "guard.threshold:",
        "guard.pii: `mask`",
        "guard.deny[0]: not a regular expression",
        "guard.window_bytes:",
        "guard.models.nope: no such model",
        "guard.agents.ghost: no such agent",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want} in {problems:?}"
        );
    }
    let unknown = parse(&format!("{BASE}\n[guard]\nblock_all = true\n")).unwrap_err();
    assert!(
        unknown.iter().any(|p| p.contains("block_all")),
        "{unknown:?}"
    );
}
