//! Shared limit buckets: one row per rate limit or budget window, changed by optimistic
//! read-modify-write (a `version` column), the same on SQLite and Postgres. The
//! arithmetic (refill, how much to grant) is the caller's, so it lives with the limits.

use sqlx::Row;

use crate::{Store, StoreError};

/// Attempts before a read-modify-write that keeps losing to other writers gives up.
const MAX_ATTEMPTS: usize = 32;

impl Store {
    /// Reads a bucket's `(used, updated_ms)` (a missing bucket is `(0, now_ms)`), lets `f`
    /// decide the new state (`None`: leave it) and its answer, and writes it unless another
    /// writer changed the row meanwhile, in which case it reads again.
    pub async fn update_bucket<T>(
        &self,
        bucket: &str,
        expires_ms: Option<i64>,
        now_ms: i64,
        f: impl Fn(u64, i64) -> (Option<(u64, i64)>, T),
    ) -> Result<T, StoreError> {
        let _write = self.write_permit().await?;
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(
                "SELECT used, updated_ms, version FROM limit_buckets WHERE bucket = $1",
            )
            .bind(bucket)
            .fetch_optional(&*self.pool())
            .await?;
            let Some(row) = row else {
                let (next, answer) = f(0, now_ms);
                let Some((used, updated)) = next else {
                    return Ok(answer);
                };
                let inserted = sqlx::query(
                    "INSERT INTO limit_buckets (bucket, used, updated_ms, version, expires_ms) \
                     VALUES ($1, $2, $3, 1, $4) ON CONFLICT (bucket) DO NOTHING",
                )
                .bind(bucket)
                .bind(to_i64(used))
                .bind(updated)
                .bind(expires_ms)
                .execute(&*self.pool())
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(answer);
                }
                continue; // created meanwhile by another writer
            };
            let used: i64 = row.try_get("used")?;
            let updated_ms: i64 = row.try_get("updated_ms")?;
            let version: i64 = row.try_get("version")?;
            let (next, answer) = f(u64::try_from(used).unwrap_or(0), updated_ms);
            let Some((used, updated)) = next else {
                return Ok(answer);
            };
            let written = sqlx::query(
                "UPDATE limit_buckets SET used = $1, updated_ms = $2, version = version + 1 \
                 WHERE bucket = $3 AND version = $4",
            )
            .bind(to_i64(used))
            .bind(updated)
            .bind(bucket)
            .bind(version)
            .execute(&*self.pool())
            .await?;
            if written.rows_affected() == 1 {
                return Ok(answer);
            }
        }
        Err(StoreError::Contended(bucket.to_owned()))
    }

    /// A bucket's stored `(used, updated_ms)`, for tests and status views.
    pub async fn bucket(&self, bucket: &str) -> Result<Option<(u64, i64)>, StoreError> {
        let row = sqlx::query("SELECT used, updated_ms FROM limit_buckets WHERE bucket = $1")
            .bind(bucket)
            .fetch_optional(&*self.pool())
            .await?;
        row.map(|r| {
            let used: i64 = r.try_get("used")?;
            Ok((u64::try_from(used).unwrap_or(0), r.try_get("updated_ms")?))
        })
        .transpose()
    }

    /// Deletes buckets of calendar windows that ended long enough ago.
    pub async fn delete_expired_buckets(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query("DELETE FROM limit_buckets WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(&*self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
