//! WhatsApp Cloud API: `POST /{version}/{phone_number_id}/messages` with the access token in
//! `Authorization: Bearer`, text messages only.
//!
//! Errors are Graph API errors, `{"error":{"message","type","code","error_data"?,"fbtrace_id"}}`
//! (<https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes/>):
//! a wrong token is HTTP 401 code 190, a bad parameter HTTP 400 code 100, throughput HTTP 400
//! code 130429. An accepted message is remembered for [`super::MockChat::whatsapp_statuses`].

use super::state::{Accepted, Book, Call, Handlers, Reply, Scripted, Shared, Stored, exchange};
use super::{ChatMessage, Platform};
use crate::json::{self, obj};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use std::time::Instant;

const JSON: &str = "application/json; charset=UTF-8";
/// `text.body` is at most this many characters.
const MAX_BODY: usize = 4096;
/// `biz_opaque_callback_data` is at most this many characters.
const MAX_CALLBACK_DATA: usize = 512;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/{version}/{phone_number_id}/messages", post(handle))
}

async fn handle(
    State(state): State<Shared>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call::new(
        Platform::WhatsApp,
        "messages",
        &phone_number_id,
        &uri,
        &headers,
        &body,
    );
    let handlers = Handlers { apply, fail };
    exchange(&state, call, handlers).await
}

/// The recipient as the API reads it: its digits (`+1 555-0100` is `15550100`).
pub(crate) fn wa_id(to: &str) -> String {
    to.chars().filter(char::is_ascii_digit).collect()
}

fn graph_error(
    book: &mut Book,
    status: u16,
    code: u64,
    message: &str,
    details: Option<&str>,
) -> Reply {
    let mut error = obj! { "message": message, "type": "OAuthException", "code": code };
    if let Some(details) = details {
        error.push(
            "error_data",
            obj! { "messaging_product": "whatsapp", "details": details },
        );
    }
    error.push("fbtrace_id", format!("AMockTrace{:012}", book.next_id()));
    Reply::new(status, JSON, json::compact(&obj! { "error": error }))
}

/// HTTP 400 code 100, the message naming the parameter as Graph does.
fn invalid(book: &mut Book, details: &str) -> Reply {
    let message = format!("(#100) {details}");
    graph_error(book, 400, 100, &message, Some(details))
}

fn fail(book: &mut Book, scripted: &Scripted) -> Reply {
    match scripted {
        Scripted::RateLimited(_) => graph_error(
            book,
            400,
            130_429,
            "(#130429) Rate limit hit",
            Some("Cloud API message throughput has been reached."),
        ),
        Scripted::ServerError(503) => {
            graph_error(book, 503, 2, "Service temporarily unavailable", None)
        }
        Scripted::ServerError(status) => graph_error(
            book,
            *status,
            131_000,
            "(#131000) Something went wrong",
            Some("Something went wrong"),
        ),
        Scripted::ApiError(text) => {
            let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
            let code = digits.parse().unwrap_or(100);
            let rest = text[digits.len()..].trim_start_matches([' ', ':']);
            let details = if rest.is_empty() { "Error" } else { rest };
            let status = if code == 190 { 401 } else { 400 };
            let message = format!("(#{code}) {details}");
            graph_error(book, status, code, &message, Some(details))
        }
    }
}

fn apply(book: &mut Book, call: &Call) -> Reply {
    let Some(token) = call.bearer() else {
        let message =
            "An active access token must be used to query information about the current user.";
        return graph_error(book, 400, 2500, message, None);
    };
    if token != book.whatsapp_token {
        return graph_error(book, 401, 190, "Invalid OAuth access token.", None);
    }
    if !call.json {
        return invalid(book, "Invalid parameter");
    }
    if call.str("messaging_product") != Some("whatsapp") {
        return invalid(book, "The parameter messaging_product is required.");
    }
    if call
        .str("recipient_type")
        .is_some_and(|kind| kind != "individual")
    {
        return invalid(
            book,
            "Param recipient_type must be one of {INDIVIDUAL, GROUP}.",
        );
    }
    let Some(to) = call.str("to").filter(|to| !wa_id(to).is_empty()) else {
        return invalid(book, "The parameter to is required.");
    };
    if call.str("type").is_some_and(|kind| kind != "text") {
        return invalid(
            book,
            "Invalid parameter: the mock sends text messages only.",
        );
    }
    let body = call.body.pointer("/text/body").and_then(|b| b.as_str());
    let Some(body) = body.filter(|body| !body.is_empty()) else {
        return invalid(book, "The parameter text['body'] is required.");
    };
    if body.chars().count() > MAX_BODY {
        return invalid(
            book,
            "Param text['body'] must be at most 4096 characters long.",
        );
    }
    let callback_data = call.str("biz_opaque_callback_data").map(str::to_owned);
    if callback_data
        .as_deref()
        .is_some_and(|data| data.chars().count() > MAX_CALLBACK_DATA)
    {
        return invalid(
            book,
            "Param biz_opaque_callback_data must be at most 512 characters long.",
        );
    }
    let context = call.body.pointer("/context/message_id");
    let thread = context.and_then(|id| id.as_str()).map(str::to_owned);
    let wa_id = wa_id(to);
    let wamid = format!("wamid.HBgLMOCK{:012}", book.next_id());
    book.unreported.push(Accepted {
        phone_number_id: call.target.clone(),
        wa_id: wa_id.clone(),
        wamid: wamid.clone(),
        biz_opaque_callback_data: callback_data.clone(),
    });
    book.whatsapp
        .entry(wa_id.clone())
        .or_default()
        .push(Stored {
            owner: call.target.clone(),
            date: super::state::unix_now(),
            message: ChatMessage {
                id: wamid.clone(),
                thread,
                text: body.to_owned(),
                edits: vec![(body.to_owned(), Instant::now())],
                biz_opaque_callback_data: callback_data,
            },
        });
    let answer = obj! {
        "messaging_product": "whatsapp",
        "contacts": vec![obj! { "input": to, "wa_id": wa_id }],
        "messages": vec![obj! { "id": wamid }],
    };
    Reply::new(200, JSON, json::compact(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wa_id_keeps_only_digits() {
        assert_eq!(wa_id("+1 (555) 010-0123"), "15550100123");
    }
}
