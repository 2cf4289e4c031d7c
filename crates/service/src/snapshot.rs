//! What a config decides about calls, swapped as one piece: the router (aliases, chains,
//! providers), the limits gate (every scope's limits, the prices) and the pre-flight
//! policy. A call loads the current snapshot once and keeps it to its end (a stream's
//! settlement included), so a config swapped in meanwhile never mixes with the one it
//! started on. State that must outlive a config (leases held, keys, spend-breaker
//! windows, the ledger) lives beside it in the service, not in it.

use std::sync::Arc;

use sluice_config::{Config, LimitsConfig};
use sluice_providers::Router;

use crate::admission::{Gate, SharedLimiter};
use crate::guard::GuardSet;

#[derive(Debug)]
pub struct Snapshot {
    pub router: Router,
    pub gate: Arc<Gate>,
    pub policy: Policy,
    /// The prompt guard and its policies.
    pub guard: GuardSet,
    /// The response cache's policies (the cache itself outlives configs).
    pub cache: sluice_config::cache::CacheConfig,
}

/// Why a config could not become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Providers(#[from] sluice_providers::BuildError),
    #[error(transparent)]
    Guard(#[from] sluice_guard::GuardError),
}

/// The pre-flight rules a call meets before admission.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Sent as `max_tokens` when a call names none; calls asking for more are refused.
    pub max_output_tokens: Option<u32>,
    /// Output tokens reserved for a call that names no `max_tokens`.
    pub output_reserve: u64,
}

impl Policy {
    fn new(cfg: &LimitsConfig) -> Self {
        Policy {
            max_output_tokens: cfg.max_output_tokens,
            output_reserve: cfg.output_reserve,
        }
    }
}

impl Snapshot {
    /// Builds a snapshot of `cfg` on the process's limiter.
    pub fn build(cfg: &Config, limiter: SharedLimiter) -> Result<Snapshot, SnapshotError> {
        Ok(Snapshot {
            router: Router::new(cfg)?,
            gate: Arc::new(Gate::new(
                cfg.limits.clone(),
                limiter,
                sluice_limits::PriceTable::from_config(&cfg.prices),
            )),
            policy: Policy::new(&cfg.limits),
            guard: GuardSet::build(&cfg.guard)?,
            cache: cfg.cache.clone(),
        })
    }
}
