//! `GET /v1/models`: the aliases, and the direct `provider:model` names when allowed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .service
        .snapshot()
        .router
        .model_names()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "sluice"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}
