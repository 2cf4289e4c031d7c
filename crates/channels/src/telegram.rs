//! `POST /channels/telegram/{bot}`: the Bot API's webhook. The secret token set with
//! `setWebhook` is checked before the body is read; a text in a private chat, or a mention,
//! a command or a reply to the bot in a group, becomes an [`Inbound`]. `update_id` is the
//! delivery's identity, `chat:message_id` the message's.

use std::sync::Arc;

use bytes::Bytes;

use crate::api::Target;
use crate::bots::Platform;
use crate::inbound::{self, Inbound};
use crate::reply::WebhookReply;
use crate::wire::TelegramUpdate;
use crate::{Inner, text};

pub(crate) async fn update(inner: &Arc<Inner>, name: &str, body: Bytes) -> WebhookReply {
    let Some(bot) = inner.bot(Platform::Telegram, name) else {
        return WebhookReply::not_found();
    };
    let update: TelegramUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return WebhookReply::invalid_json(&e),
    };
    let Some(m) = update.message else {
        return WebhookReply::ok("ignored");
    };
    let Some(from) = m.from.as_ref().filter(|u| !u.is_bot) else {
        return WebhookReply::ok("ignored");
    };
    let direct = m.chat.kind == "private";
    if !direct && (!bot.groups || !matches!(m.chat.kind.as_str(), "group" | "supergroup")) {
        return WebhookReply::ok("ignored");
    }
    let username = bot.identity.get().map(String::as_str).unwrap_or_default();
    let replies_to_bot = m
        .reply_to_message
        .as_ref()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|f| Some(&f.id) == bot.bot_user_id.get());
    if !(m.is_for_the_agent(username) || (!direct && replies_to_bot && m.text.is_some())) {
        return WebhookReply::ok("ignored");
    }
    let chat = m.chat.id;
    let conversation = match (direct, m.message_thread_id) {
        (true, _) => format!("telegram:{name}:{chat}"),
        (false, None) => format!("telegram:{name}:{chat}:{}", from.id),
        (false, Some(t)) => format!("telegram:{name}:{chat}:t{t}:{}", from.id),
    };
    let msg = Inbound {
        seen_channel: format!("telegram:{name}"),
        delivery_id: update.update_id.to_string(),
        message_key: format!("{chat}:{}", m.message_id),
        user: from.id.to_string(),
        user_key: format!("telegram:{name}:{}", from.id),
        display_name: from.username.clone(),
        direct,
        conversation,
        text: text::telegram_input(&m, username),
        target: Target::Telegram {
            chat_id: chat,
            thread_id: m.message_thread_id,
            reply_to: (!direct).then_some(m.message_id),
            group: !direct,
        },
        bot: bot.clone(),
    };
    inbound::accept(inner, msg).await
}
