//! Slack Web API: `POST /api/chat.postMessage`, `/api/chat.update`, `/api/auth.test`, with the
//! bot token in `Authorization: Bearer`.
//!
//! Slack answers most errors with HTTP 200 and `{"ok":false,"error":"…"}`
//! (<https://docs.slack.dev/reference/methods/chat.postMessage>,
//! <https://api.slack.com/methods/chat.update>); only rate limits are HTTP 429 with
//! `Retry-After` (<https://docs.slack.dev/apis/web-api/rate-limits>). Bodies are compact JSON.

use super::state::{Book, Call, Handlers, Reply, Scripted, Shared, Stored, exchange};
use super::{ChatMessage, Platform, SLACK_BOT_ID, SLACK_BOT_USER_ID};
use crate::json::{self, J, obj};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use std::time::Instant;

const JSON: &str = "application/json; charset=utf-8";
/// Slack truncates a posted text past this many characters, and refuses an update past it.
const MAX_TEXT: usize = 40_000;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/api/{method}", post(handle))
}

async fn handle(
    State(state): State<Shared>,
    Path(method): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(Platform::Slack, &method, "", &uri, &headers, &body);
    let handlers = Handlers { apply, fail };
    exchange(&state, call, handlers).await
}

fn ok(body: &J) -> Reply {
    Reply::new(200, JSON, json::compact(body))
}

fn error(code: &str) -> Reply {
    ok(&obj! { "ok": false, "error": code })
}

fn fail(_: &mut Book, scripted: &Scripted) -> Reply {
    match scripted {
        Scripted::RateLimited(seconds) => {
            let body = obj! { "ok": false, "error": "ratelimited" };
            Reply::new(429, JSON, json::compact(&body))
                .with_header("retry-after", seconds.to_string())
        }
        Scripted::ServerError(status) => {
            let page = format!(
                "<html><head><title>Slack</title></head><body><h1>{status} Server Error</h1></body></html>\n"
            );
            Reply::new(*status, "text/html; charset=utf-8", page)
        }
        Scripted::ApiError(code) => error(code),
    }
}

fn apply(book: &mut Book, call: &Call) -> Reply {
    let method: fn(&mut Book, &Call) -> Reply = match call.method.as_str() {
        "chat.postMessage" => post_message,
        "chat.update" => update,
        "auth.test" => auth_test,
        _ => return error("unknown_method"),
    };
    let Some(token) = call.bearer() else {
        return error("not_authed");
    };
    if token != book.slack_token {
        return error("invalid_auth");
    }
    if !call.json {
        return error("invalid_json");
    }
    method(book, call)
}

fn post_message(book: &mut Book, call: &Call) -> Reply {
    let Some(channel) = call.str("channel").filter(|c| !c.is_empty()) else {
        return error("channel_not_found");
    };
    let text = call.str("text").unwrap_or_default();
    if text.is_empty() {
        return error("no_text");
    }
    let text: String = text.chars().take(MAX_TEXT).collect();
    let thread_ts = call.str("thread_ts").map(str::to_owned);
    let ts = book.slack_ts();
    let mut message = obj! {
        "type": "message",
        "text": &text,
        "user": SLACK_BOT_USER_ID,
        "bot_id": SLACK_BOT_ID,
        "ts": &ts,
    };
    if let Some(thread_ts) = &thread_ts {
        message.push("thread_ts", thread_ts);
    }
    book.slack
        .entry(channel.to_owned())
        .or_default()
        .push(Stored {
            owner: String::new(),
            date: super::state::unix_now(),
            message: ChatMessage {
                id: ts.clone(),
                thread: thread_ts,
                text: text.clone(),
                edits: vec![(text, Instant::now())],
                biz_opaque_callback_data: None,
            },
        });
    ok(&obj! { "ok": true, "channel": channel, "ts": ts, "message": message })
}

fn update(book: &mut Book, call: &Call) -> Reply {
    let Some(channel) = call.str("channel").filter(|c| !c.is_empty()) else {
        return error("channel_not_found");
    };
    let Some(ts) = call.str("ts") else {
        return error("message_not_found");
    };
    let text = call.str("text").unwrap_or_default();
    if text.is_empty() {
        return error("no_text");
    }
    if text.chars().count() > MAX_TEXT {
        return error("msg_too_long");
    }
    let found = book
        .slack
        .get_mut(channel)
        .and_then(|all| all.iter_mut().find(|one| one.message.id == ts));
    let Some(stored) = found else {
        return error("message_not_found");
    };
    stored.message.text = text.to_owned();
    stored.message.edits.push((text.to_owned(), Instant::now()));
    ok(&obj! {
        "ok": true,
        "channel": channel,
        "ts": ts,
        "text": text,
        "message": obj! { "text": text, "user": SLACK_BOT_USER_ID, "bot_id": SLACK_BOT_ID },
    })
}

fn auth_test(_: &mut Book, _: &Call) -> Reply {
    ok(&obj! {
        "ok": true,
        "url": "https://mock.slack.com/",
        "team": "Mock",
        "user": "sluicebot",
        "team_id": "T0MOCK",
        "user_id": SLACK_BOT_USER_ID,
        "bot_id": SLACK_BOT_ID,
        "is_enterprise_install": false,
    })
}
