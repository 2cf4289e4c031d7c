//! The one call path, transport-free. Every model call, from an HTTP handler, a WebSocket
//! method, an agent step or a chat channel, enters here with who is calling (a
//! [`Principal`]), what for ([`CallMeta`]: request, agent, run, session, channel) and a
//! canonical request, and leaves as a whole answer or a [`MeteredStream`] that settles
//! itself. In between, exactly once each: the pre-flight policy (model allowlist, spend
//! breaker, output cap), admission (limits and budgets), routing, settlement, the spend
//! breaker's record and the ledger row. Nothing else calls the router, so nothing can skip
//! a limit, a budget or the ledger.
//!
//! The service also owns the background work those need (key refresh, limits sync,
//! auth-profile persistence, the ledger writer): [`Service::start`] starts it and
//! [`Service::stop`] drains it, whatever transports the process serves.
//!
//! This crate knows no transport: no HTTP status, header or frame. Errors are
//! [`ServiceError`]s with a stable code and a [`Category`] each transport maps.
//!
//! Layout: [`call`] (the entry points and the pre-flight policy), [`admission`] (limits
//! and budgets), [`settlement`] (ledger rows, settling, the spend breaker's record),
//! [`metered`] (the stream that settles), [`keys`] (gateway keys → principals),
//! [`spend_breaker`], [`profiles`] (auth-profile state shared through the store),
//! [`snapshot`] (what a config decides, swapped whole), [`lifecycle`] (start and stop),
//! [`error`], [`ids`].

pub mod admission;
pub mod cache;
pub mod call;
pub mod error;
mod flight;
pub mod guard;
pub mod ids;
pub mod keys;
mod lifecycle;
pub mod metered;
pub mod profiles;
mod settlement;
pub mod snapshot;
pub mod spend_breaker;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_config::Config;
use sluice_store::ledger::{Ledger, LedgerConfig};
use sluice_store::{FileCheck, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admission::{Estimate, Gate};
pub use cache::{CacheControl, CacheStatus, ResponseCache};
pub use call::{Answer, CallMeta, ChannelUser, Reply, RunScope};
pub use error::{Category, ErrorInfo, ServiceError};
pub use guard::Flagged;
pub use keys::{KeyRing, Principal};
pub use lifecycle::StopReport;
pub use metered::MeteredStream;
pub use settlement::{MAX_UNPRICED_NAMED, Settled};
pub use sluice_limits::lease::Snapshot as Headroom;
pub use sluice_limits::tokens::warm as warm_tokenizers;
pub use snapshot::{Policy, Snapshot, SnapshotError};

/// The completion service. Cheap to clone: every clone is the same service.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    current: ArcSwap<Snapshot>,
    keys: KeyRing,
    spend_breaker: spend_breaker::SpendBreaker,
    profiles: profiles::ProfileSync,
    limiter: admission::SharedLimiter,
    store: Store,
    ledger: Ledger,
    /// Models already reported as unpriced (each is logged once).
    unpriced: Mutex<HashSet<String>>,
    /// What the last look at the SQLite file found.
    file_check: Mutex<FileCheck>,
    key_refresh: Duration,
    /// Cancelled when the shutdown grace is over: calls still waiting for their first
    /// byte fail with `shutting_down`, and open streams end with that error.
    cut: CancellationToken,
    /// Cancelled by [`Service::stop`]: the background loops end.
    stopping: CancellationToken,
    /// Every task the service spawns, so that a stop can wait for them.
    tasks: TaskTracker,
    /// The refresh and sync loops, which a stop lets finish their round.
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One token per call not yet settled, so that a stop waits for them.
    calls: TaskTracker,
    /// The runtime the service was started on: settling (on a stream's drop, wherever
    /// that happens) spawns its store writes there.
    runtime: tokio::runtime::Handle,
    persister: Mutex<Option<profiles::Persister>>,
    /// The canary placed in system prompts whose policy asks for one (docs/guard.md): one
    /// per process, so that a system prompt stays the same from call to call (providers'
    /// prompt caches key on it).
    canary: String,
    /// The response cache (docs/cache.md); its policies are in the snapshot.
    pub(crate) cache: Arc<cache::ResponseCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("cannot load state from the store: {0}")]
    Store(#[from] sluice_store::StoreError),
}

