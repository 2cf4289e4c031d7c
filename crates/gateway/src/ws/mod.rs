//! `GET /ws`: WebSocket sessions, protocol 1 (docs/protocol.md, `sluice-protocol`).
//! [`upgrade`] checks the browser origin and hands the socket to [`connection`], which
//! runs the handshake and the frames; [`session`] is what outlives a connection (its
//! numbered events and replay window), [`hub`] holds the sessions, and [`methods`] is the
//! method table. Every model call goes through the completion service.

mod connection;
pub mod hub;
mod methods;
pub mod nodes;
mod outbox;
mod runs;
pub mod session;

use std::sync::Arc;

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::AppState;
use crate::error::error_body;

pub use hub::Hub;

/// At most `max` bytes of `s`, cut at a character boundary: client text quoted in an
/// answer or a close reason stays bounded.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    permit: Option<Extension<crate::conn::ConnPermit>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A proxy's identity header is checked before the upgrade: from an untrusted
    // address it is refused with 401, like on any other route.
    let proxied = match crate::auth::proxied(&state, &headers, Some(peer.ip())) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let cfg = &state.hub.cfg;
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| cfg.origin_allowed(o));
        if !allowed {
            let body = error_body(
                "this origin may not open a WebSocket to the gateway ([websocket] allowed_origins)",
                "permission_error",
                "origin_not_allowed",
            );
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    }
    let max = cfg.max_frame_bytes;
    // tungstenite allocates its read buffer up front (128 KiB by default): an idle
    // session must cost a few KiB, so it starts small and grows for a large frame. Frames
    // are written as they are sent (the writer flushes each one anyway). Outgoing frames
    // are not held to max_frame_bytes (one history message may be larger).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::run(socket, state, proxied, permit))
}
