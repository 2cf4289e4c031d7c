//! The deliverer: every accepted message is run and answered from its row in the store,
//! by one task at a time in this process, so a restart at any point resumes it and a
//! reply is never sent twice (docs/channels.md, "Delivery").
//!
//! A row goes `accepted` (acknowledged) → `running` (its run submitted, with an
//! idempotency key, so a resubmission gets the same run) → `ready` (the answer's text is
//! stored before anything is sent) → `sent` | `failed` | `uncertain`.
//!
//! Never twice: on Slack and Telegram the answer travels only in edits of a placeholder
//! whose id is stored before the edit, and an edit repeated is harmless; the only post
//! that may be repeated after a crash carries no content (at most one orphan
//! placeholder). WhatsApp cannot edit: a part is marked `sending` before its POST, and a
//! POST with no answer makes it `uncertain`, settled by the message's status webhook and
//! never sent again without an operator.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_scheduler::{Origin, SchedulerError, Submission};
use sluice_service::ChannelUser;
use sluice_service::ids::now_ms;
use sluice_store::{DeliveryRow, PartRow};

use crate::api::{ApiError, Target};
use crate::bots::{Bot, Platform};
use crate::wire::WhatsAppStatus;
use crate::{Inner, progress, split, text};

/// Rows looked at per scan.
const SCAN_BATCH: u32 = 100;
/// Deliveries handled at once by this process.
const MAX_LIVE: usize = 1024;
/// How long a message may wait for its agent to have room (`too_many_runs`, an open
/// agent breaker) before the user is told it is busy.
const SUBMIT_PATIENCE_MS: i64 = 120_000;

pub(crate) fn spawn(inner: &Arc<Inner>) {
    let inner2 = inner.clone();
    inner.tasks.spawn(async move { scan_loop(inner2).await });
}

async fn scan_loop(inner: Arc<Inner>) {
    let mut last_cleanup = 0;
    loop {
        scan(&inner).await;
        let now = now_ms();
        if now - last_cleanup > 3_600_000 {
            last_cleanup = now;
            cleanup(&inner, now).await;
        }
        tokio::select! {
            () = inner.stopping.cancelled() => return,
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(inner.cfg.scan_interval) => {}
        }
    }
}

/// Starts a task for every due row no task of this process has.
async fn scan(inner: &Arc<Inner>) {
    let rows = match inner.store.due_deliveries(now_ms(), SCAN_BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("cannot read due channel deliveries: {e}");
            return;
        }
    };
    for row in rows {
        {
            let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.len() >= MAX_LIVE || !live.insert(row.id.clone()) {
                continue;
            }
        }
        let inner2 = inner.clone();
        inner.tasks.spawn(async move {
            let id = row.id.clone();
            tokio::select! {
                () = inner2.stopping.cancelled() => {}
                () = drive(&inner2, row) => {}
            }
            inner2
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            // The next state may be due at once (a retry, the next row of a conversation).
            inner2.wake.notify_one();
        });
    }
}

async fn cleanup(inner: &Inner, now: i64) {
    let keep = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let store = &inner.store;
    if let Err(e) = store
        .forget_webhooks_before(keep(inner.cfg.webhook_retention))
        .await
    {
        tracing::warn!("cannot forget old webhook deliveries: {e}");
    }
    let month = Duration::from_secs(30 * 24 * 3600);
    if let Err(e) = store.forget_deliveries_before(keep(month)).await {
        tracing::warn!("cannot forget old channel deliveries: {e}");
    }
    if let Err(e) = store.expire_pairings(now).await {
        tracing::warn!("cannot expire pairing requests: {e}");
    }
}

/// What stopped a delivery for now.
enum Later {
    /// Try again at this time (persisted with the error).
    Retry { after: Duration, error: String },
    /// It is done (sent, failed, uncertain) or the store said no: nothing to persist.
    Done,
}

