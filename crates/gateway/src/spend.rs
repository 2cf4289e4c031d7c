//! Spend rows for the ledger: one per provider call of a request, failed calls included,
//! queued (never awaited) once the call's outcome is known. For a stream that is its end,
//! so the row carries the usage the stream reported.

use std::time::Instant;

use sluice_config::Target;
use sluice_llm::Usage;
use sluice_providers::{CallContext, Route};
use std::sync::Arc;

use sluice_limits::Tokens;
use sluice_store::ledger::SpendRow;

use crate::auth::{Caller, now_ms};
use crate::limits::{Estimate, Upstream};
use crate::{ApiError, AppState};
use sluice_limits::lease::{Reservation, Snapshot};

/// Unpriced models named in the log, at most (see [`Spend::unpriced`]).
pub(crate) const MAX_UNPRICED_NAMED: usize = 1024;

/// What a request's rows share.
pub(crate) struct Spend {
    pub state: Arc<AppState>,
    pub request_id: String,
    pub caller: Caller,
    pub started: Instant,
    /// The limits' reservation, settled to the answer's tokens and cost (or given back
    /// when no call answered).
    pub reservation: Option<Reservation>,
    /// Upstream-model limits held for the chain's entries.
    pub upstream: Option<Arc<Upstream>>,
    pub agent: Option<String>,
}

/// A request let through its limits: what its answer settles, and what the router needs.
pub(crate) struct Begun {
    pub spend: Spend,
    pub route: Arc<Route>,
    pub ctx: CallContext,
    /// Headroom for the `x-ratelimit-*` headers, when a limit applied.
    pub limits: Option<Snapshot>,
}

impl Spend {
    /// Resolves the model once, reserves the request in every limit that applies
    /// (`estimate` runs only when a token or USD limit does), and sets up its spend rows
    /// and the router's context (with the chain's upstream limits).
    pub async fn begin(
        state: &Arc<AppState>,
        request_id: &str,
        caller: Caller,
        agent: Option<String>,
        model: &str,
        started: Instant,
        estimate: impl Fn() -> Estimate,
    ) -> Result<Begun, ApiError> {
        let route = state.router.route(model)?;
        let chain = route.targets();
        let admitted = state
            .gate
            .reserve(&caller, model, agent.as_deref(), chain, &estimate)
            .await?;
        let mut ctx = CallContext::new(request_id.to_owned());
        let upstream = state
            .gate
            .upstream(chain, || admitted.estimate.unwrap_or_else(&estimate));
        if let Some(u) = &upstream {
            ctx.admission = Some(u.clone());
        }
        let limits = admitted.reservation.is_some().then_some(admitted.snapshot);
        let spend = Spend {
            state: state.clone(),
            request_id: request_id.to_owned(),
            caller,
            started,
            reservation: admitted.reservation,
            upstream,
            agent,
        };
        Ok(Begun {
            spend,
            route,
            ctx,
            limits,
        })
    }

    fn row(&self, seq: usize, target: &Target, status: &str, latency_ms: i64) -> SpendRow {
        SpendRow {
            request_id: self.request_id.clone(),
            call_seq: i64::try_from(seq).unwrap_or(i64::MAX),
            key_id: Some(self.caller.key_ref.to_string()),
            user_id: self.caller.user_id.clone(),
            agent_id: self.agent.clone(),
            run_id: None,
            provider: target.provider.clone(),
            model: target.model.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            // Set from the price table once usage is known; a failed call costs nothing.
            cost_nanos: 0,
            estimated: false,
            status: status.to_owned(),
            latency_ms,
            created_at_ms: now_ms(),
        }
    }

    /// A model without a price: its calls cost 0 in the ledger (and are still limited by
    /// tokens); said once per model in the log. Direct model names come from clients, so
    /// at most [`MAX_UNPRICED_NAMED`] are remembered and named; past that, once, the log
    /// says that more exist.
    fn unpriced(&self, target: &Target) {
        let key = target.to_string();
        let mut seen = self
            .state
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
    pub fn failed_calls(&self, ctx: &CallContext) -> usize {
        let failed = ctx.take_failed_calls();
        for (seq, f) in failed.iter().enumerate() {
            let latency = i64::try_from(f.latency.as_millis()).unwrap_or(i64::MAX);
            self.state
                .ledger
                .record(self.row(seq, &f.target, f.class.as_str(), latency));
        }
        failed.len()
    }

    /// The shutdown grace ended while the request waited for its first byte: rows for the
    /// calls that failed and for the one in progress (status `shutting_down`, its prompt
    /// counted by Sluice, since the provider may bill it), then the reservation settles.
    pub fn cut(self, ctx: &CallContext, route: &Route, prompt: impl FnOnce(&Target) -> u64) {
        let seq = self.failed_calls(ctx);
        let Some(target) = ctx.call_in_flight(route) else {
            // Between calls (backing off): nothing was asked of a provider; the
            // reservation goes back when `self` drops.
            return;
        };
        self.answered(seq, target, None, "shutting_down", || (prompt(target), 0));
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
    ) {
        let latency = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
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
            .state
            .prices
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
        if let Some(u) = &self.upstream {
            u.settle(target, used, cost);
        }
        if let Some(trip) = self
            .state
            .spend_breaker
            .record(&self.caller.key_ref, cost, now_ms())
        {
            let store = self.state.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.trip_key(&trip).await {
                    tracing::error!(key = %trip.key_id, "cannot record the spend-breaker trip: {e}");
                }
            });
        }
        self.state.ledger.record(row);
    }
}
