use std::process::ExitCode;
use std::sync::Arc;

use sluice_config::Config;
use sluice_gateway::AppState;
use sluice_service::Service;

/// Builds the runtime `[server] worker_threads` asks for and serves on it.
pub fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    let runtime = match cfg.server.worker_threads {
        // One thread: no cross-thread wake-ups (measured: ~25 % less CPU per request on a
        // 2-vCPU machine shared with the load; see docs/benchmarks.md).
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = n {
                b.worker_threads(n);
            }
            b.enable_all().build()?
        }
    };
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<ExitCode> {
    // The first token count would otherwise wait ~0.7 s for the tokenizers to load.
    tokio::task::spawn_blocking(sluice_service::warm_tokenizers);
    // Every client connection, upstream connection and stream needs a descriptor; the
    // default soft limit (often 1024) would cap the gateway long before its own limits.
    if let Some(n) = sluice_gateway::raise_fd_limit() {
        tracing::debug!(
            open_file_limit = n,
            "open-file limit raised to its hard limit"
        );
    }
    let store = super::open_store(&cfg).await?;
    // Bound before the service starts its background work: nothing to stop if it fails.
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    let service = Service::start(&cfg, store.clone()).await?;
    let state = Arc::new(AppState::start(&cfg, service).await?);
    // Tests and scripts read the bound address from this line (port 0 picks a free port).
    tracing::info!("sluice listening on {}", listener.local_addr()?);
    sluice_gateway::run(listener, state, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("sluice stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
