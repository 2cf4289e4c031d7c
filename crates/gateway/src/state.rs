use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_config::Config;
use sluice_service::Service;
use tokio_util::sync::CancellationToken;

/// What the HTTP server needs: the completion service and its own settings.
#[derive(Debug)]
pub struct AppState {
    pub service: Service,
    /// Agent runs (`agent.run`, `/v1/runs`).
    pub scheduler: sluice_scheduler::Scheduler,
    /// The WebSocket sessions.
    pub hub: Arc<crate::ws::Hub>,
    /// Slack, Telegram and WhatsApp (`None`: no `[channels]`).
    pub channels: Option<sluice_channels::Channels>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub conn_limits: sluice_config::ConnLimits,
    pub auth: sluice_config::AuthMode,
    /// SHA-256 of the admin token; `None`: the admin API is off.
    pub(crate) admin_token: Option<[u8; 32]>,
    /// The Prometheus recorder `/metrics` renders; `None`: not served.
    pub(crate) metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    /// Cancelled once shutdown starts.
    draining: CancellationToken,
}

/// What can stop the gateway's state from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Scheduler(#[from] sluice_scheduler::SchedulerError),
    #[error(transparent)]
    Channels(#[from] sluice_channels::ChannelError),
}

impl AppState {
    /// The HTTP server's state around a started service: starts the scheduler (which
    /// marks runs left in flight by an earlier process `interrupted`).
    pub async fn start(cfg: &Config, service: Service) -> Result<AppState, StartError> {
        let nodes = Arc::new(crate::ws::nodes::Nodes::default());
        let scheduler =
            sluice_scheduler::Scheduler::start(cfg, service.clone(), nodes.clone()).await?;
        // After the scheduler's recovery: the channels then find every run's end.
        let channels = sluice_channels::Channels::start(cfg, scheduler.clone(), &service).await?;
        Ok(AppState {
            service,
            scheduler,
            channels,
            hub: Arc::new(crate::ws::Hub::new(cfg.websocket.clone(), nodes)),
            max_body_bytes: cfg.server.max_body_bytes,
            shutdown_grace: cfg.server.shutdown_grace,
            conn_limits: cfg.server.conn,
            auth: cfg.server.auth.clone(),
            admin_token: cfg
                .server
                .admin_token
                .as_ref()
                .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
            metrics: if cfg.server.metrics {
                crate::metrics::handle()
            } else {
                None
            },
            draining: CancellationToken::new(),
        })
    }

    /// Set once shutdown starts: `/readyz` then fails so load balancers stop sending.
    pub fn start_draining(&self) {
        self.draining.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Cancelled once shutdown starts: what must not hold the drain up (a run's event
    /// stream, which a client resumes elsewhere) watches it.
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }
}
