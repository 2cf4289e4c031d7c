//! Keys stopped by the spend-velocity breaker. Every instance reads the open trips on
//! each refresh, so a trip (or a reset) anywhere applies everywhere within it, and across
//! restarts.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trip {
    /// A stored key's id, or `config:NAME` for a key from the config.
    pub key_id: String,
    pub tripped_at_ms: i64,
    /// When it closes by itself; `None`: only an operator's reset closes it.
    pub until_ms: Option<i64>,
    pub reason: String,
}

impl Store {
    /// Records a trip. A key already tripped keeps its first trip, unless that one's
    /// cool-down had ended by the new trip (a row nobody has swept yet): then the new trip
    /// replaces it, or a key re-tripped right after a cool-down would be open again.
    pub async fn trip_key(&self, t: &Trip) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO key_breakers (key_id, tripped_at_ms, until_ms, reason) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO UPDATE SET \
             tripped_at_ms = excluded.tripped_at_ms, until_ms = excluded.until_ms, \
             reason = excluded.reason \
             WHERE key_breakers.until_ms IS NOT NULL AND key_breakers.until_ms <= excluded.tripped_at_ms",
        )
        .bind(&t.key_id)
        .bind(t.tripped_at_ms)
        .bind(t.until_ms)
        .bind(&t.reason)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    /// Closes a key's breaker; `false` when it was not open.
    pub async fn reset_trip(&self, key_id: &str) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query("DELETE FROM key_breakers WHERE key_id = $1")
            .bind(key_id)
            .execute(&*self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Trips still open at `now_ms` (expired ones are deleted on the way).
    pub async fn open_trips(&self, now_ms: i64) -> Result<Vec<Trip>, StoreError> {
        sqlx::query("DELETE FROM key_breakers WHERE until_ms IS NOT NULL AND until_ms <= $1")
            .bind(now_ms)
            .execute(&*self.pool())
            .await?;
        let rows = sqlx::query(
            "SELECT key_id, tripped_at_ms, until_ms, reason FROM key_breakers ORDER BY key_id",
        )
        .fetch_all(&*self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Trip {
                    key_id: r.try_get("key_id")?,
                    tripped_at_ms: r.try_get("tripped_at_ms")?,
                    until_ms: r.try_get("until_ms")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}
