//! `run(listener, state, shutdown)`: the caller owns the socket and the shutdown signal,
//! so tests bind port 0 and stop the server when they like.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::{ApiError, AppState, auth, request_id, routes};

/// The whole app, middleware order readable top to bottom: request id (outermost, so every
/// response carries one) → auth (the gateway key for `/v1`, the admin token for `/admin`)
/// → body limit → handler.
pub fn app(state: Arc<AppState>) -> Router {
    let api = routes::authenticated()
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let admin = routes::admin::routes()
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            routes::admin::require_admin,
        ));
    routes::public()
        .merge(api)
        .merge(admin)
        .fallback(|uri: http::Uri| async move { ApiError::NotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests and
/// streams finish for up to the configured grace period.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.shutdown_grace;
    let refresher = tokio::spawn(refresh_keys(state.clone()));
    let limits_sync = tokio::spawn(sync_limits(state.clone()));
    let gate = state.gate.clone();
    let persister = crate::profiles::Persister::spawn(&state);
    let ledger = state.ledger.clone();
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let draining = state.clone();
    let cutter = state.clone();
    // Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold small SSE
    // chunks back ~40 ms: the chunk spacing of a stream would not survive the proxy.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let serve = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        draining.start_draining();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections; waiting for in-flight requests"
        );
        let _ = tx.send(true);
    });
    let deadline = async move {
        let _ = rx.wait_for(|started| *started).await;
        tokio::time::sleep(grace).await;
        // Open streams get an error event rather than a silent cut; give it a moment out.
        cutter.cut_streams();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let result = tokio::select! {
        r = serve => r,
        () = deadline => {
            tracing::warn!("grace period over; dropping the requests still running");
            Ok(())
        }
    };
    refresher.abort();
    limits_sync.abort();
    // Allowances this instance holds go back to the shared buckets; debts are recorded.
    gate.sync(std::time::Duration::ZERO).await;
    if let Some(p) = persister {
        p.finish().await;
    }
    // Every spend row of the requests that finished is written before we return.
    ledger.shutdown().await;
    result
}

/// Reloads changed API keys and auth-profile states every `key_refresh`, so a key revoked
/// (or a provider key refused, or reset) on any instance counts on this one within that
/// time.
async fn refresh_keys(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.key_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.keys.refresh(&state.store).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(changed = n, "API keys reloaded"),
            Err(e) => tracing::warn!("cannot reload API keys (keeping the ones loaded): {e}"),
        }
        if let Err(e) = state.profiles.pull(&state.store, &state.router).await {
            tracing::warn!("cannot read shared auth-profile state: {e}");
        }
        if let Err(e) = state
            .spend_breaker
            .refresh(&state.store, crate::auth::now_ms())
            .await
        {
            tracing::warn!("cannot read spend-breaker trips: {e}");
        }
    }
}

/// Every `[limits] sync_ms`: records debts and gives idle allowances back; hourly,
/// deletes the shared buckets of calendar windows long over.
async fn sync_limits(state: Arc<AppState>) {
    let cfg = &state.gate.cfg;
    let mut tick = tokio::time::interval(cfg.sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_gc = std::time::Instant::now();
    loop {
        tick.tick().await;
        state.gate.sync(cfg.lease_idle).await;
        if last_gc.elapsed() >= std::time::Duration::from_secs(3600) {
            last_gc = std::time::Instant::now();
            if let Err(e) = state
                .store
                .delete_expired_buckets(crate::auth::now_ms())
                .await
            {
                tracing::warn!("cannot delete expired limit buckets: {e}");
            }
        }
    }
}
