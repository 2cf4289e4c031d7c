//! A WebSocket client of the gateway's `/ws` (protocol 1) for the tests: open, send a
//! frame, read the next JSON frame, and a whole session's handshake.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{Gateway, KEY};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open(gw: &Gateway) -> Socket {
    let url = format!("ws://{}/ws", gw.addr);
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket upgrade");
    socket
}

pub async fn send(s: &mut Socket, v: Value) {
    s.send(Message::Text(v.to_string().into()))
        .await
        .expect("a frame sent");
}

/// The next text frame as JSON (pings and pongs skipped); panics on a close.
pub async fn next(s: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("a JSON frame"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// A client `connect` frame with [`KEY`], with `extra`'s fields set over it.
pub fn connect(extra: Value) -> Value {
    let mut c = json!({"type": "connect", "min_protocol": 1, "max_protocol": 1, "auth": {"token": KEY}, "role": "client"});
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            c[k] = v.clone();
        }
    }
    c
}

/// Connected and greeted: the socket and the `hello`.
pub async fn session(gw: &Gateway, extra: Value) -> (Socket, Value) {
    let mut s = open(gw).await;
    send(&mut s, connect(extra)).await;
    let hello = next(&mut s).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (s, hello)
}
