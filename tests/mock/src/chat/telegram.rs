//! Telegram Bot API: `/bot{token}/{method}` with a JSON body, for `sendMessage`,
//! `editMessageText`, `getMe`, `setWebhook`, `getWebhookInfo` and `deleteWebhook`.
//!
//! Every answer is `{"ok":true,"result":…}` or `{"ok":false,"error_code":N,"description":"…"}`
//! with `parameters.retry_after` on a 429 (<https://core.telegram.org/bots/api#making-requests>).
//! Method names are case-insensitive, as Telegram's are. Only JSON bodies are read (no form or
//! query parameters), and `setWebhook` takes any URL, plain HTTP included, because the tests
//! run the gateway on loopback.

use super::state::{Book, Bot, Call, Handlers, Reply, Scripted, Shared, Stored, Webhook};
use super::state::{exchange, unix_now};
use super::{ChatMessage, Platform};
use crate::json::{self, J, obj};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use serde_json::Value;
use std::time::Instant;

const JSON: &str = "application/json";
/// The longest text, counted here in UTF-16 code units (Telegram counts characters after
/// entity parsing; the mock parses no markup).
const MAX_TEXT: usize = 4096;
const METHODS: [&str; 6] = [
    "sendMessage",
    "editMessageText",
    "getMe",
    "setWebhook",
    "getWebhookInfo",
    "deleteWebhook",
];

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/{bot}/{method}", any(handle))
}

async fn handle(
    State(state): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = METHODS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(&method))
        .unwrap_or(&method);
    let call = Call::new(Platform::Telegram, method, &bot, &uri, &headers, &body);
    let handlers = Handlers { apply, fail };
    exchange(&state, call, handlers).await
}

fn ok(result: impl Into<J>) -> Reply {
    Reply::new(
        200,
        JSON,
        json::compact(&obj! { "ok": true, "result": result.into() }),
    )
}

fn error(status: u16, description: &str) -> Reply {
    let body = obj! { "ok": false, "error_code": status, "description": description };
    Reply::new(status, JSON, json::compact(&body))
}

fn bad_request(what: &str) -> Reply {
    error(400, &format!("Bad Request: {what}"))
}

fn fail(_: &mut Book, scripted: &Scripted) -> Reply {
    match scripted {
        Scripted::RateLimited(seconds) => {
            let body = obj! {
                "ok": false,
                "error_code": 429u16,
                "description": format!("Too Many Requests: retry after {seconds}"),
                "parameters": obj! { "retry_after": *seconds },
            };
            Reply::new(429, JSON, json::compact(&body))
        }
        Scripted::ServerError(status) => {
            let reason = StatusCode::from_u16(*status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Internal Server Error");
            error(*status, reason)
        }
        Scripted::ApiError(description) => {
            let status = [
                ("Unauthorized", 401),
                ("Forbidden", 403),
                ("Not Found", 404),
                ("Conflict", 409),
                ("Too Many Requests", 429),
            ]
            .into_iter()
            .find_map(|(prefix, status)| description.starts_with(prefix).then_some(status))
            .unwrap_or(400);
            error(status, description)
        }
    }
}

fn apply(book: &mut Book, call: &Call) -> Reply {
    let Some(token) = call.target.strip_prefix("bot") else {
        return error(404, "Not Found");
    };
    let Some(bot) = book.bots.get(token).cloned() else {
        return error(401, "Unauthorized");
    };
    if !call.json {
        return bad_request("can't parse JSON object");
    }
    match call.method.as_str() {
        "sendMessage" => send_message(book, call, token, &bot),
        "editMessageText" => edit_message_text(book, call, token, &bot),
        "getMe" => ok(obj! {
            "id": bot.id,
            "is_bot": true,
            "first_name": &bot.username,
            "username": &bot.username,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
        }),
        "setWebhook" => set_webhook(book, call, token),
        "getWebhookInfo" => webhook_info(book, token),
        "deleteWebhook" => {
            let description = match book.webhooks.remove(token) {
                Some(_) => "Webhook was deleted",
                None => "Webhook is already deleted",
            };
            let body = obj! { "ok": true, "result": true, "description": description };
            Reply::new(200, JSON, json::compact(&body))
        }
        _ => error(404, "Not Found"),
    }
}

/// `chat_id` as an integer or a string of one; `@channelname` is not supported.
fn chat_id(call: &Call) -> Result<i64, Reply> {
    match call.body.get("chat_id") {
        None | Some(Value::Null) => Err(bad_request("chat_id is empty")),
        Some(Value::String(text)) if text.is_empty() => Err(bad_request("chat_id is empty")),
        Some(Value::String(text)) => text.parse().map_err(|_| bad_request("chat not found")),
        Some(value) => value.as_i64().ok_or_else(|| bad_request("chat not found")),
    }
}

/// The text, refused as Telegram refuses it when empty or too long.
fn text(call: &Call) -> Result<&str, Reply> {
    let text = call.str("text").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(bad_request("message text is empty"));
    }
    if text.encode_utf16().count() > MAX_TEXT {
        return Err(bad_request("message is too long"));
    }
    Ok(text)
}

