//! The mock as the platforms' sender: it delivers webhooks to the gateway with the headers and
//! signatures each platform sends.
//!
//! - Slack: `X-Slack-Request-Timestamp`, `X-Slack-Signature` and, on a retry,
//!   `X-Slack-Retry-Num` and `X-Slack-Retry-Reason` (<https://docs.slack.dev/apis/events-api/>).
//! - Telegram: `X-Telegram-Bot-Api-Secret-Token` when the webhook was set with a secret.
//! - WhatsApp: `X-Hub-Signature-256` over the raw body with the app secret.

use super::{MockChat, payload, sign, state::unix_now};
use reqwest::Response;
use serde_json::Value;
use std::time::Duration;

/// A webhook body exactly as it goes on the wire: JSON printed by `serde_json`, or any text
/// (malformed JSON included) taken as is.
#[derive(Clone, Debug)]
pub struct RawBody(pub String);

impl From<&Value> for RawBody {
    fn from(value: &Value) -> RawBody {
        RawBody(value.to_string())
    }
}
impl From<Value> for RawBody {
    fn from(value: Value) -> RawBody {
        RawBody(value.to_string())
    }
}
impl From<&str> for RawBody {
    fn from(text: &str) -> RawBody {
        RawBody(text.to_owned())
    }
}
impl From<&String> for RawBody {
    fn from(text: &String) -> RawBody {
        RawBody(text.clone())
    }
}
impl From<String> for RawBody {
    fn from(text: String) -> RawBody {
        RawBody(text)
    }
}

/// How a Slack event is delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlackDelivery {
    /// `Some(n)`: the n-th retry (Slack sends 1 to 3), with `X-Slack-Retry-Reason:
    /// http_timeout`.
    pub retry_num: Option<u32>,
    /// Added to now for `X-Slack-Request-Timestamp`: `-600` is a stale request.
    pub ts_offset_s: i64,
    /// Signs with a wrong secret: a well-formed signature that does not verify.
    pub forge: bool,
}

/// A client per delivery: a client kept across tests would outlive the runtime its pooled
/// connections belong to. No proxy: the gateway under test is on loopback.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
}

/// POSTs a Slack Events API request to `url`, signed with `signing_secret` as `delivery` says.
pub async fn slack_event(
    url: &str,
    signing_secret: &str,
    body: impl Into<RawBody>,
    delivery: SlackDelivery,
) -> reqwest::Result<Response> {
    let RawBody(body) = body.into();
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let timestamp = now.saturating_add(delivery.ts_offset_s).to_string();
    let secret = if delivery.forge {
        format!("{signing_secret}-forged")
    } else {
        signing_secret.to_owned()
    };
    let signature = sign::slack_v0(&secret, &timestamp, &body);
    let mut request = client()?
        .post(url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature);
    if let Some(retry) = delivery.retry_num {
        request = request
            .header("x-slack-retry-num", retry.to_string())
            .header("x-slack-retry-reason", "http_timeout");
    }
    request.body(body).send().await
}

/// POSTs a Telegram update to `url`, with the webhook's secret token when it has one.
pub async fn telegram_update(
    url: &str,
    secret_token: Option<&str>,
    body: impl Into<RawBody>,
) -> reqwest::Result<Response> {
    let RawBody(body) = body.into();
    let mut request = client()?
        .post(url)
        .header("content-type", "application/json");
    if let Some(secret) = secret_token {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.body(body).send().await
}

/// POSTs a WhatsApp webhook to `url`, signed with `app_secret`.
pub async fn whatsapp_event(
    url: &str,
    app_secret: &str,
    body: impl Into<RawBody>,
) -> reqwest::Result<Response> {
    let RawBody(body) = body.into();
    client()?
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign::hub_sha256(app_secret, &body))
        .body(body)
        .send()
        .await
}

impl MockChat {
    /// Reports `sent` for every message the mock accepted from `phone_number_id` since the
    /// last call, in one signed `statuses` webhook to `url`, each status carrying the
    /// recipient, the wamid and the message's `biz_opaque_callback_data`. `Ok(None)` when
    /// there is nothing to report; on a send error the statuses stay unreported.
    pub async fn whatsapp_statuses(
        &self,
        url: &str,
        app_secret: &str,
        phone_number_id: &str,
    ) -> reqwest::Result<Option<Response>> {
        let taken: Vec<_> = {
            let mut book = self.inner.state.book();
            let (taken, kept) = std::mem::take(&mut book.unreported)
                .into_iter()
                .partition(|one| one.phone_number_id == phone_number_id);
            book.unreported = kept;
            taken
        };
        if taken.is_empty() {
            return Ok(None);
        }
        let body = payload::whatsapp_sent(phone_number_id, &taken);
        match whatsapp_event(url, app_secret, &body).await {
            Ok(response) => Ok(Some(response)),
            Err(error) => {
                let mut book = self.inner.state.book();
                let later = std::mem::replace(&mut book.unreported, taken);
                book.unreported.extend(later);
                Err(error)
            }
        }
    }
}
