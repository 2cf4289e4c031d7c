//! Probes. `/healthz`: the process answers. `/readyz`: the gateway can do its whole job:
//! it is not draining, the store answers, the SQLite file is the one it opened, and the
//! spend ledger keeps up (its last write worked and its backlog is not piling up). A
//! gateway that answers requests but cannot record what they cost is not ready.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use sluice_store::FileCheck;

use crate::AppState;

/// Rows waiting for the ledger past which the gateway says it is not ready, even while
/// writes work: a writer this far behind is not keeping up.
const LEDGER_BACKLOG_NOT_READY: u64 = 50_000;

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
    let ledger = state.service.ledger().health();
    if ledger.failing || ledger.backlog > LEDGER_BACKLOG_NOT_READY {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "ledger_behind",
                "ledger": {"backlog": ledger.backlog, "failing": ledger.failing},
            })),
        );
    }
    match state.service.file_check() {
        FileCheck::Fine | FileCheck::Restored => {}
        FileCheck::Replaced | FileCheck::Missing(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "database_file_lost"})),
            );
        }
    }
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.service.store().ping(),
    )
    .await;
    if !matches!(ping, Ok(Ok(()))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store_unreachable"})),
        );
    }
    (StatusCode::OK, Json(json!({"status": "ready"})))
}
