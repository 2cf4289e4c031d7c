//! A message a platform delivered, once verified and parsed: who may talk to the agent
//! (policy and flood guard, in memory), then one store transaction that both remembers the
//! delivery (so a retry is a duplicate) and queues its answer (so an acknowledged message
//! is always answered). Nothing slower is on the acknowledgement's path: the run, the
//! model and the platform's API all come after the 200.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sluice_config::ChannelPolicy;
use sluice_service::ids::now_ms;
use sluice_store::{Accepted, NewDelivery, Paired, PairingRow};

use crate::api::Target;
use crate::bots::Bot;
use crate::reply::WebhookReply;
use crate::{Inner, pairing, text};

/// One message for the agent.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    pub bot: Arc<Bot>,
    /// `webhook_seen`'s channel: `slack`, `telegram:BOT`, `whatsapp:PHONE_ID`.
    pub seen_channel: String,
    /// The platform's id of this delivery: the event id, `update_id`, `wamid`.
    pub delivery_id: String,
    /// The message's own identity (two deliveries of one message are one).
    pub message_key: String,
    /// The platform's id of the user (`U…`, a Telegram id, a `wa_id`).
    pub user: String,
    /// Unique across channels: `slack:T…:U…`, `telegram:BOT:ID`, `whatsapp:WA_ID`.
    pub user_key: String,
    pub display_name: Option<String>,
    /// A direct message (not a group or channel).
    pub direct: bool,
    /// The session key of the conversation.
    pub conversation: String,
    pub text: String,
    pub target: Target,
}

/// Whether `user` may talk to the bot: `Some(true)` yes; `Some(false)` no (ignored);
/// `None`: unknown on a pairing channel.
async fn admitted(inner: &Inner, m: &Inbound) -> Result<Option<bool>, WebhookReply> {
    let b = &m.bot.binding;
    if b.policy == ChannelPolicy::Open || b.allow_users.contains(&m.user) {
        return Ok(Some(true));
    }
    if b.policy == ChannelPolicy::Allowlist {
        return Ok(Some(false));
    }
    match inner
        .store
        .is_approved(m.bot.platform.as_str(), &m.bot.name, &m.user)
        .await
    {
        Ok(true) => Ok(Some(true)),
        Ok(false) => Ok(None),
        Err(e) => {
            tracing::warn!(channel = %m.bot.channel, "cannot read pairings: {e}");
            Err(WebhookReply::unavailable())
        }
    }
}

/// Policy, flood guard, then the accept transaction, all within `accept_deadline_ms`
/// (the store's reads as well as its write: a saturated pool must turn into a 503, which
/// the platform retries, not into an ack past its deadline).
pub(crate) async fn accept(inner: &Arc<Inner>, m: Inbound) -> WebhookReply {
    let channel = m.bot.channel.clone();
    match tokio::time::timeout(inner.cfg.accept_deadline, accept_now(inner, m)).await {
        Ok(reply) => reply,
        Err(_) => {
            tracing::warn!(channel = %channel, "accepting a message took longer than accept_deadline_ms");
            WebhookReply::unavailable()
        }
    }
}

