//! `POST /channels/slack/events`: the Events API. The signature is checked on the raw
//! body; a `url_verification` is answered with its challenge; an `app_mention` or a direct
//! message becomes an [`Inbound`] answered in its thread. Retries (`X-Slack-Retry-Num`)
//! are recognised by their `event_id`, not by the header.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::api::Target;
use crate::bots::Platform;
use crate::inbound::{self, Inbound};
use crate::reply::WebhookReply;
use crate::wire::SlackEnvelope;
use crate::{Inner, header, text, verify};

pub(crate) async fn events(inner: &Arc<Inner>, headers: &HeaderMap, body: Bytes) -> WebhookReply {
    let Some(bot) = inner.bot(Platform::Slack, "slack") else {
        return WebhookReply::not_found();
    };
    let Some(cfg) = inner.cfg.slack.as_ref() else {
        return WebhookReply::not_found();
    };
    if let Err(r) = verify::slack(
        cfg.signing_secret.expose().as_bytes(),
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        &body,
        sluice_service::ids::now_ms() / 1000,
    ) {
        return WebhookReply::unauthorized(&r);
    }
    let envelope: SlackEnvelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return WebhookReply::invalid_json(&e),
    };
    if let Some(n) = header(headers, "x-slack-retry-num") {
        tracing::debug!(
            retry = n,
            reason = header(headers, "x-slack-retry-reason"),
            "Slack retried a delivery"
        );
    }
    match envelope {
        SlackEnvelope::UrlVerification { challenge } => {
            WebhookReply::json(&serde_json::json!({ "challenge": challenge }))
        }
        SlackEnvelope::EventCallback {
            team_id,
            event_id,
            event,
        } => {
            let own = bot.identity.get();
            if !event.is_for_the_agent() || own.is_some_and(|me| event.user.as_ref() == Some(me)) {
                return WebhookReply::ok("ignored");
            }
            let (Some(user), Some(channel), Some(ts)) = (&event.user, &event.channel, &event.ts)
            else {
                return WebhookReply::ok("ignored");
            };
            let thread = event.reply_thread().unwrap_or(ts).to_owned();
            let m = Inbound {
                seen_channel: "slack".into(),
                delivery_id: event_id,
                message_key: format!("{channel}:{ts}"),
                user: user.clone(),
                user_key: format!("slack:{team_id}:{user}"),
                display_name: None,
                direct: event.channel_type.as_deref() == Some("im"),
                conversation: format!("slack:{team_id}:{channel}:{thread}"),
                text: text::slack_input(event.text.as_deref().unwrap_or_default()),
                target: Target::Slack {
                    channel: channel.clone(),
                    thread_ts: Some(thread),
                },
                bot: bot.clone(),
            };
            inbound::accept(inner, m).await
        }
        SlackEnvelope::Other => WebhookReply::ok("ignored"),
    }
}
