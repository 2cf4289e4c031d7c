//! Reading and parsing JSON request bodies with Sluice's errors: 413 past the limit,
//! `invalid_json` for syntax, `invalid_request` for a valid JSON of the wrong shape.

use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::ApiError;

pub fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| match e.status() {
        http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge(limit),
        _ => ApiError::BodyUnreadable(e.body_text()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::InvalidJson(e.to_string()),
    })
}
