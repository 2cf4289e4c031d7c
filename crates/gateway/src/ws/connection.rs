//! One WebSocket connection: the handshake (`connect` → `hello`), then a reader (requests
//! in, each answered by a task of its own) and a writer (answers, the session's events
//! from its window, pings) until either side closes. The session outlives this.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use sluice_protocol::methods::{CLIENT_METHODS, events};
use sluice_protocol::{
    Connect, ErrorBody, Frame, Hello, ReplayGap, Request, Response, Role, ServerLimits, close,
    codes,
};
use sluice_service::Principal;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Opened};
use super::methods;
use super::outbox::Outbox;
use super::session::Session;
use crate::AppState;
use crate::conn::ConnPermit;

/// The largest `last_seq` a client may claim on a resume: a session's numbering carries
/// on after it, and must not overflow.
const MAX_SEQ: u64 = 1 << 53;

/// How long a close frame may take to go out before the socket is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a connection ends, first reason wins.
#[derive(Default)]
pub(super) struct Closer {
    token: CancellationToken,
    reason: Mutex<Option<(u16, String)>>,
}

impl Closer {
    pub(super) fn close(&self, code: u16, reason: impl Into<String>) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some((code, reason.into()));
        }
        drop(r);
        self.token.cancel();
    }

    fn reason(&self) -> Option<(u16, String)> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the reader, the writer and the request tasks of one connection share.
pub(super) struct Conn {
    pub state: Arc<AppState>,
    pub hub: Arc<Hub>,
    pub session: Arc<Session>,
    /// Who the connection authenticated as (the session's own principal).
    pub principal: Arc<Principal>,
    pub closer: Closer,
    /// Answers (and requests to a node) on their way to the writer.
    pub outbox: Arc<Outbox>,
    /// Request ids in flight.
    pending: Mutex<HashSet<String>>,
    /// Set when the connection is a tool node's.
    node: Option<Arc<super::nodes::Node>>,
    /// When anything last arrived from the peer, in ms since `epoch`.
    last_rx: AtomicU64,
    epoch: Instant,
}

/// `proxied`: the user a trusted proxy vouched for at the upgrade, used when `connect`
/// carries no token.
pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    proxied: Option<Principal>,
    permit: Option<Extension<ConnPermit>>,
) {
    // The handshake's state (the connect frame, a store lookup on a resume, the hello)
    // is boxed and freed once it is done.
    let Some(live) = Box::pin(handshake(socket, state, proxied)).await else {
        return;
    };
    // Serving gets a task of its own, which holds only what serving needs: the upgrade's
    // task (axum's future around this one, ~2 KiB) ends here instead of living as long as
    // the connection. The socket keeps its connection's place under `max_connections`.
    tokio::spawn(async move {
        let _permit = permit;
        serve(live).await;
    });
}

/// A connection past its handshake.
struct Live {
    conn: Arc<Conn>,
    stream: SplitStream<WebSocket>,
    writer: tokio::task::JoinHandle<()>,
    generation: u64,
}

