//! Probes. `/healthz`: the process answers. `/readyz`: the store answers and the gateway is
//! not draining.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    if !matches!(ping, Ok(Ok(()))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store_unreachable"})),
        );
    }
    (StatusCode::OK, Json(json!({"status": "ready"})))
}
