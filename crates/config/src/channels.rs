//! `[channels]`: chat platforms whose messages run an agent (docs/channels.md). Each
//! channel names the agent it runs and the `[[keys]]` entry it runs as (so the key's
//! limits, budget and spend breaker are the channel's), who may talk to it, and the
//! limits each platform user gets on their own.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Limits, Secret};

/// Every configured channel, and how replies are kept until delivered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelsConfig {
    pub slack: Option<SlackChannel>,
    /// By the bot's name in its route (`/channels/telegram/NAME`).
    pub telegram: BTreeMap<String, TelegramBot>,
    pub whatsapp: Option<WhatsAppChannel>,
    /// The webhook's store write must be done within this, or it is answered 503.
    pub accept_deadline: Duration,
    pub webhook_retention: Duration,
    pub delivery_max_age: Duration,
    pub scan_interval: Duration,
}

impl ChannelsConfig {
    pub fn is_empty(&self) -> bool {
        self.slack.is_none() && self.telegram.is_empty() && self.whatsapp.is_none()
    }
}

/// Who may talk to a channel's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPolicy {
    /// Anyone who can message the bot.
    Open,
    /// Only `allow_users`; anyone else is ignored, silently.
    Allowlist,
    /// `allow_users` and the users an operator approved; an unknown user writing a
    /// direct message gets a one-time code to give the operator.
    Pairing,
}

/// What every channel has.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub agent: String,
    /// The `[[keys]]` name the channel's runs are made as.
    pub run_as: String,
    pub policy: ChannelPolicy,
    /// Platform user ids (Slack `U…`, Telegram numeric ids, WhatsApp `wa_id`s).
    pub allow_users: Vec<String>,
    /// Each platform user's own limits (a template; one scope per user).
    pub user_limits: Limits,
    pub messages_per_minute: u32,
    pub max_pending_per_conversation: u32,
    pub pairing_code_ttl: Duration,
    pub max_pending_pairings: u32,
    pub max_body_bytes: usize,
    /// The platform API's base URL, without a trailing `/` (tests point it at a mock).
    pub api_base: String,
}

/// A placeholder posted when the run starts, then edited as the answer streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Streaming {
    /// `false`: one message at the end, no placeholder.
    pub stream: bool,
    pub placeholder: String,
    pub edit_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackChannel {
    pub signing_secret: Secret,
    pub bot_token: Secret,
    pub bot_user_id: Option<String>,
    pub binding: Binding,
    pub streaming: Streaming,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelegramBot {
    pub name: String,
    pub token: Secret,
    pub secret_token: Secret,
    pub webhook_url: Option<String>,
    pub username: Option<String>,
    pub groups: bool,
    pub group_edit_interval: Duration,
    pub binding: Binding,
    pub streaming: Streaming,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WhatsAppChannel {
    pub app_secret: Secret,
    pub verify_token: Secret,
    pub access_token: Secret,
    pub phone_number_id: String,
    pub api_version: String,
    pub uncertain_after: Duration,
    pub binding: Binding,
}
