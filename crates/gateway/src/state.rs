use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_config::Config;
use sluice_providers::{BuildError, Router};
use tokio::sync::watch;

use crate::auth::KeyRing;

/// Everything a handler needs, built once from the config.
#[derive(Debug)]
pub struct AppState {
    pub router: Router,
    pub keys: KeyRing,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    draining: AtomicBool,
    /// Set when the shutdown grace period ends: open streams end with an error event.
    cut_streams: watch::Sender<bool>,
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

    /// Ends every open stream with an error event (the grace period is over).
    pub fn cut_streams(&self) {
        self.cut_streams.send_replace(true);
    }

    pub(crate) fn stream_cut_signal(&self) -> watch::Receiver<bool> {
        self.cut_streams.subscribe()
    }
}
