//! Agent runs and their events, so that a run can be followed, replayed from any seq and
//! accounted for after its client left or the gateway restarted.
//!
//! Guarantees:
//! - One run per (gateway key, idempotency key), across tasks and instances: a second
//!   insert with the same pair gets the existing run ([`Store::insert_run`]).
//! - A run finishes once: [`Store::finish_run`] changes only a run still queued or running.
//! - A run's events are appended whole or not at all; their seqs are the caller's
//!   (1, 2, 3… per run, given by the one task that owns the run), and a seq written twice
//!   is refused by the primary key rather than stored twice.
//! - Runs left running by a process that stopped are marked `interrupted`, with their
//!   spend read from the ledger ([`Store::interrupt_runs`]).
//!
//! Ids, keys and times are the caller's, as everywhere in the store.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Store, StoreError, values_placeholders};

/// A run's states. Terminal: completed, failed, cancelled, interrupted.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
    /// The process running it stopped before it ended.
    pub const INTERRUPTED: &str = "interrupted";
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    /// The gateway key that owns the run: a stored key's id, or `config:NAME`.
    pub key_id: String,
    pub user_id: Option<String>,
    pub agent: String,
    pub parent_run_id: Option<String>,
    /// The top-level run of its tree (its own id for a top-level run).
    pub root_run_id: String,
    pub depth: i64,
    pub session_id: Option<String>,
    /// Who asked: `ws`, `http`, `schedule`, `channel` or `agent`.
    pub origin: String,
    pub idempotency_key: Option<String>,
    /// A digest of what was asked, to tell a reused idempotency key from a retry.
    pub request_hash: Option<String>,
    pub status: String,
    pub input: serde_json::Value,
    pub output: Option<serde_json::Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The breaker that ended the run, when `error_code` is `breaker_tripped`.
    pub breaker: Option<String>,
    pub counters: RunCounters,
    /// The seq of its newest event (0: none).
    pub last_seq: i64,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// What a run has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounters {
    pub steps: i64,
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_nanos: i64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// One of the terminal [`status`]es.
    pub status: &'static str,
    pub output: Option<serde_json::Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub breaker: Option<String>,
    pub counters: RunCounters,
    pub last_seq: i64,
    pub at_ms: i64,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEventRow {
    pub run_id: String,
    pub seq: i64,
    pub event: String,
    pub data: serde_json::Value,
    pub created_at_ms: i64,
}

/// What [`Store::insert_run`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// The key already has a run with this idempotency key: this one.
    Existing(Box<RunRow>),
}

/// Events per INSERT statement (5 binds each): SQLite binds one by one on its worker
/// thread, so statements stay small there (see [`Store::insert_spend`]).
const EVENTS_PER_STATEMENT_SQLITE: usize = crate::ledger::SQLITE_ROWS_PER_STATEMENT;
const EVENTS_PER_STATEMENT_POSTGRES: usize = 1_000;

const RUN_COLUMNS: &str = "id, key_id, user_id, agent, parent_run_id, root_run_id, depth, \
    session_id, origin, idempotency_key, request_hash, status, input, output, error_code, \
    error_message, breaker, steps, llm_calls, tool_calls, prompt_tokens, completion_tokens, \
    cost_nanos, last_seq, created_at_ms, finished_at_ms, updated_at_ms";

fn json_column(
    row: &AnyRow,
    column: &str,
    id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let raw: Option<String> = row.try_get(column)?;
    raw.map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("runs.{column} of run {id}: {e}")))
}

