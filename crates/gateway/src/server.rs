//! `run(listener, state, shutdown)`: the caller owns the socket and the shutdown signal,
//! so tests bind port 0 and stop the server when they like.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::net::TcpListener;
use tokio::time::{Duration, Instant};

use crate::conn::Phase;
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

/// At least this long for the store work of a stop (leases back, key state, the
/// ledger's last rows) when the grace period was used up by requests.
const MIN_STOP_WORK: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then stops:
/// 1. stops accepting, fails `/readyz`, and lets in-flight requests and streams finish
///    for up to the grace period;
/// 2. when the grace is over, streams end with an error event and requests still waiting
///    for their first byte are answered `503 shutting_down`; each records its ledger row;
/// 3. gives leased limits back, persists key state and writes the ledger's last rows,
///    within the rest of the grace period (at least [`MIN_STOP_WORK`]); rows the database
///    does not take by then go to the spill file, and the log says how many.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.shutdown_grace;
    let refresher = tokio::spawn(refresh_keys(state.clone()));
    let limits_sync = tokio::spawn(sync_limits(state.clone()));
    let persister = crate::profiles::Persister::spawn(&state);
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(Phase::Serve);
    let serve = crate::conn::serve(listener, app(state.clone()), state.conn_limits, phase_rx);
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = shutdown => {}
    }
    let stop_started = Instant::now();
    state.start_draining();
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; waiting for in-flight requests"
    );
    let _ = phase_tx.send(Phase::Drain);
    if tokio::time::timeout(grace, &mut serve).await.is_err() {
        tracing::warn!(
            "grace period over; ending open streams and answering waiting requests with shutting_down"
        );
        state.cut_streams();
        // The error answers and events are written; then the connections still open (a
        // client that reads nothing) are dropped, and `serve` returns once they all are,
        // so every dropped stream's ledger row is queued before the ledger stops.
        if tokio::time::timeout(Duration::from_millis(500), &mut serve)
            .await
            .is_err()
        {
            let _ = phase_tx.send(Phase::Cut);
            serve.await;
        }
    }
    refresher.abort();
    limits_sync.abort();
    let deadline = (stop_started + grace).max(Instant::now() + MIN_STOP_WORK);
    // Allowances this instance holds go back to the shared buckets; debts are recorded.
    if tokio::time::timeout_at(deadline, state.gate.sync(Duration::ZERO))
        .await
        .is_err()
    {
        tracing::warn!(
            "could not give leased limits back before the deadline; they return when their window ends"
        );
    }
    if let Some(p) = persister
        && tokio::time::timeout_at(deadline, p.finish()).await.is_err()
    {
        tracing::warn!("could not persist provider-key state before the deadline");
    }
    // Every spend row is written, or spilled to be written at the next start.
    let report = state.ledger.shutdown(deadline).await;
    if report.spilled == 0 && report.lost == 0 {
        tracing::info!(rows = report.written, "spend ledger written");
    }
    Ok(())
}

/// Reloads changed API keys and auth-profile states every `key_refresh`, so a key revoked
/// (or a provider key refused, or reset) on any instance counts on this one within that
/// time.
async fn refresh_keys(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.key_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.set_file_check(state.store.check_file().await);
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
