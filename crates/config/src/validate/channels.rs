//! `[channels]` → [`ChannelsConfig`]: each channel runs an agent under `[agents]` as a
//! `[[keys]]` entry, has its secrets (unset variables are empty, and refused), a policy
//! that can admit somebody, limits that parse, and a platform API base that does not
//! send a bot token across a network in clear.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::channels::{
    Binding, ChannelPolicy, ChannelsConfig, SlackChannel, Streaming, TelegramBot, WhatsAppChannel,
};
use crate::raw_channels::{RawBinding, RawChannels, RawStreaming};
use crate::{AgentConfig, Secret};

use super::limits::limits;
use super::ms;

pub(super) fn channels(
    raw: RawChannels,
    agents: &BTreeMap<String, AgentConfig>,
    keys: &HashSet<String>,
    p: &mut Vec<String>,
) -> ChannelsConfig {
    if raw.accept_deadline_ms == 0 || raw.accept_deadline_ms > 2_900 {
        p.push(
            "channels.accept_deadline_ms: 1 to 2900 (Slack gives up on an answer after 3 s)".into(),
        );
    }
    if raw.webhook_retention_days < 8 {
        p.push(
            "channels.webhook_retention_days: at least 8 (Meta retries a webhook for 7 days)"
                .into(),
        );
    }
    if raw.delivery_max_age_s == 0 || raw.scan_interval_ms == 0 {
        p.push("channels: delivery_max_age_s and scan_interval_ms must be greater than 0".into());
    }
    let ctx = Ctx { agents, keys };
    let slack = raw.slack.map(|s| {
        let at = "channels.slack";
        SlackChannel {
            signing_secret: secret(at, "signing_secret", s.signing_secret, p),
            bot_token: secret(at, "bot_token", s.bot_token, p),
            bot_user_id: s.bot_user_id.filter(|u| !u.is_empty()),
            binding: ctx.binding(at, s.binding, "https://slack.com/api", p),
            streaming: streaming(at, s.streaming, p),
        }
    });
    let telegram = raw
        .telegram
        .into_iter()
        .map(|(name, t)| {
            let at = format!("channels.telegram.{name}");
            if !route_name(&name) {
                p.push(format!(
                    "{at}: a bot's name is 1 to 64 letters, digits, `_` or `-` (it is part of the webhook's path)"
                ));
            }
            if !secret_token(&t.secret_token) {
                p.push(format!(
                    "{at}.secret_token: 1 to 256 of A-Z, a-z, 0-9, `_` and `-` (Telegram's rule)"
                ));
            }
            if let Some(url) = &t.webhook_url {
                webhook_url(&at, url, p);
            }
            let group_edit = t.group_edit_interval_ms.unwrap_or(3_000);
            if group_edit < 250 {
                p.push(format!("{at}.group_edit_interval_ms: at least 250"));
            }
            let bot = TelegramBot {
                name: name.clone(),
                token: secret(&at, "token", t.token, p),
                secret_token: Secret::new(t.secret_token),
                webhook_url: t.webhook_url,
                username: t
                    .username
                    .map(|u| u.trim_start_matches('@').to_owned())
                    .filter(|u| !u.is_empty()),
                groups: t.groups.unwrap_or(true),
                group_edit_interval: ms(group_edit),
                binding: ctx.binding(&at, t.binding, "https://api.telegram.org", p),
                streaming: streaming(&at, t.streaming, p),
            };
            (name, bot)
        })
        .collect();
    let whatsapp = raw.whatsapp.map(|w| {
        let at = "channels.whatsapp";
        if w.phone_number_id.is_empty() || !w.phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            p.push(format!("{at}.phone_number_id: required, digits only"));
        }
        let api_version = w.api_version.unwrap_or_else(|| "v23.0".into());
        if !api_version.starts_with('v') || api_version.contains('/') {
            p.push(format!("{at}.api_version: like v23.0"));
        }
        WhatsAppChannel {
            app_secret: secret(at, "app_secret", w.app_secret, p),
            verify_token: secret(at, "verify_token", w.verify_token, p),
            access_token: secret(at, "access_token", w.access_token, p),
            phone_number_id: w.phone_number_id,
            api_version,
            uncertain_after: Duration::from_secs(w.uncertain_after_s.unwrap_or(900)),
            binding: ctx.binding(at, w.binding, "https://graph.facebook.com", p),
        }
    });
    ChannelsConfig {
        slack,
        telegram,
        whatsapp,
        accept_deadline: ms(raw.accept_deadline_ms),
        webhook_retention: Duration::from_secs(raw.webhook_retention_days * 24 * 3600),
        delivery_max_age: Duration::from_secs(raw.delivery_max_age_s),
        scan_interval: ms(raw.scan_interval_ms),
    }
}

struct Ctx<'a> {
    agents: &'a BTreeMap<String, AgentConfig>,
    keys: &'a HashSet<String>,
}

