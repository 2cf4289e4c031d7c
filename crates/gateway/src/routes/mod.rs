//! The route table. Routes in [`public`] skip auth; everything else needs a gateway key.

pub mod admin;
mod answer;
mod body;
mod chat;
mod embeddings;
mod health;
mod models;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// Routes that answer without a gateway key: liveness and readiness probes.
pub fn public() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}

/// The OpenAI-compatible API.
pub fn authenticated() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/models", get(models::list))
}
