//! Chat channels: Slack, Telegram and WhatsApp post webhooks to Sluice; each message runs
//! the agent configured for its channel (through the scheduler, so every bound, breaker,
//! limit and ledger row applies), and the answer goes back through the platform's API,
//! kept in the store until it is delivered (docs/channels.md).
//!
//! Layout:
//! - [`verify`]: each platform's request authentication, on the raw body, constant-time.
//! - [`wire`]: the platforms' webhook payloads, and which messages the agent answers.
//! - [`split`]: answers cut to a platform's message length.
//! - `slack.rs`, `telegram.rs`, `whatsapp.rs`: each platform's webhook → [`inbound`].
//! - `inbound.rs`: policy, flood guard, and the one transaction that acknowledges a message.
//! - `outbox.rs` (+ `progress.rs`): runs the agent for accepted messages and delivers the
//!   answers, never twice; recovers what a restart left.
//! - `api/`: the platforms' send APIs and their errors; `bots.rs`: the configured bots;
//!   `pairing.rs`: codes; `text.rs`: inputs and notices; `reply.rs`: webhook answers.

pub mod admin;
mod api;
mod bots;
mod error;
mod inbound;
mod outbox;
mod pairing;
mod progress;
mod reply;
mod slack;
pub mod split;
mod telegram;
mod text;
pub mod verify;
mod whatsapp;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use sluice_config::{ChannelsConfig, Config};
use sluice_scheduler::Scheduler;
use sluice_service::Service;
use sluice_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::Target;
pub use bots::Platform;
pub use error::ChannelError;
pub use pairing::{approve as approve_pairing, normalize as normalize_pairing_code};
pub use reply::WebhookReply;

use bots::Bot;

/// Which webhook route a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Slack,
    Telegram(&'a str),
    WhatsApp,
}

/// The running channels: webhook entry points and the deliverer. Clones share them.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub cfg: ChannelsConfig,
    pub store: Store,
    pub scheduler: Scheduler,
    bots: HashMap<(Platform, String), Arc<Bot>>,
    pub flood: inbound::Flood,
    /// Wakes the deliverer: a message was accepted, a status came.
    pub wake: Notify,
    /// Deliveries handled by a task of this process now.
    pub live: Mutex<HashSet<String>>,
    pub stopping: CancellationToken,
    pub tasks: TaskTracker,
    /// When this process started its channels: a part left `sending` before it is a send
    /// a crash interrupted.
    pub started_ms: i64,
}

impl Inner {
    pub fn bot(&self, platform: Platform, name: &str) -> Option<Arc<Bot>> {
        self.bots.get(&(platform, name.to_owned())).cloned()
    }
}

impl Channels {
    /// Starts the channels of the config (`None` when none is configured), after the
    /// scheduler (which has recovered its runs): the deliverer then picks up what a
    /// previous process left, in every state.
    pub async fn start(
        cfg: &Config,
        scheduler: Scheduler,
        service: &Service,
    ) -> Result<Option<Channels>, ChannelError> {
        if cfg.channels.is_empty() {
            return Ok(None);
        }
        let http = api::client();
        let bots = bots::build(&cfg.channels, service.keys(), &http)?;
        bots::learn_identities(&bots).await;
        let inner = Arc::new(Inner {
            cfg: cfg.channels.clone(),
            store: service.store().clone(),
            scheduler,
            bots,
            flood: inbound::Flood::default(),
            wake: Notify::new(),
            live: Mutex::new(HashSet::new()),
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started_ms: sluice_service::ids::now_ms(),
        });
        outbox::spawn(&inner);
        Ok(Some(Channels { inner }))
    }

    /// Before the body is read: the route is configured, and what can be checked from
    /// the headers alone is right (Slack's timestamp is fresh, Telegram's secret token
    /// matches, a signature header is there). `Ok`: the route's body limit.
    pub fn precheck(&self, route: Route<'_>, headers: &HeaderMap) -> Result<usize, WebhookReply> {
        let unauthorized = |r: verify::Refused| WebhookReply::unauthorized(&r);
        match route {
            Route::Slack => {
                let b = self
                    .inner
                    .bot(Platform::Slack, "slack")
                    .ok_or_else(WebhookReply::not_found)?;
                verify::slack_timestamp(
                    header(headers, "x-slack-request-timestamp"),
                    sluice_service::ids::now_ms() / 1000,
                )
                .map_err(unauthorized)?;
                if header(headers, "x-slack-signature").is_none() {
                    return Err(unauthorized(verify::Refused::MissingHeader(
                        "X-Slack-Signature",
                    )));
                }
                Ok(b.binding.max_body_bytes)
            }
            Route::Telegram(name) => {
                let cfg = self
                    .inner
                    .cfg
                    .telegram
                    .get(name)
                    .ok_or_else(WebhookReply::not_found)?;
                verify::telegram(
                    cfg.secret_token.expose(),
                    header(headers, "x-telegram-bot-api-secret-token"),
                )
                .map_err(unauthorized)?;
                Ok(cfg.binding.max_body_bytes)
            }
            Route::WhatsApp => {
                let b = self
                    .inner
                    .bot(Platform::WhatsApp, "whatsapp")
                    .ok_or_else(WebhookReply::not_found)?;
                if header(headers, "x-hub-signature-256").is_none() {
                    return Err(unauthorized(verify::Refused::MissingHeader(
                        "X-Hub-Signature-256",
                    )));
                }
                Ok(b.binding.max_body_bytes)
            }
        }
    }

    pub async fn slack_events(&self, headers: &HeaderMap, body: Bytes) -> WebhookReply {
        slack::events(&self.inner, headers, body).await
    }

    /// The secret token was checked by [`Channels::precheck`].
    pub async fn telegram_update(&self, bot: &str, body: Bytes) -> WebhookReply {
        telegram::update(&self.inner, bot, body).await
    }

    pub fn whatsapp_subscribe(&self, query: Option<&str>) -> WebhookReply {
        whatsapp::subscribe(&self.inner, query)
    }

    pub async fn whatsapp_events(&self, headers: &HeaderMap, body: Bytes) -> WebhookReply {
        whatsapp::events(&self.inner, headers, body).await
    }

    /// Stops the deliverer: deliveries in flight stop at their next step and stay in the
    /// store, where the next start finds them.
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        self.inner.stopping.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout_at(deadline, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("channel deliveries still running at the stop's deadline");
        }
    }
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bots: Vec<&str> = self
            .inner
            .bots
            .values()
            .map(|b| b.channel.as_str())
            .collect();
        bots.sort_unstable();
        f.debug_struct("Channels").field("bots", &bots).finish()
    }
}

/// A header's value, if it is text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
