//! Spend reports: totals grouped by key, user, model, provider or day over a time range.
//! The admin API (JSON and CSV) and `sluice spend` read the same query.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::Row;

use crate::{Backend, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    User,
    Agent,
    /// The agent run (`run_id`); calls outside runs are the empty group.
    Run,
    Model,
    Provider,
    Day,
    /// The chat channel (`slack`, `telegram:BOT`, `whatsapp`); other calls are the empty group.
    Channel,
    /// The chat platform's user.
    ChannelUser,
    /// The session (a conversation).
    Session,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "user" => GroupBy::User,
            "agent" => GroupBy::Agent,
            "run" => GroupBy::Run,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "day" => GroupBy::Day,
            "channel" => GroupBy::Channel,
            "channel_user" => GroupBy::ChannelUser,
            "session" => GroupBy::Session,
            _ => return None,
        })
    }

    /// The grouping expression. A fixed set, never client text: nothing is spliced in.
    fn expr(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (GroupBy::Key, _) => "COALESCE(key_id, '')",
            (GroupBy::User, _) => "COALESCE(user_id, '')",
            (GroupBy::Agent, _) => "COALESCE(agent_id, '')",
            (GroupBy::Run, _) => "COALESCE(run_id, '')",
            (GroupBy::Channel, _) => "COALESCE(channel, '')",
            (GroupBy::ChannelUser, _) => "COALESCE(channel_user, '')",
            (GroupBy::Session, _) => "COALESCE(session_id, '')",
            (GroupBy::Model, _) => "provider || ':' || model",
            (GroupBy::Provider, _) => "provider",
            (GroupBy::Day, Backend::Sqlite) => {
                "strftime('%Y-%m-%d', created_at_ms / 1000, 'unixepoch')"
            }
            (GroupBy::Day, Backend::Postgres) => {
                "to_char(to_timestamp(created_at_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendLine {
    pub group: String,
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nanos: i64,
    /// What calls answered from the response cache saved (their answers' first cost).
    pub saved_nanos: i64,
    /// Calls whose tokens Sluice counted itself.
    pub estimated_calls: i64,
}

impl Store {
    /// Totals per group for rows with `from_ms <= created_at_ms < to_ms`, largest cost
    /// first.
    pub async fn spend_report(
        &self,
        by: GroupBy,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SpendLine>, StoreError> {
        let g = by.expr(self.backend());
        let sql = format!(
            "SELECT {g} AS grp, CAST(COUNT(*) AS BIGINT) AS calls, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos, \
             CAST(COALESCE(SUM(saved_nanos), 0) AS BIGINT) AS saved_nanos, \
             CAST(COALESCE(SUM(CASE WHEN estimated THEN 1 ELSE 0 END), 0) AS BIGINT) AS estimated_calls \
             FROM spend WHERE created_at_ms >= $1 AND created_at_ms < $2 \
             GROUP BY grp ORDER BY cost_nanos DESC, grp"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&*self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SpendLine {
                    group: r.try_get("grp")?,
                    calls: r.try_get("calls")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    cost_nanos: r.try_get("cost_nanos")?,
                    saved_nanos: r.try_get("saved_nanos")?,
                    estimated_calls: r.try_get("estimated_calls")?,
                })
            })
            .collect()
    }

    /// Number of spend rows, for tests and status.
    pub async fn count_spend(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM spend")
            .fetch_one(&*self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}

impl Store {
    /// The newest `limit` ledger rows, newest first (for status views and tests).
    pub async fn recent_spend(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::ledger::SpendRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, call_seq, key_id, user_id, agent_id, run_id, provider, model, \
             prompt_tokens, completion_tokens, cached_tokens, cost_nanos, \
             CAST(CASE WHEN estimated THEN 1 ELSE 0 END AS BIGINT) AS estimated, status, \
             latency_ms, created_at_ms, channel, channel_user, session_id, saved_nanos FROM spend ORDER BY created_at_ms DESC, request_id, call_seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&*self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::ledger::SpendRow {
                    request_id: r.try_get("request_id")?,
                    call_seq: r.try_get("call_seq")?,
                    key_id: r.try_get("key_id")?,
                    user_id: r.try_get("user_id")?,
                    agent_id: r.try_get("agent_id")?,
                    run_id: r.try_get("run_id")?,
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    cost_nanos: r.try_get("cost_nanos")?,
                    estimated: r.try_get::<i64, _>("estimated")? != 0,
                    status: r.try_get("status")?,
                    latency_ms: r.try_get("latency_ms")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    channel: r.try_get("channel")?,
                    channel_user: r.try_get("channel_user")?,
                    session_id: r.try_get("session_id")?,
                    saved_nanos: r.try_get("saved_nanos")?,
                })
            })
            .collect()
    }
}
