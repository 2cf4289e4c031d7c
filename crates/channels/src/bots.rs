//! The configured bots: one per Slack app, Telegram bot and WhatsApp number, each with its
//! binding (agent, run-as key, policy, limits), its API and what it knows of itself (the
//! bot's own user id or username, asked of the platform at start when not configured).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice_config::{Binding, ChannelsConfig, Streaming};
use sluice_service::{KeyRing, Principal};

use crate::api::{Api, SlackApi, TelegramApi, WhatsAppApi};
use crate::error::ChannelError;

/// The platform a bot is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Slack,
    Telegram,
    WhatsApp,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Telegram => "telegram",
            Platform::WhatsApp => "whatsapp",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Bot {
    pub platform: Platform,
    /// `slack`, the Telegram bot's config name, `whatsapp`.
    pub name: String,
    /// How the ledger and sessions name the channel: `slack`, `telegram:BOT`, `whatsapp`.
    pub channel: String,
    pub binding: Binding,
    /// `None`: no placeholder and no edits (WhatsApp, or `stream = false`).
    pub streaming: Option<Streaming>,
    pub group_edit_interval: Duration,
    /// Telegram: whether group messages are answered.
    pub groups: bool,
    pub api: Api,
    /// The key the channel's runs are made as.
    pub principal: Arc<Principal>,
    /// Slack: the bot's user id; Telegram: its username; learned at start if not set.
    pub identity: OnceLock<String>,
    /// Telegram: the bot's own user id (replies to it are for it).
    pub bot_user_id: OnceLock<i64>,
}

impl Bot {
    /// The text a placeholder shows until the answer replaces it.
    pub fn placeholder(&self) -> &str {
        self.streaming
            .as_ref()
            .map_or("…", |s| s.placeholder.as_str())
    }

    /// The placeholder's edit interval for a target (Telegram groups allow 20 a minute).
    pub fn edit_interval(&self, group: bool) -> Duration {
        let base = self
            .streaming
            .as_ref()
            .map_or(Duration::from_secs(1), |s| s.edit_interval);
        if group && self.platform == Platform::Telegram {
            base.max(self.group_edit_interval)
        } else {
            base
        }
    }
}

/// Every bot of the config, by (platform, name).
pub(crate) fn build(
    cfg: &ChannelsConfig,
    keys: &KeyRing,
    http: &reqwest::Client,
) -> Result<HashMap<(Platform, String), Arc<Bot>>, ChannelError> {
    let principal = |at: &str, b: &Binding| {
        keys.principal_by_name(&b.run_as)
            .ok_or_else(|| ChannelError::Config(format!("{at}.run_as: no key `{}`", b.run_as)))
    };
    let mut out = HashMap::new();
    if let Some(s) = &cfg.slack {
        let identity = OnceLock::new();
        if let Some(u) = &s.bot_user_id {
            let _ = identity.set(u.clone());
        }
        let bot = Bot {
            platform: Platform::Slack,
            name: "slack".into(),
            channel: "slack".into(),
            binding: s.binding.clone(),
            streaming: s.streaming.stream.then(|| s.streaming.clone()),
            group_edit_interval: s.streaming.edit_interval,
            groups: true,
            api: Api::Slack(SlackApi::new(
                http.clone(),
                &s.binding.api_base,
                s.bot_token.clone(),
            )),
            principal: principal("channels.slack", &s.binding)?,
            identity,
            bot_user_id: OnceLock::new(),
        };
        out.insert((Platform::Slack, bot.name.clone()), Arc::new(bot));
    }
    for (name, t) in &cfg.telegram {
        let identity = OnceLock::new();
        if let Some(u) = &t.username {
            let _ = identity.set(u.clone());
        }
        let bot = Bot {
            platform: Platform::Telegram,
            name: name.clone(),
            channel: format!("telegram:{name}"),
            binding: t.binding.clone(),
            streaming: t.streaming.stream.then(|| t.streaming.clone()),
            group_edit_interval: t.group_edit_interval,
            groups: t.groups,
            api: Api::Telegram(TelegramApi::new(
                http.clone(),
                &t.binding.api_base,
                t.token.clone(),
            )),
            principal: principal(&format!("channels.telegram.{name}"), &t.binding)?,
            identity,
            bot_user_id: OnceLock::new(),
        };
        out.insert((Platform::Telegram, name.clone()), Arc::new(bot));
    }
    if let Some(w) = &cfg.whatsapp {
        let bot = Bot {
            platform: Platform::WhatsApp,
            name: "whatsapp".into(),
            channel: "whatsapp".into(),
            binding: w.binding.clone(),
            streaming: None,
            group_edit_interval: Duration::from_secs(1),
            groups: false,
            api: Api::WhatsApp(WhatsAppApi::new(
                http.clone(),
                &w.binding.api_base,
                &w.api_version,
                &w.phone_number_id,
                w.access_token.clone(),
            )),
            principal: principal("channels.whatsapp", &w.binding)?,
            identity: OnceLock::new(),
            bot_user_id: OnceLock::new(),
        };
        out.insert((Platform::WhatsApp, bot.name.clone()), Arc::new(bot));
    }
    Ok(out)
}

/// Asks each platform who the bot is, where the config does not say: Slack's `auth.test`
/// (its own messages are never answered), Telegram's `getMe` (mentions of it in groups).
/// A failure is logged, not fatal: the bot still answers direct messages.
pub(crate) async fn learn_identities(bots: &HashMap<(Platform, String), Arc<Bot>>) {
    for bot in bots.values() {
        match &bot.api {
            Api::Slack(api) if bot.identity.get().is_none() => match api.auth_test().await {
                Ok(id) => {
                    let _ = bot.identity.set(id);
                }
                Err(e) => tracing::warn!(channel = %bot.channel, "auth.test failed: {e}"),
            },
            Api::Telegram(api) => match api.get_me().await {
                Ok((id, username)) => {
                    let _ = bot.bot_user_id.set(id);
                    let _ = bot.identity.set(username);
                }
                Err(e) => tracing::warn!(channel = %bot.channel, "getMe failed: {e}"),
            },
            _ => {}
        }
    }
}