async fn handshake(
    socket: WebSocket,
    state: Arc<AppState>,
    proxied: Option<Principal>,
) -> Option<Live> {
    let hub = state.hub.clone();
    let (mut sink, mut stream) = socket.split();
    if hub.stopping.is_cancelled() {
        close_now(
            &mut sink,
            close::RESTART,
            "the gateway is restarting; reconnect",
        )
        .await;
        return None;
    }
    let connect = match handshake_frame(&mut stream, hub.cfg.connect_timeout).await {
        Ok(c) => c,
        Err((code, reason)) => {
            close_now(&mut sink, code, &reason).await;
            return None;
        }
    };
    let opened = match open(&state, &hub, &connect, proxied).await {
        Ok(o) => o,
        Err((code, reason)) => {
            close_now(&mut sink, code, &reason).await;
            return None;
        }
    };
    let (principal, protocol, session, resumed, restored) = opened;
    let Some(attached) = session.attach(connect.resume.as_ref().map(|r| r.last_seq.min(MAX_SEQ)))
    else {
        // Its grace ended while this handshake ran: a new attempt resumes it from the
        // store.
        close_now(
            &mut sink,
            close::RESTART,
            "the session just ended; reconnect",
        )
        .await;
        return None;
    };
    let replay_gap = if restored {
        Some(ReplayGap {
            oldest_seq: attached.last_seq + 1,
        })
    } else {
        attached.gap_from.map(|oldest_seq| ReplayGap { oldest_seq })
    };
    let cfg = &hub.cfg;
    let hello = Frame::Hello(Hello {
        protocol,
        session_id: session.id.clone(),
        resumed,
        last_seq: attached.last_seq,
        replay_gap,
        heartbeat_ms: millis(cfg.heartbeat),
        limits: ServerLimits {
            max_frame_bytes: cfg.max_frame_bytes as u64,
            replay_events: cfg.replay_events as u64,
            replay_bytes: cfg.replay_bytes as u64,
            resume_grace_ms: millis(cfg.resume_grace),
            max_pending_requests: cfg.max_pending_requests as u64,
        },
        methods: CLIENT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        events: events::ALL.iter().map(|e| (*e).to_owned()).collect(),
    });
    if sink
        .send(Message::Text(sluice_protocol::encode(&hello).into()))
        .await
        .is_err()
    {
        hub.detached(&session, attached.generation);
        return None;
    }
    tracing::debug!(session = %session.id, resumed, key = %principal.key_ref, "websocket session attached");
    // Room for every pending request's answer, and requests to a node.
    let outbox = Arc::new(Outbox::new(cfg.max_pending_requests * 2 + 8));
    let node = connect
        .node
        .as_ref()
        .filter(|_| connect.role == Role::Node)
        .map(|n| {
            hub.nodes
                .register(&principal.key_ref, &n.name, n.tools.clone(), outbox.clone())
        });
    let conn = Arc::new(Conn {
        state: state.clone(),
        hub: hub.clone(),
        session: session.clone(),
        principal: session.principal.clone(),
        closer: Closer::default(),
        outbox,
        pending: Mutex::default(),
        node,
        last_rx: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let writer = tokio::spawn(write(
        conn.clone(),
        sink,
        attached.generation,
        attached.kicked,
        attached.overflow,
    ));
    Some(Live {
        conn,
        stream,
        writer,
        generation: attached.generation,
    })
}

async fn serve(live: Live) {
    let Live {
        conn,
        mut stream,
        writer,
        generation,
    } = live;
    read(&conn, &mut stream).await;
    conn.closer.close(1000, "");
    if let Some(node) = &conn.node {
        conn.hub.nodes.unregister(&conn.principal.key_ref, node);
    }
    let _ = writer.await;
    // The closing handshake: the peer answers our close frame before the socket goes, so
    // it can read the close code (and its last pongs do not meet a closed socket).
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    conn.hub.detached(&conn.session, generation);
}

type Opening = (Arc<Principal>, u32, Arc<Session>, bool, bool);

/// The first frame: a `connect` within the deadline.
async fn handshake_frame(
    stream: &mut SplitStream<WebSocket>,
    deadline: Duration,
) -> Result<Connect, (u16, String)> {
    let first = match tokio::time::timeout(deadline, stream.next()).await {
        Err(_) => return Err((close::CONNECT_TIMEOUT, "no connect frame in time".into())),
        Ok(None | Some(Err(_))) => return Err((close::PROTOCOL_ERROR, String::new())),
        Ok(Some(Ok(m))) => m,
    };
    let Message::Text(text) = first else {
        return Err((
            close::PROTOCOL_ERROR,
            "the first frame must be a connect text frame".into(),
        ));
    };
    match sluice_protocol::decode(text.as_str()) {
        Ok(Frame::Connect(c)) => Ok(c),
        Ok(_) => Err((
            close::PROTOCOL_ERROR,
            "the first frame must be connect".into(),
        )),
        Err(e) => Err((close::PROTOCOL_ERROR, truncate(&e.message))),
    }
}

/// Version, auth, and the session (new, resumed or restored from the store).
async fn open(
    state: &AppState,
    hub: &Hub,
    c: &Connect,
    proxied: Option<Principal>,
) -> Result<Opening, (u16, String)> {
    let (min, max) = c.versions();
    let protocol = max.min(sluice_protocol::MAX_PROTOCOL);
    if protocol < min.max(sluice_protocol::MIN_PROTOCOL) || min > max {
        return Err((
            close::UNSUPPORTED_PROTOCOL,
            format!(
                "this gateway speaks protocol {}..={}",
                sluice_protocol::MIN_PROTOCOL,
                sluice_protocol::MAX_PROTOCOL
            ),
        ));
    }
    let principal = match (&c.auth, proxied) {
        (Some(auth), _) => state
            .service
            .authenticate(&auth.token)
            .map_err(|e| (close::UNAUTHORIZED, e.code().to_owned()))?,
        (None, Some(user)) => Arc::new(user),
        (None, None) => return Err((close::UNAUTHORIZED, "missing_api_key".into())),
    };
    if c.role == Role::Node && c.node.is_none() {
        return Err((
            close::PROTOCOL_ERROR,
            "a node's connect names the node and its tools".into(),
        ));
    }
    if let Some(r) = &c.resume {
        if let Some(s) = hub.resumable(&r.session_id, &principal) {
            return Ok((principal, protocol, s, true, false));
        }
        // Not in memory: continued from the store when it is this key's.
        let stored = state.service.store().session(&r.session_id).await;
        if let Ok(Some(row)) = stored
            && row.key_id.as_deref() == Some(&*principal.key_ref)
        {
            let opened = hub
                .open(&principal, Some((row.id, r.last_seq.min(MAX_SEQ) + 1)))
                .map_err(|_| too_many())?;
            return Ok(match opened {
                Opened::Restored(s) => (principal, protocol, s, true, true),
                // Another connection restored it a moment ago: this one resumes it.
                Opened::Resumed(s) | Opened::New(s) => (principal, protocol, s, true, false),
            });
        }
    }
    match hub.open(&principal, None).map_err(|_| too_many())? {
        Opened::New(s) | Opened::Resumed(s) | Opened::Restored(s) => {
            Ok((principal, protocol, s, false, false))
        }
    }
}

fn too_many() -> (u16, String) {
    (
        close::TOO_MANY_SESSIONS,
        "this key holds as many sessions as it may".into(),
    )
}

async fn close_now(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(reason)),
    }));
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let _ = sink.send(frame).await;
        let _ = sink.close().await;
    })
    .await;
}

