//! Auth-profile state shared through the store: local changes (a key cooled down, refused
//! or reset) are written by a background task; changes written by other instances (and,
//! at start, by this one before a restart) are read back and applied. So a restart or
//! another instance does not hammer a key the provider just refused, and an operator's
//! reset reaches every instance. Nothing here is on a request's path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sluice_providers::auth::KeyState;
use sluice_providers::{ProfileEvent, Router};
use sluice_store::profiles::ProfileState;
use sluice_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::ids::now_ms;

/// Re-read this far before the newest change seen (clock differences between instances).
const OVERLAP_MS: i64 = 5_000;

#[derive(Debug)]
pub struct ProfileSync {
    seen_ms: AtomicI64,
    /// The `updated_at_ms` of the row last applied per (provider, profile): a row re-read
    /// in the overlap window is not applied twice (it could undo a newer local change).
    applied: std::sync::Mutex<HashMap<(String, String), i64>>,
}

impl ProfileSync {
    pub fn new() -> Self {
        ProfileSync {
            seen_ms: AtomicI64::new(i64::MIN),
            applied: std::sync::Mutex::default(),
        }
    }

    /// Applies states written since the last call (all of them the first time).
    pub async fn pull(&self, store: &Store, router: &Router) -> Result<usize, StoreError> {
        let seen = self.seen_ms.load(Ordering::Acquire);
        let since = if seen == i64::MIN {
            i64::MIN
        } else {
            seen.saturating_sub(OVERLAP_MS)
        };
        let rows = store.profiles_changed_since(since).await?;
        let now = now_ms();
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        for row in &rows {
            let id = (row.provider.clone(), row.profile_id.clone());
            if applied.get(&id).is_some_and(|at| *at >= row.updated_at_ms) {
                continue;
            }
            applied.insert(id, row.updated_at_ms);
            let Some(state) = KeyState::parse(&row.state) else {
                continue;
            };
            let retry_in =
                Duration::from_millis(u64::try_from(row.until_ms.saturating_sub(now)).unwrap_or(0));
            // A cool-down that has run out is nothing to apply; a reset or a refusal is.
            if matches!(state, KeyState::CoolingDown | KeyState::Billing) && retry_in.is_zero() {
                continue;
            }
            router.apply_profile_state(&row.provider, &row.profile_id, state, retry_in);
        }
        if let Some(max) = rows.iter().map(|r| r.updated_at_ms).max() {
            self.seen_ms.fetch_max(max, Ordering::AcqRel);
        }
        Ok(rows.len())
    }
}

impl Default for ProfileSync {
    fn default() -> Self {
        ProfileSync::new()
    }
}

/// Writes local changes until `stop` fires, then writes what is still queued and ends.
pub async fn persist(
    store: Store,
    mut events: mpsc::Receiver<ProfileEvent>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => write(&store, ev).await,
                None => return,
            },
            _ = &mut stop => {
                while let Ok(ev) = events.try_recv() {
                    write(&store, ev).await;
                }
                return;
            }
        }
    }
}

async fn write(store: &Store, ev: ProfileEvent) {
    let now = now_ms();
    let row = ProfileState {
        provider: ev.provider,
        profile_id: ev.change.profile_id,
        state: ev.change.state.as_str().to_owned(),
        until_ms: now
            .saturating_add(i64::try_from(ev.change.retry_in.as_millis()).unwrap_or(i64::MAX)),
        failures: i64::from(ev.change.failures),
        reason: None,
        updated_at_ms: now,
    };
    if let Err(e) = store.upsert_profile(&row).await {
        tracing::warn!(provider = %row.provider, profile = %row.profile_id, "cannot persist auth-profile state: {e}");
    }
}

/// The persister task and the signal that makes it drain and end.
#[derive(Debug)]
pub(crate) struct Persister {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Persister {
    pub(crate) fn spawn(
        router: &Router,
        store: &Store,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Option<Persister> {
        let events = router.take_profile_events()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tasks.spawn(persist(store.clone(), events, stopped));
        Some(Persister { task, stop })
    }

    /// Writes the changes still queued (for at most a few seconds), then ends.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
