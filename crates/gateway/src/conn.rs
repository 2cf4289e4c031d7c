//! Client connections: the accept loop and the bounds that keep slow, idle or greedy
//! clients from holding the gateway's file descriptors, memory and upstream streams.
//!
//! - **A cap on open connections.** Past it, a connection is answered
//!   `503 too_many_connections` (with `Retry-After`) and closed, so clients see why; the
//!   cap is also held under the process's file-descriptor limit, which is raised to its
//!   hard limit at start ([`raise_fd_limit`]).
//! - **Header-read timeout**, from a connection's start (or a request's first byte) to the
//!   end of its headers: a slowloris client trickling headers is cut.
//! - **Idle timeout** for a kept-alive connection with no request in progress.
//! - **Body-read timeout** for a whole request body: a chunked body that never ends is cut
//!   (the handler answers `408 request_timeout`).
//! - **Write timeout**: a client that takes none of the bytes written to it for this long
//!   is dropped, which drops its response, so a stream's upstream is closed and its
//!   ledger row written.
//!
//! Connections speak HTTP/1.1 only. With HTTP/2, flow control lets a client stall one
//! stream while its socket stays writable, which no socket-level timer sees, so a stream
//! and its upstream call could be held for ever; TLS and HTTP/2 belong to the proxy in
//! front. When the grace period of a stop is over, connections still open are dropped
//! and [`serve`] returns only once they are, so what their responses record on drop (a
//! stream's ledger row) is recorded before the ledger stops.
//!
//! hyper's own header timeout also runs while a kept-alive connection waits for its next
//! request, which would make the idle timeout the header timeout; so the timers live here,
//! in the connection's I/O ([`TimedIo`]), told by the service wrapper whether a request
//! is in progress ([`Activity`]). A connection upgraded to another protocol (`101`) is past
//! HTTP: only the write timeout applies to it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_config::ConnLimits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            None
        }
    }
}

/// The connection cap in force: the configured one, held to half of what the open-file
/// limit leaves (each client connection may need an upstream connection too).
fn effective_cap(configured: usize) -> usize {
    let Ok((soft, _)) = rlimit::Resource::NOFILE.get() else {
        return configured;
    };
    let room = usize::try_from(soft.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            open_file_limit = soft,
            cap = room,
            "server.max_connections is above what the open-file limit allows; using the lower cap"
        );
        return room.max(1);
    }
    configured
}

/// Refusals written at once; past this many, a connection over the cap is just closed.
const MAX_REFUSING: usize = 256;

/// Where a server is in its life: serving, draining (no new connections; open ones
/// finish their requests), or cut (what is still open is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serve,
    Drain,
    Cut,
}

/// Accepts and serves connections until the phase turns to `Drain`, then stops accepting,
/// asks every connection to finish its requests, and returns once all of them have
/// closed, or once the phase turns to `Cut`: then every connection still open is dropped,
/// and returns only when they all are, so that whatever a dropped response records (a
/// stream's ledger row) is recorded before the caller goes on.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnLimits,
    mut phase: watch::Receiver<Phase>,
) {
    let cap = effective_cap(limits.max_connections);
    let permits = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut open = tokio::task::JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = phase.wait_for(|p| *p >= Phase::Drain) => break,
            // Reap finished connections so the set holds only open ones.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or a connection reset before it was taken):
                // say so once a second, pause briefly and go on.
                if last_accept_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("cannot accept a connection: {e}");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold small
        // SSE chunks back ~40 ms: the chunk spacing of a stream would not survive.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(tcp).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let app = app.clone();
        let phase = phase.clone();
        open.spawn(serve_one(tcp, peer, app, limits, phase, Arc::new(permit)));
    }
    drop(listener);
    loop {
        tokio::select! {
            next = open.join_next() => if next.is_none() { return },
            _ = phase.wait_for(|p| *p == Phase::Cut) => break,
        }
    }
    open.abort_all();
    while open.join_next().await.is_some() {}
}

async fn serve_one(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    app: axum::Router,
    limits: ConnLimits,
    mut phase: watch::Receiver<Phase>,
    permit: Arc<OwnedSemaphorePermit>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TimedIo::new(tcp, limits, activity.clone()));
    let service = Tracked {
        app,
        peer,
        permit: ConnPermit(permit),
        activity,
        body_read: limits.body_read,
    };
    // HTTP/1 only. HTTP/2 flow control lets a client stall one stream while its socket
    // stays writable, which no socket-level timer sees: the stream (and its upstream
    // call) would be held for ever. TLS and HTTP/2 belong to the proxy in front.
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!("connection ended: {e}");
                }
                return;
            }
            _ = phase.wait_for(|p| *p >= Phase::Drain), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The answer to a connection over the cap. The request is read (briefly) before closing,
