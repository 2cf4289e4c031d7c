//! The Bearer header: `Authorization: Bearer <key>` becomes the service's [`Principal`]
//! (the key check itself is the service's, shared with every transport).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sluice_service::{Principal, ServiceError};

use crate::{ApiError, AppState};

/// Middleware for authenticated routes: puts the [`Principal`] in the request.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(&req)?.ok_or(ServiceError::MissingApiKey)?;
    let principal: Principal = state.service.authenticate(token)?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The bearer token of a request: `Ok(None)` when there is none.
pub(crate) fn bearer(req: &Request) -> Result<Option<&str>, ApiError> {
    let Some(header) = req.headers().get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = header.to_str().map_err(|_| ServiceError::InvalidApiKey)?;
    Ok(value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim))
}
