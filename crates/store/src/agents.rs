//! The scheduler's shared state: agent breakers and schedule state. Every instance reads
//! them on its refresh, so a trip, a pause or an operator's reset anywhere holds
//! everywhere within one refresh, and across restarts.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// An agent's breaker that is not closed (a closed one has no row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentBreakerRow {
    pub agent: String,
    /// `open` or `half_open`.
    pub state: String,
    /// Failed runs in a row that opened it.
    pub failures: i64,
    /// Times it opened in a row (each re-open doubles the open time).
    pub trips: i64,
    pub opened_at_ms: i64,
    /// When an open breaker lets one probe run through.
    pub until_ms: i64,
    pub reason: String,
    pub updated_at_ms: i64,
}

/// A schedule's state (the cron itself is config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleRow {
    pub agent: String,
    pub paused: bool,
    pub reason: Option<String>,
    /// A paused schedule resumes by itself then; `None`: only an operator resumes it.
    pub paused_until_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl Store {
    /// Writes an agent's breaker as it is now (open or half-open).
    pub async fn put_agent_breaker(&self, b: &AgentBreakerRow) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO agent_breakers (agent, state, failures, trips, opened_at_ms, until_ms, \
             reason, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (agent) DO UPDATE SET state = excluded.state, \
             failures = excluded.failures, trips = excluded.trips, \
             opened_at_ms = excluded.opened_at_ms, until_ms = excluded.until_ms, \
             reason = excluded.reason, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&b.agent)
        .bind(&b.state)
        .bind(b.failures)
        .bind(b.trips)
        .bind(b.opened_at_ms)
        .bind(b.until_ms)
        .bind(&b.reason)
        .bind(b.updated_at_ms)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    /// Closes an agent's breaker; `false` when it was not open.
    pub async fn close_agent_breaker(&self, agent: &str) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query("DELETE FROM agent_breakers WHERE agent = $1")
            .bind(agent)
            .execute(&*self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every breaker that is not closed.
    pub async fn agent_breakers(&self) -> Result<Vec<AgentBreakerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent, state, failures, trips, opened_at_ms, until_ms, reason, updated_at_ms \
             FROM agent_breakers ORDER BY agent",
        )
        .fetch_all(&*self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentBreakerRow {
                    agent: r.try_get("agent")?,
                    state: r.try_get("state")?,
                    failures: r.try_get("failures")?,
                    trips: r.try_get("trips")?,
                    opened_at_ms: r.try_get("opened_at_ms")?,
                    until_ms: r.try_get("until_ms")?,
                    reason: r.try_get("reason")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }

    /// Writes a schedule's state.
    pub async fn put_schedule(&self, s: &ScheduleRow) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO schedules (agent, paused, reason, paused_until_ms, last_fire_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (agent) DO UPDATE SET paused = excluded.paused, \
             reason = excluded.reason, paused_until_ms = excluded.paused_until_ms, \
             last_fire_ms = excluded.last_fire_ms, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&s.agent)
        .bind(s.paused)
        .bind(&s.reason)
        .bind(s.paused_until_ms)
        .bind(s.last_fire_ms)
        .bind(s.updated_at_ms)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    /// Records a fire of a schedule, making its state if it has none. An earlier fire than
    /// the one stored changes nothing: instances record the same fires in any order.
    pub async fn schedule_fired(
        &self,
        agent: &str,
        fire_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO schedules (agent, paused, reason, paused_until_ms, last_fire_ms, \
             updated_at_ms) VALUES ($1, $2, NULL, NULL, $3, $4) \
             ON CONFLICT (agent) DO UPDATE SET last_fire_ms = excluded.last_fire_ms, \
             updated_at_ms = excluded.updated_at_ms \
             WHERE schedules.last_fire_ms IS NULL OR schedules.last_fire_ms < excluded.last_fire_ms",
        )
        .bind(agent)
        .bind(false)
        .bind(fire_ms)
        .bind(now_ms)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    /// Pauses a schedule with its reason, until `until_ms` (`None`: until an operator
    /// resumes it). Its last fire is kept.
    pub async fn pause_schedule(
        &self,
        agent: &str,
        reason: &str,
        until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO schedules (agent, paused, reason, paused_until_ms, last_fire_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, NULL, $5) \
             ON CONFLICT (agent) DO UPDATE SET paused = excluded.paused, \
             reason = excluded.reason, paused_until_ms = excluded.paused_until_ms, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(agent)
        .bind(true)
        .bind(reason)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    /// Resumes a paused schedule (an operator's resume); `false` when it was not paused.
    pub async fn resume_schedule(&self, agent: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE schedules SET paused = $1, reason = NULL, paused_until_ms = NULL, \
             updated_at_ms = $2 WHERE agent = $3 AND paused",
        )
        .bind(false)
        .bind(now_ms)
        .bind(agent)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Resumes a schedule whose pause has a time that has passed by `now_ms` (the schedule
    /// resuming by itself); `false` when it was not paused so. A pause until an operator
    /// resumes it, or one made again since, is left as it is.
    pub async fn resume_schedule_due(&self, agent: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE schedules SET paused = $1, reason = NULL, paused_until_ms = NULL, \
             updated_at_ms = $2 WHERE agent = $3 AND paused \
             AND paused_until_ms IS NOT NULL AND paused_until_ms <= $2",
        )
        .bind(false)
        .bind(now_ms)
        .bind(agent)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The state of every schedule that has one.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(
            // The Any driver reads no SQLite BOOLEAN: read as a number on both.
            "SELECT agent, CAST(CASE WHEN paused THEN 1 ELSE 0 END AS BIGINT) AS paused, reason, \
             paused_until_ms, last_fire_ms, updated_at_ms FROM schedules ORDER BY agent",
        )
        .fetch_all(&*self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRow {
                    agent: r.try_get("agent")?,
                    paused: r.try_get::<i64, _>("paused")? != 0,
                    reason: r.try_get("reason")?,
                    paused_until_ms: r.try_get("paused_until_ms")?,
                    last_fire_ms: r.try_get("last_fire_ms")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }
}
