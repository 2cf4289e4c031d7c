//! The platforms' send APIs: Slack's Web API, Telegram's Bot API and WhatsApp's Graph API,
//! behind one shape ([`Api::post`], [`Api::edit`]) and one error classification
//! ([`ApiError`]) that the outbox retries by. A bot token is in Telegram's URL path, so no
//! request error is logged with its URL, and redirects are never followed.

mod slack;
mod telegram;
mod whatsapp;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use slack::SlackApi;
pub(crate) use telegram::TelegramApi;
pub(crate) use whatsapp::WhatsAppApi;

/// Where a reply goes, as the platform addresses it. Kept with the delivery (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case")]
pub enum Target {
    Slack {
        channel: String,
        /// The thread the answer goes in (the message's own, or a new one under it).
        thread_ts: Option<String>,
    },
    Telegram {
        chat_id: i64,
        /// A forum topic.
        thread_id: Option<i64>,
        /// In groups, the answer replies to the message it answers.
        reply_to: Option<i64>,
        group: bool,
    },
    WhatsApp {
        to: String,
        /// The user's message the answer quotes.
        context: Option<String>,
    },
}

/// Why a platform call did not do what was asked, by what the outbox should do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Not done; try again no sooner than `retry_after`.
    #[error("rate limited (retry after {retry_after:?}): {detail}")]
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    /// Not done (the platform said so, or the request never left): try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// Maybe done: the request was sent and no answer says what happened.
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    /// The token is wrong or revoked: nothing works until an operator fixes it.
    #[error("authentication: {0}")]
    Auth(String),
    /// The message being edited is gone or can no longer be edited.
    #[error("cannot edit: {0}")]
    EditGone(String),
    /// Will never work as asked (chat gone, bot blocked, text refused).
    #[error("refused: {0}")]
    Permanent(String),
}

/// A request that failed before an answer: `connect` errors never reached the platform.
fn send_error(e: reqwest::Error) -> ApiError {
    let e = e.without_url();
    if e.is_connect() || e.is_builder() {
        ApiError::Transient(e.to_string())
    } else {
        ApiError::Ambiguous(e.to_string())
    }
}

/// `Retry-After` in seconds, as the platforms send it.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The HTTP client every platform call uses: no redirects (a token must not be sent
/// anywhere else), bounded connect and total time.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default()
}

/// One bot's API.
#[derive(Debug, Clone)]
pub(crate) enum Api {
    Slack(SlackApi),
    Telegram(TelegramApi),
    WhatsApp(WhatsAppApi),
}

impl Api {
    /// Whether a sent message can be edited (Slack, Telegram): answers then travel only
    /// in edits of a placeholder, which makes them idempotent.
    pub fn edits(&self) -> bool {
        !matches!(self, Api::WhatsApp(_))
    }

    /// The longest message, in UTF-16 code units.
    pub fn max_len(&self) -> usize {
        match self {
            Api::Slack(_) => crate::split::SLACK_MAX,
            Api::Telegram(_) => crate::split::TELEGRAM_MAX,
            Api::WhatsApp(_) => crate::split::WHATSAPP_MAX,
        }
    }

    /// Posts a new message; its id. `callback` comes back in WhatsApp's status webhooks.
    pub async fn post(&self, to: &Target, text: &str, callback: &str) -> Result<String, ApiError> {
        match (self, to) {
            (Api::Slack(api), Target::Slack { channel, thread_ts }) => {
                api.post_message(channel, thread_ts.as_deref(), text).await
            }
            (
                Api::Telegram(api),
                Target::Telegram {
                    chat_id,
                    thread_id,
                    reply_to,
                    ..
                },
            ) => api
                .send_message(*chat_id, *thread_id, *reply_to, text)
                .await
                .map(|id| id.to_string()),
            (Api::WhatsApp(api), Target::WhatsApp { to, context }) => {
                api.send_text(to, context.as_deref(), text, callback).await
            }
            _ => Err(ApiError::Permanent(
                "the reply's target is of another platform".into(),
            )),
        }
    }

    /// Replaces a message's text. Idempotent: the same text again is success.
    pub async fn edit(&self, to: &Target, id: &str, text: &str) -> Result<(), ApiError> {
        match (self, to) {
            (Api::Slack(api), Target::Slack { channel, .. }) => api.update(channel, id, text).await,
            (Api::Telegram(api), Target::Telegram { chat_id, .. }) => {
                let id = id
                    .parse()
                    .map_err(|_| ApiError::EditGone(format!("message id {id}")))?;
                api.edit_message_text(*chat_id, id, text).await
            }
            _ => Err(ApiError::EditGone("this platform cannot edit".into())),
        }
    }
}