async fn drive(inner: &Arc<Inner>, mut row: DeliveryRow) {
    let Some(bot) = inner.bot(platform(&row.channel), &row.bot) else {
        tracing::warn!(delivery = %row.id, channel = %row.channel, bot = %row.bot, "a delivery for a channel no longer configured waits");
        return;
    };
    let Ok(target) = serde_json::from_str::<Target>(&row.target) else {
        finish(inner, &row, "failed", Some("unreadable target")).await;
        return;
    };
    let age = now_ms() - row.created_at_ms;
    if age > i64::try_from(inner.cfg.delivery_max_age.as_millis()).unwrap_or(i64::MAX) {
        let why = row.last_error.clone().unwrap_or_else(|| "too old".into());
        finish(inner, &row, "failed", Some(&format!("given up: {why}"))).await;
        return;
    }
    let (id, attempts) = (row.id.clone(), row.attempts);
    let step = async {
        if row.state == "accepted" {
            row = submit(inner, &bot, row).await?;
        }
        if row.state == "running" {
            row = answer(inner, &bot, &target, row).await?;
        }
        if row.state == "ready" {
            send(inner, &bot, &target, &row).await?;
        }
        Ok::<(), Later>(())
    };
    if let Err(Later::Retry { after, error }) = step.await {
        let attempts = attempts + 1;
        let at = now_ms() + i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        tracing::info!(delivery = %id, channel = %bot.channel, attempts, "delivery retried later: {error}");
        if let Err(e) = inner
            .store
            .delivery_later(&id, attempts, at, &error, now_ms())
            .await
        {
            tracing::warn!(delivery = %id, "cannot store a retry: {e}");
        }
    }
}

fn platform(channel: &str) -> Platform {
    match channel {
        "telegram" => Platform::Telegram,
        "whatsapp" => Platform::WhatsApp,
        _ => Platform::Slack,
    }
}

async fn finish(inner: &Inner, row: &DeliveryRow, state: &str, error: Option<&str>) {
    if let Err(e) = inner
        .store
        .finish_delivery(&row.id, state, error, now_ms())
        .await
    {
        tracing::warn!(delivery = %row.id, "cannot finish a delivery: {e}");
    }
    if state != "sent" {
        tracing::warn!(delivery = %row.id, channel = %row.channel, state, error, "a reply was not delivered");
    }
}

fn store_err(e: impl std::fmt::Display) -> Later {
    Later::Retry {
        after: Duration::from_secs(1),
        error: format!("store: {e}"),
    }
}

/// `accepted` → `running`: the run is asked for under the message's idempotency key.
async fn submit(
    inner: &Arc<Inner>,
    bot: &Arc<Bot>,
    mut row: DeliveryRow,
) -> Result<DeliveryRow, Later> {
    let channel_user = ChannelUser::new(&bot.channel, &row.platform_user, bot.binding.user_limits)
        .map_err(|e| Later::Retry {
            after: Duration::from_secs(3600),
            error: e.to_string(),
        })?;
    let sub = Submission {
        agent: bot.binding.agent.clone(),
        input: Value::String(row.input.clone().unwrap_or_default()),
        session_key: Some(row.conversation.clone()),
        idempotency_key: Some(format!("{}:{}:{}", row.channel, row.bot, row.message_key)),
        origin: Origin::Channel,
        channel: Some(Arc::new(channel_user)),
    };
    match inner.scheduler.submit(&bot.principal, sub).await {
        Ok(accepted) => {
            inner
                .store
                .delivery_running(&row.id, &accepted.run_id, now_ms())
                .await
                .map_err(store_err)?;
            row.run_id = Some(accepted.run_id);
            row.state = "running".into();
            Ok(row)
        }
        Err(
            e @ (SchedulerError::TooManyRuns { .. }
            | SchedulerError::AgentBreakerOpen { .. }
            | SchedulerError::ShuttingDown
            | SchedulerError::Store(_)),
        ) if now_ms() - row.created_at_ms < SUBMIT_PATIENCE_MS => Err(Later::Retry {
            after: sluice_backoff::full_jitter(
                Duration::from_millis(500),
                Duration::from_secs(10),
                u32::try_from(row.attempts).unwrap_or(u32::MAX),
            ),
            error: e.to_string(),
        }),
        Err(e) => {
            let code = e.body().code;
            tracing::info!(delivery = %row.id, channel = %bot.channel, code, "the run was refused: the user is told");
            let notice = match code.as_str() {
                "too_many_runs" => text::notice_for("busy"),
                c => text::notice_for(c),
            };
            ready(inner, row, notice.to_owned()).await
        }
    }
}

