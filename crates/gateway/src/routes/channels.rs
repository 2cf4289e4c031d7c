//! `/channels/…`: the chat platforms' webhooks (docs/channels.md). No gateway key: each
//! platform authenticates its requests its own way, which `sluice-channels` checks. What
//! the headers alone can refuse (unknown route, stale Slack timestamp, wrong Telegram
//! secret, no signature) is refused before the body is read; the body is read up to the
//! channel's own limit; the rest is the channels' (verify, parse, accept).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sluice_channels::{Channels, Route, WebhookReply};

use crate::AppState;

pub async fn slack(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (channels, body) = match read(&state, Route::Slack, &headers, body).await {
        Ok(read) => read,
        Err(reply) => return respond(reply),
    };
    respond(channels.slack_events(&headers, body).await)
}

pub async fn telegram(
    State(state): State<Arc<AppState>>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (channels, body) = match read(&state, Route::Telegram(&bot), &headers, body).await {
        Ok(read) => read,
        Err(reply) => return respond(reply),
    };
    respond(channels.telegram_update(&bot, body).await)
}

pub async fn whatsapp_subscribe(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    match &state.channels {
        Some(c) => respond(c.whatsapp_subscribe(query.as_deref())),
        None => respond(WebhookReply::not_found()),
    }
}

pub async fn whatsapp(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (channels, body) = match read(&state, Route::WhatsApp, &headers, body).await {
        Ok(read) => read,
        Err(reply) => return respond(reply),
    };
    respond(channels.whatsapp_events(&headers, body).await)
}

/// The channels and the body, or the refusal to send at once.
async fn read<'a>(
    state: &'a AppState,
    route: Route<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'a Channels, Bytes), WebhookReply> {
    let channels = state
        .channels
        .as_ref()
        .ok_or_else(WebhookReply::not_found)?;
    if state.is_draining() {
        // The platform retries later (here after a restart, or elsewhere).
        return Err(WebhookReply::unavailable());
    }
    let limit = channels.precheck(route, headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WebhookReply::too_large(limit));
    }
    // Counted as it arrives: a body past the limit is refused without being kept.
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            WebhookReply::refuse(400, "body_unreadable", "the body could not be read")
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(WebhookReply::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((channels, buf.freeze()))
}

fn respond(r: WebhookReply) -> Response {
    let mut resp = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        r.body,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if let Ok(code) = HeaderValue::from_str(r.code) {
        resp.headers_mut().insert("x-sluice-webhook", code);
    }
    resp
}
