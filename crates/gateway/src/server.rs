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

/// Serves until `shutdown` resolves, then stops:
/// 1. stops accepting, fails `/readyz`, and lets in-flight requests and streams finish
///    for up to the grace period;
/// 2. when the grace is over, the service is cut: streams end with an error event and
///    requests still waiting for their first byte are answered `503 shutting_down`; each
///    records its ledger row;
/// 3. stops the service (`Service::stop`): leased limits go back, key state is
///    persisted and the ledger's last rows written, within the rest of the grace period
///    (at least a few seconds); rows the database does not take by then go to the spill
///    file, and the log says how many.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.shutdown_grace;
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(Phase::Serve);
    let serve = crate::conn::serve(listener, app(state.clone()), state.conn_limits, phase_rx);
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = shutdown => {}
    }
    let stop_started = Instant::now();
    let deadline = stop_started + grace;
    state.start_draining();
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; waiting for in-flight requests"
    );
    let _ = phase_tx.send(Phase::Drain);
    // WebSocket clients are told to reconnect (elsewhere) at once; their sessions' calls
    // run on within the grace like HTTP requests.
    state.hub.stopping.cancel();
    // Channel deliveries stop at their next step and stay in the store for the next
    // start; agent runs get the grace; those still going then end as `interrupted`.
    if let Some(channels) = &state.channels {
        channels.stop(deadline).await;
    }
    let (http_done, ()) = tokio::join!(
        async { tokio::time::timeout_at(deadline, &mut serve).await.is_ok() },
        state.scheduler.stop(deadline),
    );
    let calls_done = http_done
        && tokio::time::timeout_at(deadline, state.service.idle())
            .await
            .is_ok();
    if !calls_done {
        tracing::warn!(
            "grace period over; ending open streams and answering waiting requests with shutting_down"
        );
        state.service.cut();
        // The error answers and events are written; then the connections still open (a
        // client that reads nothing) are dropped, and `serve` returns once they all are,
        // so every dropped stream's ledger row is queued before the ledger stops.
        if !http_done
            && tokio::time::timeout(Duration::from_millis(500), &mut serve)
                .await
                .is_err()
        {
            let _ = phase_tx.send(Phase::Cut);
            serve.await;
        }
    }
    state.hub.stop();
    state.service.stop(deadline).await;
    Ok(())
}