/// `running` → `ready`: the run is followed to its end (with progressive edits of a
/// placeholder where the platform allows), and its answer, or the notice of its failure,
/// is stored before anything is sent.
async fn answer(
    inner: &Arc<Inner>,
    bot: &Arc<Bot>,
    target: &Target,
    row: DeliveryRow,
) -> Result<DeliveryRow, Later> {
    let run_id = row.run_id.clone().unwrap_or_default();
    let text = progress::follow(inner, bot, target, &row, &run_id)
        .await
        .map_err(|error| Later::Retry {
            after: Duration::from_secs(1),
            error,
        })?;
    ready(inner, row, text).await
}

async fn ready(inner: &Inner, mut row: DeliveryRow, text: String) -> Result<DeliveryRow, Later> {
    let text = if text.trim().is_empty() {
        text::EMPTY_ANSWER.to_owned()
    } else {
        text
    };
    if !inner
        .store
        .delivery_ready(&row.id, &text, now_ms())
        .await
        .map_err(store_err)?
    {
        return Err(Later::Done);
    }
    row.text = Some(text);
    row.state = "ready".into();
    Ok(row)
}

pub(crate) fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn part(
    delivery: &str,
    idx: usize,
    state: &str,
    message_id: Option<String>,
    text: &str,
) -> PartRow {
    PartRow {
        delivery_id: delivery.to_owned(),
        idx: i64::try_from(idx).unwrap_or(i64::MAX),
        state: state.to_owned(),
        message_id,
        text_sha256: sha256(text),
        updated_at_ms: now_ms(),
    }
}

/// What to do with a platform error while sending.
fn retry(e: &ApiError, attempts: i64) -> Later {
    let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
    let backoff =
        sluice_backoff::full_jitter(Duration::from_secs(1), Duration::from_secs(300), attempt);
    let after = match e {
        ApiError::RateLimited { retry_after, .. } => (*retry_after).max(Duration::from_millis(100)),
        // A token an operator must fix: no hammering.
        ApiError::Auth(_) => backoff.max(Duration::from_secs(300)),
        _ => backoff.max(Duration::from_millis(200)),
    };
    Later::Retry {
        after,
        error: e.to_string(),
    }
}

/// `ready` → `sent`: each part of the answer, in order.
async fn send(
    inner: &Arc<Inner>,
    bot: &Arc<Bot>,
    target: &Target,
    row: &DeliveryRow,
) -> Result<(), Later> {
    let text = row.text.clone().unwrap_or_default();
    let parts = split::split(&text, bot.api.max_len());
    let mut stored = inner
        .store
        .delivery_parts(&row.id)
        .await
        .map_err(store_err)?;
    for (idx, body) in parts.iter().enumerate() {
        let current = stored
            .iter()
            .position(|p| p.idx == i64::try_from(idx).unwrap_or(-1))
            .map(|i| stored.swap_remove(i));
        let outcome = if bot.api.edits() {
            send_by_edit(inner, bot, target, row, idx, body, current).await
        } else {
            send_once(inner, bot, target, row, idx, body, current).await
        };
        match outcome {
            Ok(()) => {}
            Err(Sent::Failed(e)) => {
                finish(inner, row, "failed", Some(&e.to_string())).await;
                return Err(Later::Done);
            }
            Err(Sent::Uncertain(e)) => {
                finish(inner, row, "uncertain", Some(&e)).await;
                return Err(Later::Done);
            }
            Err(Sent::Later(e)) => return Err(retry(&e, row.attempts)),
            Err(Sent::Store(e)) => return Err(store_err(e)),
        }
    }
    finish(inner, row, "sent", None).await;
    Err(Later::Done)
}

