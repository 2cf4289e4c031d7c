//! [`Client`]: a cheap handle to one session. Calls and chats are sent to the
//! connection task ([`crate::driver`]) and answered through it; the handle never touches
//! the socket, so it can be cloned and used from many tasks at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_protocol::methods::{
    CHAT_COMPLETIONS, ChatStarted, History, HistoryParams, PING, SESSION_HISTORY, USAGE_GET, Usage,
};
use sluice_protocol::{Frame, Hello, Request};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::chat::{self, ChatSink, ChatStream};
use crate::config::ClientConfig;
use crate::driver::{Driver, Outgoing};
use crate::error::{CallError, ClientError, CloseReason};
use crate::events::{Events, SessionEvent};
use crate::handshake;

/// Events a chat stream buffers before the connection waits for its reader.
const CHAT_BUFFER: usize = 256;
/// Calls waiting for the connection task (while it reconnects, say) before callers wait.
const COMMAND_BUFFER: usize = 256;

/// What the handles and the connection task share.
#[derive(Debug)]
pub(crate) struct Shared {
    hello: Mutex<Arc<Hello>>,
    /// The last event seq delivered to the application.
    pub(crate) last_seq: AtomicU64,
    pub(crate) events: broadcast::Sender<SessionEvent>,
    pub(crate) closed: watch::Sender<Option<CloseReason>>,
}

impl Shared {
    pub(crate) fn set_hello(&self, hello: Hello) {
        *self.hello.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(hello);
    }

    fn hello(&self) -> Arc<Hello> {
        self.hello.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn publish(&self, e: SessionEvent) {
        // No subscriber is not an error: events() subscribers come and go.
        let _ = self.events.send(e);
    }
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Outgoing>,
    /// Cancelled by `close` or when the last handle goes: the connection task ends.
    stop: CancellationToken,
    next_id: AtomicU64,
    call_timeout: Duration,
    chat_idle_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A connection to a Sluice gateway's WebSocket session, kept up across drops. Clone it
/// freely; the connection closes when [`Client::close`] is called or the last clone (and
/// the last [`ChatStream`]) is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects, sends `connect` and waits for `hello`. Nothing is retried here: a
    /// refused key or an unreachable gateway is an error at once. Once connected, the
    /// client reconnects and resumes on its own (see [`crate::Reconnect`]).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let resume = config.resume.clone();
        let (socket, hello) = handshake::open(&config, resume.clone()).await?;
        let last_seq = match &resume {
            Some(r) if hello.resumed => r.last_seq,
            _ => hello.last_seq,
        };
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let shared = Arc::new(Shared {
            hello: Mutex::new(Arc::new(hello.clone())),
            last_seq: AtomicU64::new(last_seq),
            events,
            closed: watch::Sender::new(None),
        });
        let (commands, commands_rx) = mpsc::channel(COMMAND_BUFFER);
        let stop = CancellationToken::new();
        let inner = Inner {
            shared: shared.clone(),
            commands,
            stop: stop.clone(),
            next_id: AtomicU64::new(1),
            call_timeout: config.call_timeout,
            chat_idle_timeout: config.chat_idle_timeout,
        };
        let driver = Driver::new(config, shared, commands_rx, stop, &hello, last_seq);
        tokio::spawn(driver.run(socket, hello));
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The gateway's latest `hello` (it changes when the client reconnects): the
    /// protocol, the session, the heartbeat, the limits, the methods and events served.
    pub fn hello(&self) -> Arc<Hello> {
        self.inner.shared.hello()
    }

    pub fn session_id(&self) -> String {
        self.hello().session_id.clone()
    }

    /// The seq of the last event delivered to the application (what a resume asks to
    /// continue after).
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last_seq.load(Ordering::Acquire)
    }

    /// Calls `method` and waits for its answer, at most
    /// [`ClientConfig::call_timeout`](crate::ClientConfig).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_with_timeout(method, params, self.inner.call_timeout)
            .await
    }

    /// [`Client::call`] with its own timeout.
    pub async fn call_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.request(method, params, None, timeout)
            .await
            .map(|(_, v)| v)
    }

    /// `ping`: the round trip to the gateway and back through the session.
    pub async fn ping(&self) -> Result<Duration, CallError> {
        let started = Instant::now();
        let pong = self.call(PING, json!({})).await?;
        if pong["pong"] != true {
            return Err(CallError::InvalidResponse(format!("ping answered {pong}")));
        }
        Ok(started.elapsed())
    }

    /// `session.history`: the session's stored messages, oldest first.
    pub async fn history(&self, params: HistoryParams) -> Result<History, CallError> {
        let params = serde_json::to_value(params).unwrap_or(Value::Null);
        parse(self.call(SESSION_HISTORY, params).await?)
    }

    /// `usage.get`: what the session has used so far.
    pub async fn usage(&self) -> Result<Usage, CallError> {
        parse(self.call(USAGE_GET, json!({})).await?)
    }

    /// Starts a streamed `chat.completions` call (`request` is an OpenAI
    /// chat-completions request; `stream` is implied). `Err` when the gateway refused it
    /// (the same codes as HTTP: `budget_exceeded`, `model_not_found`, …); otherwise the
    /// call's events, which keep coming across reconnects.
    pub async fn chat(&self, request: Value) -> Result<ChatStream, CallError> {
        let (sink, rx, end) = chat::channel(CHAT_BUFFER);
        let (req_id, result) = self
            .request(
                CHAT_COMPLETIONS,
                request,
                Some(sink),
                self.inner.call_timeout,
            )
            .await?;
        let started: ChatStarted = parse(result)?;
        Ok(ChatStream::new(
            self.clone(),
            started.call_id,
            req_id,
            rx,
            end,
            self.inner.chat_idle_timeout,
        ))
    }

    /// Every event of the session from now on, with what happened to the connection
    /// (drops, reconnects, gaps) in between.
    pub fn events(&self) -> Events {
        Events {
            rx: self.inner.shared.events.subscribe(),
        }
    }

    /// Closes the connection (code 1000) and stops reconnecting; calls in flight fail
    /// with [`CallError::Closed`].
    pub async fn close(&self) {
        self.inner.stop.cancel();
        self.closed().await;
    }

    /// Waits until the client has stopped for good, and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.shared.closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(CloseReason::ByClient),
            Err(_) => CloseReason::ByClient,
        }
    }

    /// Why the client stopped, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.shared.closed.borrow().clone()
    }

    fn closed_error(&self) -> CallError {
        CallError::Closed(self.close_reason().unwrap_or(CloseReason::ByClient))
    }

    /// Sends a request and waits for its answer: (its id, the result).
    async fn request(
        &self,
        method: &str,
        params: Value,
        chat: Option<ChatSink>,
        timeout: Duration,
    ) -> Result<(String, Value), CallError> {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("c{n}");
        let text = sluice_protocol::encode(&Frame::Req(Request {
            id: id.clone(),
            method: method.to_owned(),
            params,
        }));
        let limit = self.hello().limits.max_frame_bytes;
        if text.len() as u64 > limit {
            return Err(CallError::TooLarge {
                size: text.len(),
                limit,
            });
        }
        let (reply, answer) = oneshot::channel();
        let out = Outgoing {
            id: id.clone(),
            text,
            reply,
            chat,
        };
        let exchange = async {
            self.inner
                .commands
                .send(out)
                .await
                .map_err(|_| self.closed_error())?;
            answer.await.unwrap_or_else(|_| Err(self.closed_error()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result.map(|v| (id, v)),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError::InvalidResponse(e.to_string()))
}
