//! The connection task: the one owner of the socket. It writes the handles' requests,
//! matches answers to them by id, delivers events (each seq once, in order) to chat
//! streams and subscribers, serves a node's `tool.invoke` requests, watches the
//! gateway's heartbeat, and when the connection drops reconnects with backoff and
//! resumes after the last event it delivered.
//!
//! Guarantees:
//! - an event is delivered at most once, in seq order; one at or below the last
//!   delivered seq (a replay overlapping what arrived) is dropped;
//! - a loss is announced: `hello.replay_gap`, an unannounced jump in seq, or a session
//!   the gateway no longer had, each becomes a [`SessionEvent`] and ends the chat
//!   streams that may have lost events;
//! - a call in flight when the connection drops fails with
//!   [`CallError::Disconnected`] (answers are not replayed); one not yet sent waits for
//!   the next connection, within its timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use sluice_backoff::Backoff;
use sluice_protocol::methods::{ChatCompleted, ChatDelta, ChatFailed, events as ev};
use sluice_protocol::{ErrorBody, Event, Frame, Hello, Request, Response, Resume, close, codes};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatError, ChatEvent, ChatItem, ChatSink};
use crate::client::Shared;
use crate::config::{ClientConfig, NodeConfig};
use crate::error::{CallError, CloseReason};
use crate::events::{Gap, SessionEvent};
use crate::handshake::{self, Socket};
use crate::node;

/// How long a closing handshake may take before the socket is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Answers from a node's tool tasks waiting to be written.
const ANSWER_BUFFER: usize = 64;

/// A request from a handle.
pub(crate) struct Outgoing {
    pub id: String,
    /// The encoded `req` frame.
    pub text: String,
    pub reply: oneshot::Sender<Result<Value, CallError>>,
    /// For `chat.completions`: where the call's events go.
    pub chat: Option<ChatSink>,
}

struct Pending {
    reply: oneshot::Sender<Result<Value, CallError>>,
    chat: bool,
}

/// How one connection ended.
enum Ended {
    /// The application closed the client.
    Stopped,
    /// The gateway sent a close frame.
    Closed { code: u16, reason: String },
    /// The socket failed, ended without a close frame, or went silent.
    Dropped(String),
}

pub(crate) struct Driver {
    config: ClientConfig,
    node: Option<Arc<NodeConfig>>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Outgoing>,
    stop: CancellationToken,
    /// Requests written on the current connection, by id.
    pending: HashMap<String, Pending>,
    /// Chat calls whose events are expected, by request id.
    chats: HashMap<String, ChatSink>,
    answers_tx: mpsc::Sender<(u64, String)>,
    answers_rx: mpsc::Receiver<(u64, String)>,
    tools: JoinSet<()>,
    slots: Arc<Semaphore>,
    /// Counts connections: a tool's answer meant for an earlier one is dropped.
    generation: u64,
    session_id: String,
    /// The last event delivered to the application: what a resume continues after.
    last_seq: u64,
    /// The last seq accounted for: delivered, or announced lost by a gap. An event past
    /// the next one is an unannounced gap.
    accounted: u64,
    silence: Duration,
}

impl Driver {
    pub(crate) fn new(
        config: ClientConfig,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Outgoing>,
        stop: CancellationToken,
        hello: &Hello,
        last_seq: u64,
    ) -> Driver {
        let (answers_tx, answers_rx) = mpsc::channel(ANSWER_BUFFER);
        let node = config.node.clone().map(Arc::new);
        let slots = Arc::new(Semaphore::new(
            node.as_ref().map_or(1, |n| n.max_concurrent.max(1)),
        ));
        Driver {
            silence: handshake::silence_limit(&config, hello),
            config,
            node,
            shared,
            commands,
            stop,
            pending: HashMap::new(),
            chats: HashMap::new(),
            answers_tx,
            answers_rx,
            tools: JoinSet::new(),
            slots,
            generation: 1,
            session_id: hello.session_id.clone(),
            last_seq,
            accounted: last_seq,
        }
    }