enum Sent {
    Later(ApiError),
    Failed(ApiError),
    Uncertain(String),
    Store(String),
}

fn put(r: Result<bool, sluice_store::StoreError>) -> Result<bool, Sent> {
    r.map_err(|e| Sent::Store(e.to_string()))
}

/// Slack and Telegram: a placeholder (posted while the run streamed, or now), then its
/// text replaced by the part. Only the placeholder's post is not idempotent, and it
/// carries no content.
async fn send_by_edit(
    inner: &Inner,
    bot: &Bot,
    target: &Target,
    row: &DeliveryRow,
    idx: usize,
    body: &str,
    current: Option<PartRow>,
) -> Result<(), Sent> {
    let store = &inner.store;
    let mut current = current;
    loop {
        match current
            .as_ref()
            .map(|p| (p.state.as_str(), p.message_id.clone()))
        {
            Some(("final" | "sent", _)) => return Ok(()),
            Some(("posted", Some(id))) => {
                return match bot.api.edit(target, &id, body).await {
                    Ok(()) => {
                        put(store
                            .put_part(&part(&row.id, idx, "final", Some(id), body), Some("posted"))
                            .await)?;
                        Ok(())
                    }
                    Err(ApiError::EditGone(e)) => {
                        // The placeholder was deleted or is too old to edit: the part goes
                        // as a message of its own, under the no-edit rule.
                        tracing::info!(delivery = %row.id, "cannot edit the placeholder ({e}): posting the part");
                        put(store
                            .put_part(&part(&row.id, idx, "sending", None, body), Some("posted"))
                            .await)?;
                        let again = part(&row.id, idx, "sending", None, body);
                        send_once(inner, bot, target, row, idx, body, Some(again)).await
                    }
                    Err(e) => Err(classify(e)),
                };
            }
            Some(("sending" | "uncertain", _)) => {
                return send_once(inner, bot, target, row, idx, body, current).await;
            }
            // No placeholder yet, or one whose post may or may not have happened: a new one.
            prior => {
                // Someone else's row now (it was written meanwhile): look again.
                if prior.is_none()
                    && !put(store
                        .put_part(&part(&row.id, idx, "posting", None, body), None)
                        .await)?
                {
                    current = store
                        .delivery_parts(&row.id)
                        .await
                        .map_err(|e| Sent::Store(e.to_string()))?
                        .into_iter()
                        .find(|p| p.idx == i64::try_from(idx).unwrap_or(-1));
                    continue;
                }
                let placeholder = bot.placeholder();
                match bot.api.post(target, placeholder, "").await {
                    Ok(id) => {
                        let posted = part(&row.id, idx, "posted", Some(id), body);
                        put(store.put_part(&posted, Some("posting")).await)?;
                        current = Some(posted);
                    }
                    Err(e @ ApiError::Ambiguous(_)) => return Err(Sent::Later(e)),
                    Err(e) => {
                        // Certainly not posted: as if never tried.
                        let _ = store
                            .delete_part(&row.id, i64::try_from(idx).unwrap_or(-1), "posting")
                            .await;
                        return Err(classify(e));
                    }
                }
            }
        }
    }
}

fn classify(e: ApiError) -> Sent {
    match e {
        ApiError::Permanent(_) => Sent::Failed(e),
        _ => Sent::Later(e),
    }
}

