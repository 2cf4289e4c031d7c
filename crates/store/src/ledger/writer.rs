//! The ledger's background writer: batches rows, retries failed batches with backoff
//! without ever blocking its queue for longer than one attempt, spills what it cannot keep,
//! reads spilled rows back a slice at a time, and on shutdown writes until its deadline,
//! then spills the rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::spill::Spill;
use super::{Counters, LedgerConfig, LedgerError, Msg, SpendRow, StopReport};
use crate::Store;

/// Failed batches: 0.1 s doubling to 10 s, jittered. A database back within seconds is
/// written at once, one down for long is asked about every few seconds, and instances
/// that lost it together do not come back to it in step.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// A replay in progress: where the next slice starts, and how many of its rows are at
/// the front of `pending`.
#[derive(Debug, Clone, Copy)]
struct Replay {
    offset: u64,
    in_pending: usize,
    eof: bool,
}

struct Writer {
    store: Store,
    cfg: LedgerConfig,
    counters: Arc<Counters>,
    /// Rows received and not yet written, oldest first.
    pending: VecDeque<SpendRow>,
    spill: Option<Spill>,
    replay: Option<Replay>,
    /// Rows in the spill and replay files, not in `pending` (for the health counter).
    spilled: u64,
    /// Set while failing: no attempt before this.
    retry_at: Option<Instant>,
    backoff: Backoff,
    last_error: String,
}

pub(super) async fn run(
    store: Store,
    cfg: LedgerConfig,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
) {
    let spill = cfg.spill_file.clone().map(Spill::new);
    let mut w = Writer {
        store,
        counters,
        pending: VecDeque::with_capacity(cfg.batch_size),
        spill,
        replay: None,
        spilled: 0,
        retry_at: None,
        backoff: BACKOFF,
        last_error: String::new(),
        cfg,
    };
    w.count_spilled().await;
    if w.spilled > 0 {
        tracing::warn!(
            rows = w.spilled,
            "the spend ledger has rows spilled by an earlier run; writing them first"
        );
        w.write_ready().await;
    }
    // `interval` ticks at once; the first flush is one interval away.
    let start = Instant::now() + w.cfg.flush_interval;
    let mut tick = tokio::time::interval_at(start, w.cfg.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let retry_at = w.retry_at;
        let retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Row(row)) => {
                    w.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    w.pending.push_back(*row);
                    w.publish();
                    if w.pending.len() >= w.cfg.batch_size && w.retry_at.is_none() {
                        w.write_ready().await;
                    }
                    if w.pending.len() > w.cfg.max_buffered {
                        w.spill_excess().await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    // Everything sent before the flush request is already in `pending`.
                    let _ = done.send(w.flush().await);
                }
                Some(Msg::Stop { deadline, done }) => {
                    rx.close();
                    while let Ok(msg) = rx.try_recv() {
                        match msg {
                            Msg::Row(row) => {
                                w.counters.queued.fetch_sub(1, Ordering::Relaxed);
                                w.pending.push_back(*row);
                            }
                            Msg::Flush(done) => drop(done),
                            Msg::Stop { done, .. } => drop(done),
                        }
                    }
                    let _ = done.send(w.stop(deadline).await);
                    return;
                }
                None => {
                    w.stop(Instant::now() + Duration::from_secs(10)).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if (!w.pending.is_empty() || w.spilled > 0) && w.retry_at.is_none() {
                    w.write_ready().await;
                }
            }
            () = retry => {
                w.retry_at = None;
                w.write_ready().await;
            }
        }
    }
}

impl Writer {
    /// Makes the backlog visible to [`super::Ledger::health`].
    fn publish(&self) {
        self.counters
            .backlog
            .store(self.pending.len() as u64 + self.spilled, Ordering::Release);
    }

