//! Following a channel's run to its end. Where the platform can edit (Slack, Telegram),
//! a placeholder is posted when the run starts and edited as the answer streams, no more
//! often than the bot's `edit_interval` for that chat; past the message length it shows
//! the answer's tail. Progress edits are best effort: a failed one is skipped, the final
//! text is the outbox's. A delegated child's events are skipped.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_protocol::runs::events;
use sluice_store::DeliveryRow;
use tokio::time::Instant;

use crate::api::{ApiError, Target};
use crate::bots::Bot;
use crate::outbox::sha256;
use crate::{Inner, text};

/// The run's answer, or the notice for its failure.
pub(crate) async fn follow(
    inner: &Arc<Inner>,
    bot: &Arc<Bot>,
    target: &Target,
    row: &DeliveryRow,
    run_id: &str,
) -> Result<String, String> {
    let (_, mut follow) = inner
        .scheduler
        .follow(&bot.principal, run_id, 0)
        .await
        .map_err(|e| e.to_string())?;
    let group = matches!(target, Target::Telegram { group: true, .. });
    let interval = bot.edit_interval(group);
    let mut placeholder: Option<String> = None;
    let mut shown = String::new();
    let mut text = String::new();
    let mut at = (0u64, 0u64);
    // No edit before this: the interval after the last one, or a 429's Retry-After.
    let mut next_edit = Instant::now();
    let mut pending = false;
    let mut rate_limited = false;
    loop {
        // Between deltas, a throttled edit still goes out once its interval has passed.
        let next = if pending {
            match tokio::time::timeout_at(next_edit, follow.next()).await {
                Ok(e) => e,
                Err(_) => {
                    let after = edit(bot, target, placeholder.as_deref(), &text, &mut shown).await;
                    rate_limited |= after.is_some();
                    next_edit = after.unwrap_or_else(|| Instant::now() + interval);
                    pending = false;
                    continue;
                }
            }
        } else {
            follow.next().await
        };
        let Some(e) = next else {
            return Err("the run's events ended without its end".into());
        };
        if e.data.get("parent_run_id").is_some_and(|p| !p.is_null()) {
            continue;
        }
        match e.event {
            events::STARTED if bot.streaming.is_some() && bot.api.edits() => {
                placeholder = post_placeholder(inner, bot, target, row).await;
                next_edit = Instant::now() + interval;
            }
            events::DELTA => {
                let step = e.data.get("step").and_then(Value::as_u64).unwrap_or(0);
                let attempt = e.data.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                if (step, attempt) != at {
                    at = (step, attempt);
                    text.clear();
                }
                text.push_str(
                    e.data
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                if placeholder.is_some() {
                    if Instant::now() >= next_edit {
                        let after =
                            edit(bot, target, placeholder.as_deref(), &text, &mut shown).await;
                        rate_limited |= after.is_some();
                        next_edit = after.unwrap_or_else(|| Instant::now() + interval);
                        pending = false;
                    } else {
                        pending = true;
                    }
                }
            }
            events::COMPLETED => {
                // The final text is an edit too: it keeps the throttle after a progress
                // edit or a 429 (not after the placeholder alone, so that a quick answer
                // is not held back).
                if !shown.is_empty() || rate_limited {
                    tokio::time::sleep_until(next_edit).await;
                }
                return Ok(e
                    .data
                    .get("output")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned());
            }
            events::FAILED => {
                let code = e
                    .data
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("internal");
                return Ok(text::notice_for(code).to_owned());
            }
            _ => {}
        }
    }
}

/// Part 0's placeholder, by the outbox's protocol (`posting` before the post, `posted`
/// with its id after). `None` when it could not be posted: the outbox posts one later.
async fn post_placeholder(
    inner: &Inner,
    bot: &Bot,
    target: &Target,
    row: &DeliveryRow,
) -> Option<String> {
    let store = &inner.store;
    let parts = store.delivery_parts(&row.id).await.ok()?;
    if let Some(p) = parts.iter().find(|p| p.idx == 0) {
        // Posted before a restart: edit that one.
        return (p.state == "posted")
            .then(|| p.message_id.clone())
            .flatten();
    }
    let mut part = sluice_store::PartRow {
        delivery_id: row.id.clone(),
        idx: 0,
        state: "posting".into(),
        message_id: None,
        text_sha256: sha256(""),
        updated_at_ms: sluice_service::ids::now_ms(),
    };
    if !store.put_part(&part, None).await.ok()? {
        return None;
    }
    let placeholder = bot.placeholder();
    match bot.api.post(target, placeholder, "").await {
        Ok(id) => {
            part.state = "posted".into();
            part.message_id = Some(id.clone());
            part.updated_at_ms = sluice_service::ids::now_ms();
            store
                .put_part(&part, Some("posting"))
                .await
                .ok()?
                .then_some(id)
        }
        Err(crate::api::ApiError::Ambiguous(e)) => {
            tracing::info!(delivery = %row.id, "placeholder post without an answer: {e}");
            None
        }
        Err(e) => {
            tracing::info!(delivery = %row.id, "no placeholder: {e}");
            let _ = store.delete_part(&row.id, 0, "posting").await;
            None
        }
    }
}

/// The most a progress edit shows: the answer's tail past the platform's length.
const TAIL_UNITS: usize = 3_900;

/// A progress edit, best effort. `Some(when)` when the platform said not before then (a
/// 429's Retry-After), else `None`: the next edit waits the interval.
async fn edit(
    bot: &Bot,
    target: &Target,
    id: Option<&str>,
    text: &str,
    shown: &mut String,
) -> Option<Instant> {
    let id = id?;
    let view = tail(text, TAIL_UNITS.min(bot.api.max_len()));
    if view.trim().is_empty() || *shown == view {
        return None;
    }
    match tokio::time::timeout(Duration::from_secs(5), bot.api.edit(target, id, &view)).await {
        Ok(Ok(())) => *shown = view,
        Ok(Err(ApiError::RateLimited { retry_after, .. })) => {
            tracing::debug!(channel = %bot.channel, "progress edit rate limited for {retry_after:?}");
            return Some(Instant::now() + retry_after);
        }
        Ok(Err(e)) => tracing::debug!(channel = %bot.channel, "progress edit skipped: {e}"),
        Err(_) => tracing::debug!(channel = %bot.channel, "progress edit timed out"),
    }
    None
}

/// `text` if it fits in `max` UTF-16 units, else `…` and its last units (whole chars).
fn tail(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_owned();
    }
    let mut units = 0;
    let mut start = text.len();
    for (i, c) in text.char_indices().rev() {
        units += c.len_utf16();
        if units + 1 > max {
            break;
        }
        start = i;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tail_keeps_whole_characters_within_the_length() {
        assert_eq!(super::tail("short", 10), "short");
        let t = super::tail("ab😀cd", 4);
        assert_eq!(t, "…cd");
        assert!(t.encode_utf16().count() <= 4);
        assert_eq!(super::tail("ab😀cd", 5), "…😀cd");
    }
}
