use std::process::ExitCode;
use std::sync::Arc;

use sluice_config::Config;
use sluice_gateway::AppState;

#[tokio::main]
pub async fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    // The first token count would otherwise wait ~0.7 s for the tokenizers to load.
    tokio::task::spawn_blocking(sluice_gateway::warm_tokenizers);
    let store = super::open_store(&cfg).await?;
    let state = Arc::new(AppState::new(&cfg, store.clone()).await?);
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    // Tests and scripts read the bound address from this line (port 0 picks a free port).
    tracing::info!("sluice listening on {}", listener.local_addr()?);
    sluice_gateway::run(listener, state, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("sluice stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
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
