//! The accept loop: HTTP/1.1 on a loopback port, one task per connection, all owned here.
//!
//! Connections are served by hand rather than with `axum::serve` so that a handler can drop its
//! own connection without answering ([`Conn::drop_now`]) and so that stopping closes every open
//! connection, hanging ones included, not only the listener.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower_service::Service;

/// The connection a request arrived on, put in each request's extensions.
#[derive(Clone, Default)]
pub(crate) struct Conn(Arc<Notify>);

impl Conn {
    /// Closes this connection without a response (or mid-body) and never returns.
    pub(crate) async fn drop_now(&self) -> Infallible {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// A running server; stopping it (or dropping it) closes the listener and every connection.
pub(crate) struct Server {
    addr: SocketAddr,
    listener: Arc<TcpListener>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves `router` until stopped.
    ///
    /// # Panics
    /// When no loopback port can be bound; a mock for tests has nothing better to do.
    pub(crate) async fn start(router: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the mock provider");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let listener = Arc::new(listener);
        let (stop, stopped) = watch::channel(false);
        // Owned by `stop`: the loop ends when it is set or dropped, taking its connections.
        tokio::spawn(accept_loop(Arc::clone(&listener), router, stopped));
        Server {
            addr,
            listener,
            stop,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Refuses new connections from the moment it returns; open connections close as soon as
    /// the accept task next runs.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
        // Shutting a listening socket down closes it at once on Linux (new connects are
        // refused) even though the accept task still holds it; elsewhere the task's exit does.
        let _ = socket2::SockRef::from(&*self.listener).shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: Arc<TcpListener>,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        // Set or dropped sender alike end the loop; the guard is not held past this point.
        let stop = async { drop(stopped.wait_for(|stop| *stop).await) };
        tokio::select! {
            biased;
            () = stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, router.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next() => {}
        }
    }
    // Dropping `connections` aborts every connection task, closing their sockets.
}

async fn serve(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let conn = Conn::default();
    let dropped = Arc::clone(&conn.0);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(conn.clone());
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let http =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = http => {}
        () = dropped.notified() => {}
    }
}
