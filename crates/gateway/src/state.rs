use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_config::Config;
use sluice_providers::{BuildError, Router};

use crate::auth::KeyRing;

/// Everything a handler needs, built once from the config.
#[derive(Debug)]
pub struct AppState {
    pub router: Router,
    pub keys: KeyRing,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(cfg: &Config) -> Result<AppState, BuildError> {
        let router = Router::new(cfg)?;
        Ok(AppState {
            router,
            keys: KeyRing::new(&cfg.keys),
            max_body_bytes: cfg.server.max_body_bytes,
            shutdown_grace: cfg.server.shutdown_grace,
            draining: AtomicBool::new(false),
        })
    }

    /// Set once shutdown starts: `/readyz` then fails so load balancers stop sending.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
