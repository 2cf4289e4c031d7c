//! Reading and parsing JSON request bodies with Sluice's errors: 413 past the limit,
//! `invalid_json` for syntax, `invalid_request` for a valid JSON of the wrong shape.

use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::ApiError;
use crate::conn::BodyTimeout;

/// The body-read deadline, if that is why the body could not be read.
fn body_timeout(e: &BytesRejection) -> Option<&BodyTimeout> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

pub fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| match e.status() {
        http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge(limit),
        _ => match body_timeout(&e) {
            Some(t) => ApiError::BodyTimeout(t.0),
            None => ApiError::BodyUnreadable(e.body_text()),
        },
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
        _ => ApiError::InvalidJson(e.to_string()),
    })
}
