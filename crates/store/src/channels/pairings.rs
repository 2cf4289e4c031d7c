//! Pairings: an unknown user's request for access (a code and its notice), an
//! operator's approval or revocation, and the approved users as a dynamic allowlist.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::deliveries::insert_delivery;
use super::{NewDelivery, Paired, PairingRow, pairing_state};
use crate::{Backend, Store, StoreError};

const PAIRING_COLUMNS: &str = "channel, bot, user_id, state, code, code_expires_at_ms, \
    display_name, target, approved_at_ms, approved_by, created_at_ms, updated_at_ms";

fn pairing_from_row(row: &AnyRow) -> Result<PairingRow, StoreError> {
    Ok(PairingRow {
        channel: row.try_get("channel")?,
        bot: row.try_get("bot")?,
        user_id: row.try_get("user_id")?,
        state: row.try_get("state")?,
        code: row.try_get("code")?,
        code_expires_at_ms: row.try_get("code_expires_at_ms")?,
        display_name: row.try_get("display_name")?,
        target: row.try_get("target")?,
        approved_at_ms: row.try_get("approved_at_ms")?,
        approved_by: row.try_get("approved_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Records `row.user_id`'s request to talk to `row.channel`/`row.bot` and the notice
    /// that gives them its code, in one transaction, unless the user is approved
    /// ([`Paired::Approved`]) or has an unexpired pending request ([`Paired::Pending`]), or
    /// the channel and bot have `max_pending` unexpired pending requests of other users
    /// ([`Paired::Full`]); those write nothing. A revoked user or an expired request gets
    /// a new request: the row's code, expiry, display name and target replace the old
    /// ones, its first `created_at_ms` stays.
    ///
    /// Requests are taken one at a time (Postgres: a lock on the table that readers do not
    /// wait for; SQLite: the write lock), so the cap holds under concurrent requests.
    pub async fn request_pairing(
        &self,
        row: &PairingRow,
        max_pending: i64,
        notice: &NewDelivery,
        now_ms: i64,
    ) -> Result<Paired, StoreError> {
        let backend = self.backend();
        self.write_transaction(async |conn| {
            take_pairing_lock(conn, backend, row).await?;
            let prior = sqlx::query(
                "SELECT state, code_expires_at_ms FROM channel_pairings \
                 WHERE channel = $1 AND bot = $2 AND user_id = $3",
            )
            .bind(&row.channel)
            .bind(&row.bot)
            .bind(&row.user_id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(prior) = prior {
                let state: String = prior.try_get("state")?;
                let expires: Option<i64> = prior.try_get("code_expires_at_ms")?;
                if state == pairing_state::APPROVED {
                    return Ok(Paired::Approved);
                }
                if state == pairing_state::PENDING && expires.is_some_and(|e| e > now_ms) {
                    return Ok(Paired::Pending);
                }
            }
            let pending = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM channel_pairings \
                 WHERE channel = $1 AND bot = $2 AND state = $3 AND code_expires_at_ms > $4",
            )
            .bind(&row.channel)
            .bind(&row.bot)
            .bind(pairing_state::PENDING)
            .bind(now_ms)
            .fetch_one(&mut *conn)
            .await?;
            let pending: i64 = pending.try_get("n")?;
            if pending >= max_pending {
                return Ok(Paired::Full);
            }
            sqlx::query(
                "INSERT INTO channel_pairings (channel, bot, user_id, state, code, \
                 code_expires_at_ms, display_name, target, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (channel, bot, user_id) DO UPDATE SET state = excluded.state, \
                 code = excluded.code, code_expires_at_ms = excluded.code_expires_at_ms, \
                 display_name = excluded.display_name, target = excluded.target, \
                 approved_at_ms = NULL, approved_by = NULL, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&row.channel)
            .bind(&row.bot)
            .bind(&row.user_id)
            .bind(pairing_state::PENDING)
            .bind(&row.code)
            .bind(row.code_expires_at_ms)
            .bind(&row.display_name)
            .bind(&row.target)
            .bind(row.created_at_ms)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            insert_delivery(conn, notice).await?;
            Ok(Paired::New)
        })
        .await
    }

    /// Approves the pending, unexpired request with this code: the user is let in and the
    /// code cleared. Returns the approved row; `None` when no pending request has this
    /// code or it expired (approving twice is `None` the second time).
    pub async fn approve_pairing(
        &self,
        code: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Option<PairingRow>, StoreError> {
        let _write = self.write_permit().await?;
        let sql = format!(
            "UPDATE channel_pairings SET state = $1, code = NULL, code_expires_at_ms = NULL, \
             approved_at_ms = $2, approved_by = $3, updated_at_ms = $2 \
             WHERE code = $4 AND state = $5 AND code_expires_at_ms > $2 \
             RETURNING {PAIRING_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(pairing_state::APPROVED)
            .bind(now_ms)
            .bind(by)
            .bind(code)
            .bind(pairing_state::PENDING)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(pairing_from_row).transpose()
    }

    /// Revokes a user's approval or pending request; `false` when there is neither.
    pub async fn revoke_pairing(
        &self,
        channel: &str,
        bot: &str,
        user_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE channel_pairings SET state = $1, code = NULL, code_expires_at_ms = NULL, \
             updated_at_ms = $2 WHERE channel = $3 AND bot = $4 AND user_id = $5 \
             AND state IN ($6, $7)",
        )
        .bind(pairing_state::REVOKED)
        .bind(now_ms)
        .bind(channel)
        .bind(bot)
        .bind(user_id)
        .bind(pairing_state::PENDING)
        .bind(pairing_state::APPROVED)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pairings, oldest first, of one channel when given: the unexpired pending requests
    /// and the approved users, or every row with `include_all` (expired and revoked too).
    pub async fn list_pairings(
        &self,
        channel: Option<&str>,
        include_all: bool,
        now_ms: i64,
    ) -> Result<Vec<PairingRow>, StoreError> {
        let rows = if include_all {
            let sql = format!(
                "SELECT {PAIRING_COLUMNS} FROM channel_pairings WHERE ($1 IS NULL OR channel = $1) \
                 ORDER BY created_at_ms, channel, bot, user_id"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(channel)
                .fetch_all(&*self.pool())
                .await?
        } else {
            let sql = format!(
                "SELECT {PAIRING_COLUMNS} FROM channel_pairings WHERE ($1 IS NULL OR channel = $1) \
                 AND (state = $2 OR (state = $3 AND code_expires_at_ms > $4)) \
                 ORDER BY created_at_ms, channel, bot, user_id"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(channel)
                .bind(pairing_state::APPROVED)
                .bind(pairing_state::PENDING)
                .bind(now_ms)
                .fetch_all(&*self.pool())
                .await?
        };
        rows.iter().map(pairing_from_row).collect()
    }

    /// The approved users of a channel and bot, sorted.
    pub async fn approved_users(
        &self,
        channel: &str,
        bot: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id FROM channel_pairings WHERE channel = $1 AND bot = $2 \
             AND state = $3 ORDER BY user_id",
        )
        .bind(channel)
        .bind(bot)
        .bind(pairing_state::APPROVED)
        .fetch_all(&*self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("user_id")?)).collect()
    }

    /// Whether the user is approved on this channel and bot.
    pub async fn is_approved(
        &self,
        channel: &str,
        bot: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM channel_pairings WHERE channel = $1 AND bot = $2 \
             AND user_id = $3 AND state = $4",
        )
        .bind(channel)
        .bind(bot)
        .bind(user_id)
        .bind(pairing_state::APPROVED)
        .fetch_optional(&*self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Deletes pending requests whose code expired by `now_ms`; returns how many.
    pub async fn expire_pairings(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "DELETE FROM channel_pairings WHERE state = $1 \
             AND (code_expires_at_ms IS NULL OR code_expires_at_ms <= $2)",
        )
        .bind(pairing_state::PENDING)
        .bind(now_ms)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// Makes concurrent pairing requests wait for this one. Postgres: `SHARE ROW EXCLUSIVE`
/// conflicts with itself and with writers, not with readers, so the allowlist stays
/// readable. SQLite: a write that changes nothing takes the write lock before the reads
/// (see `Store::write_transaction`).
async fn take_pairing_lock(
    conn: &mut AnyConnection,
    backend: Backend,
    row: &PairingRow,
) -> Result<(), StoreError> {
    match backend {
        Backend::Postgres => {
            sqlx::query("LOCK TABLE channel_pairings IN SHARE ROW EXCLUSIVE MODE")
                .execute(conn)
                .await?;
        }
        Backend::Sqlite => {
            sqlx::query(
                "UPDATE channel_pairings SET updated_at_ms = updated_at_ms \
                 WHERE channel = $1 AND bot = $2 AND user_id = $3",
            )
            .bind(&row.channel)
            .bind(&row.bot)
            .bind(&row.user_id)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
