//! What a webhook is answered: one table of statuses and stable codes (docs/channels.md).
//! A refusal answers before anything is stored or run; a duplicate or an ignored message
//! is a 200, so the platform does not retry it.

use bytes::Bytes;

/// The answer to one webhook request; the gateway turns it into an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// A stable code for logs and metrics (`accepted`, `duplicate`, `bad_signature`…).
    pub code: &'static str,
}

impl WebhookReply {
    /// 200 with an empty body: accepted, a duplicate or ignored (`code` says which).
    pub fn ok(code: &'static str) -> Self {
        WebhookReply {
            status: 200,
            content_type: "text/plain",
            body: Bytes::new(),
            code,
        }
    }

    pub fn json(value: &serde_json::Value) -> Self {
        WebhookReply {
            status: 200,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
            code: "challenge",
        }
    }

    pub fn text(body: String, code: &'static str) -> Self {
        WebhookReply {
            status: 200,
            content_type: "text/plain",
            body: Bytes::from(body),
            code,
        }
    }

    /// A refusal, with `{"error": {"code", "message"}}` as the body.
    pub fn refuse(status: u16, code: &'static str, message: &str) -> Self {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        WebhookReply {
            status,
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
            code,
        }
    }

    pub fn not_found() -> Self {
        Self::refuse(404, "channel_not_found", "no such channel is configured")
    }

    pub fn unauthorized(r: &crate::verify::Refused) -> Self {
        Self::refuse(401, r.code(), &r.to_string())
    }

    pub fn too_large(limit: usize) -> Self {
        Self::refuse(
            413,
            "body_too_large",
            &format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn invalid_json(e: &serde_json::Error) -> Self {
        Self::refuse(
            400,
            "invalid_json",
            &format!("the body is not the platform's JSON: {e}"),
        )
    }

    /// The store could not take the message in time: the platform sends it again.
    pub fn unavailable() -> Self {
        Self::refuse(503, "unavailable", "try again later")
    }
}
