//! Deliveries and their parts: the accept transaction, the state machine of a reply
//! (accepted → running → ready → sent | failed | uncertain), each step refused from an
//! unexpected prior state, and the parts a reply is cut into.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::{Accepted, DeliveryRow, NewDelivery, PartRow, part_state, state};
use crate::{Store, StoreError};

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

pub(super) const DELIVERY_COLUMNS: &str = "id, channel, bot, message_key, kind, conversation, \
    platform_user, target, input, run_id, state, text, attempts, next_attempt_at_ms, \
    last_error, created_at_ms, updated_at_ms, done_at_ms";

/// The insert of a new delivery; `false` when its message key was delivered before. Its
/// first attempt is due at once; it has no run and no error yet.
pub(super) async fn insert_delivery(
    conn: &mut AnyConnection,
    row: &NewDelivery,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO channel_deliveries (id, channel, bot, message_key, kind, conversation, \
         platform_user, target, input, state, text, attempts, next_attempt_at_ms, \
         created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $12, $12) \
         ON CONFLICT (channel, bot, message_key) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.channel)
    .bind(&row.bot)
    .bind(&row.message_key)
    .bind(&row.kind)
    .bind(&row.conversation)
    .bind(&row.platform_user)
    .bind(&row.target)
    .bind(&row.input)
    .bind(&row.state)
    .bind(&row.text)
    .bind(row.created_at_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        bot: row.try_get("bot")?,
        message_key: row.try_get("message_key")?,
        kind: row.try_get("kind")?,
        conversation: row.try_get("conversation")?,
        platform_user: row.try_get("platform_user")?,
        target: row.try_get("target")?,
        input: row.try_get("input")?,
        run_id: row.try_get("run_id")?,
        state: row.try_get("state")?,
        text: row.try_get("text")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        done_at_ms: row.try_get("done_at_ms")?,
    })
}

/// A part from columns named `{prefix}state`, `{prefix}message_id`… (`delivery_id` and
/// `{prefix}idx`).
fn part_from_row(row: &AnyRow, prefix: &str) -> Result<PartRow, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(PartRow {
        delivery_id: row.try_get("delivery_id")?,
        idx: row.try_get(col("idx").as_str())?,
        state: row.try_get(col("state").as_str())?,
        message_id: row.try_get(col("message_id").as_str())?,
        text_sha256: row.try_get(col("text_sha256").as_str())?,
        updated_at_ms: row.try_get(col("updated_at_ms").as_str())?,
    })
}

