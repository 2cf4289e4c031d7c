//! Settlement: what a call's answer costs, and everything that follows from it. One
//! ledger row per provider call, failed calls included, queued (never awaited) once the
//! call's outcome is known; the reservation settled to the real use; the spend breaker
//! told. For a stream that is its end (or its drop), so the row carries the usage the
//! stream reported.

use tokio_util::task::task_tracker::TaskTrackerToken;

use sluice_config::Target;
use sluice_llm::Usage;
use sluice_providers::{CallContext, Route, RouteError, Routed};
use std::sync::Arc;

use sluice_limits::Tokens;
use sluice_store::ledger::SpendRow;

use crate::admission::{Estimate, Upstream};
use crate::call::CallMeta;
use crate::ids::now_ms;
use crate::keys::Principal;
use crate::snapshot::Snapshot;
use crate::{Inner, ServiceError};
use sluice_limits::lease::{Reservation, Snapshot as Headroom};
use sluice_limits::run::RunReservation;

/// Unpriced models named in the log, at most (see [`Spend::unpriced`]).
pub const MAX_UNPRICED_NAMED: usize = 1024;

/// What a call's rows share.
pub(crate) struct Spend {
    pub inner: Arc<Inner>,
    /// The config the call started with (its prices), kept to its end.
    pub snapshot: Arc<Snapshot>,
    pub principal: Arc<Principal>,
    pub meta: CallMeta,
    /// The limits' reservation, settled to the answer's tokens and cost (or given back
    /// when no call answered).
    pub reservation: Option<Reservation>,
    /// The run's budget (a step of a run), settled with the row's own amounts.
    pub run: Option<RunReservation>,
    /// Upstream-model limits held for the chain's entries.
    pub upstream: Option<Arc<Upstream>>,
    /// Counts the call as open until it settles, so a stop waits for it.
    _open: TaskTrackerToken,
}

/// A call let through its limits, during the router's walk: what its answer settles, and
/// what the router needs. Dropped before [`Begun::finish`] (the caller went away: a
/// client disconnected, a run was cancelled), it records the calls made so far, the one
/// in flight as `client_closed`, and gives the reservation back. `P` is Sluice's count
/// of the call's prompt for a chain entry's model, which that row carries (the provider
/// may bill it).
pub(crate) struct Begun<P: Fn(&Target) -> u64> {
    spend: Option<Spend>,
    pub route: Arc<Route>,
    pub ctx: CallContext,
    /// Headroom left in the limits, when a limit applied.
    headroom: Option<Headroom>,
    prompt: P,
}

impl<P: Fn(&Target) -> u64> Begun<P> {
    /// After the router's walk (`None`: given up because the service was cut): rows for
    /// the calls that failed, and the spend to settle with the answer and the sequence
    /// number of the answering call. On a cut, the call in flight is recorded with
    /// Sluice's count of its prompt (the provider may bill it).
    pub fn finish<T>(
        mut self,
        result: Option<Result<Routed<T>, RouteError>>,
    ) -> Result<(Spend, usize, Routed<T>, Option<Headroom>), ServiceError> {
        // Always there: only `finish` (which takes `self`) and the drop take it.
        let Some(spend) = self.spend.take() else {
            return Err(ServiceError::ShuttingDown);
        };
        let Some(result) = result else {
            spend.given_up(&self.ctx, &self.route, &self.prompt, "shutting_down");
            return Err(ServiceError::ShuttingDown);
        };
        let seq = spend.failed_calls(&self.ctx);
        let routed = result?;
        Ok((spend, seq, routed, self.headroom.take()))
    }
}

impl<P: Fn(&Target) -> u64> Drop for Begun<P> {
    fn drop(&mut self) {
        if let Some(spend) = self.spend.take() {
            spend.given_up(&self.ctx, &self.route, &self.prompt, "client_closed");
        }
    }
}

impl Spend {
    /// Resolves the model once, reserves the request in every limit that applies
    /// (`estimate` runs only when a token or USD limit does), and sets up its spend rows
    /// and the router's context (with the chain's upstream limits).
    pub async fn begin<P: Fn(&Target) -> u64>(
        inner: &Arc<Inner>,
        snapshot: &Arc<Snapshot>,
        principal: &Arc<Principal>,
        meta: CallMeta,
        model: &str,
        estimate: impl Fn() -> Estimate,
        prompt: P,
    ) -> Result<Begun<P>, ServiceError> {
        let route = snapshot.router.route(model)?;
        let chain = route.targets();
        let admitted = snapshot
            .gate
            .reserve(principal, &meta, model, chain, &estimate)
            .await?;
        let mut ctx = CallContext::new(meta.request_id.clone());
        let upstream = snapshot
            .gate
            .upstream(chain, || admitted.estimate.unwrap_or_else(&estimate));
        if let Some(u) = &upstream {
            ctx.admission = Some(u.clone());
        }
        let headroom = admitted.reservation.is_some().then_some(admitted.snapshot);
        let spend = Spend {
            inner: inner.clone(),
            snapshot: snapshot.clone(),
            principal: principal.clone(),
            meta,
            reservation: admitted.reservation,
            run: admitted.run,
            upstream,
            _open: inner.calls.token(),
        };
        Ok(Begun {
            spend: Some(spend),
            route,
            ctx,
            headroom,
            prompt,
        })
    }