fn run_from_row(row: &AnyRow) -> Result<RunRow, StoreError> {
    let id: String = row.try_get("id")?;
    let input = json_column(row, "input", &id)?.unwrap_or(serde_json::Value::Null);
    let output = json_column(row, "output", &id)?;
    Ok(RunRow {
        key_id: row.try_get("key_id")?,
        user_id: row.try_get("user_id")?,
        agent: row.try_get("agent")?,
        parent_run_id: row.try_get("parent_run_id")?,
        root_run_id: row.try_get("root_run_id")?,
        depth: row.try_get("depth")?,
        session_id: row.try_get("session_id")?,
        origin: row.try_get("origin")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: row.try_get("request_hash")?,
        status: row.try_get("status")?,
        input,
        output,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        breaker: row.try_get("breaker")?,
        counters: RunCounters {
            steps: row.try_get("steps")?,
            llm_calls: row.try_get("llm_calls")?,
            tool_calls: row.try_get("tool_calls")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cost_nanos: row.try_get("cost_nanos")?,
        },
        last_seq: row.try_get("last_seq")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        id,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

/// Binds a run's counters in the order of the `runs` columns: steps, llm_calls,
/// tool_calls, prompt_tokens, completion_tokens, cost_nanos.
fn bind_counters<'q>(q: AnyQuery<'q>, c: &RunCounters) -> AnyQuery<'q> {
    q.bind(c.steps)
        .bind(c.llm_calls)
        .bind(c.tool_calls)
        .bind(c.prompt_tokens)
        .bind(c.completion_tokens)
        .bind(c.cost_nanos)
}

fn event_from_row(row: &AnyRow) -> Result<RunEventRow, StoreError> {
    let run_id: String = row.try_get("run_id")?;
    let seq: i64 = row.try_get("seq")?;
    let data: String = row.try_get("data")?;
    let data = serde_json::from_str(&data).map_err(|e| {
        StoreError::Corrupt(format!("run_events.data of run {run_id} seq {seq}: {e}"))
    })?;
    Ok(RunEventRow {
        run_id,
        seq,
        event: row.try_get("event")?,
        data,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// Inserts a run as given, unless its key already has a run with the same
    /// idempotency key: then that run is returned and nothing is written. Holds across
    /// tasks and instances (the unique index decides).
    pub async fn insert_run(&self, r: &RunRow) -> Result<Inserted, StoreError> {
        let done = {
            let _write = self.write_permit().await?;
            let sql = format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
                 $25, $26, $27) ON CONFLICT (key_id, idempotency_key) DO NOTHING"
            );
            let c = &r.counters;
            let q = sqlx::query(AssertSqlSafe(sql))
                .bind(&r.id)
                .bind(&r.key_id)
                .bind(&r.user_id)
                .bind(&r.agent)
                .bind(&r.parent_run_id)
                .bind(&r.root_run_id)
                .bind(r.depth)
                .bind(&r.session_id)
                .bind(&r.origin)
                .bind(&r.idempotency_key)
                .bind(&r.request_hash)
                .bind(&r.status)
                .bind(r.input.to_string())
                .bind(r.output.as_ref().map(serde_json::Value::to_string))
                .bind(&r.error_code)
                .bind(&r.error_message)
                .bind(&r.breaker);
            bind_counters(q, c)
                .bind(r.last_seq)
                .bind(r.created_at_ms)
                .bind(r.finished_at_ms)
                .bind(r.updated_at_ms)
                .execute(&*self.pool())
                .await?
        };
        if done.rows_affected() == 1 {
            return Ok(Inserted::New);
        }
        let Some(key) = &r.idempotency_key else {
            return Err(StoreError::Corrupt(format!(
                "run {} was not inserted and has no idempotency key",
                r.id
            )));
        };
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE key_id = $1 AND idempotency_key = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&r.key_id)
            .bind(key)
            .fetch_optional(&*self.pool())
            .await?;
        match row {
            Some(row) => Ok(Inserted::Existing(Box::new(run_from_row(&row)?))),
            None => Err(StoreError::Corrupt(format!(
                "run {} conflicted with a run that is not there",
                r.id
            ))),
        }
    }

    /// The run with this id, if any.
    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Removes a run that never started (refused a place after its row was written): one
    /// still queued or running with no event yet. `false` when it has begun or ended.
    pub async fn delete_unstarted_run(&self, id: &str) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "DELETE FROM runs WHERE id = $1 AND status IN ($2, $3) AND last_seq = 0 \
             AND NOT EXISTS (SELECT 1 FROM run_events WHERE run_id = $1)",
        )
        .bind(id)
        .bind(status::QUEUED)
        .bind(status::RUNNING)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a queued run as running. `false` when it is not queued.
    pub async fn start_run(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE runs SET status = $1, updated_at_ms = $2 WHERE id = $3 AND status = $4",
        )
        .bind(status::RUNNING)
        .bind(at_ms)
        .bind(id)
        .bind(status::QUEUED)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what a running run has used so far.
    pub async fn update_run_progress(
        &self,
        id: &str,
        counters: RunCounters,
        last_seq: i64,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        let q = sqlx::query(
            "UPDATE runs SET steps = $1, llm_calls = $2, tool_calls = $3, prompt_tokens = $4, \
             completion_tokens = $5, cost_nanos = $6, last_seq = $7, updated_at_ms = $8 \
             WHERE id = $9 AND status IN ($10, $11)",
        );
        bind_counters(q, &counters)
            .bind(last_seq)
            .bind(at_ms)
            .bind(id)
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .execute(&*self.pool())
            .await?;
        Ok(())
    }

    /// Ends a run that is still queued or running; `false` (and nothing written) when it
    /// has already ended, so a run ends once whoever tries.
    pub async fn finish_run(&self, id: &str, end: &RunEnd) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let c = &end.counters;
        let q = sqlx::query(
            "UPDATE runs SET status = $1, output = $2, error_code = $3, error_message = $4, \
             breaker = $5, steps = $6, llm_calls = $7, tool_calls = $8, prompt_tokens = $9, \
             completion_tokens = $10, cost_nanos = $11, last_seq = $12, finished_at_ms = $13, \
             updated_at_ms = $13 WHERE id = $14 AND status IN ($15, $16)",
        )
        .bind(end.status)
        .bind(end.output.as_ref().map(serde_json::Value::to_string))
        .bind(&end.error_code)
        .bind(&end.error_message)
        .bind(&end.breaker);
        let done = bind_counters(q, c)
            .bind(end.last_seq)
            .bind(end.at_ms)
            .bind(id)
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .execute(&*self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends events (of one run or several) in one transaction.
    pub async fn append_run_events(&self, events: &[RunEventRow]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let backend = self.backend();
        let per = match backend {
            crate::Backend::Sqlite => EVENTS_PER_STATEMENT_SQLITE,
            crate::Backend::Postgres => EVENTS_PER_STATEMENT_POSTGRES,
        };
        let _write = self.write_permit().await?;
        let mut conn = self.pool().acquire().await?;
        let result = append_events_on(&mut conn, backend, per, events).await;
        if result.is_err() {
            // Closing rolls back whatever SQLite or the server still holds open (see
            // `Store::insert_spend`).
            let _ = conn.close().await;
        }
        result
    }

    /// A run's events with a seq above `after_seq`, oldest first, at most `limit`.
    pub async fn run_events(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<RunEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, seq, event, data, created_at_ms FROM run_events \
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&*self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The seq of a run's newest stored event (0: none).
    pub async fn run_last_event_seq(&self, run_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS s FROM run_events WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(&*self.pool())
        .await?;
        Ok(row.try_get("s")?)
    }

    /// What the ledger says a run spent: (prompt tokens, completion tokens, cost).
    pub async fn run_spend(&self, run_id: &str) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS c, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS n FROM spend WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(&*self.pool())
        .await?;
        Ok((row.try_get("p")?, row.try_get("c")?, row.try_get("n")?))
    }

    /// Marks every run still queued or running as `interrupted`, its counters of tokens and
    /// cost set from the ledger (flush the ledger first), and returns their ids. For a
    /// gateway starting up: whatever was running then was running in a process that is
    /// gone. (Several instances on one database will take the runs whose lease expired;
    /// not yet.)
    pub async fn interrupt_runs(&self, at_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM runs WHERE status IN ($1, $2)")
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .fetch_all(&*self.pool())
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let (prompt, completion, cost) = self.run_spend(&id).await?;
            let _write = self.write_permit().await?;
            let done = sqlx::query(
                "UPDATE runs SET status = $1, error_code = $1, error_message = $2, \
                 prompt_tokens = $3, completion_tokens = $4, cost_nanos = $5, \
                 finished_at_ms = $6, updated_at_ms = $6 WHERE id = $7 AND status IN ($8, $9)",
            )
            .bind(status::INTERRUPTED)
            .bind("the gateway stopped while the run was in flight")
            .bind(prompt)
            .bind(completion)
            .bind(cost)
            .bind(at_ms)
            .bind(&id)
            .bind(status::QUEUED)
            .bind(status::RUNNING)
            .execute(&*self.pool())
            .await?;
            if done.rows_affected() == 1 {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

async fn append_events_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    backend: crate::Backend,
    per: usize,
    events: &[RunEventRow],
) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    for chunk in events.chunks(per) {
        let sql = format!(
            "INSERT INTO run_events (run_id, seq, event, data, created_at_ms) VALUES {}",
            values_placeholders(backend, chunk.len(), 5)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(&e.run_id)
                .bind(e.seq)
                .bind(&e.event)
                .bind(e.data.to_string())
                .bind(e.created_at_ms);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
