//! The ledger's background writer: batches rows, retries failed batches with backoff
//! without ever blocking its queue for longer than one attempt, spills what it cannot keep,
//! and on shutdown writes until its deadline, then spills the rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::spill::Spill;
use super::{Counters, LedgerConfig, LedgerError, Msg, SpendRow, StopReport};
use crate::Store;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Writer {
    store: Store,
    cfg: LedgerConfig,
    counters: Arc<Counters>,
    /// Rows received and not yet written, oldest first.
    pending: VecDeque<SpendRow>,
    /// How many rows at the front of `pending` came from the spill file's replay.
    replaying: usize,
    spill: Option<Spill>,
    /// Rows in the spill file (not in `pending`).
    spilled: u64,
    /// Set while failing: no attempt before this.
    retry_at: Option<Instant>,
    backoff: Duration,
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
        replaying: 0,
        spilled: 0,
        spill,
        retry_at: None,
        backoff: FIRST_BACKOFF,
        last_error: String::new(),
        cfg,
    };
    w.count_spilled().await;
    if w.spilled > 0 {
        tracing::warn!(
            rows = w.spilled,
            "the spend ledger has rows spilled by an earlier run; writing them first"
        );
        w.unspill().await;
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
                    w.stop(Instant::now() + MAX_BACKOFF).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if !w.pending.is_empty() && w.retry_at.is_none() {
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
                self.left_front(n).await;
                if self.counters.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("spend ledger writes work again");
                }
                self.backoff = FIRST_BACKOFF;
                self.retry_at = None;
                self.publish();
                true
            }
            Err(e) => {
                self.last_error = e.to_string();
                self.counters.failing.store(true, Ordering::Release);
                tracing::warn!(
                    rows = n,
                    backlog = self.pending.len() as u64 + self.spilled,
                    "spend ledger write failed, retrying in {:?}: {e}",
                    self.backoff
                );
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                false
            }
        }
    }

    /// Writes every full batch and whatever is left, stopping at the first failure; then,
    /// with the database taking writes, brings spilled rows back.
    async fn write_ready(&mut self) {
        while !self.pending.is_empty() {
            if !self.write_batch().await {
                return;
            }
        }
        if self.spilled > 0 {
            self.unspill().await;
        }
    }

    async fn flush(&mut self) -> Result<(), LedgerError> {
        self.retry_at = None;
        self.write_ready().await;
        while !self.pending.is_empty() {
            if !self.write_batch().await {
                return Err(LedgerError::NotWritten {
                    rows: self.pending.len() as u64 + self.spilled,
                    reason: self.last_error.clone(),
                });
            }
        }
        Ok(())
    }

    /// `n` rows left the front of `pending` (written or spilled): once all the replayed
    /// ones have, the replay file is done with.
    async fn left_front(&mut self, n: usize) {
        if self.replaying == 0 {
            return;
        }
        self.replaying = self.replaying.saturating_sub(n);
        if self.replaying == 0
            && let Some(spill) = self.spill.clone()
        {
            match tokio::task::spawn_blocking(move || spill.replayed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot remove the ledger's replayed spill file: {e}"),
                Err(e) => tracing::warn!("cannot remove the ledger's replayed spill file: {e}"),
            }
        }
    }

    /// Keeps at most `max_buffered` rows in memory: the oldest go to the spill file.
    async fn spill_excess(&mut self) {
        let excess = self.pending.len().saturating_sub(self.cfg.max_buffered);
        if excess == 0 || self.spill.is_none() {
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
                self.left_front(excess).await;
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

    /// Reads the spill file back into the front of `pending` (its rows are older than any
    /// received since).
    async fn unspill(&mut self) {
        if self.replaying > 0 {
            return;
        }
        let Some(spill) = self.spill.clone() else {
            return;
        };
        match tokio::task::spawn_blocking(move || spill.take()).await {
            Ok(Ok((rows, bad))) => {
                if bad > 0 {
                    tracing::error!(
                        lines = bad,
                        "lines of the ledger's spill file could not be read (torn by a crash?); they are skipped"
                    );
                }
                self.spilled = 0;
                self.replaying = rows.len();
                for r in rows.into_iter().rev() {
                    self.pending.push_front(r);
                }
                if self.replaying == 0 {
                    self.replaying = 1;
                    self.left_front(1).await;
                }
            }
            Ok(Err(e)) => tracing::error!("cannot read the ledger's spill file: {e}"),
            Err(e) => tracing::error!("the ledger's spill task failed: {e}"),
        }
        self.publish();
    }

    /// Writes until `deadline`, then spills the rest. Reports where every row went.
    async fn stop(&mut self, deadline: Instant) -> StopReport {
        let mut report = StopReport::default();
        let mut wait = FIRST_BACKOFF;
        loop {
            let before = self.pending.len();
            let attempt = tokio::time::timeout_at(deadline, self.write_batch()).await;
            report.written += (before - self.pending.len()) as u64;
            if self.pending.is_empty() {
                break;
            }
            if !matches!(attempt, Ok(true)) {
                if Instant::now() + wait >= deadline {
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
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
        if self.spilled > 0 && report.spilled == 0 {
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
