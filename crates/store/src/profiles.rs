//! Provider auth-profile state, by a stable non-secret id, so that a restart or another
//! instance does not hammer a key the provider just refused.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileState {
    pub provider: String,
    pub profile_id: String,
    /// `ready | cooling_down | billing | disabled`
    pub state: String,
    pub until_ms: i64,
    pub failures: i64,
    pub reason: Option<String>,
    pub updated_at_ms: i64,
}

impl Store {
    /// Inserts or replaces one profile's state.
    pub async fn upsert_profile(&self, p: &ProfileState) -> Result<(), StoreError> {
        let _write = self.write_permit().await?;
        sqlx::query(
            "INSERT INTO auth_profiles (provider, profile_id, state, until_ms, failures, reason, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (provider, profile_id) DO UPDATE SET state = excluded.state, \
             until_ms = excluded.until_ms, failures = excluded.failures, reason = excluded.reason, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&p.provider)
        .bind(&p.profile_id)
        .bind(&p.state)
        .bind(p.until_ms)
        .bind(p.failures)
        .bind(&p.reason)
        .bind(p.updated_at_ms)
        .execute(&*self.pool())
        .await?;
        Ok(())
    }

    pub async fn list_profiles(&self) -> Result<Vec<ProfileState>, StoreError> {
        self.profiles_changed_since(i64::MIN).await
    }

    /// Profiles whose state was written at or after `since_ms`, oldest change first.
    pub async fn profiles_changed_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<ProfileState>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, profile_id, state, until_ms, failures, reason, updated_at_ms \
             FROM auth_profiles WHERE updated_at_ms >= $1 ORDER BY updated_at_ms, provider, profile_id",
        )
        .bind(since_ms)
        .fetch_all(&*self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProfileState {
                    provider: r.try_get("provider")?,
                    profile_id: r.try_get("profile_id")?,
                    state: r.try_get("state")?,
                    until_ms: r.try_get("until_ms")?,
                    failures: r.try_get("failures")?,
                    reason: r.try_get("reason")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }
}