    pub(crate) async fn run(mut self, mut socket: Socket, hello: Hello) {
        tracing::debug!(session = %hello.session_id, resumed = hello.resumed, "connected");
        let reason = loop {
            let why = match self.connection(&mut socket).await {
                Ended::Stopped => {
                    close_gracefully(&mut socket).await;
                    break CloseReason::ByClient;
                }
                Ended::Closed { code, reason } if !close::should_reconnect(code) => {
                    break CloseReason::ByGateway { code, reason };
                }
                Ended::Closed { code, reason } => {
                    format!("the gateway closed with {code} {reason}")
                }
                Ended::Dropped(why) => why,
            };
            drop(socket);
            tracing::info!(session = %self.session_id, "connection lost ({why}); reconnecting");
            self.fail_pending(&CallError::Disconnected);
            self.tools.abort_all();
            self.shared.publish(SessionEvent::Disconnected {
                reason: why.clone(),
            });
            if !self.config.reconnect.enabled {
                break CloseReason::GaveUp {
                    attempts: 0,
                    error: why,
                };
            }
            match self.reconnect().await {
                Ok((s, hello)) => {
                    socket = s;
                    self.greeted(hello);
                }
                Err(reason) => break reason,
            }
        };
        tracing::debug!(session = %self.session_id, "client closed: {reason}");
        self.finish(reason);
    }

    /// Serves one connection until it ends.
    async fn connection(&mut self, socket: &mut Socket) -> Ended {
        let silence = self.silence;
        let quiet = tokio::time::sleep(silence);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Ended::Stopped,
                msg = socket.next() => {
                    quiet.as_mut().reset(tokio::time::Instant::now() + silence);
                    if let Some(ended) = self.on_message(socket, msg).await {
                        return ended;
                    }
                }
                cmd = self.commands.recv() => {
                    let Some(out) = cmd else { return Ended::Stopped };
                    if let Err(why) = self.send_request(socket, out).await {
                        return Ended::Dropped(why);
                    }
                }
                Some((generation, text)) = self.answers_rx.recv() => {
                    if generation == self.generation
                        && let Err(e) = socket.send(Message::Text(text.into())).await
                    {
                        return Ended::Dropped(e.to_string());
                    }
                }
                Some(_) = self.tools.join_next(), if !self.tools.is_empty() => {}
                () = &mut quiet => {
                    // A frame may be waiting that this loop had no turn to read (it was
                    // busy delivering): that is not silence.
                    if let Some(msg) = socket.next().now_or_never() {
                        quiet.as_mut().reset(tokio::time::Instant::now() + silence);
                        if let Some(ended) = self.on_message(socket, msg).await {
                            return ended;
                        }
                        continue;
                    }
                    return Ended::Dropped(format!("nothing from the gateway for {silence:?}"));
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        socket: &mut Socket,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ended> {
        let msg = match msg {
            None => return Some(Ended::Dropped("the connection ended".into())),
            Some(Err(e)) => return Some(Ended::Dropped(e.to_string())),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Text(text) => self.on_text(socket, text.as_str()).await,
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                Some(Ended::Closed { code, reason })
            }
            // Pings are answered by the WebSocket library as it reads.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Binary(_) => None,
        }
    }

    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Option<Ended> {
        let frame = match sluice_protocol::decode(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("undecodable frame from the gateway dropped: {e}");
                return None;
            }
        };
        match frame {
            Frame::Res(res) => self.on_response(res),
            Frame::Event(event) => self.on_event(event).await,
            Frame::Req(req) => return self.on_gateway_request(socket, req).await,
            Frame::Hello(_) | Frame::Connect(_) => {
                tracing::debug!("a handshake frame after the handshake, ignored");
            }
        }
        None
    }

    fn on_response(&mut self, res: Response) {
        let Some(p) = self.pending.remove(&res.id) else {
            tracing::debug!(id = %res.id, "an answer to no request in flight, ignored");
            return;
        };
        let result = if res.ok {
            Ok(res.result.unwrap_or(Value::Null))
        } else {
            Err(CallError::Remote(res.error.unwrap_or_else(|| ErrorBody {
                code: codes::INTERNAL.to_owned(),
                message: "the gateway answered ok: false without an error".to_owned(),
                retryable: false,
                retry_after_ms: None,
            })))
        };
        if p.chat && result.is_err() {
            self.chats.remove(&res.id);
        }
        let _ = p.reply.send(result);
    }