    /// One attempt at the oldest batch. `true` when it went in.
    async fn write_batch(&mut self) -> bool {
        let n = self.pending.len().min(self.cfg.batch_size);
        if n == 0 {
            return true;
        }
        let batch = &self.pending.make_contiguous()[..n];
        match self.store.insert_spend(batch).await {
            Ok(()) => {
                self.pending.drain(..n);
                self.left_front(n);
                if self.counters.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("spend ledger writes work again");
                }
                self.backoff.reset();
                self.retry_at = None;
                self.publish();
                true
            }
            Err(e) => {
                self.last_error = e.to_string();
                self.counters.failing.store(true, Ordering::Release);
                let wait = self.backoff.next_delay();
                tracing::warn!(
                    rows = n,
                    backlog = self.pending.len() as u64 + self.spilled,
                    "spend ledger write failed, retrying in {wait:?}: {e}"
                );
                self.retry_at = Some(Instant::now() + wait);
                false
            }
        }
    }

    /// Writes every batch it has, then the spilled rows a slice at a time, stopping at the
    /// first failure.
    async fn write_ready(&mut self) {
        loop {
            while !self.pending.is_empty() {
                if !self.write_batch().await {
                    return;
                }
            }
            if !self.feed_replay().await {
                return;
            }
        }
    }

    async fn flush(&mut self) -> Result<(), LedgerError> {
        self.retry_at = None;
        self.write_ready().await;
        if self.pending.is_empty() {
            return Ok(());
        }
        Err(LedgerError::NotWritten {
            rows: self.pending.len() as u64 + self.spilled,
            reason: self.last_error.clone(),
        })
    }

    /// `n` rows left the front of `pending` (written or spilled again).
    fn left_front(&mut self, n: usize) {
        if let Some(r) = &mut self.replay {
            r.in_pending = r.in_pending.saturating_sub(n);
        }
    }

    /// Brings the next slice of spilled rows into `pending` once the last one is out of
    /// it; finishes a replay file when all of it is written, and starts on the spill
    /// file after it. `false`: nothing more to replay.
    async fn feed_replay(&mut self) -> bool {
        let Some(spill) = self.spill.clone() else {
            return false;
        };
        loop {
            let replay = match self.replay {
                Some(r) if r.in_pending > 0 => return false,
                Some(r) if r.eof => {
                    let s = spill.clone();
                    if let Err(e) = blocking(move || s.replayed()).await {
                        tracing::warn!("cannot remove the ledger's replayed spill file: {e}");
                        return false;
                    }
                    self.replay = None;
                    continue;
                }
                Some(r) => r,
                None => {
                    if self.spilled == 0 {
                        return false;
                    }
                    let s = spill.clone();
                    match blocking(move || s.open_replay()).await {
                        Ok(true) => {
                            let r = Replay {
                                offset: 0,
                                in_pending: 0,
                                eof: false,
                            };
                            self.replay = Some(r);
                            r
                        }
                        Ok(false) => {
                            self.spilled = 0;
                            self.publish();
                            return false;
                        }
                        Err(e) => {
                            tracing::error!("cannot read the ledger's spill file: {e}");
                            return false;
                        }
                    }
                }
            };
            let slice = (self.cfg.max_buffered / 2).max(self.cfg.batch_size).max(1);
            let s = spill.clone();
            let chunk = match blocking(move || s.read_replay(replay.offset, slice)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cannot read the ledger's spill file: {e}");
                    return false;
                }
            };
            if chunk.bad > 0 {
                tracing::error!(
                    lines = chunk.bad,
                    "lines of the ledger's spill file could not be read (torn by a crash?); they are skipped"
                );
            }
            let n = chunk.rows.len();
            self.spilled = self.spilled.saturating_sub(n as u64);
            for r in chunk.rows.into_iter().rev() {
                self.pending.push_front(r);
            }
            self.replay = Some(Replay {
                offset: chunk.next_offset,
                in_pending: n,
                eof: chunk.eof,
            });
            self.publish();
            if n > 0 {
                return true;
            }
        }
    }

    /// Past `max_buffered` rows in memory, spills the oldest down to half of it, in one
    /// write: one sync for many rows, not one a row.
    async fn spill_excess(&mut self) {
        if self.spill.is_none() {
            return;
        }
        let excess = self.pending.len().saturating_sub(self.cfg.max_buffered / 2);
        if excess == 0 {
            return;
        }
        let rows: Vec<SpendRow> = self.pending.drain(..excess).collect();
        match self.spill_rows(rows).await {
            Ok(n) => {
                tracing::error!(
                    rows = n,
                    in_file = self.spilled,
                    "the database refuses spend rows; spilled the oldest to {}",
                    self.spill_path()
                );
                self.left_front(excess);
            }
            Err(rows) => {
                // Could not spill either: keep them in memory rather than lose them.
                for r in rows.into_iter().rev() {
                    self.pending.push_front(r);
                }
            }
        }
        self.publish();
    }

    /// Appends rows to the spill file; gives them back when that fails.
    async fn spill_rows(&mut self, rows: Vec<SpendRow>) -> Result<u64, Vec<SpendRow>> {
        let Some(spill) = self.spill.clone() else {
            return Err(rows);
        };
        let n = rows.len() as u64;
        let result = tokio::task::spawn_blocking(move || {
            let r = spill.append(&rows);
            (r, rows)
        })
        .await;
        match result {
            Ok((Ok(()), _)) => {
                self.spilled += n;
                Ok(n)
            }
            Ok((Err(e), rows)) => {
                tracing::error!(
                    "cannot write the ledger's spill file {}: {e}",
                    self.spill_path()
                );
                Err(rows)
            }
            Err(e) => {
                tracing::error!("the ledger's spill task failed: {e}");
                Err(Vec::new())
            }
        }
    }

    fn spill_path(&self) -> String {
        self.spill
            .as_ref()
            .map_or_else(String::new, |s| s.path().display().to_string())
    }

    async fn count_spilled(&mut self) {
        let Some(spill) = self.spill.clone() else {
            return;
        };
        self.spilled = tokio::task::spawn_blocking(move || spill.count())
            .await
            .unwrap_or(0);
        self.publish();
    }

    /// Writes until `deadline`, then spills the rest. Reports where every row went.
    async fn stop(&mut self, deadline: Instant) -> StopReport {
        let mut report = StopReport::default();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let before = self.pending.len();
            let attempt = tokio::time::timeout_at(deadline, self.write_batch()).await;
            report.written += before.saturating_sub(self.pending.len()) as u64;
            if self.pending.is_empty() {
                break;
            }
            if !matches!(attempt, Ok(true)) {
                let wait = backoff.next_delay();
                if Instant::now() + wait >= deadline {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        let left: Vec<SpendRow> = self.pending.drain(..).collect();
        let n = left.len() as u64;
        if n > 0 {
            match self.spill_rows(left).await {
                Ok(spilled) => {
                    report.spilled = spilled;
                    tracing::error!(
                        rows = spilled,
                        "the database did not take every spend row before the shutdown deadline; \
                         they are in {} and are written at the next start",
                        self.spill_path()
                    );
                }
                Err(_) => {
                    report.lost = n;
                    tracing::error!(
                        rows = n,
                        "SPEND ROWS LOST: the database did not take them before the shutdown \
                         deadline and there is no spill file to keep them ({})",
                        self.last_error
                    );
                }
            }
        }
        if self.spilled > report.spilled {
            tracing::error!(
                rows = self.spilled,
                "spend rows are still in {}; they are written at the next start",
                self.spill_path()
            );
        }
        self.publish();
        report
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