fn send_message(book: &mut Book, call: &Call, token: &str, bot: &Bot) -> Reply {
    let chat_id = match chat_id(call) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let text = match text(call) {
        Ok(text) => text.to_owned(),
        Err(reply) => return reply,
    };
    let thread_id = call.body.get("message_thread_id").and_then(Value::as_i64);
    let reply_to = call
        .body
        .pointer("/reply_parameters/message_id")
        .or_else(|| call.body.get("reply_to_message_id"))
        .and_then(Value::as_i64);
    let stored = Stored {
        owner: token.to_owned(),
        date: unix_now(),
        message: ChatMessage {
            id: book.next_id().to_string(),
            thread: reply_to.or(thread_id).map(|id| id.to_string()),
            text: text.clone(),
            edits: vec![(text, Instant::now())],
            biz_opaque_callback_data: None,
        },
    };
    let result = message(bot, chat_id, &stored, thread_id, None);
    book.telegram.entry(chat_id).or_default().push(stored);
    ok(result)
}

fn edit_message_text(book: &mut Book, call: &Call, token: &str, bot: &Bot) -> Reply {
    let chat_id = match chat_id(call) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let Some(message_id) = call.body.get("message_id").and_then(Value::as_i64) else {
        return bad_request("message identifier is not specified");
    };
    let text = match text(call) {
        Ok(text) => text,
        Err(reply) => return reply,
    };
    let id = message_id.to_string();
    let found = book
        .telegram
        .get_mut(&chat_id)
        .and_then(|all| all.iter_mut().find(|one| one.message.id == id));
    let Some(stored) = found else {
        return bad_request("message to edit not found");
    };
    if stored.owner != token {
        return bad_request("message can't be edited");
    }
    if stored.message.text == text {
        return bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        );
    }
    stored.message.text = text.to_owned();
    stored.message.edits.push((text.to_owned(), Instant::now()));
    ok(message(bot, chat_id, stored, None, Some(unix_now())))
}

/// A `Message` the bot sent, in Telegram's field order.
fn message(
    bot: &Bot,
    chat_id: i64,
    stored: &Stored,
    thread_id: Option<i64>,
    edit_date: Option<u64>,
) -> J {
    let from = obj! {
        "id": bot.id,
        "is_bot": true,
        "first_name": &bot.username,
        "username": &bot.username,
    };
    let chat = if chat_id > 0 {
        obj! { "id": chat_id, "first_name": "Mock User", "type": "private" }
    } else {
        // Supergroup ids are -100…; other negative ids are basic groups.
        let kind = if chat_id <= -1_000_000_000_000 {
            "supergroup"
        } else {
            "group"
        };
        obj! { "id": chat_id, "title": "Mock Group", "type": kind }
    };
    let message_id = stored.message.id.parse::<u64>().unwrap_or_default();
    let mut message = obj! { "message_id": message_id };
    if let Some(thread_id) = thread_id {
        message.push("message_thread_id", thread_id);
    }
    message.push("from", from);
    message.push("chat", chat);
    message.push("date", stored.date);
    if let Some(edit_date) = edit_date {
        message.push("edit_date", edit_date);
    }
    message.push("text", &stored.message.text);
    message
}

fn set_webhook(book: &mut Book, call: &Call, token: &str) -> Reply {
    let url = call.str("url").unwrap_or_default().to_owned();
    book.set_webhooks
        .entry(token.to_owned())
        .or_default()
        .push(call.body.clone());
    let previous = book.webhooks.get(token).map(|hook| hook.url.clone());
    let description = if url.is_empty() {
        match book.webhooks.remove(token) {
            Some(_) => "Webhook was deleted",
            None => "Webhook is already deleted",
        }
    } else {
        let hook = Webhook {
            max_connections: call
                .body
                .get("max_connections")
                .and_then(Value::as_u64)
                .unwrap_or(40),
            allowed_updates: call.body.get("allowed_updates").cloned(),
            url: url.clone(),
        };
        book.webhooks.insert(token.to_owned(), hook);
        if previous.as_deref() == Some(url.as_str()) {
            "Webhook is already set"
        } else {
            "Webhook was set"
        }
    };
    let body = obj! { "ok": true, "result": true, "description": description };
    Reply::new(200, JSON, json::compact(&body))
}

fn webhook_info(book: &Book, token: &str) -> Reply {
    let Some(hook) = book.webhooks.get(token) else {
        return ok(obj! {
            "url": "",
            "has_custom_certificate": false,
            "pending_update_count": 0u64,
        });
    };
    let mut info = obj! {
        "url": &hook.url,
        "has_custom_certificate": false,
        "pending_update_count": 0u64,
        "max_connections": hook.max_connections,
    };
    if let Some(allowed) = &hook.allowed_updates {
        info.push("allowed_updates", allowed.clone());
    }
    ok(info)
}
