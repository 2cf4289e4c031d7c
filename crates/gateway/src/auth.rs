//! Gateway keys: clients present `Authorization: Bearer <key>`. Keys are held as SHA-256
//! digests and compared in constant time against every configured key, so neither the
//! comparison nor which key matched leaks through timing.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use sluice_config::GatewayKey;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<([u8; 32], String)>,
}

/// The key a request authenticated with, for handlers and logs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_name: String,
}

impl KeyRing {
    pub fn new(keys: &[GatewayKey]) -> Self {
        KeyRing {
            keys: keys
                .iter()
                .map(|k| (digest(k.key.expose()), k.name.clone()))
                .collect(),
        }
    }

    /// The name of the matching key. Checks every key whatever happens.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        let mut found: Option<&str> = None;
        for (k, name) in &self.keys {
            if bool::from(k.ct_eq(&d)) {
                found = Some(name);
            }
        }
        found
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Middleware for authenticated routes.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingApiKey)?;
    let value = header.to_str().map_err(|_| ApiError::InvalidApiKey)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::MissingApiKey)?
        .trim();
    let name = state.keys.check(token).ok_or(ApiError::InvalidApiKey)?;
    req.extensions_mut().insert(Caller {
        key_name: name.to_owned(),
    });
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Secret;

    #[test]
    fn matches_only_exact_keys() {
        let ring = KeyRing::new(&[
            GatewayKey {
                name: "a".into(),
                key: Secret::new("key-aaaaaaaa"),
            },
            GatewayKey {
                name: "b".into(),
                key: Secret::new("key-bbbbbbbb"),
            },
        ]);
        assert_eq!(ring.check("key-bbbbbbbb"), Some("b"));
        assert_eq!(ring.check("key-bbbbbbb"), None, "a prefix is not the key");
        assert_eq!(ring.check(""), None);
    }
}