impl Service {
    /// Builds the service on an open (migrated) store: loads its keys, spend-breaker trips
    /// and auth-profile states, starts the ledger's writer and the background refresh and
    /// sync. Call within the runtime that will serve; end with [`Service::stop`].
    pub async fn start(cfg: &Config, store: Store) -> Result<Service, StartError> {
        let limiter = admission::Gate::limiter(&cfg.limits, store.clone());
        let snapshot = Snapshot::build(cfg, limiter.clone())?;
        let keys = KeyRing::new(&cfg.keys);
        keys.refresh(&store).await?;
        let spend_breaker = spend_breaker::SpendBreaker::new(cfg.limits.spend_breaker);
        spend_breaker.refresh(&store, ids::now_ms()).await?;
        let profiles = profiles::ProfileSync::new();
        profiles.pull(&store, &snapshot.router).await?;
        let ledger = Ledger::start(
            store.clone(),
            LedgerConfig {
                batch_size: cfg.database.ledger_batch,
                flush_interval: cfg.database.ledger_flush,
                spill_file: Some(cfg.database.ledger_spill_file.clone()),
                ..LedgerConfig::default()
            },
        );
        let tasks = TaskTracker::new();
        let persister = profiles::Persister::spawn(&snapshot.router, &store, &tasks);
        let service = Service {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(snapshot),
                keys,
                spend_breaker,
                profiles,
                limiter,
                store,
                ledger,
                unpriced: Mutex::default(),
                file_check: Mutex::new(FileCheck::Fine),
                key_refresh: cfg.database.key_refresh,
                cut: CancellationToken::new(),
                stopping: CancellationToken::new(),
                tasks,
                loops: Mutex::default(),
                calls: TaskTracker::new(),
                runtime: tokio::runtime::Handle::current(),
                persister: Mutex::new(persister),
                canary: sluice_guard::canary(uuid::Uuid::new_v4().as_u128()),
                cache: cache::ResponseCache::build(&cfg.cache),
            }),
        };
        service.spawn_background(cfg);
        Ok(service)
    }

    /// The principal a presented gateway key authenticates (a Bearer header, a
    /// WebSocket connect token), or why not.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Principal>, ServiceError> {
        self.inner.keys.check(token, ids::now_ms())
    }

    /// The config now in force. A call keeps the one it loaded to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// A snapshot of `cfg` on this service's limiter (leases held carry over), to put
    /// in force with [`Service::replace_snapshot`].
    pub fn build_snapshot(&self, cfg: &Config) -> Result<Snapshot, snapshot::SnapshotError> {
        Snapshot::build(cfg, self.inner.limiter.clone())
    }

    /// Puts a new config's snapshot in force for the calls that start from now on; calls
    /// already running keep theirs. The new router's auth-profile changes are persisted
    /// from now on (the old router's last ones are written first).
    ///
    /// The new router starts with fresh key cool-downs and breakers; carrying them over
    /// is the live-reload work's.
    pub fn replace_snapshot(&self, next: Snapshot) {
        let inner = &self.inner;
        let persister = profiles::Persister::spawn(&next.router, &inner.store, &inner.tasks);
        inner.current.store(Arc::new(next));
        let old = std::mem::replace(
            &mut *inner.persister.lock().unwrap_or_else(|p| p.into_inner()),
            persister,
        );
        if let Some(old) = old {
            inner.tasks.spawn_on(old.finish(), &inner.runtime);
        }
    }

    /// Whether [`Service::stop`] has begun: new calls are refused with `shutting_down`.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.is_cancelled()
    }

    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    pub fn spend_breaker(&self) -> &spend_breaker::SpendBreaker {
        &self.inner.spend_breaker
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The response cache (docs/cache.md).
    pub fn cache(&self) -> &cache::ResponseCache {
        &self.inner.cache
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// Writes debts and idle allowances of every limit back to the store (`idle` zero:
    /// everything, as on stop).
    pub async fn sync_limits(&self, idle: Duration) {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = self.inner.limiter.sync(ids::now_ms(), idle_ms).await {
            tracing::warn!("cannot write limit allowances back to the store: {e}");
        }
    }

    /// Unpriced models remembered (bounded: client input names them).
    pub fn unpriced_models(&self) -> usize {
        self.inner
            .unpriced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// What the last look at the SQLite file found (checked with each key refresh).
    pub fn file_check(&self) -> FileCheck {
        self.inner
            .file_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
