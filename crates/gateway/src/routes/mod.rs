//! The route table. Routes in [`public`] skip auth; everything else needs a gateway key.

pub mod admin;
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

/// The agent a request is made for, from `x-sluice-agent`: its budgets apply and the
/// ledger records it. A key cannot escape its own (or its user's) limits by naming one.
pub(crate) fn agent(headers: &http::HeaderMap) -> Result<Option<String>, crate::ApiError> {
    let Some(v) = headers.get("x-sluice-agent") else {
        return Ok(None);
    };
    let ok = v.to_str().ok().filter(|s| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    });
    match ok {
        Some(s) => Ok(Some(s.to_owned())),
        None => Err(crate::ApiError::InvalidRequest(
            "x-sluice-agent: 1 to 128 characters of A-Z a-z 0-9 . _ : -".into(),
        )),
    }
}
