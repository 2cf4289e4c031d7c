//! `[guard]` as written (docs/guard.md).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGuard {
    #[serde(flatten)]
    pub policy: RawGuardPolicy,
    pub deny: Vec<String>,
    pub allow: Vec<String>,
    pub window_bytes: u64,
    pub models: BTreeMap<String, RawGuardPolicy>,
    pub agents: BTreeMap<String, RawGuardPolicy>,
    pub keys: BTreeMap<String, RawGuardPolicy>,
}

impl Default for RawGuard {
    fn default() -> Self {
        RawGuard {
            policy: RawGuardPolicy::default(),
            deny: Vec::new(),
            allow: Vec::new(),
            window_bytes: 64,
            models: BTreeMap::new(),
            agents: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }
}

/// Every field optional: at the top, a missing one takes the default; in an override,
/// the level below's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardPolicy {
    pub action: Option<String>,
    pub threshold: Option<f64>,
    pub tool_results: Option<bool>,
    pub secrets: Option<String>,
    pub pii: Option<String>,
    pub canary: Option<String>,
}
