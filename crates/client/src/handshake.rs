//! One connection attempt: open the socket, send `connect`, read `hello`. Every way it
//! can fail becomes a [`ClientError`] that says whether another attempt could help.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sluice_protocol::{Auth, ClientInfo, Connect, Frame, Hello, NodeInfo, Resume, Role, close};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::config::ClientConfig;
use crate::error::{ClientError, TransportError};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a connection and greets the gateway, within `config.connect_timeout`.
pub(crate) async fn open(
    config: &ClientConfig,
    resume: Option<Resume>,
) -> Result<(Socket, Hello), ClientError> {
    let limit = config.connect_timeout;
    tokio::time::timeout(limit, open_now(config, resume))
        .await
        .unwrap_or(Err(ClientError::Timeout(limit)))
}

async fn open_now(
    config: &ClientConfig,
    resume: Option<Resume>,
) -> Result<(Socket, Hello), ClientError> {
    let request = check_url(&config.url)?;
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| upgrade_error(&config.url, e))?;
    let connect = Frame::Connect(connect_frame(config, resume));
    socket
        .send(Message::Text(sluice_protocol::encode(&connect).into()))
        .await
        .map_err(transport)?;
    loop {
        let Some(msg) = socket.next().await else {
            return Err(TransportError::msg("the gateway closed before hello").into());
        };
        match msg.map_err(transport)? {
            Message::Text(text) => {
                return match sluice_protocol::decode(text.as_str()) {
                    Ok(Frame::Hello(hello)) => Ok((socket, hello)),
                    Ok(_) => Err(ClientError::Protocol(
                        "the first frame was not hello".into(),
                    )),
                    Err(e) => Err(ClientError::Protocol(e.message)),
                };
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Err(refused(code, reason));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Binary(_) => {
                return Err(ClientError::Protocol("a binary frame before hello".into()));
            }
        }
    }
}

fn connect_frame(config: &ClientConfig, resume: Option<Resume>) -> Connect {
    Connect {
        min_protocol: sluice_protocol::MIN_PROTOCOL,
        max_protocol: sluice_protocol::MAX_PROTOCOL,
        protocol: None,
        auth: Some(Auth {
            token: config.token.expose().to_owned(),
        }),
        role: if config.node.is_some() {
            Role::Node
        } else {
            Role::Client
        },
        node: config.node.as_ref().map(|n| NodeInfo {
            name: n.name.clone(),
            tools: n.tools.clone(),
        }),
        resume,
        client: Some(ClientInfo {
            name: config.name.clone(),
            version: config.version.clone(),
        }),
    }
}

/// A handshake close code in the caller's terms.
fn refused(code: u16, reason: String) -> ClientError {
    match code {
        close::UNAUTHORIZED => ClientError::Unauthorized { code: reason },
        close::UNSUPPORTED_PROTOCOL => ClientError::UnsupportedProtocol { reason },
        close::TOO_MANY_SESSIONS => ClientError::TooManySessions,
        _ => ClientError::Refused { code, reason },
    }
}

fn check_url(url: &str) -> Result<tungstenite::handshake::client::Request, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("ws") => {}
        Some("wss") if cfg!(feature = "rustls-tls-native-roots") => {}
        Some("wss") => {
            return Err(invalid(
                "wss:// needs sluice-client's `rustls-tls-native-roots` feature".into(),
            ));
        }
        _ => return Err(invalid("the URL must start with ws:// or wss://".into())),
    }
    url.into_client_request()
        .map_err(|e| invalid(e.to_string()))
}

fn upgrade_error(url: &str, e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(resp) => ClientError::Http {
            status: resp.status().as_u16(),
        },
        tungstenite::Error::Url(u) => ClientError::InvalidUrl {
            url: url.to_owned(),
            reason: u.to_string(),
        },
        e => transport(e).into(),
    }
}

pub(crate) fn transport(e: tungstenite::Error) -> TransportError {
    TransportError(Box::new(e))
}

/// How long a connection may be silent: the configured silence, or twice the gateway's
/// heartbeat (with a floor, so a tiny heartbeat does not make a busy reader drop).
pub(crate) fn silence_limit(config: &ClientConfig, hello: &Hello) -> Duration {
    config.heartbeat.silence.unwrap_or_else(|| {
        Duration::from_millis(hello.heartbeat_ms.saturating_mul(2)).max(Duration::from_millis(100))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        assert!(check_url("ws://127.0.0.1:8080/ws").is_ok());
        for bad in ["http://127.0.0.1/ws", "127.0.0.1:8080", "ws://"] {
            assert!(
                matches!(check_url(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad} should be refused"
            );
        }
        if !cfg!(feature = "rustls-tls-native-roots") {
            let Err(ClientError::InvalidUrl { reason, .. }) = check_url("wss://example.com/ws")
            else {
                panic!("wss without TLS is refused");
            };
            assert!(reason.contains("rustls-tls-native-roots"), "{reason}");
        }
    }

    /// With TLS on, a `wss://` URL gets as far as the TLS handshake (a crypto backend is
    /// there: no panic), and a peer that is not TLS is a transport error.
    #[cfg(feature = "rustls-tls-native-roots")]
    #[tokio::test]
    async fn wss_reaches_the_tls_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 not tls\r\n\r\n").await;
            }
        });
        let config = ClientConfig::new(format!("wss://localhost:{}/ws", addr.port()), "k");
        let Err(err) = open(&config, None).await else {
            panic!("not a TLS server");
        };
        assert!(matches!(err, ClientError::Transport(_)), "{err}");
    }

    #[test]
    fn a_refusal_says_whether_to_try_again() {
        assert!(!refused(4001, "invalid_api_key".into()).is_transient());
        assert!(!refused(4002, String::new()).is_transient());
        assert!(!refused(4000, String::new()).is_transient());
        assert!(refused(4004, String::new()).is_transient());
        assert!(refused(1012, String::new()).is_transient());
        assert!(refused(4003, String::new()).is_transient());
    }
}