    fn row(&self, seq: usize, target: &Target, status: &str, latency_ms: i64) -> SpendRow {
        SpendRow {
            request_id: self.meta.request_id.clone(),
            call_seq: i64::try_from(seq).unwrap_or(i64::MAX),
            key_id: Some(self.principal.key_ref.to_string()),
            user_id: self.principal.user_id.clone(),
            agent_id: self.meta.agent.clone(),
            run_id: self.meta.run.as_ref().map(|r| r.id().to_owned()),
            provider: target.provider.clone(),
            model: target.model.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            // Set from the price table once usage is known; a failed call costs nothing.
            cost_nanos: 0,
            saved_nanos: 0,
            estimated: false,
            status: status.to_owned(),
            latency_ms,
            created_at_ms: now_ms(),
            channel: self.meta.channel.as_ref().map(|c| c.channel.clone()),
            channel_user: self.meta.channel.as_ref().map(|c| c.user.clone()),
            session_id: self.meta.session.clone(),
        }
    }

    /// A model without a price: its calls cost 0 in the ledger (and are still limited by
    /// tokens); said once per model in the log. Direct model names come from clients, so
    /// at most [`MAX_UNPRICED_NAMED`] are remembered and named; past that, once, the log
    /// says that more exist.
    fn unpriced(&self, target: &Target) {
        let key = target.to_string();
        let mut seen = self
            .inner
            .unpriced
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) {
            return;
        }
        if seen.len() >= MAX_UNPRICED_NAMED {
            // The empty name marks that the overflow was reported.
            if seen.insert(String::new()) {
                tracing::warn!(
                    "more than {MAX_UNPRICED_NAMED} models without a price were called; \
                     further ones are recorded at cost 0 without being named here"
                );
            }
            return;
        }
        seen.insert(key);
        tracing::warn!(
            provider = %target.provider,
            model = %target.model,
            "no price for this model: its calls are recorded at cost 0; add it under [prices.models]"
        );
    }

    /// Rows for the calls that failed; returns how many.
    fn failed_calls(&self, ctx: &CallContext) -> usize {
        let failed = ctx.take_failed_calls();
        for (seq, f) in failed.iter().enumerate() {
            let latency = i64::try_from(f.latency.as_millis()).unwrap_or(i64::MAX);
            self.inner
                .ledger
                .record(self.row(seq, &f.target, f.class.as_str(), latency));
        }
        failed.len()
    }

    /// The call was given up while it waited for its first byte (the shutdown grace
    /// ended: `shutting_down`; the caller went away: `client_closed`): rows for the calls
    /// that failed and for the one in progress (its prompt counted by Sluice, since the
    /// provider may bill it), then the reservation settles.
    fn given_up(
        self,
        ctx: &CallContext,
        route: &Route,
        prompt: impl Fn(&Target) -> u64,
        status: &str,
    ) {
        let seq = self.failed_calls(ctx);
        let Some(target) = ctx.call_in_flight(route) else {
            // Between calls (backing off): nothing was asked of a provider; the
            // reservation goes back when `self` drops.
            return;
        };
        let _ = self.answered(seq, target, None, status, || (prompt(target), 0));
    }

    /// The row of the call that answered. Without usage from the provider, `estimate`
    /// gives (prompt, completion) tokens counted by Sluice, and the row is marked
    /// estimated; either way the row is priced.
    pub fn answered(
        mut self,
        seq: usize,
        target: &Target,
        usage: Option<&Usage>,
        status: &str,
        estimate: impl FnOnce() -> (u64, u64),
    ) -> Settled {
        let latency = i64::try_from(self.meta.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let mut row = self.row(seq, target, status, latency);
        let tokens = match usage {
            Some(u) => Tokens {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
                cached: u.cached_tokens(),
                cache_write: u
                    .prompt_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.cache_creation_tokens),
            },
            None => {
                row.estimated = true;
                let (prompt, completion) = estimate();
                Tokens {
                    prompt,
                    completion,
                    ..Tokens::default()
                }
            }
        };
        row.prompt_tokens = i64::try_from(tokens.prompt).unwrap_or(i64::MAX);
        row.completion_tokens = i64::try_from(tokens.completion).unwrap_or(i64::MAX);
        row.cached_tokens = i64::try_from(tokens.cached).unwrap_or(i64::MAX);
        let cost = self
            .snapshot
            .gate
            .prices()
            .cost_nanos(&target.provider, &target.model, tokens);
        match cost {
            Some(cost) => row.cost_nanos = cost,
            None => self.unpriced(target),
        }
        let cost = cost.and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
        let used = tokens.prompt.saturating_add(tokens.completion);
        if let Some(r) = self.reservation.take() {
            r.settle(used, cost);
        }
        if let Some(r) = self.run.take() {
            r.settle_split(tokens.prompt, tokens.completion, cost);
        }
        if let Some(u) = &self.upstream {
            u.settle(target, used, cost);
        }
        if let Some(trip) = self
            .inner
            .spend_breaker
            .record(&self.principal.key_ref, cost, now_ms())
        {
            let store = self.inner.store.clone();
            // On the service's runtime: a stream may settle on drop from anywhere.
            self.inner.tasks.spawn_on(
                async move {
                    if let Err(e) = store.trip_key(&trip).await {
                        tracing::error!(key = %trip.key_id, "cannot record the spend-breaker trip: {e}");
                    }
                },
                &self.inner.runtime,
            );
        }
        let settled = Settled {
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cost_nanos: cost,
            estimated: row.estimated,
        };
        self.inner.ledger.record(row);
        settled
    }
}

/// What a call cost, as its ledger row says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_nanos: u64,
    /// Counted by Sluice, the provider having reported no usage.
    pub estimated: bool,
}
