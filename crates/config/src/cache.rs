//! `[cache]`: the response cache (docs/cache.md). Off unless the operator turns it on, for
//! every alias or per alias: a cached answer is the same answer again, which is not what
//! every caller of a sampling model wants.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Which lookups a call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Off,
    /// The same canonical request (model, messages, tools, parameters) in the same scope.
    Exact,
    /// Exact, then a near-repeat of the last user turn with everything else identical,
    /// when the embedding model is present and the second check agrees.
    Semantic,
}

/// Who shares cached answers. One tenant is never served another's answer unless the
/// operator says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Per gateway key (the default).
    Key,
    /// Per user: a user's keys share; a key without a user is its own scope.
    User,
    /// Every caller of the alias shares.
    Global,
}

impl CacheScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Key => "key",
            CacheScope::User => "user",
            CacheScope::Global => "global",
        }
    }
}

/// The policy one call runs under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub mode: CacheMode,
    pub scope: CacheScope,
    /// How long an answer is served after it was stored.
    pub ttl: Duration,
    /// The cosine a semantic candidate needs before the second check looks at it.
    pub min_similarity: f32,
    /// How long a request waits for an identical one already on its way upstream, to be
    /// answered with its answer (zero: never waits).
    pub coalesce: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            mode: CacheMode::Off,
            scope: CacheScope::Key,
            ttl: Duration::from_secs(3_600),
            min_similarity: DEFAULT_MIN_SIMILARITY,
            coalesce: Duration::from_secs(30),
        }
    }
}

/// Conservative: with the second check, lower floors add almost no hits (docs/cache.md).
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.80;

/// A per-alias override: set fields replace the default's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CacheOverride {
    pub mode: Option<CacheMode>,
    pub scope: Option<CacheScope>,
    pub ttl: Option<Duration>,
    pub min_similarity: Option<f32>,
    pub coalesce: Option<Duration>,
}

impl CacheOverride {
    /// Replaces `p`'s fields with the ones this override sets.
    pub fn apply(&self, p: &mut CachePolicy) {
        if let Some(m) = self.mode {
            p.mode = m;
        }
        if let Some(s) = self.scope {
            p.scope = s;
        }
        if let Some(t) = self.ttl {
            p.ttl = t;
        }
        if let Some(s) = self.min_similarity {
            p.min_similarity = s;
        }
        if let Some(c) = self.coalesce {
            p.coalesce = c;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub default: CachePolicy,
    pub models: BTreeMap<String, CacheOverride>,
    /// The whole cache, across aliases and scopes: entries and bytes at most, least
    /// recently used evicted first.
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Answers larger than this are not stored.
    pub max_answer_bytes: usize,
    /// The sentence-embedding model's directory (potion-base-8M, `scripts/fetch-model`);
    /// absent, the semantic cache is off and says so at start.
    pub model_dir: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            default: CachePolicy::default(),
            models: BTreeMap::new(),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_answer_bytes: 256 << 10,
            model_dir: PathBuf::from("models/potion-base-8M"),
        }
    }
}

impl CacheConfig {
    /// The policy of a call to model alias `model`.
    pub fn policy(&self, model: &str) -> CachePolicy {
        let mut p = self.default;
        if let Some(o) = self.models.get(model) {
            o.apply(&mut p);
        }
        p
    }

    /// Whether any alias caches: the cache is built at start only then.
    pub fn any(&self) -> bool {
        self.default.mode != CacheMode::Off
            || self
                .models
                .values()
                .any(|o| o.mode.is_some_and(|m| m != CacheMode::Off))
    }

    /// Whether any alias asks for the semantic cache: the model is loaded only then.
    pub fn any_semantic(&self) -> bool {
        self.policy_modes().any(|m| m == CacheMode::Semantic)
    }

    /// The longest TTL of any policy: the index's own bound.
    pub fn max_ttl(&self) -> Duration {
        self.models
            .values()
            .filter_map(|o| o.ttl)
            .fold(self.default.ttl, Duration::max)
    }

    fn policy_modes(&self) -> impl Iterator<Item = CacheMode> + '_ {
        std::iter::once(self.default.mode).chain(self.models.values().filter_map(|o| o.mode))
    }
}
