//! `GET /channels/whatsapp` (the subscription check) and `POST /channels/whatsapp` (Cloud
//! API webhooks, signed with the app secret). One POST may carry several messages; each
//! text to the configured number becomes an [`Inbound`], keyed by its `wamid`. Statuses of
//! the messages Sluice sent settle sends whose outcome was unknown.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::api::Target;
use crate::bots::Platform;
use crate::inbound::{self, Inbound};
use crate::reply::WebhookReply;
use crate::wire::WhatsAppPayload;
use crate::{Inner, header, outbox, verify};

/// `hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` → the challenge, if the token
/// is the configured one.
pub(crate) fn subscribe(inner: &Inner, query: Option<&str>) -> WebhookReply {
    let Some(cfg) = inner.cfg.whatsapp.as_ref() else {
        return WebhookReply::not_found();
    };
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let expected = cfg.verify_token.expose().as_bytes();
    let token_ok = token
        .is_some_and(|t| t.len() == expected.len() && bool::from(t.as_bytes().ct_eq(expected)));
    match (mode.as_deref(), token_ok, challenge) {
        (Some("subscribe"), true, Some(c)) => WebhookReply::text(c, "challenge"),
        _ => WebhookReply::refuse(
            403,
            "verification_failed",
            "wrong hub.mode or hub.verify_token",
        ),
    }
}

pub(crate) async fn events(inner: &Arc<Inner>, headers: &HeaderMap, body: Bytes) -> WebhookReply {
    let (Some(cfg), Some(bot)) = (
        inner.cfg.whatsapp.as_ref(),
        inner.bot(Platform::WhatsApp, "whatsapp"),
    ) else {
        return WebhookReply::not_found();
    };
    if let Err(r) = verify::whatsapp(
        cfg.app_secret.expose().as_bytes(),
        header(headers, "x-hub-signature-256"),
        &body,
    ) {
        return WebhookReply::unauthorized(&r);
    }
    let payload: WhatsAppPayload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return WebhookReply::invalid_json(&e),
    };
    if payload.object != "whatsapp_business_account" {
        return WebhookReply::ok("ignored");
    }
    for (phone, status) in payload.statuses() {
        if phone == cfg.phone_number_id {
            outbox::settle_status(inner, status).await;
        }
    }
    let mut reply = WebhookReply::ok("ignored");
    for (phone, m) in payload.text_messages() {
        if phone != cfg.phone_number_id {
            continue;
        }
        let Some(text) = m.text.as_ref() else {
            continue;
        };
        let msg = Inbound {
            seen_channel: format!("whatsapp:{phone}"),
            delivery_id: m.id.clone(),
            message_key: m.id.clone(),
            user: m.from.clone(),
            user_key: format!("whatsapp:{}", m.from),
            display_name: None,
            direct: true,
            conversation: format!("whatsapp:{phone}:{}", m.from),
            text: text.body.trim().to_owned(),
            target: Target::WhatsApp {
                to: m.from.clone(),
                context: Some(m.id.clone()),
            },
            bot: bot.clone(),
        };
        let r = inbound::accept(inner, msg).await;
        // One message the store could not take: the whole POST is retried (the others
        // are then duplicates).
        if r.status != 200 {
            return r;
        }
        reply = r;
    }
    reply
}
