//! Platform webhooks seen, so a delivery a platform retries (Slack's `X-Slack-Retry-Num`,
//! Telegram's `update_id` resent, a WhatsApp message id again) runs its agent once,
//! whatever the number of retries, at once or later, on any instance: the primary key
//! `(channel, event_id)` decides.

use crate::{Store, StoreError};

impl Store {
    /// Records that `channel` delivered `event_id`; `true` the first time only.
    pub async fn first_sight(
        &self,
        channel: &str,
        event_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "INSERT INTO webhook_seen (channel, event_id, seen_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (channel, event_id) DO NOTHING",
        )
        .bind(channel)
        .bind(event_id)
        .bind(at_ms)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets deliveries seen before `before_ms` (platforms stop retrying after hours);
    /// returns how many.
    pub async fn forget_webhooks_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query("DELETE FROM webhook_seen WHERE seen_at_ms < $1")
            .bind(before_ms)
            .execute(&*self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