/// A close reason must fit in a control frame (123 bytes).
fn truncate(s: &str) -> String {
    super::prefix(s, 120).to_owned()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Conn {
    fn heard(&self) {
        self.last_rx
            .store(millis(self.epoch.elapsed()), Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let now = millis(self.epoch.elapsed());
        Duration::from_millis(now.saturating_sub(self.last_rx.load(Ordering::Relaxed)))
    }

    /// Sends an answer to the writer. It always fits: answers are bounded by the pending
    /// requests, which the outbox has room for.
    async fn answer(&self, res: Response) {
        if self
            .outbox
            .push(sluice_protocol::encode(&Frame::Res(res)))
            .is_err()
        {
            self.closer
                .close(close::SLOW_CONSUMER, "answers are not being read");
        }
    }
}

async fn read(conn: &Arc<Conn>, stream: &mut SplitStream<WebSocket>) {
    conn.heard();
    loop {
        let msg = tokio::select! {
            () = conn.closer.token.cancelled() => return,
            msg = stream.next() => msg,
        };
        let msg = match msg {
            None => return,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                if too_big(e) {
                    conn.closer
                        .close(close::TOO_BIG, "frame larger than max_frame_bytes");
                }
                return;
            }
        };
        conn.heard();
        match msg {
            // Boxed: a frame's handling is short-lived; the reader's own future stays small.
            Message::Text(text) => Box::pin(on_text(conn, text.as_str())).await,
            Message::Binary(_) => {
                conn.closer.close(
                    close::PROTOCOL_ERROR,
                    "binary frames are not part of the protocol",
                );
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return,
        }
    }
}

/// Whether a read failed because the frame was over the size limit.
fn too_big(e: axum::Error) -> bool {
    let inner = e.into_inner();
    matches!(
        inner.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

async fn on_text(conn: &Arc<Conn>, text: &str) {
    let frame = match sluice_protocol::decode(text) {
        Ok(f) => f,
        Err(e) => {
            if let Some(id) = e.req_id {
                conn.answer(Response::err(id, error(codes::INVALID_FRAME, &e.message)))
                    .await;
            } else {
                tracing::debug!(session = %conn.session.id, "undecodable frame dropped: {e}");
            }
            return;
        }
    };
    match frame {
        Frame::Req(req) => start_request(conn, req).await,
        // Answers to the gateway's own requests (tool.invoke).
        Frame::Res(res) => match &conn.node {
            Some(node) => node.answered(res),
            None => tracing::debug!(session = %conn.session.id, "an answer to nothing asked"),
        },
        Frame::Connect(_) => conn
            .closer
            .close(close::PROTOCOL_ERROR, "connect is only the first frame"),
        Frame::Hello(_) | Frame::Event(_) => {
            tracing::debug!(session = %conn.session.id, "a client sent a gateway-only frame");
        }
    }
}

async fn start_request(conn: &Arc<Conn>, req: Request) {
    if !sluice_protocol::valid_id(&req.id) {
        let id = truncate(&req.id);
        return conn
            .answer(Response::err(
                id,
                error(codes::INVALID_REQUEST_ID, "a request id is 1 to 128 bytes"),
            ))
            .await;
    }
    let refusal = {
        let mut pending = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.contains(&req.id) {
            Some(error(
                codes::INVALID_REQUEST_ID,
                "this id is already in flight",
            ))
        } else if pending.len() >= conn.hub.cfg.max_pending_requests {
            Some(ErrorBody {
                retryable: true,
                ..error(
                    codes::TOO_MANY_PENDING,
                    "too many requests unanswered on this connection",
                )
            })
        } else {
            pending.insert(req.id.clone());
            None
        }
    };
    if let Some(e) = refusal {
        return conn.answer(Response::err(req.id, e)).await;
    }
    let conn = conn.clone();
    tokio::spawn(async move {
        let id = req.id.clone();
        // A method that panics still answers its request (and frees its id).
        let res = std::panic::AssertUnwindSafe(methods::dispatch(&conn, req))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(session = %conn.session.id, "a method panicked");
                Response::err(id.clone(), error(codes::INTERNAL, "the gateway failed"))
            });
        conn.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        conn.answer(res).await;
    });
}

pub(super) fn error(code: &str, message: &str) -> ErrorBody {
    ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
        retryable: false,
        retry_after_ms: None,
    }
}

async fn write(
    conn: Arc<Conn>,
    mut sink: SplitSink<WebSocket, Message>,
    generation: u64,
    kicked: CancellationToken,
    overflow: CancellationToken,
) {
    let heartbeat = conn.hub.cfg.heartbeat;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    let session = conn.session.clone();
    let stops = Stops {
        kicked: kicked.clone(),
        overflow: overflow.clone(),
    };
    // Events already in the window (a resume's replay) go first.
    session.notify.notify_one();
    loop {
        tokio::select! {
            biased;
            () = conn.closer.token.cancelled() => break,
            () = conn.hub.stopping.cancelled() => {
                conn.closer.close(close::RESTART, "the gateway is restarting; reconnect and resume");
                break;
            }
            _ = ping.tick() => {
                if conn.silent_for() > heartbeat * 2 {
                    conn.closer.close(close::HEARTBEAT_TIMEOUT, "nothing heard for two heartbeats");
                    break;
                }
                if Box::pin(send_message(&conn, &mut sink, Message::Ping(Default::default()), &stops)).await.is_err() {
                    break;
                }
            }
            // Answers first: a call's `res` goes out before a take-over or an overflow
            // closes the connection, so the client knows what it started.
            () = conn.outbox.ready.notified() => {
                let mut frames = Vec::new();
                conn.outbox.take(&mut frames);
                if Box::pin(send_all(&conn, &mut sink, frames.into_iter(), &stops)).await.is_err() {
                    break;
                }
            }
            () = kicked.cancelled() => {
                conn.closer.close(close::SESSION_TAKEN_OVER, "another connection resumed this session");
                break;
            }
            () = overflow.cancelled() => {
                conn.closer.close(close::SLOW_CONSUMER, "events fell out of the replay window unread; resume");
                break;
            }
            () = session.notify.notified() => {
                out.clear();
                if session.take_unsent(generation, &mut out).is_err() {
                    conn.closer.close(close::SLOW_CONSUMER, "events fell out of the replay window unread; resume");
                    break;
                }
                // Answers queued before these events go first: a call's `res` always
                // precedes its events.
                let mut answers = Vec::new();
                conn.outbox.take(&mut answers);
                let frames = answers.into_iter().chain(out.drain(..).map(|t| t.to_string()));
                if Box::pin(send_all(&conn, &mut sink, frames, &stops)).await.is_err() {
                    break;
                }
            }
        }
    }
    // Whatever ended the writer (a failed or timed-out send included) ends the reader too:
    // the first reason set wins.
    conn.closer.close(1000, "");
    let (code, reason) = conn.closer.reason().unwrap_or((1000, String::new()));
    close_now(&mut sink, code, &reason).await;
}

/// Sends frames in order. The writer boxes this (and its pings): the sends' state is
/// held only while sending, and the writer's idle future stays small.
async fn send_all(
    conn: &Conn,
    sink: &mut SplitSink<WebSocket, Message>,
    frames: impl Iterator<Item = String>,
    stops: &Stops,
) -> Result<(), ()> {
    for text in frames {
        send_message(conn, sink, Message::Text(text.into()), stops).await?;
        // A peer taking data is alive, even if it sends nothing back while a long replay
        // or stream keeps the writer from pinging.
        conn.heard();
    }
    Ok(())
}

/// What ends a send stuck on a reader that takes nothing: a take-over, an overflow.
struct Stops {
    kicked: CancellationToken,
    overflow: CancellationToken,
}

/// Sends one message, giving up when the connection is closed meanwhile (a reader that
/// takes nothing must not hold the writer).
async fn send_message(
    conn: &Conn,
    sink: &mut SplitSink<WebSocket, Message>,
    msg: Message,
    stops: &Stops,
) -> Result<(), ()> {
    tokio::select! {
        // The send first: a frame that can go out at once does, whatever else happened.
        biased;
        r = sink.send(msg) => r.map_err(|_| ()),
        () = conn.closer.token.cancelled() => Err(()),
        () = conn.hub.stopping.cancelled() => {
            conn.closer.close(close::RESTART, "the gateway is restarting; reconnect and resume");
            Err(())
        }
        () = stops.kicked.cancelled() => {
            conn.closer.close(close::SESSION_TAKEN_OVER, "another connection resumed this session");
            Err(())
        }
        () = stops.overflow.cancelled() => {
            conn.closer.close(close::SLOW_CONSUMER, "events fell out of the replay window unread; resume");
            Err(())
        }
    }
}
