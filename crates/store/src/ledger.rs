//! The spend ledger: one row per provider call, written by a batched background writer so
//! that no request waits on the database.
//!
//! Guarantees: [`Ledger::record`] never blocks; rows are inserted in batches of up to
//! `batch_size` or every `flush_interval`, whichever comes first; a failed batch is kept
//! and retried (with backoff) rather than dropped; [`Ledger::shutdown`] drains the queue
//! and flushes, so a clean stop loses nothing. Each row's `(request_id, call_seq)` is
//! unique and inserts use `ON CONFLICT DO NOTHING`, so a batch retried after an ambiguous
//! failure is written exactly once. A crash loses what was queued and not yet flushed:
//! at most one flush interval of rows. When the queue is full (the database is down for
//! long) new rows are counted in [`Ledger::dropped`] and logged, not waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::AssertSqlSafe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{Backend, Store, StoreError, values_placeholders};

/// One provider call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    pub request_id: String,
    /// The call's number within its request (retries and fallbacks each make one).
    pub call_seq: i64,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nanos: i64,
    /// Tokens were counted by Sluice, not reported by the provider.
    pub estimated: bool,
    /// `ok`, or the failure class (`rate_limited`, `timeout`, `stream_cut`…).
    pub status: String,
    pub latency_ms: i64,
    pub created_at_ms: i64,
}

const COLUMNS: usize = 16;

/// Rows per INSERT on SQLite (see [`Store::insert_spend`]).
pub const SQLITE_ROWS_PER_STATEMENT: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct LedgerConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batch_size: 500,
            flush_interval: Duration::from_millis(500),
            queue_capacity: 100_000,
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "rows are nearly every message; boxing each would add an allocation per call"
)]
enum Msg {
    Row(SpendRow),
    Flush(oneshot::Sender<()>),
    Stop,
}

/// The writer's handle. Cloning shares the queue.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Row(_) => "Row",
            Msg::Flush(_) => "Flush",
            Msg::Stop => "Stop",
        })
    }
}

impl Ledger {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, cfg: LedgerConfig) -> Ledger {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let task = tokio::spawn(writer(store, cfg, rx));
        Ledger {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// Queues a row; never waits.
    pub fn record(&self, row: SpendRow) {
        if let Err(e) = self.tx.try_send(Msg::Row(row)) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                dropped_total = n,
                "spend ledger queue is full or closed; a row was not recorded: {e}"
            );
        }
    }

    /// Rows that could not be queued since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far; returns when it is in the database.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes every queued row and ends the writer. Call it once nothing records any
    /// more (after the server stopped); rows recorded later are counted as dropped.
    pub async fn shutdown(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(task) = task else { return };
        if self.tx.send(Msg::Stop).await.is_ok() {
            let _ = task.await;
        }
    }
}

async fn writer(store: Store, cfg: LedgerConfig, mut rx: mpsc::Receiver<Msg>) {
    let mut buf: Vec<SpendRow> = Vec::with_capacity(cfg.batch_size);
    // `interval` ticks at once; the first flush is one interval away.
    let start = tokio::time::Instant::now() + cfg.flush_interval;
    let mut tick = tokio::time::interval_at(start, cfg.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Row(row)) => {
                    buf.push(row);
                    if buf.len() >= cfg.batch_size {
                        write_all(&store, &mut buf, cfg.batch_size).await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    // Everything sent before the flush request is already in `buf`.
                    write_all(&store, &mut buf, cfg.batch_size).await;
                    let _ = done.send(());
                }
                Some(Msg::Stop) => {
                    rx.close();
                    while let Ok(msg) = rx.try_recv() {
                        match msg {
                            Msg::Row(row) => buf.push(row),
                            Msg::Flush(done) => drop(done),
                            Msg::Stop => {}
                        }
                    }
                    write_all(&store, &mut buf, cfg.batch_size).await;
                    return;
                }
                None => {
                    write_all(&store, &mut buf, cfg.batch_size).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if !buf.is_empty() {
                    write_all(&store, &mut buf, cfg.batch_size).await;
                }
            }
        }
    }
}

/// Writes `buf` in batches, retrying a failed batch with backoff until it goes in. A
/// database that stays down holds the rows here (and the queue fills behind them).
async fn write_all(store: &Store, buf: &mut Vec<SpendRow>, batch: usize) {
    while !buf.is_empty() {
        let n = buf.len().min(batch);
        let mut wait = Duration::from_millis(100);
        loop {
            match store.insert_spend(&buf[..n]).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(
                        rows = n,
                        "spend ledger write failed, retrying in {wait:?}: {e}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
        buf.drain(..n);
    }
}

impl Store {
    /// Inserts rows in one transaction; rows already present are skipped. Postgres gets
    /// one multi-row statement (one round trip). SQLite, in-process, gets statements of
    /// [`SQLITE_ROWS_PER_STATEMENT`] rows: sqlx binds a statement's parameters one by one
    /// on SQLite's worker thread, and a 500-row statement (8,000 binds) cost ~160 µs per
    /// row against ~16–40 µs with 10-row statements (measured on 10,000-row batches).
    pub async fn insert_spend(&self, rows: &[SpendRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let per_statement = match self.backend() {
            Backend::Postgres => rows.len(),
            Backend::Sqlite => SQLITE_ROWS_PER_STATEMENT,
        };
        let mut tx = self.pool().begin().await?;
        for chunk in rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO spend (request_id, call_seq, key_id, user_id, agent_id, run_id, provider, model, \
                 prompt_tokens, completion_tokens, cached_tokens, cost_nanos, estimated, status, latency_ms, \
                 created_at_ms) VALUES {} ON CONFLICT (request_id, call_seq) DO NOTHING",
                values_placeholders(self.backend(), chunk.len(), COLUMNS)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(&r.request_id)
                    .bind(r.call_seq)
                    .bind(&r.key_id)
                    .bind(&r.user_id)
                    .bind(&r.agent_id)
                    .bind(&r.run_id)
                    .bind(&r.provider)
                    .bind(&r.model)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cost_nanos)
                    .bind(r.estimated)
                    .bind(&r.status)
                    .bind(r.latency_ms)
                    .bind(r.created_at_ms);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