/// WhatsApp (and a placeholder that can no longer be edited): the part is marked
/// `sending` before its POST; an answer makes it `sent`; no answer makes it `uncertain`.
async fn send_once(
    inner: &Inner,
    bot: &Bot,
    target: &Target,
    row: &DeliveryRow,
    idx: usize,
    body: &str,
    current: Option<PartRow>,
) -> Result<(), Sent> {
    let store = &inner.store;
    let i = i64::try_from(idx).unwrap_or(-1);
    match current.as_ref().map(|p| p.state.as_str()) {
        Some("sent" | "final") => return Ok(()),
        // A POST was in flight when the process stopped, or had no answer: its status
        // webhook settles it.
        Some("uncertain") => {
            return Err(Sent::Uncertain(format!(
                "part {idx}: waiting for its status"
            )));
        }
        // Written by a process before this one: its POST's outcome is unknown.
        Some("sending")
            if current
                .as_ref()
                .is_some_and(|p| p.updated_at_ms < inner.started_ms) =>
        {
            put(store
                .put_part(
                    &part(&row.id, idx, "uncertain", None, body),
                    Some("sending"),
                )
                .await)?;
            return Err(Sent::Uncertain(format!(
                "part {idx}: a send was in flight at a restart"
            )));
        }
        Some("sending") => {}
        _ => {
            if !put(store
                .put_part(&part(&row.id, idx, "sending", None, body), None)
                .await)?
            {
                return Err(Sent::Later(ApiError::Transient(
                    "part already being sent".into(),
                )));
            }
        }
    }
    let callback = format!("sluice:{}:{idx}", row.id);
    match bot.api.post(target, body, &callback).await {
        Ok(id) => {
            put(store
                .put_part(&part(&row.id, idx, "sent", Some(id), body), Some("sending"))
                .await)?;
            Ok(())
        }
        Err(ApiError::Ambiguous(e)) => {
            put(store
                .put_part(
                    &part(&row.id, idx, "uncertain", None, body),
                    Some("sending"),
                )
                .await)?;
            Err(Sent::Uncertain(format!("part {idx}: {e}")))
        }
        Err(e) => {
            let _ = store.delete_part(&row.id, i, "sending").await;
            Err(classify(e))
        }
    }
}

/// A WhatsApp status webhook: a part whose send was uncertain is settled by it (`sent`,
/// `delivered`, `read`: it arrived; `failed`: it did not, and is sent again).
pub(crate) async fn settle_status(inner: &Arc<Inner>, status: &WhatsAppStatus) {
    let Some((delivery, idx)) = status
        .biz_opaque_callback_data
        .as_deref()
        .and_then(|c| c.strip_prefix("sluice:"))
        .and_then(|c| c.rsplit_once(':'))
        .and_then(|(d, i)| Some((d.to_owned(), i.parse::<i64>().ok()?)))
    else {
        return;
    };
    let store = &inner.store;
    let Ok(parts) = store.delivery_parts(&delivery).await else {
        return;
    };
    let Some(p) = parts
        .into_iter()
        .find(|p| p.idx == idx && p.state == "uncertain")
    else {
        return;
    };
    let settled = match status.status.as_str() {
        "sent" | "delivered" | "read" => {
            let sent = PartRow {
                state: "sent".into(),
                message_id: Some(status.id.clone()),
                updated_at_ms: now_ms(),
                ..p
            };
            store.put_part(&sent, Some("uncertain")).await
        }
        "failed" => store.delete_part(&delivery, idx, "uncertain").await,
        _ => return,
    };
    if matches!(settled, Ok(true)) {
        tracing::info!(delivery = %delivery, part = idx, status = %status.status, "an uncertain send was settled by its status");
        if let Err(e) = store.resume_delivery(&delivery, now_ms()).await {
            tracing::warn!(delivery = %delivery, "cannot resume a delivery: {e}");
        }
        inner.wake.notify_one();
    }
}
