//! Mock chat platforms on one loopback server: Slack's Web API (`/api/{method}`), the Telegram
//! Bot API (`/bot{token}/{method}`) and the WhatsApp Cloud API
//! (`/{version}/{phone_number_id}/messages`), each checking tokens and limits and answering in
//! its documented wire format. Tests point all three API base URLs at [`MockChat::base_url`]
//! and assert on what a user would see: per conversation, the bot's messages with their
//! current text and every text they had ([`ChatMessage`]).
//!
//! It also plays the platforms' part as senders: [`slack_event`], [`telegram_update`] and
//! [`whatsapp_event`] deliver signed webhooks to the gateway ([`sign`] signs them with this
//! crate's own code), [`MockChat::whatsapp_statuses`] reports the messages it accepted, and
//! [`slack_app_mention`], [`slack_dm`], [`telegram_text`] and [`whatsapp_text`] build the
//! documented payloads.
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_mock::chat::{Failure, MockChat, Platform};
//! let chat = MockChat::start().await;
//! chat.fail(Platform::Slack, "chat.update", vec![Failure::RateLimited { retry_after_s: 2 }]);
//! // point the gateway's Slack API base at chat.base_url(), deliver a mention…
//! let replies = chat.slack_messages("C1");
//! assert_eq!(replies.len(), 1, "the answer should arrive once, edited in place");
//! # }
//! ```

mod payload;
mod send;
pub mod sign;
mod slack;
mod state;
mod telegram;
mod whatsapp;

pub use payload::{slack_app_mention, slack_dm, telegram_text, whatsapp_status, whatsapp_text};
pub use send::{RawBody, SlackDelivery, slack_event, telegram_update, whatsapp_event};

use crate::server::Server;
use axum::Router;
use axum::routing::get;
use serde_json::Value;
use state::{ChatState, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Slack bot token the mock accepts until [`MockChat::set_slack_token`].
pub const SLACK_TOKEN: &str = "xoxb-test";
/// The bot's Slack user id (`auth.test`'s `user_id`, `<@UBOT>` in a mention).
pub const SLACK_BOT_USER_ID: &str = "UBOT";
/// The bot's Slack `bot_id`, on every message it posts.
pub const SLACK_BOT_ID: &str = "BBOT";
/// The WhatsApp access token the mock accepts until [`MockChat::set_whatsapp_token`].
pub const WHATSAPP_TOKEN: &str = "wa-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Slack,
    Telegram,
    WhatsApp,
}

/// A scripted answer for one call of one method, in each platform's own form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Slack: HTTP 429, `Retry-After: N`, `{"ok":false,"error":"ratelimited"}`. Telegram:
    /// HTTP 429, `Too Many Requests: retry after N` and `parameters.retry_after`. WhatsApp:
    /// HTTP 400 with code 130429 ("Rate limit hit", as Meta's error-code table lists it); Meta
    /// gives no retry time, so `retry_after_s` is unused there.
    RateLimited { retry_after_s: u64 },
    /// This HTTP status with an error body: Slack an HTML page, Telegram its JSON error,
    /// WhatsApp a Graph error (code 2 for 503, else 131000 "Something went wrong").
    ServerError(u16),
    /// Accepts the request, does nothing and never answers.
    Hang,
    /// Does the work (the message is sent or edited and recorded) and never answers: the
    /// ambiguous case a client cannot tell from `Hang`.
    ApplyThenHang,
    /// Slack: HTTP 200 `{"ok":false,"error":X}`. Telegram: description X with the status its
    /// prefix implies (`Forbidden: …` 403, `Too Many Requests: …` 429, else 400). WhatsApp:
    /// HTTP 400 (401 for 190) with the code read from X's leading digits and the rest as the
    /// details, e.g. `"131047 Re-engagement message"`.
    ApiError(String),
}

/// One call the mock received, in the order received.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub platform: Platform,
    /// `chat.postMessage`, `sendMessage` (Telegram names normalised to their documented case),
    /// `messages`.
    pub method: String,
    pub path: String,
    /// Names lower-case; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    /// The parsed body; a JSON string of the raw text when it was not JSON; `{}` when empty.
    pub body: Value,
    /// The HTTP status answered; `None` while it is pending or when it hangs.
    pub status: Option<u16>,
    /// When it arrived.
    pub at: Instant,
}

/// A bot message as the user sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Slack `ts`, Telegram `message_id`, WhatsApp `wamid.…`.
    pub id: String,
    /// Slack `thread_ts`; Telegram the message replied to (`reply_parameters.message_id`, or
    /// `reply_to_message_id`), else `message_thread_id`; WhatsApp `context.message_id`.
    pub thread: Option<String>,
    /// The text now.
    pub text: String,
    /// Every text it had, the first included, each with when it was set. Slack records an
    /// update that repeats the text (Slack accepts it); Telegram refuses one.
    pub edits: Vec<(String, Instant)>,
    /// WhatsApp only.
    pub biz_opaque_callback_data: Option<String>,
}