impl Ctx<'_> {
    fn binding(&self, at: &str, b: RawBinding, default_base: &str, p: &mut Vec<String>) -> Binding {
        if b.agent.is_empty() {
            p.push(format!("{at}.agent: required (an [agents] name)"));
        } else if !self.agents.contains_key(&b.agent) {
            p.push(format!("{at}.agent: no agent `{}` under [agents]", b.agent));
        }
        if b.run_as.is_empty() {
            p.push(format!(
                "{at}.run_as: required (the [[keys]] name the channel's runs are made as)"
            ));
        } else if !self.keys.contains(&b.run_as) {
            p.push(format!(
                "{at}.run_as: no [[keys]] entry named `{}`",
                b.run_as
            ));
        }
        let policy = match b.policy.as_str() {
            "open" => ChannelPolicy::Open,
            "allowlist" => ChannelPolicy::Allowlist,
            "pairing" => ChannelPolicy::Pairing,
            other => {
                p.push(format!(
                    "{at}.policy: `{other}` is not open, allowlist or pairing"
                ));
                ChannelPolicy::Pairing
            }
        };
        if policy == ChannelPolicy::Allowlist && b.allow_users.is_empty() {
            p.push(format!(
                "{at}.allow_users: an allowlist with nobody on it lets nobody in"
            ));
        }
        for (i, u) in b.allow_users.iter().enumerate() {
            if !user_id(u) {
                p.push(format!(
                    "{at}.allow_users[{i}]: a platform user id (letters and digits)"
                ));
            }
        }
        for (field, v) in [
            ("messages_per_minute", b.messages_per_minute),
            (
                "max_pending_per_conversation",
                b.max_pending_per_conversation,
            ),
            ("pairing_code_ttl_s", b.pairing_code_ttl_s),
            ("max_pending_pairings", b.max_pending_pairings),
            ("max_body_bytes", b.max_body_bytes),
        ] {
            if v == 0 {
                p.push(format!("{at}.{field}: must be greater than 0"));
            }
        }
        let api_base = if b.api_base.is_empty() {
            default_base.to_owned()
        } else {
            b.api_base.trim_end_matches('/').to_owned()
        };
        api_base_ok(at, &api_base, p);
        Binding {
            agent: b.agent,
            run_as: b.run_as,
            policy,
            allow_users: b.allow_users,
            user_limits: limits(&format!("{at}.user_limits"), &b.user_limits, p),
            messages_per_minute: small(b.messages_per_minute),
            max_pending_per_conversation: small(b.max_pending_per_conversation),
            pairing_code_ttl: Duration::from_secs(b.pairing_code_ttl_s),
            max_pending_pairings: small(b.max_pending_pairings),
            max_body_bytes: usize::try_from(b.max_body_bytes).unwrap_or(usize::MAX),
            api_base,
        }
    }
}

fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn streaming(at: &str, s: RawStreaming, p: &mut Vec<String>) -> Streaming {
    if s.edit_interval_ms < 250 {
        p.push(format!(
            "{at}.edit_interval_ms: at least 250 (the platforms rate-limit edits)"
        ));
    }
    if s.stream && s.placeholder.trim().is_empty() {
        p.push(format!(
            "{at}.placeholder: a streamed answer needs a placeholder to edit"
        ));
    }
    Streaming {
        stream: s.stream,
        placeholder: s.placeholder,
        edit_interval: ms(s.edit_interval_ms),
    }
}

/// A secret is required: an unset `${VAR}` reads as empty.
fn secret(at: &str, field: &str, value: String, p: &mut Vec<String>) -> Secret {
    if value.is_empty() {
        p.push(format!(
            "{at}.{field}: required (empty: is its environment variable set?)"
        ));
    }
    Secret::new(value)
}

fn route_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Telegram's rule for `secret_token`.
fn secret_token(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Slack `U…`/`W…`, Telegram's numeric ids, WhatsApp's `wa_id`s.
fn user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Bot tokens travel in the API's requests (Telegram's in the path), so a base URL in
/// clear is allowed to this host only (a local mock or a sidecar).
fn api_base_ok(at: &str, base: &str, p: &mut Vec<String>) {
    let Ok(url) = url::Url::parse(base) else {
        p.push(format!("{at}.api_base: not a URL"));
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => p.push(format!(
            "{at}.api_base: http:// only to this host (127.0.0.1, ::1, localhost); the token would cross the network in clear"
        )),
        _ => p.push(format!("{at}.api_base: an http(s) URL")),
    }
}

/// Telegram calls webhooks over HTTPS on 443, 80, 88 or 8443 only.
fn webhook_url(at: &str, url: &str, p: &mut Vec<String>) {
    let ok = url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https" && matches!(u.port_or_known_default(), Some(443 | 80 | 88 | 8443))
    });
    if !ok {
        p.push(format!(
            "{at}.webhook_url: an https:// URL on port 443, 80, 88 or 8443 (Telegram's rule)"
        ));
    }
}
