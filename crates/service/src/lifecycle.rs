//! The service's background work and its stop. Started by [`Service::start`], whatever
//! transports the process serves:
//! - every `key_refresh`: reload changed gateway keys, auth-profile states and
//!   spend-breaker trips written by any instance, and look at the SQLite file;
//! - every `[limits] sync_ms`: record debts and give idle allowances back; hourly, delete
//!   the shared buckets of calendar windows long over;
//! - the auth-profile persister (local key cool-downs and refusals to the store);
//! - the ledger writer (owned by the store's [`Ledger`](sluice_store::ledger::Ledger)).
//!
//! A transport stops in two steps: [`Service::cut`] when its grace period is over (calls
//! still waiting end with `shutting_down`, streams with that error, each recording its
//! ledger row), then [`Service::stop`], which writes everything that must be kept.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Service, ids};

/// At least this long for the store work of a stop (leases back, key state, the
/// ledger's last rows), even when the caller's grace period is used up.
const MIN_STOP_WORK: Duration = Duration::from_secs(5);

/// What a stop wrote of the spend ledger.
pub type StopReport = sluice_store::ledger::StopReport;

impl Service {
    pub(crate) fn spawn_background(&self, cfg: &sluice_config::Config) {
        let inner = &self.inner;
        let (every, idle) = (cfg.limits.sync_every, cfg.limits.lease_idle);
        let loops = vec![
            inner.tasks.spawn(self.clone().refresh_loop()),
            inner.tasks.spawn(self.clone().sync_loop(every, idle)),
        ];
        *inner.loops.lock().unwrap_or_else(|p| p.into_inner()) = loops;
    }

    /// Waits for the next tick; `false` once the service is stopping. A round in progress
    /// is never interrupted (a sync cut mid-write would lose the allowance it zeroed).
    async fn next_round(&self, tick: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            biased;
            () = self.inner.stopping.cancelled() => false,
            _ = tick.tick() => true,
        }
    }

    /// Reloads changed API keys and auth-profile states every `key_refresh`, so a key
    /// revoked (or a provider key refused, or reset) on any instance counts on this one
    /// within that time.
    async fn refresh_loop(self) {
        let inner = &self.inner;
        let mut tick = tokio::time::interval(inner.key_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.next_round(&mut tick).await {
            let check = inner.store.check_file().await;
            *inner.file_check.lock().unwrap_or_else(|p| p.into_inner()) = check;
            match inner.keys.refresh(&inner.store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changed = n, "API keys reloaded"),
                Err(e) => tracing::warn!("cannot reload API keys (keeping the ones loaded): {e}"),
            }
            let snapshot = self.snapshot();
            if let Err(e) = inner.profiles.pull(&inner.store, &snapshot.router).await {
                tracing::warn!("cannot read shared auth-profile state: {e}");
            }
            if let Err(e) = inner
                .spend_breaker
                .refresh(&inner.store, ids::now_ms())
                .await
            {
                tracing::warn!("cannot read spend-breaker trips: {e}");
            }
        }
    }

    /// Every `every`: records debts and gives allowances idle for `idle` back; hourly,
    /// deletes the shared buckets of calendar windows long over.
    async fn sync_loop(self, every: Duration, idle: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_gc = std::time::Instant::now();
        while self.next_round(&mut tick).await {
            self.sync_limits(idle).await;
            if last_gc.elapsed() >= Duration::from_secs(3600) {
                last_gc = std::time::Instant::now();
                if let Err(e) = self.inner.store.delete_expired_buckets(ids::now_ms()).await {
                    tracing::warn!("cannot delete expired limit buckets: {e}");
                }
            }
        }
    }

    /// The grace period is over: calls still waiting for their first byte fail with
    /// `shutting_down`, and open streams end with that error. Each records its ledger
    /// row (a call in flight is recorded with the prompt Sluice counted, since the
    /// provider may bill it).
    pub fn cut(&self) {
        self.inner.cut.cancel();
    }

    /// Resolves once no call is running (none admitted and not yet settled): a transport
    /// draining for a stop waits for this within its grace period.
    pub async fn idle(&self) {
        while !self.inner.calls.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `call` unless the service is cut first (`None`).
    pub(crate) async fn until_cut<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        self.inner.cut.run_until_cancelled(call).await
    }

    /// Stops the service and writes what must be kept:
    /// 1. new calls are refused (`shutting_down`), and the service is cut: calls still
    ///    waiting and streams still open end (a transport drains its own first, within
    ///    its grace period, then stops the service);
    /// 2. it waits for those calls to settle and for the refresh and sync loops to
    ///    finish their round;
    /// 3. leased allowances go back to the shared buckets (debts recorded), auth-profile
    ///    changes are persisted, and the ledger writes its last rows.
    ///
    /// All by `deadline`, but at least [`MIN_STOP_WORK`] from now; ledger rows the
    /// database does not take by then go to the spill file (written at the next start),
    /// and the log says how many.
    pub async fn stop(&self, deadline: Instant) -> StopReport {
        let inner = &self.inner;
        let deadline = deadline.max(Instant::now() + MIN_STOP_WORK);
        inner.stopping.cancel();
        self.cut();
        inner.calls.close();
        if tokio::time::timeout_at(deadline, inner.calls.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = inner.calls.len(),
                "calls still unsettled at the stop deadline (a stream nobody reads or drops)"
            );
        }
        let loops = std::mem::take(&mut *inner.loops.lock().unwrap_or_else(|p| p.into_inner()));
        for mut handle in loops {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
        if tokio::time::timeout_at(deadline, self.sync_limits(Duration::ZERO))
            .await
            .is_err()
        {
            tracing::warn!(
                "could not give leased limits back before the deadline; they return when their window ends"
            );
        }
        let persister = inner
            .persister
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = persister
            && tokio::time::timeout_at(deadline, p.finish()).await.is_err()
        {
            tracing::warn!("could not persist provider-key state before the deadline");
        }
        // Every spend row is written, or spilled to be written at the next start.
        let report = inner.ledger.shutdown(deadline).await;
        if report.spilled == 0 && report.lost == 0 {
            tracing::info!(rows = report.written, "spend ledger written");
        }
        inner.tasks.close();
        if tokio::time::timeout_at(deadline, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running at the stop deadline");
        }
        report
    }
}
