//! The session's events as the application sees them, with what happened to the
//! connection in between: [`Client::events`](crate::Client::events) hands out an
//! [`Events`] subscription.

use futures_util::Stream;
use sluice_protocol::Event;
use tokio::sync::broadcast;

/// One item of [`Events`].
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A session event, in `seq` order: each seq once, none skipped unless a
    /// [`SessionEvent::Gap`] came before it.
    Event(Event),
    /// The connection dropped; the client is reconnecting. Calls in flight failed with
    /// [`CallError::Disconnected`](crate::CallError::Disconnected).
    Disconnected { reason: String },
    /// Connected again. `resumed: false`: the gateway no longer had the session (it
    /// ended while the client was away, or belonged to another key); a new one started,
    /// numbered from 1, and the old session's undelivered events are lost.
    Reconnected { session_id: String, resumed: bool },
    /// Events were lost: the gateway no longer held some events after the last one
    /// delivered (`hello.replay_gap`).
    Gap(Gap),
    /// This subscriber fell behind by this many items and missed them (the session's
    /// events still reached other subscribers and chat streams; nothing is lost on the
    /// wire). Read faster or raise [`ClientConfig::event_buffer`](crate::ClientConfig).
    Lagged(u64),
}

/// Events the gateway no longer had when the client resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The last event delivered before the connection dropped.
    pub last_seq: u64,
    /// The first event the gateway still had: events `last_seq + 1 .. oldest_seq` are
    /// lost. When the gateway restarted in between, `oldest_seq` is `last_seq + 1` and
    /// what was sent after `last_seq` before the restart is lost (`session.history`
    /// still has the stored messages).
    pub oldest_seq: u64,
}

/// A subscription to the session's events, from the moment it was made. Ends (`None`)
/// when the client stops for good.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: broadcast::Receiver<SessionEvent>,
}

impl Events {
    /// The next item; `None` once the client has stopped and every item was read.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(SessionEvent::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The same items as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = SessionEvent> + Send + Unpin + 'static {
        Box::pin(futures_util::stream::unfold(
            self,
            |mut events| async move {
                let item = events.recv().await?;
                Some((item, events))
            },
        ))
    }
}
