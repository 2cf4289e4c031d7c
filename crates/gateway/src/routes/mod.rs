//! The route table. Routes in [`public`] skip auth; everything else needs a gateway key.

pub mod admin;
mod answer;
mod body;
mod channels;
mod chat;
mod embeddings;
mod health;
mod models;
mod runs;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// Routes that answer without a gateway key in a header: liveness and readiness probes,
/// Prometheus metrics, and the WebSocket upgrade (its first frame carries the key).
pub fn public() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::render))
        // Authenticated by its first frame (`connect`), not by a header.
        .route("/ws", get(crate::ws::upgrade))
        // Authenticated by each platform's signature or secret token (sluice-channels).
        .route("/channels/slack/events", post(channels::slack))
        .route("/channels/telegram/{bot}", post(channels::telegram))
        .route(
            "/channels/whatsapp",
            get(channels::whatsapp_subscribe).post(channels::whatsapp),
        )
}

/// The OpenAI-compatible API, and agent runs.
pub fn authenticated() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/models", get(models::list))
        .route("/v1/runs", post(runs::create))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
}
