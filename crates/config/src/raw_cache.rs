//! `[cache]` as written (docs/cache.md).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    #[serde(flatten)]
    pub policy: RawCachePolicy,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub max_answer_bytes: u64,
    pub model_dir: String,
    pub models: BTreeMap<String, RawCachePolicy>,
}

impl Default for RawCache {
    fn default() -> Self {
        let d = crate::cache::CacheConfig::default();
        RawCache {
            policy: RawCachePolicy::default(),
            max_entries: d.max_entries as u64,
            max_bytes: d.max_bytes as u64,
            max_answer_bytes: d.max_answer_bytes as u64,
            model_dir: d.model_dir.display().to_string(),
            models: BTreeMap::new(),
        }
    }
}

/// Every field optional: at the top a missing one takes the default; per alias, the
/// top's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCachePolicy {
    pub mode: Option<String>,
    pub scope: Option<String>,
    pub ttl_s: Option<u64>,
    pub min_similarity: Option<f64>,
    pub coalesce_s: Option<u64>,
}
