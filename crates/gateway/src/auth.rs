//! Who a request is from: `Authorization: Bearer <key>` becomes the service's
//! [`Principal`] (the key check itself is the service's, shared with every transport).
//! In `trusted_proxy` mode, an identity header set by an identity-aware proxy names the
//! user instead; it is believed only from the configured proxy addresses, and a request
//! from anywhere else carrying it is refused, so a client cannot name itself.

use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sluice_config::AuthMode;
use sluice_service::{Principal, ServiceError};

use crate::{ApiError, AppState};

/// Middleware for authenticated routes: puts the [`Principal`] in the request.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let principal = match proxied(&state, req.headers(), peer)? {
        Some(p) => Arc::new(p),
        None => {
            let token = bearer(&req)?.ok_or(ServiceError::MissingApiKey)?;
            state.service.authenticate(token)?
        }
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The user a trusted proxy vouches for: `Ok(None)` when the request carries no identity
/// header (or the gateway is in `key` mode); refused when the header comes from an
/// address that is not a trusted proxy.
pub(crate) fn proxied(
    state: &AppState,
    headers: &http::HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Principal>, ApiError> {
    let AuthMode::TrustedProxy { user_header, .. } = &state.auth else {
        return Ok(None);
    };
    let Some(value) = headers.get(user_header.as_str()) else {
        return Ok(None);
    };
    if !peer.is_some_and(|ip| state.auth.trusts(ip)) {
        tracing::warn!(peer = ?peer, "identity header from an untrusted address refused");
        return Err(ApiError::UntrustedIdentity);
    }
    let user = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 256 && !u.bytes().any(|b| b.is_ascii_control()))
        .ok_or_else(|| ApiError::invalid(format!("{user_header}: 1 to 256 visible characters")))?;
    Ok(Some(Principal::proxied_user(user)))
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
