//! A run's events: numbered (1, 2, 3… per run) by the one task that runs it, kept in a
//! bounded ring for live followers, and written to the store by one batching writer, so
//! that a follower who comes late, or after a restart, replays from the store what a live
//! one saw. The ring never drops an event the store does not have yet: a follower always
//! finds every seq in one place or the other.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use sluice_store::Store;
use sluice_store::runs::RunEventRow;
use tokio::sync::{Notify, mpsc};

/// Events a run keeps in memory for its followers (older ones are read from the store).
const RING_EVENTS: usize = 256;
/// Events written in one transaction at most.
const BATCH: usize = 512;
/// Attempts to write a batch before its events are given up (and the log says so).
const WRITE_ATTEMPTS: u32 = 6;

/// One event as followers get it: `data` is the JSON sent and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub seq: u64,
    pub event: &'static str,
    pub data: Arc<Value>,
}

#[derive(Debug, Default)]
struct LogState {
    ring: VecDeque<RunEvent>,
    last_seq: u64,
    /// Every event up to this seq is in the store (or was given up).
    persisted: u64,
}

/// The live log of one run (its own stream; a parent's stream also carries its children's
/// events).
#[derive(Debug)]
pub struct RunLog {
    pub run_id: String,
    state: Mutex<LogState>,
    /// Woken at every new event and every write.
    changed: Notify,
    writer: Writer,
}

impl RunLog {
    pub fn new(run_id: String, writer: Writer) -> Arc<RunLog> {
        Arc::new(RunLog {
            run_id,
            state: Mutex::default(),
            changed: Notify::new(),
            writer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event whose data is made for its seq, queues it for the store and wakes
    /// the followers. Returns the seq.
    pub fn emit(self: &Arc<Self>, event: &'static str, data: impl FnOnce(u64) -> Value) -> u64 {
        let mut st = self.lock();
        let seq = st.last_seq + 1;
        st.last_seq = seq;
        let data = Arc::new(data(seq));
        st.ring.push_back(RunEvent {
            seq,
            event,
            data: data.clone(),
        });
        while st.ring.len() > RING_EVENTS && st.ring.front().is_some_and(|e| e.seq <= st.persisted)
        {
            st.ring.pop_front();
        }
        drop(st);
        self.writer.send(self.clone(), seq, event, data);
        self.changed.notify_waiters();
        seq
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    fn persisted_to(&self, seq: u64) {
        let mut st = self.lock();
        st.persisted = st.persisted.max(seq);
        while st.ring.len() > RING_EVENTS && st.ring.front().is_some_and(|e| e.seq <= st.persisted)
        {
            st.ring.pop_front();
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Waits until every event emitted so far is in the store.
    pub async fn flushed(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let st = self.lock();
                if st.persisted >= st.last_seq {
                    return;
                }
            }
            changed.await;
        }
    }

    /// The events after `after` that the ring holds, or `None` when some of them are
    /// only in the store now. Empty: nothing new yet.
    fn after(&self, after: u64) -> Option<Vec<RunEvent>> {
        let st = self.lock();
        match st.ring.front() {
            Some(first) if first.seq > after + 1 => None,
            _ => Some(st.ring.iter().filter(|e| e.seq > after).cloned().collect()),
        }
    }
}

/// The one task that writes every run's events to the store, in batches.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<(Arc<RunLog>, RunEventRow)>,
}

impl Writer {
    /// Starts the writer; it ends when every sender is gone, after writing what it got.
    pub fn start(store: Store) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(store, rx));
        (Writer { tx }, task)
    }

    fn send(&self, log: Arc<RunLog>, seq: u64, event: &'static str, data: Arc<Value>) {
        let row = RunEventRow {
            run_id: log.run_id.clone(),
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
            event: event.to_owned(),
            data: Value::clone(&data),
            created_at_ms: sluice_service::ids::now_ms(),
        };
        if let Err(mpsc::error::SendError((log, _))) = self.tx.send((log, row)) {
            // The writer is gone (the process is stopping): nobody will wait on it.
            log.persisted_to(seq);
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::UnboundedReceiver<(Arc<RunLog>, RunEventRow)>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let rows: Vec<RunEventRow> = batch.iter().map(|(_, r)| r.clone()).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match store.append_run_events(&rows).await {
                Ok(()) => break,
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!("cannot write run events (attempt {attempt}): {e}");
                    tokio::time::sleep(sluice_backoff::full_jitter(
                        Duration::from_millis(50),
                        Duration::from_secs(2),
                        attempt,
                    ))
                    .await;
                }
                Err(e) => {
                    tracing::error!(
                        events = rows.len(),
                        "run events given up after {attempt} attempts: {e}"
                    );
                    break;
                }
            }
        }
        for (log, row) in batch.drain(..) {
            log.persisted_to(u64::try_from(row.seq).unwrap_or(0));
        }
    }
}

/// A follower of one run: the events after a seq, from the store and then live, until
/// the run's own terminal event.
pub struct Follow {
    run_id: String,
    after: u64,
    store: Store,
    live: Option<Arc<RunLog>>,
    buf: VecDeque<RunEvent>,
    done: bool,
}

/// Events read from the store in one query.
const PAGE: u32 = 256;

impl Follow {
    pub(crate) fn new(run_id: String, after: u64, store: Store, live: Option<Arc<RunLog>>) -> Self {
        Follow {
            run_id,
            after,
            store,
            live,
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// The next event; `None` once the run's terminal event was given (or, for a run that
    /// is not running here, when the store has no more). A store error ends it too.
    pub async fn next(&mut self) -> Option<RunEvent> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                self.after = e.seq;
                if sluice_protocol::runs::events::is_terminal(e.event)
                    && e.data.get("run_id").and_then(Value::as_str) == Some(&self.run_id)
                {
                    self.done = true;
                    self.buf.clear();
                }
                return Some(e);
            }
            if self.done {
                return None;
            }
            match self.live.clone() {
                Some(log) => {
                    let changed = log.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    match log.after(self.after) {
                        Some(events) if events.is_empty() => changed.await,
                        Some(events) => self.buf.extend(events),
                        None => self.read_store().await?,
                    }
                }
                None => {
                    self.read_store().await?;
                    if self.buf.is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    async fn read_store(&mut self) -> Option<()> {
        let after = i64::try_from(self.after).unwrap_or(i64::MAX);
        match self.store.run_events(&self.run_id, after, PAGE).await {
            Ok(rows) => {
                self.buf.extend(rows.into_iter().filter_map(stored_event));
                Some(())
            }
            Err(e) => {
                tracing::warn!(run = %self.run_id, "cannot read the run's events: {e}");
                None
            }
        }
    }
}

/// A stored event with a name this build knows (others are skipped).
fn stored_event(row: RunEventRow) -> Option<RunEvent> {
    let event = sluice_protocol::runs::events::ALL
        .iter()
        .find(|e| **e == row.event)?;
    Some(RunEvent {
        seq: u64::try_from(row.seq).ok()?,
        event,
        data: Arc::new(row.data),
    })
}
