//! WebSocket sessions and their messages, so that a session outlives its connection and
//! the gateway process: `session.history` after a restart reads what is here.
//!
//! Guarantees:
//! - A session's messages get seqs 1, 2, 3… in the order their appends committed, with no
//!   gap and no duplicate, however many tasks or gateway instances append at once
//!   ([`Store::append_messages`]).
//! - An append is written whole or not at all, and reported written only once committed.
//! - Content and metadata are JSON; a stored value that is not is reported as
//!   [`StoreError::Corrupt`], never a panic.
//!
//! Ids, keys and times are the caller's, as everywhere in the store.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Backend, Store, StoreError, values_placeholders};

/// Attempts at an append whose seqs collide with another writer's before it gives up.
/// Appends that go through [`Store::append_messages`] do not collide (the session row
/// serialises them); a collision means rows written some other way, and one retry
/// resynchronises past them.
const MAX_ATTEMPTS: usize = 5;

/// Messages per INSERT statement. SQLite binds parameters one by one on its worker
/// thread, so small statements are faster there (see [`Store::insert_spend`]); Postgres
/// takes at most 65,535 binds a statement (5 a row).
const ROWS_PER_STATEMENT_SQLITE: usize = crate::ledger::SQLITE_ROWS_PER_STATEMENT;
const ROWS_PER_STATEMENT_POSTGRES: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    /// A second name for the session, unique across the store ([`Store::session_by_key`]).
    pub session_key: String,
    /// The gateway key that owns the session: a stored key's id, or `config:NAME`.
    /// `None` only for sessions stored before owners were recorded.
    pub key_id: Option<String>,
    pub agent: Option<String>,
    pub channel: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at_ms: i64,
    /// Last activity, as the caller reports it ([`Store::touch_session`]); appending
    /// messages does not change it.
    pub updated_at_ms: i64,
}

/// A message to append; its seq is given by the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub role: String,
    /// The canonical message (an OpenAI chat message).
    pub content: serde_json::Value,
    pub created_at_ms: i64,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    pub session_id: String,
    /// 1, 2, 3… within the session.
    pub seq: i64,
    pub role: String,
    pub content: serde_json::Value,
    pub created_at_ms: i64,
}

const SESSION_COLUMNS: &str =
    "id, session_key, key_id, agent, channel, metadata, created_at_ms, updated_at_ms";

