use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_config::Config;
use sluice_providers::Router;
use sluice_store::Store;
use sluice_store::ledger::{Ledger, LedgerConfig};
use tokio::sync::watch;

use crate::auth::KeyRing;
use crate::profiles::ProfileSync;

/// Everything a handler needs, built once from the config.
#[derive(Debug)]
pub struct AppState {
    pub router: Router,
    pub keys: KeyRing,
    pub profiles: ProfileSync,
    pub store: Store,
    pub ledger: Ledger,
    pub prices: sluice_limits::PriceTable,
    pub gate: Arc<crate::limits::Gate>,
    pub spend_breaker: crate::velocity::SpendBreaker,
    /// Models already reported as unpriced (each is logged once).
    pub(crate) unpriced: std::sync::Mutex<std::collections::HashSet<String>>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub key_refresh: Duration,
    pub conn_limits: sluice_config::ConnLimits,
    /// What the last look at the SQLite file found (`/readyz` fails unless it is fine).
    file_check: std::sync::Mutex<sluice_store::FileCheck>,
    /// SHA-256 of the admin token; `None`: the admin API is off.
    pub(crate) admin_token: Option<[u8; 32]>,
    draining: AtomicBool,
    /// Set when the shutdown grace period ends: open streams end with an error event.
    cut_streams: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Providers(#[from] sluice_providers::BuildError),
    #[error("cannot load API keys from the store: {0}")]
    Store(#[from] sluice_store::StoreError),
}

impl AppState {
    /// Builds the state on an open (migrated) store: loads its keys and starts the spend
    /// ledger's writer. Call within the runtime that will serve.
    pub async fn new(cfg: &Config, store: Store) -> Result<AppState, StartError> {
        let router = Router::new(cfg)?;
        let keys = KeyRing::new(&cfg.keys);
        keys.refresh(&store).await?;
        let spend_breaker = crate::velocity::SpendBreaker::new(cfg.limits.spend_breaker);
        spend_breaker.refresh(&store, crate::auth::now_ms()).await?;
        let prices = sluice_limits::PriceTable::from_config(&cfg.prices);
        let gate = Arc::new(crate::limits::Gate::new(
            cfg.limits.clone(),
            store.clone(),
            prices.clone(),
        ));
        let profiles = ProfileSync::new();
        profiles.pull(&store, &router).await?;
        let ledger = Ledger::start(
            store.clone(),
            LedgerConfig {
                batch_size: cfg.database.ledger_batch,
                flush_interval: cfg.database.ledger_flush,
                spill_file: Some(cfg.database.ledger_spill_file.clone()),
                ..LedgerConfig::default()
            },
        );
        Ok(AppState {
            router,
            keys,
            profiles,
            store,
            ledger,
            prices,
            gate,
            spend_breaker,
            unpriced: std::sync::Mutex::default(),
            max_body_bytes: cfg.server.max_body_bytes,
            shutdown_grace: cfg.server.shutdown_grace,
            key_refresh: cfg.database.key_refresh,
            conn_limits: cfg.server.conn,
            file_check: std::sync::Mutex::new(sluice_store::FileCheck::Fine),
            admin_token: cfg
                .server
                .admin_token
                .as_ref()
                .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
            draining: AtomicBool::new(false),
            cut_streams: watch::channel(false).0,
        })
    }

    /// Set once shutdown starts: `/readyz` then fails so load balancers stop sending.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Unpriced models remembered (bounded: client input names them).
    pub fn unpriced_models(&self) -> usize {
        self.unpriced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn set_file_check(&self, check: sluice_store::FileCheck) {
        *self.file_check.lock().unwrap_or_else(|p| p.into_inner()) = check;
    }

    pub fn file_check(&self) -> sluice_store::FileCheck {
        self.file_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ends every open stream with an error event (the grace period is over).
    pub fn cut_streams(&self) {
        self.cut_streams.send_replace(true);
    }

    pub(crate) fn stream_cut_signal(&self) -> watch::Receiver<bool> {
        self.cut_streams.subscribe()
    }

    /// Runs `call` unless the shutdown grace ends first (`None`).
    pub(crate) async fn until_cut<T>(
        &self,
        call: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut cut = self.cut_streams.subscribe();
        tokio::select! {
            biased;
            _ = cut.wait_for(|cut| *cut) => None,
            r = call => Some(r),
        }
    }
}