    async fn on_event(&mut self, event: Event) {
        if event.seq <= self.last_seq {
            return;
        }
        if event.seq > self.accounted + 1 {
            self.lost(Gap {
                last_seq: self.last_seq,
                oldest_seq: event.seq,
            });
        }
        if let Some((req_id, item)) = chat_item(&event) {
            self.deliver_chat(&req_id, item).await;
        }
        self.last_seq = event.seq;
        self.accounted = event.seq;
        self.shared
            .last_seq
            .store(event.seq, std::sync::atomic::Ordering::Release);
        self.shared.publish(SessionEvent::Event(event));
    }

    /// Hands a chat event to its stream, waiting while the stream's buffer is full.
    async fn deliver_chat(&mut self, req_id: &str, item: ChatItem) {
        let Some(sink) = self.chats.get(req_id) else {
            return;
        };
        let last = matches!(item, Ok(ChatEvent::Completed { .. }) | Err(_));
        let sent = tokio::select! {
            r = sink.tx.send(item) => r.is_ok(),
            () = self.stop.cancelled() => false,
        };
        if last || !sent {
            self.chats.remove(req_id);
        }
    }

    async fn on_gateway_request(&mut self, socket: &mut Socket, req: Request) -> Option<Ended> {
        let Some(node) = self.node.clone() else {
            let res = Response::err(
                req.id,
                ErrorBody {
                    code: codes::UNKNOWN_METHOD.to_owned(),
                    message: "this client serves no methods (it is not a node)".to_owned(),
                    retryable: false,
                    retry_after_ms: None,
                },
            );
            let text = sluice_protocol::encode(&Frame::Res(res));
            return socket
                .send(Message::Text(text.into()))
                .await
                .err()
                .map(|e| Ended::Dropped(e.to_string()));
        };
        let slots = self.slots.clone();
        let answers = self.answers_tx.clone();
        let generation = self.generation;
        self.tools.spawn(async move {
            let res = node::serve(&node, slots, req).await;
            let _ = answers
                .send((generation, sluice_protocol::encode(&Frame::Res(res))))
                .await;
        });
        None
    }

    async fn send_request(&mut self, socket: &mut Socket, out: Outgoing) -> Result<(), String> {
        if out.reply.is_closed() {
            // The caller gave up (timed out) while the request waited to be sent.
            return Ok(());
        }
        let chat = out.chat.is_some();
        if let Some(sink) = out.chat {
            self.chats.insert(out.id.clone(), sink);
        }
        if let Err(e) = socket.send(Message::Text(out.text.into())).await {
            self.chats.remove(&out.id);
            let _ = out.reply.send(Err(CallError::Disconnected));
            return Err(e.to_string());
        }
        if self.pending.len() >= 64 {
            // Callers that timed out leave their entry behind until an answer comes;
            // sweep them so the map stays the size of what is really awaited.
            self.pending.retain(|_, p| !p.reply.is_closed());
        }
        self.pending.insert(
            out.id,
            Pending {
                reply: out.reply,
                chat,
            },
        );
        Ok(())
    }

    fn fail_pending(&mut self, error: &CallError) {
        for (id, p) in self.pending.drain() {
            if p.chat {
                self.chats.remove(&id);
            }
            let _ = p.reply.send(Err(error.clone()));
        }
    }

    /// Events were lost: subscribers are told, and chat streams end (their answers are
    /// incomplete).
    fn lost(&mut self, gap: Gap) {
        tracing::warn!(
            session = %self.session_id,
            last_seq = gap.last_seq,
            oldest_seq = gap.oldest_seq,
            "events were lost while the client was away"
        );
        self.accounted = self.accounted.max(gap.oldest_seq.saturating_sub(1));
        self.shared.publish(SessionEvent::Gap(gap));
        self.end_chats(&ChatError::Gap(gap));
    }

    fn end_chats(&mut self, error: &ChatError) {
        for (_, sink) in self.chats.drain() {
            sink.cut(error.clone());
        }
    }