async fn accept_now(inner: &Arc<Inner>, m: Inbound) -> WebhookReply {
    if m.text.is_empty() {
        return WebhookReply::ok("ignored");
    }
    match admitted(inner, &m).await {
        Err(reply) => return reply,
        Ok(Some(false)) => return WebhookReply::ok("not_allowed"),
        Ok(None) if !m.direct => return WebhookReply::ok("not_allowed"),
        Ok(None) => return pairing_request(inner, &m).await,
        Ok(Some(true)) => {}
    }
    if !inner
        .flood
        .allow(&m.user_key, m.bot.binding.messages_per_minute)
    {
        tracing::info!(channel = %m.bot.channel, user = %m.user_key, "message dropped: over messages_per_minute");
        return WebhookReply::ok("flood");
    }
    let now = now_ms();
    let mut row = new_row(&m, "answer", now);
    row.input = Some(m.text.clone());
    let pending = inner
        .store
        .pending_in_conversation(&m.conversation, i64::MAX, "")
        .await
        .unwrap_or(0);
    if pending >= i64::from(m.bot.binding.max_pending_per_conversation) {
        // The user is told, once per message, and nothing is run.
        row.kind = "notice".into();
        row.state = "ready".into();
        row.input = None;
        row.text = Some(text::notice_for("busy").to_owned());
    }
    match inner
        .store
        .accept_message(&m.seen_channel, &m.delivery_id, &row)
        .await
    {
        Ok(Accepted::New) => {
            inner.wake.notify_one();
            WebhookReply::ok("accepted")
        }
        Ok(Accepted::Duplicate) => WebhookReply::ok("duplicate"),
        Err(e) => {
            tracing::warn!(channel = %m.bot.channel, "cannot accept a message: {e}");
            WebhookReply::unavailable()
        }
    }
}

/// An unknown user's direct message to a `pairing` channel: a code for the operator,
/// sent once per request; the message itself is not run.
async fn pairing_request(inner: &Arc<Inner>, m: &Inbound) -> WebhookReply {
    let now = now_ms();
    let b = &m.bot.binding;
    let ttl_ms = i64::try_from(b.pairing_code_ttl.as_millis()).unwrap_or(i64::MAX);
    let code = pairing::code();
    let row = PairingRow {
        channel: m.bot.platform.as_str().to_owned(),
        bot: m.bot.name.clone(),
        user_id: m.user.clone(),
        state: "pending".into(),
        code: Some(code.clone()),
        code_expires_at_ms: Some(now.saturating_add(ttl_ms)),
        display_name: m.display_name.clone(),
        target: serde_json::to_string(&m.target).ok(),
        approved_at_ms: None,
        approved_by: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let mut notice = new_row(m, "notice", now);
    notice.state = "ready".into();
    notice.text = Some(text::pairing_notice(
        &code,
        b.pairing_code_ttl.as_secs().div_ceil(60),
    ));
    let asked = inner
        .store
        .request_pairing(&row, i64::from(b.max_pending_pairings), &notice, now);
    match tokio::time::timeout(inner.cfg.accept_deadline, asked).await {
        Ok(Ok(Paired::New)) => {
            tracing::info!(channel = %m.bot.channel, user = %m.user, "pairing requested");
            inner.wake.notify_one();
            WebhookReply::ok("pairing")
        }
        Ok(Ok(Paired::Approved)) => WebhookReply::ok("duplicate"),
        Ok(Ok(Paired::Pending | Paired::Full)) => WebhookReply::ok("not_allowed"),
        Ok(Err(e)) => {
            tracing::warn!(channel = %m.bot.channel, "cannot store a pairing request: {e}");
            WebhookReply::unavailable()
        }
        Err(_) => WebhookReply::unavailable(),
    }
}

fn new_row(m: &Inbound, kind: &str, now: i64) -> NewDelivery {
    NewDelivery {
        id: uuid::Uuid::now_v7().to_string(),
        channel: m.bot.platform.as_str().to_owned(),
        bot: m.bot.name.clone(),
        message_key: m.message_key.clone(),
        kind: kind.to_owned(),
        conversation: m.conversation.clone(),
        platform_user: m.user_key.clone(),
        target: serde_json::to_string(&m.target).unwrap_or_default(),
        input: None,
        text: None,
        state: "accepted".into(),
        created_at_ms: now,
    }
}

/// Messages per minute per platform user, in this process: past the limit, messages are
/// dropped before anything is written (a token bucket refilled continuously).
#[derive(Debug, Default)]
pub(crate) struct Flood {
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

impl Flood {
    pub fn allow(&self, user: &str, per_minute: u32) -> bool {
        let cap = f64::from(per_minute.max(1));
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 100_000 {
            // Forget full buckets (users quiet for a minute or more).
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * cap / 60.0 < cap
            });
        }
        let (tokens, at) = b.entry(user.to_owned()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * cap / 60.0).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