fn session_from_row(row: &AnyRow) -> Result<SessionRow, StoreError> {
    let metadata: Option<String> = row.try_get("metadata")?;
    let metadata = metadata
        .map(|m| serde_json::from_str(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("sessions.metadata: {e}")))?;
    Ok(SessionRow {
        id: row.try_get("id")?,
        session_key: row.try_get("session_key")?,
        key_id: row.try_get("key_id")?,
        agent: row.try_get("agent")?,
        channel: row.try_get("channel")?,
        metadata,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<MessageRow, StoreError> {
    let session_id: String = row.try_get("session_id")?;
    let seq: i64 = row.try_get("seq")?;
    let content: String = row.try_get("content")?;
    let content = serde_json::from_str(&content).map_err(|e| {
        StoreError::Corrupt(format!(
            "messages.content of session {session_id} seq {seq}: {e}"
        ))
    })?;
    Ok(MessageRow {
        session_id,
        seq,
        role: row.try_get("role")?,
        content,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Store {
    /// Inserts a session as given. Fails when its id or `session_key` is taken.
    pub async fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        let metadata = s.metadata.as_ref().map(serde_json::Value::to_string);
        let sql = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&s.id)
            .bind(&s.session_key)
            .bind(&s.key_id)
            .bind(&s.agent)
            .bind(&s.channel)
            .bind(metadata)
            .bind(s.created_at_ms)
            .bind(s.updated_at_ms)
            .execute(&*self.pool())
            .await?;
        Ok(())
    }

    /// The session with this id, if any.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The session with this `session_key`, if any.
    pub async fn session_by_key(
        &self,
        session_key: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_key = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(session_key)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Records activity at `now_ms`. The time only moves forward: an instance whose clock
    /// lags cannot make a live session look idle. `false` when there is no such session.
    pub async fn touch_session(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE sessions SET updated_at_ms = \
             CASE WHEN updated_at_ms < $1 THEN $1 ELSE updated_at_ms END WHERE id = $2",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sessions of `key_id` active at or after `updated_since_ms`, for a per-key cap.
    pub async fn count_sessions(
        &self,
        key_id: &str,
        updated_since_ms: i64,
    ) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM sessions \
             WHERE key_id = $1 AND updated_at_ms >= $2",
        )
        .bind(key_id)
        .bind(updated_since_ms)
        .fetch_one(&*self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Appends messages to a session in one transaction and returns their seqs, in order:
    /// the session's next ones (1, 2, 3… from its first message), with no gap and no
    /// duplicate even when several tasks or instances append to the session at once.
    /// Fails with [`StoreError::SessionNotFound`] when there is no such session.
    ///
    /// The seqs come from the session row's `last_seq`, bumped by an UPDATE that holds the
    /// row (Postgres) or the write lock (SQLite) until the messages are committed, so
    /// concurrent appends to one session queue instead of colliding. Should the seqs
    /// still collide (messages written some other way), the `UNIQUE (session_id, seq)`
    /// constraint refuses them, the transaction is retried past the highest stored seq,
    /// and after 5 attempts it fails with [`StoreError::SessionContended`]. Appending
    /// does not change the session's `updated_at_ms` ([`Store::touch_session`] does).
    ///
    /// A failed attempt closes its connection rather than handing it back to the pool,
    /// for the reason given at [`Store::insert_spend`].
    pub async fn append_messages(
        &self,
        session_id: &str,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let _write = self.write_permit().await?;
        let pool = self.pool();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut conn = pool.acquire().await?;
            let result = self.append_on(&mut conn, session_id, messages).await;
            let Err(e) = result else {
                return result;
            };
            // Closing rolls back whatever SQLite or the server still holds open.
            let _ = conn.close().await;
            let collided =
                matches!(&e, StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation());
            if !collided {
                return Err(e);
            }
            tracing::warn!(
                session_id,
                attempt,
                "message seqs collided with another writer's; retrying"
            );
        }
        Err(StoreError::SessionContended(session_id.to_owned()))
    }

    async fn append_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        session_id: &str,
        messages: &[NewMessage],
    ) -> Result<Vec<i64>, StoreError> {
        use sqlx::Connection;
        let count = i64::try_from(messages.len()).unwrap_or(i64::MAX);
        let mut tx = conn.begin().await?;
        // The session row is written first, so it is held (and, on SQLite, the write lock
        // taken) before anything is read. The highest stored seq only matters when rows
        // were written without bumping `last_seq`; it is one step down an index.
        let bumped = sqlx::query(
            "UPDATE sessions SET last_seq = $1 + CASE \
             WHEN last_seq >= (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = $2) \
             THEN last_seq \
             ELSE (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = $2) END \
             WHERE id = $2 RETURNING last_seq",
        )
        .bind(count)
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(bumped) = bumped else {
            return Err(StoreError::SessionNotFound(session_id.to_owned()));
        };
        let last: i64 = bumped.try_get("last_seq")?;
        let first = last - count + 1;
        let per_statement = match self.backend() {
            Backend::Sqlite => ROWS_PER_STATEMENT_SQLITE,
            Backend::Postgres => ROWS_PER_STATEMENT_POSTGRES,
        };
        let mut seq = first;
        for chunk in messages.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO messages (session_id, seq, role, content, created_at_ms) VALUES {}",
                values_placeholders(self.backend(), chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(session_id)
                    .bind(seq)
                    .bind(&m.role)
                    .bind(m.content.to_string())
                    .bind(m.created_at_ms);
                seq += 1;
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((first..=last).collect())
    }

    /// The newest `limit` messages of a session with a seq below `before_seq` (all of
    /// them when `None`), oldest first: pages of history, walked backwards by passing the
    /// first seq of one page as the next page's `before_seq`. Empty for an unknown
    /// session.
    pub async fn session_messages(
        &self,
        session_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT session_id, seq, role, content, created_at_ms FROM messages \
             WHERE session_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(session_id)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&*self.pool())
        .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }
}