/// so the client gets the answer rather than a reset.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str = r#"{"error":{"message":"the gateway has too many open connections; retry shortly","type":"api_error","param":null,"code":"too_many_connections"}}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(BODY.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < 64 * 1024 {
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A connection's place under `max_connections`, released when the last holder drops it
/// (the connection's task, or the WebSocket it was upgraded to).
#[derive(Clone)]
pub(crate) struct ConnPermit(
    #[expect(dead_code, reason = "held, never read")] Arc<OwnedSemaphorePermit>,
);

/// What the connection's timers need to know about its requests.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    /// Requests whose response has not finished.
    active: u32,
    /// Past a `101 Switching Protocols`: no longer HTTP.
    upgraded: bool,
    /// When the connection last had no request in progress.
    idle_since: Instant,
    /// When the bytes of the next request began (the connection's start for the first).
    head_started: Option<Instant>,
    /// A read left waiting without a deadline while a request was in progress: woken
    /// when the connection turns idle, so its idle timer starts.
    reader: Option<std::task::Waker>,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            state: Mutex::new(ActivityState {
                active: 0,
                upgraded: false,
                idle_since: now,
                head_started: Some(now),
                reader: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) {
        let mut s = self.lock();
        s.active += 1;
        s.head_started = None;
    }

    fn end(&self) {
        let mut s = self.lock();
        s.active = s.active.saturating_sub(1);
        if s.active == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
            if let Some(reader) = s.reader.take() {
                reader.wake();
            }
        }
    }

    fn read_some(&self) {
        let mut s = self.lock();
        if s.active == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    /// When a read that is still waiting gives up; `None`: it may wait (and is woken
    /// when that changes).
    fn read_deadline(&self, limits: &ConnLimits, cx: &Context<'_>) -> Option<Instant> {
        let mut s = self.lock();
        if s.upgraded {
            return None;
        }
        if s.active > 0 {
            if !s.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.reader = Some(cx.waker().clone());
            }
            return None;
        }
        Some(match s.head_started {
            Some(t) => t + limits.header_read,
            None => s.idle_since + limits.idle,
        })
    }
}

/// Ends a request's activity when its response is over (or abandoned).
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The connection's socket with the read and write timers.
struct TimedIo {
    io: TcpStream,
    limits: ConnLimits,
    activity: Arc<Activity>,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_waiting: bool,
}

impl TimedIo {
    fn new(io: TcpStream, limits: ConnLimits, activity: Arc<Activity>) -> TimedIo {
        let far = Instant::now() + Duration::from_secs(86_400);
        TimedIo {
            io,
            limits,
            activity,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            read_deadline: None,
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_waiting: false,
        }
    }

    /// A write made no progress: start (or check) the write timer.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.write_waiting {
            self.write_waiting = true;
            let at = Instant::now() + self.limits.write;
            self.write_timer.as_mut().reset(at);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of what was written to it within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn wrote<T>(
        &mut self,
        r: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => match self.write_stalled(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.activity.read_some();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(deadline) = this.activity.read_deadline(&this.limits, cx) else {
                    return Poll::Pending;
                };
                if this.read_deadline != Some(deadline) {
                    this.read_deadline = Some(deadline);
                    this.read_timer.as_mut().reset(deadline);
                }
                ready!(this.read_timer.as_mut().poll(cx));
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request within the header-read or idle timeout",
                )))
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.wrote(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.wrote(r, cx)
    }
}

/// The app, with each request's activity tracked and its body under the read deadline.
#[derive(Clone)]
struct Tracked {
    app: axum::Router,
    /// The connection's place under `max_connections`: each request carries it, so a
    /// connection upgraded to a WebSocket keeps it for the socket's life.
    permit: ConnPermit,
    /// The client's address, for handlers (`ConnectInfo`): trusted-proxy auth reads it.
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    body_read: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.begin();
        let guard = ActiveGuard(self.activity.clone());
        let mut req = req.map(|body| Body::new(DeadlineBody::new(body, self.body_read)));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        req.extensions_mut().insert(self.permit.clone());
        let mut app = self.app.clone();
        Box::pin(async move {
            let resp = match tower_service::Service::call(&mut app, req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                guard.0.lock().upgraded = true;
            }
            Ok(resp.map(|body| TrackedBody {
                body,
                guard: Some(guard),
            }))
        })
    }
}

/// A response body that ends its request's activity when it is done or dropped.
struct TrackedBody {
    body: Body,
    guard: Option<ActiveGuard>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() {
            self.guard = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once its read deadline has passed.
struct DeadlineBody {
    body: Incoming,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

/// The request body did not arrive within `server.body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

impl DeadlineBody {
    fn new(body: Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            body,
            limit,
            deadline: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        // The clock starts at the first wait: a body that came with its headers costs no
        // timer at all.
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