    /// Reconnects with backoff until a connection is greeted or the client gives up.
    async fn reconnect(&mut self) -> Result<(Socket, Hello), CloseReason> {
        let policy = self.config.reconnect;
        let mut backoff = Backoff::new(policy.first_delay, policy.max_delay);
        let mut attempts = 0u32;
        loop {
            let delay = backoff.next_delay();
            tokio::select! {
                () = self.stop.cancelled() => return Err(CloseReason::ByClient),
                () = tokio::time::sleep(delay) => {}
            }
            attempts += 1;
            let resume = Resume {
                session_id: self.session_id.clone(),
                last_seq: self.last_seq,
            };
            let attempt = tokio::select! {
                () = self.stop.cancelled() => return Err(CloseReason::ByClient),
                r = handshake::open(&self.config, Some(resume)) => r,
            };
            match attempt {
                Ok(greeted) => return Ok(greeted),
                Err(e) if e.is_transient() && policy.max_attempts.is_none_or(|m| attempts < m) => {
                    tracing::debug!(session = %self.session_id, attempts, "reconnect failed: {e}");
                }
                Err(e) => {
                    tracing::warn!(session = %self.session_id, attempts, "giving up reconnecting: {e}");
                    return Err(CloseReason::GaveUp {
                        attempts,
                        error: e.to_string(),
                    });
                }
            }
        }
    }

    /// A new connection's `hello`: the same session continued, or a new one.
    fn greeted(&mut self, hello: Hello) {
        self.generation += 1;
        self.silence = handshake::silence_limit(&self.config, &hello);
        let resumed = hello.resumed && hello.session_id == self.session_id;
        tracing::info!(session = %hello.session_id, resumed, "reconnected");
        self.shared.publish(SessionEvent::Reconnected {
            session_id: hello.session_id.clone(),
            resumed,
        });
        if resumed {
            if let Some(gap) = hello.replay_gap {
                self.lost(Gap {
                    last_seq: self.last_seq,
                    oldest_seq: gap.oldest_seq,
                });
            }
        } else {
            // The old session is gone, and its calls with it.
            self.end_chats(&ChatError::SessionLost);
            self.session_id = hello.session_id.clone();
            self.last_seq = hello.last_seq;
            self.accounted = hello.last_seq;
            self.shared
                .last_seq
                .store(hello.last_seq, std::sync::atomic::Ordering::Release);
        }
        self.shared.set_hello(hello);
    }

    /// The client stopped for good: everyone waiting is told why.
    fn finish(mut self, reason: CloseReason) {
        self.shared.closed.send_replace(Some(reason.clone()));
        self.tools.abort_all();
        self.fail_pending(&CallError::Closed(reason.clone()));
        self.end_chats(&ChatError::Closed(reason.clone()));
        self.commands.close();
        while let Ok(out) = self.commands.try_recv() {
            let _ = out.reply.send(Err(CallError::Closed(reason.clone())));
        }
    }
}

/// A chat event for its stream: (the request id, the item).
fn chat_item(event: &Event) -> Option<(String, ChatItem)> {
    let seq = event.seq;
    match event.event.as_str() {
        ev::CHAT_DELTA => {
            let d: ChatDelta = serde_json::from_value(event.data.clone()).ok()?;
            Some((
                d.req_id,
                Ok(ChatEvent::Delta {
                    seq,
                    chunk: d.chunk,
                }),
            ))
        }
        ev::CHAT_COMPLETED => {
            let c: ChatCompleted = serde_json::from_value(event.data.clone()).ok()?;
            let done = ChatEvent::Completed {
                seq,
                usage: c.usage,
                served_by: c.served_by,
            };
            Some((c.req_id, Ok(done)))
        }
        ev::CHAT_FAILED => {
            let f: ChatFailed = serde_json::from_value(event.data.clone()).ok()?;
            Some((
                f.req_id,
                Err(ChatError::Failed {
                    seq,
                    error: f.error,
                }),
            ))
        }
        _ => None,
    }
}

/// Sends a normal close and waits briefly for the gateway's.
async fn close_gracefully(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if socket.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}
