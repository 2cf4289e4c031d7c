//! The webhook payloads the platforms post, as documented, for tests to deliver.
//!
//! - Slack Events API envelope (<https://api.slack.com/types/event>), with an `app_mention`
//!   (<https://docs.slack.dev/reference/events/app_mention>) or a direct message, which Slack
//!   sends as a `message` event with `channel_type: "im"`.
//! - A Telegram `Update` with a text `Message` (<https://core.telegram.org/bots/api#update>).
//! - WhatsApp Cloud API `whatsapp_business_account` webhooks with `messages` or `statuses`.

use super::state::unix_now;
use super::{SLACK_BOT_USER_ID, state::Accepted};
use serde_json::{Value, json};

/// A Slack `event_callback` whose event is an `app_mention` in `channel` (inside the thread
/// `thread_ts` when given). `text` is what the user wrote, `<@UBOT>` included.
pub fn slack_app_mention(
    team: &str,
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
    event_id: &str,
) -> Value {
    let mut event = json!({
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
    });
    if let Some(thread_ts) = thread_ts {
        event["thread_ts"] = json!(thread_ts);
    }
    slack_envelope(team, event, ts, event_id)
}

/// A Slack `event_callback` whose event is a direct message: a `message` in the IM `channel`
/// with `channel_type: "im"`.
pub fn slack_dm(
    team: &str,
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
    event_id: &str,
) -> Value {
    let mut event = json!({
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": "im",
    });
    if let Some(thread_ts) = thread_ts {
        event["thread_ts"] = json!(thread_ts);
    }
    slack_envelope(team, event, ts, event_id)
}

fn slack_envelope(team: &str, event: Value, ts: &str, event_id: &str) -> Value {
    let event_time = ts
        .split('.')
        .next()
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .unwrap_or_else(unix_now);
    json!({
        "token": "mock-verification-token",
        "team_id": team,
        "api_app_id": "AMOCK",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [{
            "enterprise_id": null,
            "team_id": team,
            "user_id": SLACK_BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "is_ext_shared_channel": false,
        "event_context": format!("4-mock-{event_id}"),
    })
}

/// A Telegram update carrying a text message from the user `from_id` in the chat `chat_id` of
/// type `chat_type` (`private`, `group`, `supergroup`). Its `message_id` is `update_id`.
/// `entities` are `(type, offset, length)` with offset and length in UTF-16 code units, as
/// Telegram counts them (`("mention", 0, 9)` for a leading `@jobs_bot`).
pub fn telegram_text(
    update_id: i64,
    chat_id: i64,
    chat_type: &str,
    from_id: i64,
    text: &str,
    entities: &[(&str, usize, usize)],
) -> Value {
    let mut chat = json!({ "id": chat_id, "type": chat_type });
    if chat_type == "private" {
        chat["first_name"] = json!("Mock User");
    } else {
        chat["title"] = json!("Mock Group");
    }
    let mut message = json!({
        "message_id": update_id,
        "from": {
            "id": from_id,
            "is_bot": false,
            "first_name": "Mock User",
            "username": format!("user{from_id}"),
            "language_code": "en",
        },
        "chat": chat,
        "date": unix_now(),
        "text": text,
    });
    if !entities.is_empty() {
        let entities: Vec<Value> = entities
            .iter()
            .map(|(kind, offset, length)| json!({ "offset": offset, "length": length, "type": kind }))
            .collect();
        message["entities"] = Value::Array(entities);
    }
    json!({ "update_id": update_id, "message": message })
}

/// A WhatsApp `messages` webhook: the user `from` (a `wa_id`) wrote `text` to the business
/// number `phone_number_id`; `wamid` is the message's id.
pub fn whatsapp_text(phone_number_id: &str, from: &str, wamid: &str, text: &str) -> Value {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id),
        "contacts": [{ "profile": { "name": "Mock User" }, "wa_id": from }],
        "messages": [{
            "from": from,
            "id": wamid,
            "timestamp": unix_now().to_string(),
            "text": { "body": text },
            "type": "text",
        }],
    });
    whatsapp_envelope(value)
}

/// A WhatsApp `statuses` webhook for one message: `status` is `sent`, `delivered`, `read` or
/// `failed`; `biz_opaque_callback_data` comes back as it was sent.
pub fn whatsapp_status(
    phone_number_id: &str,
    recipient_id: &str,
    wamid: &str,
    status: &str,
    biz_opaque_callback_data: Option<&str>,
) -> Value {
    let one = status_object(recipient_id, wamid, status, biz_opaque_callback_data);
    whatsapp_envelope(statuses_value(phone_number_id, vec![one]))
}

/// One `statuses` webhook reporting `sent` for every message in `accepted`.
pub(crate) fn whatsapp_sent(phone_number_id: &str, accepted: &[Accepted]) -> Value {
    let statuses = accepted
        .iter()
        .map(|one| {
            let data = one.biz_opaque_callback_data.as_deref();
            status_object(&one.wa_id, &one.wamid, "sent", data)
        })
        .collect();
    whatsapp_envelope(statuses_value(phone_number_id, statuses))
}

fn status_object(recipient_id: &str, wamid: &str, status: &str, data: Option<&str>) -> Value {
    let mut one = json!({
        "id": wamid,
        "status": status,
        "timestamp": unix_now().to_string(),
        "recipient_id": recipient_id,
        "conversation": {
            "id": format!("mock-conversation-{recipient_id}"),
            "origin": { "type": "service" },
        },
        "pricing": { "billable": false, "pricing_model": "PMP", "category": "service" },
    });
    if let Some(data) = data {
        one["biz_opaque_callback_data"] = json!(data);
    }
    one
}

fn statuses_value(phone_number_id: &str, statuses: Vec<Value>) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id),
        "statuses": statuses,
    })
}

fn metadata(phone_number_id: &str) -> Value {
    json!({ "display_phone_number": "15550000000", "phone_number_id": phone_number_id })
}

fn whatsapp_envelope(value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "100000000000001",
            "changes": [{ "value": value, "field": "messages" }],
        }],
    })
}
