//! `[channels]` as written (docs/channels.md): Slack, Telegram bots and WhatsApp, each
//! bound to an agent and a `[[keys]]` entry. Secrets are `${ENV}` references.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::raw::RawLimits;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChannels {
    /// The webhook's write to the store must be done within this, or the platform is
    /// answered 503 and retries (Slack wants an answer within 3 s).
    pub accept_deadline_ms: u64,
    /// How long delivery ids are remembered against retries (Meta retries for 7 days).
    pub webhook_retention_days: u64,
    /// A reply that could not be delivered for this long is given up (`failed`).
    pub delivery_max_age_s: u64,
    /// How often the deliverer looks for due replies (it is also woken at once).
    pub scan_interval_ms: u64,
    pub slack: Option<RawSlack>,
    pub telegram: BTreeMap<String, RawTelegram>,
    pub whatsapp: Option<RawWhatsApp>,
}

impl Default for RawChannels {
    fn default() -> Self {
        RawChannels {
            accept_deadline_ms: 2_500,
            webhook_retention_days: 8,
            delivery_max_age_s: 24 * 3600,
            scan_interval_ms: 1_000,
            slack: None,
            telegram: BTreeMap::new(),
            whatsapp: None,
        }
    }
}

/// What every channel has: the agent it runs, as whom, who may talk to it, and the limits
/// of each platform user. Flattened into each platform's table, which refuses unknown
/// fields for it (serde cannot refuse them on a flattened struct itself).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawBinding {
    pub agent: String,
    pub run_as: String,
    /// `open`, `allowlist` or `pairing`.
    pub policy: String,
    pub allow_users: Vec<String>,
    /// Each platform user's own limits and budget (a template: one scope per user).
    pub user_limits: RawLimits,
    /// Messages a platform user may send a minute before the rest are dropped.
    pub messages_per_minute: u64,
    /// Messages of one conversation waiting for or in a run, at most.
    pub max_pending_per_conversation: u64,
    /// How long a pairing code lives, and how many may be pending at once.
    pub pairing_code_ttl_s: u64,
    pub max_pending_pairings: u64,
    pub max_body_bytes: u64,
    pub api_base: String,
}

impl Default for RawBinding {
    fn default() -> Self {
        RawBinding {
            agent: String::new(),
            run_as: String::new(),
            policy: "pairing".into(),
            allow_users: Vec::new(),
            user_limits: RawLimits::default(),
            messages_per_minute: 20,
            max_pending_per_conversation: 3,
            pairing_code_ttl_s: 3600,
            max_pending_pairings: 3,
            max_body_bytes: 1024 * 1024,
            api_base: String::new(),
        }
    }
}

/// Shown while the agent works: a placeholder message, edited as the answer streams.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawStreaming {
    pub stream: bool,
    pub placeholder: String,
    pub edit_interval_ms: u64,
}

impl Default for RawStreaming {
    fn default() -> Self {
        RawStreaming {
            stream: true,
            placeholder: "…".into(),
            edit_interval_ms: 1_000,
        }
    }
}

/// `[channels.slack]`: one workspace's app (Events API + Web API).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlack {
    pub signing_secret: String,
    pub bot_token: String,
    /// The bot's own user id (`U…`); else `auth.test` tells it at start.
    pub bot_user_id: Option<String>,
    #[serde(flatten)]
    pub binding: RawBinding,
    #[serde(flatten)]
    pub streaming: RawStreaming,
}

/// `[channels.telegram.BOT]`: one bot, at `POST /channels/telegram/BOT`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelegram {
    pub token: String,
    pub secret_token: String,
    /// Where `sluice channels telegram set-webhook` points the bot.
    pub webhook_url: Option<String>,
    /// The bot's username (for mentions in groups); else `getMe` tells it at start.
    pub username: Option<String>,
    /// Answer mentions, commands and replies in groups.
    pub groups: Option<bool>,
    /// Telegram allows 20 messages a minute in a group.
    pub group_edit_interval_ms: Option<u64>,
    #[serde(flatten)]
    pub binding: RawBinding,
    #[serde(flatten)]
    pub streaming: RawStreaming,
}

/// `[channels.whatsapp]`: one business phone number (Cloud API).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWhatsApp {
    pub app_secret: String,
    pub verify_token: String,
    pub access_token: String,
    pub phone_number_id: String,
    pub api_version: Option<String>,
    /// A send whose outcome is unknown waits this long for its status webhook.
    pub uncertain_after_s: Option<u64>,
    #[serde(flatten)]
    pub binding: RawBinding,
}
