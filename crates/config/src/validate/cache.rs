//! `[cache]` → [`CacheConfig`]: modes and scopes spelled right, bounds sane, overrides
//! name aliases that exist.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::ModelAlias;
use crate::cache::{CacheConfig, CacheMode, CacheOverride, CacheScope};
use crate::raw_cache::{RawCache, RawCachePolicy};

/// A week: longer is a store, not a cache.
const MAX_TTL_S: u64 = 7 * 24 * 3_600;
/// Ten minutes: a longer wait for an identical request is a hung client.
const MAX_COALESCE_S: u64 = 600;

pub(super) fn cache(
    raw: RawCache,
    models: &BTreeMap<String, ModelAlias>,
    p: &mut Vec<String>,
) -> CacheConfig {
    let mut config = CacheConfig::default();
    let top = over("cache", &raw.policy, p);
    top.apply(&mut config.default);
    if raw.max_entries == 0 {
        p.push("cache.max_entries: at least 1".into());
    }
    if raw.max_bytes < 1 << 20 {
        p.push("cache.max_bytes: at least 1048576 (1 MiB)".into());
    }
    if raw.max_answer_bytes == 0 || raw.max_answer_bytes > raw.max_bytes {
        p.push("cache.max_answer_bytes: at least 1 and at most max_bytes".into());
    }
    config.max_entries = usize::try_from(raw.max_entries).unwrap_or(usize::MAX);
    config.max_bytes = usize::try_from(raw.max_bytes).unwrap_or(usize::MAX);
    config.max_answer_bytes = usize::try_from(raw.max_answer_bytes).unwrap_or(usize::MAX);
    config.model_dir = PathBuf::from(raw.model_dir);
    config.models = raw
        .models
        .into_iter()
        .map(|(name, o)| {
            let at = format!("cache.models.{name}");
            if !models.contains_key(&name) {
                p.push(format!("{at}: no such model alias"));
            }
            (name, over(&at, &o, p))
        })
        .collect();
    config
}

fn over(at: &str, raw: &RawCachePolicy, p: &mut Vec<String>) -> CacheOverride {
    let mode = raw.mode.as_deref().and_then(|m| match m {
        "off" => Some(CacheMode::Off),
        "exact" => Some(CacheMode::Exact),
        "semantic" => Some(CacheMode::Semantic),
        other => {
            p.push(format!(
                "{at}.mode: `{other}` is not one of off, exact, semantic"
            ));
            None
        }
    });
    let scope = raw.scope.as_deref().and_then(|s| match s {
        "key" => Some(CacheScope::Key),
        "user" => Some(CacheScope::User),
        "global" => Some(CacheScope::Global),
        other => {
            p.push(format!(
                "{at}.scope: `{other}` is not one of key, user, global"
            ));
            None
        }
    });
    let ttl = raw.ttl_s.and_then(|t| {
        if (1..=MAX_TTL_S).contains(&t) {
            Some(Duration::from_secs(t))
        } else {
            p.push(format!("{at}.ttl_s: 1 to {MAX_TTL_S} (a week)"));
            None
        }
    });
    let min_similarity = raw.min_similarity.and_then(|s| {
        if s > 0.0 && s <= 1.0 {
            #[allow(clippy::cast_possible_truncation, reason = "checked to be in (0, 1]")]
            Some(s as f32)
        } else {
            p.push(format!("{at}.min_similarity: greater than 0 and at most 1"));
            None
        }
    });
    let coalesce = raw.coalesce_s.and_then(|c| {
        if c <= MAX_COALESCE_S {
            Some(Duration::from_secs(c))
        } else {
            p.push(format!(
                "{at}.coalesce_s: 0 to {MAX_COALESCE_S} (0: never waits)"
            ));
            None
        }
    });
    CacheOverride {
        mode,
        scope,
        ttl,
        min_similarity,
        coalesce,
    }
}
