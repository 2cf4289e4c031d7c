//! A connection's outgoing answers and requests (its events come from the session's
//! window): a bounded queue the writer drains. Not a channel, because a channel
//! allocates its first block of slots up front, and an idle session must stay small.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

pub(super) struct Outbox {
    queue: Mutex<VecDeque<String>>,
    pub(super) ready: Notify,
    cap: usize,
}

/// The outbox holds as many frames as it may: the connection does not take them.
#[derive(Debug)]
pub(super) struct Full;

impl Outbox {
    pub(super) fn new(cap: usize) -> Outbox {
        Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            cap,
        }
    }

    pub(super) fn push(&self, frame: String) -> Result<(), Full> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.cap {
            return Err(Full);
        }
        q.push_back(frame);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Everything queued, oldest first.
    pub(super) fn take(&self, out: &mut Vec<String>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(q.drain(..));
        if q.capacity() > 16 {
            q.shrink_to_fit();
        }
    }
}