/// The running mock. Clones share one server, which stops when the last clone drops or on
/// [`MockChat::shutdown`].
#[derive(Clone)]
pub struct MockChat {
    inner: Arc<Inner>,
}

struct Inner {
    state: Shared,
    server: Server,
}

impl MockChat {
    /// Starts the mock on a fresh loopback port; it is accepting when this returns.
    ///
    /// # Panics
    /// When no loopback port can be bound. Must be called inside a Tokio runtime.
    pub async fn start() -> MockChat {
        let state = Arc::new(ChatState::new());
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(slack::routes())
            .merge(telegram::routes())
            .merge(whatsapp::routes())
            .with_state(Arc::clone(&state));
        let server = Server::start(router).await;
        MockChat {
            inner: Arc::new(Inner { state, server }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.server.addr()
    }

    /// `http://127.0.0.1:PORT`: the base for all three platforms' API URLs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn slack_token(&self) -> String {
        self.inner.state.book().slack_token.clone()
    }

    pub fn set_slack_token(&self, token: &str) {
        token.clone_into(&mut self.inner.state.book().slack_token);
    }

    pub fn whatsapp_token(&self) -> String {
        self.inner.state.book().whatsapp_token.clone()
    }

    pub fn set_whatsapp_token(&self, token: &str) {
        token.clone_into(&mut self.inner.state.book().whatsapp_token);
    }

    /// A Telegram bot answering at `/bot{token}/…`; any other token gets 401.
    pub fn add_telegram_bot(&self, token: &str, username: &str, bot_user_id: i64) {
        let bot = state::Bot {
            id: bot_user_id,
            username: username.to_owned(),
        };
        self.inner.state.book().bots.insert(token.to_owned(), bot);
    }

    /// The next calls of `method` (`chat.update`, `sendMessage`, `messages`…) on `platform`
    /// take `failures` in order, before any check (token included); then calls are handled
    /// normally again. Adds to failures still queued.
    pub fn fail(&self, platform: Platform, method: &str, failures: Vec<Failure>) {
        self.inner
            .state
            .book()
            .add_failures(platform, method, failures);
    }

    /// Drops every scripted failure still queued: calls are handled normally from now on.
    pub fn clear_failures(&self) {
        self.inner.state.book().clear_failures();
    }

    /// Waits this long before every answer (after the work is done); zero by default.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.state.book().latency = latency;
    }

    /// Every call received, in order, rejected ones included; `/health` does not count.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.inner.state.book().log.clone()
    }

    /// How many calls of `method` on `platform` were received.
    pub fn calls(&self, platform: Platform, method: &str) -> usize {
        let book = self.inner.state.book();
        let matches = |call: &&ChatRequest| call.platform == platform && call.method == method;
        book.log.iter().filter(matches).count()
    }

    /// The bot's messages in a Slack channel, in the order posted.
    pub fn slack_messages(&self, channel: &str) -> Vec<ChatMessage> {
        messages(self.inner.state.book().slack.get(channel))
    }

    /// The messages any of the bots sent to a Telegram chat, in the order sent.
    pub fn telegram_messages(&self, chat_id: i64) -> Vec<ChatMessage> {
        messages(self.inner.state.book().telegram.get(&chat_id))
    }

    /// The messages sent to a WhatsApp user, in the order accepted; `to` is read as the API
    /// reads it (digits only: `+1 555…` is `1555…`).
    pub fn whatsapp_messages(&self, to: &str) -> Vec<ChatMessage> {
        messages(self.inner.state.book().whatsapp.get(&whatsapp::wa_id(to)))
    }

    /// Every `setWebhook` body received, per bot token, in order (refused calls excluded).
    pub fn set_webhooks(&self) -> BTreeMap<String, Vec<Value>> {
        self.inner.state.book().set_webhooks.clone()
    }

    /// Stops listening (a connect after this returns is refused) and closes open connections,
    /// hanging ones included. What was recorded stays readable.
    pub fn shutdown(&self) {
        self.inner.server.stop();
    }
}

fn messages(stored: Option<&Vec<state::Stored>>) -> Vec<ChatMessage> {
    stored
        .map(|all| all.iter().map(|one| one.message.clone()).collect())
        .unwrap_or_default()
}

impl std::fmt::Debug for MockChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockChat")
            .field("addr", &self.addr())
            .finish()
    }
}