/// Binds the states a delivery is still live in: accepted, running, ready.
fn bind_live(q: AnyQuery<'_>) -> AnyQuery<'_> {
    q.bind(state::ACCEPTED)
        .bind(state::RUNNING)
        .bind(state::READY)
}

impl Store {
    /// Accepts an inbound message in one transaction: records `event_id` as seen on
    /// `seen_channel` and, the first time only, inserts its delivery (due at once), unless
    /// its `(channel, bot, message_key)` has one already. [`Accepted::Duplicate`] when
    /// either was there: a retried webhook or a second event for one message. Exactly one
    /// of any number of concurrent accepts is [`Accepted::New`], on either backend.
    ///
    /// A message-key duplicate still commits its `webhook_seen` row: that event id is
    /// answered (by the other delivery) as surely as if it had made its own.
    pub async fn accept_message(
        &self,
        seen_channel: &str,
        event_id: &str,
        row: &NewDelivery,
    ) -> Result<Accepted, StoreError> {
        // Its first statement writes, so SQLite takes the write lock before anything is
        // read, and Postgres makes a concurrent insert of the same key wait for this one.
        self.write_transaction(async |conn| {
            let seen = sqlx::query(
                "INSERT INTO webhook_seen (channel, event_id, seen_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel, event_id) DO NOTHING",
            )
            .bind(seen_channel)
            .bind(event_id)
            .bind(row.created_at_ms)
            .execute(&mut *conn)
            .await?;
            if seen.rows_affected() == 0 || !insert_delivery(conn, row).await? {
                return Ok(Accepted::Duplicate);
            }
            Ok(Accepted::New)
        })
        .await
    }

    /// Inserts a notice (or any delivery) outside the accept path; `false` when its
    /// message key has a delivery already.
    pub async fn insert_notice(&self, row: &NewDelivery) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let mut conn = self.pool().acquire().await?;
        insert_delivery(&mut conn, row).await
    }

    /// The delivery with this id, if any.
    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM channel_deliveries WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&*self.pool())
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Live deliveries (accepted, running, ready) whose next attempt is due by `now_ms`,
    /// oldest first (ties by id), at most `limit`.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM channel_deliveries \
             WHERE state IN ($1, $2, $3) AND next_attempt_at_ms <= $4 \
             ORDER BY created_at_ms, id LIMIT $5"
        );
        let rows = bind_live(sqlx::query(AssertSqlSafe(sql)))
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&*self.pool())
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Records that `run_id` answers an accepted delivery. Idempotent for the same run
    /// (`true` again); `false` from any other state or for another run.
    pub async fn delivery_running(
        &self,
        id: &str,
        run_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE channel_deliveries SET run_id = $1, state = $2, updated_at_ms = $3 \
             WHERE id = $4 AND (state = $5 OR (state = $2 AND run_id = $1))",
        )
        .bind(run_id)
        .bind(state::RUNNING)
        .bind(now_ms)
        .bind(id)
        .bind(state::ACCEPTED)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes the reply of an accepted or running delivery and makes it ready, due at once
    /// with its attempts counted afresh (the sends start here). `false` from any other
    /// state, so a reply is written once.
    pub async fn delivery_ready(
        &self,
        id: &str,
        text: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE channel_deliveries SET text = $1, state = $2, attempts = 0, \
             next_attempt_at_ms = $3, updated_at_ms = $3 WHERE id = $4 AND state IN ($5, $6)",
        )
        .bind(text)
        .bind(state::READY)
        .bind(now_ms)
        .bind(id)
        .bind(state::ACCEPTED)
        .bind(state::RUNNING)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Persists a live delivery's retry schedule (before the deliverer sleeps, so a
    /// restart keeps it). `false` once the delivery has ended.
    pub async fn delivery_later(
        &self,
        id: &str,
        attempts: i64,
        next_attempt_at_ms: i64,
        last_error: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let q = sqlx::query(
            "UPDATE channel_deliveries SET attempts = $1, next_attempt_at_ms = $2, \
             last_error = $3, updated_at_ms = $4 WHERE id = $5 AND state IN ($6, $7, $8)",
        )
        .bind(attempts)
        .bind(next_attempt_at_ms)
        .bind(last_error)
        .bind(now_ms)
        .bind(id);
        let done = bind_live(q).execute(&*self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a live delivery as `sent`, `failed` or `uncertain` (any other state is
    /// [`StoreError::InvalidState`]). `last_error` replaces the stored one when given.
    /// `false` when it has ended already, so it ends once whoever tries.
    pub async fn finish_delivery(
        &self,
        id: &str,
        end_state: &str,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if ![state::SENT, state::FAILED, state::UNCERTAIN].contains(&end_state) {
            return Err(StoreError::InvalidState(format!(
                "a delivery cannot end as `{end_state}`"
            )));
        }
        let _write = self.write_permit().await?;
        let q = sqlx::query(
            "UPDATE channel_deliveries SET state = $1, last_error = COALESCE($2, last_error), \
             done_at_ms = $3, updated_at_ms = $3 WHERE id = $4 AND state IN ($5, $6, $7)",
        )
        .bind(end_state)
        .bind(last_error)
        .bind(now_ms)
        .bind(id);
        let done = bind_live(q).execute(&*self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// An `uncertain` delivery whose uncertain parts were all settled (by the platform's
    /// status webhooks) goes back to `ready`, due at once, so its remaining parts are sent.
    /// `false` while a part is still uncertain, or from any other state.
    pub async fn resume_delivery(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "UPDATE channel_deliveries SET state = $1, done_at_ms = NULL, next_attempt_at_ms = $2, \
             updated_at_ms = $2 WHERE id = $3 AND state = $4 AND text IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM channel_delivery_parts p WHERE p.delivery_id = $3 AND p.state IN ($5, $6))",
        )
        .bind(state::READY)
        .bind(now_ms)
        .bind(id)
        .bind(state::UNCERTAIN)
        .bind(part_state::UNCERTAIN)
        .bind(part_state::SENDING)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An operator's retry of a failed delivery, or (only with `force`) of an uncertain
    /// one: back to `ready` when it has its reply, to `accepted` (its run forgotten, to be
    /// submitted again) when it has none; attempts 0, due at once. With `force`, its parts
    /// whose send may or may not have landed (`sending`, `uncertain`) are deleted, so they
    /// are sent again: the operator accepts that they may arrive twice. `false` from any
    /// other state.
    pub async fn retry_delivery(
        &self,
        id: &str,
        force: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let also = if force {
            state::UNCERTAIN
        } else {
            state::FAILED
        };
        self.write_transaction(async |conn| {
            let done = sqlx::query(
                "UPDATE channel_deliveries SET \
                 state = CASE WHEN text IS NULL THEN $1 ELSE $2 END, \
                 run_id = CASE WHEN text IS NULL THEN NULL ELSE run_id END, \
                 attempts = 0, next_attempt_at_ms = $3, done_at_ms = NULL, updated_at_ms = $3 \
                 WHERE id = $4 AND state IN ($5, $6)",
            )
            .bind(state::ACCEPTED)
            .bind(state::READY)
            .bind(now_ms)
            .bind(id)
            .bind(state::FAILED)
            .bind(also)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if force {
                sqlx::query(
                    "DELETE FROM channel_delivery_parts WHERE delivery_id = $1 \
                     AND state IN ($2, $3)",
                )
                .bind(id)
                .bind(part_state::SENDING)
                .bind(part_state::UNCERTAIN)
                .execute(&mut *conn)
                .await?;
            }
            Ok(true)
        })
        .await
    }

    /// Deliveries, newest first, in one state and/or of one channel when given, at most
    /// `limit`.
    pub async fn list_deliveries(
        &self,
        in_state: Option<&str>,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM channel_deliveries \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR channel = $2) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(in_state)
            .bind(channel)
            .bind(i64::from(limit))
            .fetch_all(&*self.pool())
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// How many live deliveries (accepted, running, ready) of `conversation` come before
    /// the one created at `before_created_ms` with id `exclude_id` (created earlier, or in
    /// the same millisecond with a smaller id): it waits while this is above 0, so one
    /// conversation is answered in order.
    pub async fn pending_in_conversation(
        &self,
        conversation: &str,
        before_created_ms: i64,
        exclude_id: &str,
    ) -> Result<i64, StoreError> {
        let q = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM channel_deliveries \
             WHERE conversation = $1 AND state IN ($2, $3, $4) AND id <> $5 \
             AND (created_at_ms < $6 OR (created_at_ms = $6 AND id < $5))",
        )
        .bind(conversation);
        let row = bind_live(q)
            .bind(exclude_id)
            .bind(before_created_ms)
            .fetch_one(&*self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A delivery's parts, by index.
    pub async fn delivery_parts(&self, delivery_id: &str) -> Result<Vec<PartRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT delivery_id, idx, state, message_id, text_sha256, updated_at_ms \
             FROM channel_delivery_parts WHERE delivery_id = $1 ORDER BY idx",
        )
        .bind(delivery_id)
        .fetch_all(&*self.pool())
        .await?;
        rows.iter().map(|r| part_from_row(r, "")).collect()
    }

    /// Writes a part's state, message id and text digest. `expect: None` inserts a new
    /// part (`false` when that index exists); `Some(prior)` changes the part only while it
    /// is in state `prior` (`false` otherwise, or when there is no such part).
    pub async fn put_part(&self, part: &PartRow, expect: Option<&str>) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let q = match expect {
            None => sqlx::query(
                "INSERT INTO channel_delivery_parts (state, message_id, text_sha256, \
                 updated_at_ms, delivery_id, idx) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (delivery_id, idx) DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE channel_delivery_parts SET state = $1, message_id = $2, \
                 text_sha256 = $3, updated_at_ms = $4 \
                 WHERE delivery_id = $5 AND idx = $6 AND state = $7",
            ),
        };
        let q = q
            .bind(&part.state)
            .bind(&part.message_id)
            .bind(&part.text_sha256)
            .bind(part.updated_at_ms)
            .bind(&part.delivery_id)
            .bind(part.idx);
        let q = match expect {
            Some(prior) => q.bind(prior),
            None => q,
        };
        let done = q.execute(&*self.pool()).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a part while it is in state `expect_state`; `false` otherwise.
    pub async fn delete_part(
        &self,
        delivery_id: &str,
        idx: i64,
        expect_state: &str,
    ) -> Result<bool, StoreError> {
        let _write = self.write_permit().await?;
        let done = sqlx::query(
            "DELETE FROM channel_delivery_parts WHERE delivery_id = $1 AND idx = $2 \
             AND state = $3",
        )
        .bind(delivery_id)
        .bind(idx)
        .bind(expect_state)
        .execute(&*self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The delivery of `channel` with a part sent as the platform's message `message_id`,
    /// and that part: how a WhatsApp status webhook finds the send it settles. (Parts
    /// have no index on `message_id`; statuses are few and the table is kept short by
    /// [`Store::forget_deliveries_before`].)
    pub async fn delivery_by_message_id(
        &self,
        channel: &str,
        message_id: &str,
    ) -> Result<Option<(DeliveryRow, PartRow)>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, delivery_id, p_idx, p_state, p_message_id, \
             p_text_sha256, p_updated_at_ms FROM channel_deliveries \
             JOIN (SELECT delivery_id, idx AS p_idx, state AS p_state, \
             message_id AS p_message_id, text_sha256 AS p_text_sha256, \
             updated_at_ms AS p_updated_at_ms FROM channel_delivery_parts \
             WHERE message_id = $1) AS p ON p.delivery_id = id \
             WHERE channel = $2 ORDER BY created_at_ms DESC LIMIT 1"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(message_id)
            .bind(channel)
            .fetch_optional(&*self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some((delivery_from_row(&row)?, part_from_row(&row, "p_")?)))
    }

    /// Forgets sent and failed deliveries that ended before `before_ms`, with their parts;
    /// returns how many deliveries. Uncertain ones stay for an operator.
    pub async fn forget_deliveries_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        const ENDED: &str = "state IN ($1, $2) AND done_at_ms < $3";
        self.write_transaction(async |conn| {
            // Rows written first: SQLite takes its write lock, Postgres locks the rows, so
            // an operator's retry cannot revive a row whose parts are already gone.
            let lock = format!(
                "UPDATE channel_deliveries SET updated_at_ms = updated_at_ms WHERE {ENDED}"
            );
            let parts = format!(
                "DELETE FROM channel_delivery_parts WHERE delivery_id IN \
                 (SELECT id FROM channel_deliveries WHERE {ENDED})"
            );
            let rows = format!("DELETE FROM channel_deliveries WHERE {ENDED}");
            let mut deleted = 0;
            for sql in [lock, parts, rows] {
                deleted = sqlx::query(AssertSqlSafe(sql))
                    .bind(state::SENT)
                    .bind(state::FAILED)
                    .bind(before_ms)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            }
            Ok(deleted)
        })
        .await
    }
}
