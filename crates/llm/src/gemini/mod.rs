//! Google Gemini's Generative Language API (v1beta): `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents`.
//!
//! The model goes in the URL (`models/{model}:generateContent`), never in the body, so
//! [`encode_request`] takes none. Gemini knows no tool call ids: the ids clients see are
//! Gemini's own `functionCall.id` when it sends one, else made from the response id, and a
//! tool result is matched back to its function by looking the id up in the conversation.
//!
//! Layout:
//! - [`request`]: canonical request → `GenerateContentRequest`, including tool schemas.
//! - [`response`]: `GenerateContentResponse` → canonical response, and the wire types the
//!   stream decoder shares.
//! - [`stream`]: the SSE decoder; every event is a whole `GenerateContentResponse`.
//! - [`embeddings`]: `batchEmbedContents` both ways.

mod embeddings;
mod request;
mod response;
mod stream;

use serde::Deserialize;

use crate::UpstreamError;

pub use embeddings::{decode_embeddings, encode_embeddings};
pub use request::encode_request;
pub use response::decode_response;
pub use stream::Stream;

/// Google's error envelope: `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED"}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// `google.rpc` details: `RetryInfo` says how long to wait; others are skipped.
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

/// One entry of `details`, read only as far as `RetryInfo` needs; any other shape of
/// entry is taken as no detail rather than failing the whole error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorDetail {
    #[serde(rename = "@type")]
    kind: serde_json::Value,
    #[serde(rename = "retryDelay")]
    retry_delay: serde_json::Value,
}

/// A `google.protobuf.Duration` in its JSON form: decimal seconds and an `s` ("17s",
/// "0.5s").
fn proto_duration(v: &serde_json::Value) -> Option<std::time::Duration> {
    let secs: f64 = v.as_str()?.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

impl ErrorBody {
    /// The canonical status (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, …) names the error
    /// class, so it wins over the numeric HTTP code, which is kept only as a fallback.
    fn into_upstream(self) -> UpstreamError {
        let kind = self
            .status
            .or_else(|| self.code.map(|c| c.to_string()))
            .unwrap_or_default();
        let retry_after = self
            .details
            .iter()
            .filter(|d| {
                d.kind
                    .as_str()
                    .is_some_and(|k| k.ends_with("google.rpc.RetryInfo"))
            })
            .find_map(|d| proto_duration(&d.retry_delay));
        UpstreamError {
            kind,
            message: self.message.unwrap_or_default(),
            retry_after,
        }
    }
}

/// Reads Google's error envelope. Also accepts it wrapped in a one-element array, the shape
/// `streamGenerateContent` uses when called without `alt=sse`.
pub fn decode_error(body: &[u8]) -> Option<UpstreamError> {
    let value = match serde_json::from_slice(body).ok()? {
        serde_json::Value::Array(list) => list.into_iter().next()?,
        value => value,
    };
    let env: ErrorEnvelope = serde_json::from_value(value).ok()?;
    Some(env.error.into_upstream())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_is_the_status_then_the_code() {
        let body = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        let err = decode_error(body).unwrap();
        assert_eq!(err.kind, "RESOURCE_EXHAUSTED");
        assert_eq!(err.message, "Resource has been exhausted");

        let body = br#"{"error":{"code":500,"message":"internal"}}"#;
        assert_eq!(
            decode_error(body).unwrap().kind,
            "500",
            "code is the fallback kind"
        );

        let body = br#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(
            decode_error(body).unwrap().kind,
            "INVALID_ARGUMENT",
            "array form"
        );

        assert!(
            decode_error(br#"{"candidates":[]}"#).is_none(),
            "a normal body is no error"
        );
        assert!(decode_error(b"<html>").is_none());
    }
}
