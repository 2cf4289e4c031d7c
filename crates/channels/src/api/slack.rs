//! Slack's Web API: `chat.postMessage`, `chat.update` and `auth.test`
//! (<https://docs.slack.dev/reference/methods/chat.postMessage>). Most errors are HTTP 200
//! with `{"ok": false, "error": "…"}`; rate limits are HTTP 429 with `Retry-After`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_config::Secret;

use super::{ApiError, retry_after, send_error};

#[derive(Debug, Clone)]
pub(crate) struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl SlackApi {
    pub fn new(http: reqwest::Client, base: &str, token: Secret) -> Self {
        SlackApi {
            http,
            base: base.to_owned(),
            token,
        }
    }

    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> Result<String, ApiError> {
        let mut body = json!({"channel": channel, "text": text});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let v = self.call("chat.postMessage", &body).await?;
        v.get("ts")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Ambiguous("chat.postMessage answered without a ts".into()))
    }

    pub async fn update(&self, channel: &str, ts: &str, text: &str) -> Result<(), ApiError> {
        self.call(
            "chat.update",
            &json!({"channel": channel, "ts": ts, "text": text}),
        )
        .await
        .map(drop)
    }

    /// The bot's own user id (its messages are never answered).
    pub async fn auth_test(&self) -> Result<String, ApiError> {
        let v = self.call("auth.test", &json!({})).await?;
        v.get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Permanent("auth.test answered without a user_id".into()))
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let resp = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(send_error)?;
        let status = resp.status();
        if status.as_u16() == 429 {
            return Err(ApiError::RateLimited {
                retry_after: retry_after(resp.headers()).unwrap_or(Duration::from_secs(1)),
                detail: format!("{method}: HTTP 429"),
            });
        }
        if status.is_server_error() {
            return Err(ApiError::Transient(format!("{method}: HTTP {status}")));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| ApiError::Ambiguous(format!("{method}: {}", e.without_url())))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v);
        }
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        Err(classify(method, error))
    }
}

/// Slack's documented method errors, by what to do.
fn classify(method: &str, error: &str) -> ApiError {
    let detail = format!("{method}: {error}");
    match error {
        "ratelimited" | "rate_limited" => ApiError::RateLimited {
            retry_after: Duration::from_secs(1),
            detail,
        },
        // "It's possible some aspect of the operation succeeded before the error was raised."
        "internal_error" | "fatal_error" => ApiError::Ambiguous(detail),
        "service_unavailable" | "request_timeout" => ApiError::Transient(detail),
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive"
        | "missing_scope" | "no_permission" => ApiError::Auth(detail),
        "message_not_found" | "cant_update_message" | "edit_window_closed" => {
            ApiError::EditGone(detail)
        }
        _ => ApiError::Permanent(detail),
    }
}
