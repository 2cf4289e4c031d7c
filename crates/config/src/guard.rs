//! `[guard]`: the prompt guard's policy (docs/guard.md). Input screening (user turns and
//! tool results) and output filtering (canary, secrets, PII) are set once for every call
//! and overridden per model alias, per agent and per key, the most specific winning, field
//! by field: a key's setting beats its agent's, which beats its model's, which beats the
//! default.

use std::collections::BTreeMap;

/// What happens to a request whose screening score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Not screened at all.
    Off,
    /// Screened; a finding is logged, the request goes on unmarked.
    Log,
    /// Screened; the request goes on with an `x-sluice-guard: flagged` header (and the same
    /// in WebSocket results), a log line and a metric.
    Flag,
    /// Refused with `prompt_rejected` naming the detectors: nothing goes upstream, nothing
    /// is billed.
    Block,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Off => "off",
            GuardAction::Log => "log",
            GuardAction::Flag => "flag",
            GuardAction::Block => "block",
        }
    }
}

/// What happens to secrets, PII or a canary found in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputAction {
    Off,
    /// Replaced by `[REDACTED:kind]`; the answer goes on.
    Redact,
    /// Redacted, and the answer ends there with `output_blocked` (a stream ends with an
    /// error event, never a clean-looking end).
    Block,
}

impl OutputAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputAction::Off => "off",
            OutputAction::Redact => "redact",
            OutputAction::Block => "block",
        }
    }
}

/// The policy one call runs under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardPolicy {
    pub action: GuardAction,
    /// The total score (0 to 1) at which `action` applies; `None`: the guard's default.
    pub threshold: Option<f32>,
    /// Whether tool results (indirect injection) are screened as well as user turns.
    pub tool_results: bool,
    pub secrets: OutputAction,
    pub pii: OutputAction,
    /// A canary placed in the call's system prompt; `Off`: none is placed.
    pub canary: OutputAction,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            action: GuardAction::Flag,
            threshold: None,
            tool_results: true,
            secrets: OutputAction::Off,
            pii: OutputAction::Off,
            canary: OutputAction::Off,
        }
    }
}

impl GuardPolicy {
    /// Whether the answer needs filtering at all.
    pub fn filters_output(&self) -> bool {
        [self.secrets, self.pii, self.canary]
            .iter()
            .any(|a| *a != OutputAction::Off)
    }
}

/// Some fields of a policy, over the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GuardOverride {
    pub action: Option<GuardAction>,
    pub threshold: Option<f32>,
    pub tool_results: Option<bool>,
    pub secrets: Option<OutputAction>,
    pub pii: Option<OutputAction>,
    pub canary: Option<OutputAction>,
}

impl GuardOverride {
    fn apply(&self, p: &mut GuardPolicy) {
        if let Some(a) = self.action {
            p.action = a;
        }
        if self.threshold.is_some() {
            p.threshold = self.threshold;
        }
        if let Some(t) = self.tool_results {
            p.tool_results = t;
        }
        if let Some(a) = self.secrets {
            p.secrets = a;
        }
        if let Some(a) = self.pii {
            p.pii = a;
        }
        if let Some(a) = self.canary {
            p.canary = a;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardConfig {
    pub default: GuardPolicy,
    /// The operator's own patterns (regular expressions): a `deny` match is a finding of
    /// score 1; an `allow` match clears the findings it covers.
    pub deny: Vec<String>,
    pub allow: Vec<String>,
    /// The most bytes of an answer the output filter holds back, to catch what straddles
    /// chunk boundaries.
    pub window_bytes: usize,
    pub models: BTreeMap<String, GuardOverride>,
    pub agents: BTreeMap<String, GuardOverride>,
    pub keys: BTreeMap<String, GuardOverride>,
}

impl GuardConfig {
    /// The policy of a call to model alias `model`, for `agent`, made with the key named
    /// `key`.
    pub fn policy(&self, model: &str, agent: Option<&str>, key: Option<&str>) -> GuardPolicy {
        let mut p = self.default;
        if let Some(o) = self.models.get(model) {
            o.apply(&mut p);
        }
        if let Some(o) = agent.and_then(|a| self.agents.get(a)) {
            o.apply(&mut p);
        }
        if let Some(o) = key.and_then(|k| self.keys.get(k)) {
            o.apply(&mut p);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_setting_wins_field_by_field() {
        let mut g = GuardConfig::default();
        g.models.insert(
            "m".into(),
            GuardOverride {
                action: Some(GuardAction::Block),
                pii: Some(OutputAction::Redact),
                ..Default::default()
            },
        );
        g.agents.insert(
            "a".into(),
            GuardOverride {
                threshold: Some(0.9),
                ..Default::default()
            },
        );
        g.keys.insert(
            "redteam".into(),
            GuardOverride {
                action: Some(GuardAction::Log),
                ..Default::default()
            },
        );
        let p = g.policy("m", Some("a"), None);
        assert_eq!(
            (p.action, p.threshold, p.pii),
            (GuardAction::Block, Some(0.9), OutputAction::Redact)
        );
        let p = g.policy("m", Some("a"), Some("redteam"));
        assert_eq!((p.action, p.threshold), (GuardAction::Log, Some(0.9)));
        assert_eq!(g.policy("other", None, None), GuardPolicy::default());
    }
}
