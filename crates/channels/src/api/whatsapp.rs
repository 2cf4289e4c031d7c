//! WhatsApp Cloud API: `POST /{version}/{phone_number_id}/messages`
//! (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>).
//! Errors are `{"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}`
//! and are told apart by `code`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_config::Secret;

use super::{ApiError, retry_after, send_error};

#[derive(Debug, Clone)]
pub(crate) struct WhatsAppApi {
    http: reqwest::Client,
    url: String,
    token: Secret,
}

impl WhatsAppApi {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        version: &str,
        phone_number_id: &str,
        token: Secret,
    ) -> Self {
        WhatsAppApi {
            http,
            url: format!("{base}/{version}/{phone_number_id}/messages"),
            token,
        }
    }

    /// Sends a text; its `wamid`. `callback` comes back in the message's status webhooks.
    pub async fn send_text(
        &self,
        to: &str,
        context: Option<&str>,
        text: &str,
        callback: &str,
    ) -> Result<String, ApiError> {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": text, "preview_url": false},
            "biz_opaque_callback_data": callback,
        });
        if let Some(id) = context {
            body["context"] = json!({"message_id": id});
        }
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .json(&body)
            .send()
            .await
            .map_err(send_error)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let v: Value = match resp.json().await {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(ApiError::Transient(format!("messages: HTTP {status}")));
            }
            Err(e) => {
                return Err(ApiError::Ambiguous(format!(
                    "messages: {}",
                    e.without_url()
                )));
            }
        };
        if status.is_success() {
            return v
                .pointer("/messages/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ApiError::Ambiguous("messages answered without an id".into()));
        }
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let detail = format!("messages: HTTP {status}, code {code}: {message}");
        Err(match code {
            // Throughput, pair rate (about one message per 6 s to one user), app limits.
            130429 | 131056 | 4 | 80007 => ApiError::RateLimited {
                retry_after: wait.unwrap_or(Duration::from_secs(if code == 131056 {
                    6
                } else {
                    1
                })),
                detail,
            },
            1 | 2 | 131000 | 131016 => ApiError::Transient(detail),
            190 => ApiError::Auth(detail),
            _ if status.is_server_error() => ApiError::Transient(detail),
            _ if status.as_u16() == 429 => ApiError::RateLimited {
                retry_after: wait.unwrap_or(Duration::from_secs(1)),
                detail,
            },
            _ => ApiError::Permanent(detail),
        })
    }
}
