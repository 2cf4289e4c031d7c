//! Telegram's Bot API (<https://core.telegram.org/bots/api>): `sendMessage`,
//! `editMessageText`, `getMe`, and the webhook methods the CLI uses. Answers are
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}`. The token is part of the URL path.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_config::Secret;

use super::{ApiError, send_error};

#[derive(Debug, Clone)]
pub(crate) struct TelegramApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl TelegramApi {
    pub fn new(http: reqwest::Client, base: &str, token: Secret) -> Self {
        TelegramApi {
            http,
            base: base.to_owned(),
            token,
        }
    }

    pub async fn send_message(
        &self,
        chat_id: i64,
        thread_id: Option<i64>,
        reply_to: Option<i64>,
        text: &str,
    ) -> Result<i64, ApiError> {
        let mut body = json!({"chat_id": chat_id, "text": text,
            "link_preview_options": {"is_disabled": true}});
        if let Some(t) = thread_id {
            body["message_thread_id"] = json!(t);
        }
        if let Some(m) = reply_to {
            body["reply_parameters"] =
                json!({"message_id": m, "allow_sending_without_reply": true});
        }
        let v = self.call("sendMessage", &body).await?;
        v.get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::Ambiguous("sendMessage answered without a message_id".into()))
    }

    pub async fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
    ) -> Result<(), ApiError> {
        let body = json!({"chat_id": chat_id, "message_id": message_id, "text": text,
            "link_preview_options": {"is_disabled": true}});
        match self.call("editMessageText", &body).await {
            Ok(_) => Ok(()),
            // The text is already what was asked: an edit repeated after a lost answer.
            Err(ApiError::Permanent(d)) if d.contains("message is not modified") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The bot's id and username (mentions of it are read in groups).
    pub async fn get_me(&self) -> Result<(i64, String), ApiError> {
        let v = self.call("getMe", &json!({})).await?;
        let id = v.get("id").and_then(Value::as_i64);
        let name = v.get("username").and_then(Value::as_str);
        match (id, name) {
            (Some(id), Some(name)) => Ok((id, name.to_owned())),
            _ => Err(ApiError::Permanent(
                "getMe answered without id and username".into(),
            )),
        }
    }

    /// Any method, for the CLI's webhook commands: its `result`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let resp = self
            .http
            .post(format!("{}/bot{}/{method}", self.base, self.token.expose()))
            .json(body)
            .send()
            .await
            .map_err(send_error)?;
        let status = resp.status();
        let v: Value = match resp.json().await {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(ApiError::Transient(format!("{method}: HTTP {status}")));
            }
            Err(e) => {
                return Err(ApiError::Ambiguous(format!(
                    "{method}: {}",
                    e.without_url()
                )));
            }
        };
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
        let code = v
            .get("error_code")
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(status.as_u16()));
        let description = v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        let detail = format!("{method}: {code} {description}");
        let retry = v.pointer("/parameters/retry_after").and_then(Value::as_u64);
        Err(match code {
            429 => ApiError::RateLimited {
                retry_after: Duration::from_secs(retry.unwrap_or(1)),
                detail,
            },
            500.. => ApiError::Transient(detail),
            401 | 404 => ApiError::Auth(detail),
            400 if description.contains("message to edit not found")
                || description.contains("message can't be edited") =>
            {
                ApiError::EditGone(detail)
            }
            _ => ApiError::Permanent(detail),
        })
    }
}
