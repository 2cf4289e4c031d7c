//! Admission: rate limits and budgets on the call path. A call reserves, in one
//! all-or-nothing step, its estimate in every bucket that applies to it: the key's, its
//! user's, its agent's and its model alias's limits (requests, tokens, USD; per minute,
//! day, month and lifetime), its run's budget (held in memory: `sluice_limits::run`), and,
//! as the router reaches each chain entry, that upstream model's own limit. The answer
//! settles each to the real use. Reservations come from allowances leased in slices from
//! the store (`sluice_limits::lease`), so no request waits on the database but the one
//! that finds a slice used up, and the limits hold across instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_config::{LimitsConfig, Target};
use sluice_limits::Tokens;
use sluice_limits::lease::{
    Counter, CounterError, Demand, Granted, LeaseAsk, Limiter, Refusal, Reservation, ReserveError,
    Snapshot as Headroom, adjust_row, lease_row,
};
use sluice_limits::run::{Exceeded, Meter as RunMeter, RunReservation};
use sluice_limits::spec::{Limits, LimitsExt, Meter, Period};
use sluice_providers::Admission;
use sluice_store::Store;

use crate::ServiceError;
use crate::call::CallMeta;
use crate::ids::now_ms;
use crate::keys::Principal;

/// The store as the shared counter of the limit buckets.
#[derive(Debug, Clone)]
pub struct StoreCounter(pub Store);

impl Counter for StoreCounter {
    async fn lease(&self, ask: LeaseAsk<'_>) -> Result<Granted, CounterError> {
        self.0
            .update_bucket(ask.bucket, ask.expires_ms, ask.now_ms, |used, at| {
                lease_row(used, at, &ask)
            })
            .await
            .map_err(|e| CounterError(e.to_string()))
    }

    async fn adjust(
        &self,
        bucket: &str,
        refill_per_min: u64,
        delta: i64,
        expires_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), CounterError> {
        self.0
            .update_bucket(bucket, expires_ms, now_ms, |used, at| {
                (
                    Some(adjust_row(used, at, refill_per_min, delta, now_ms)),
                    (),
                )
            })
            .await
            .map_err(|e| CounterError(e.to_string()))
    }
}

/// The engine holding this instance's share of every limit. It outlives a config:
/// a reload builds a new [`Gate`] on the same limiter, so leases held are kept.
pub type SharedLimiter = Arc<Limiter<StoreCounter>>;

/// The limits of every scope, as configured, on the shared limiter.
#[derive(Debug)]
pub struct Gate {
    pub limiter: SharedLimiter,
    pub cfg: LimitsConfig,
    prices: sluice_limits::PriceTable,
    /// The configured scopes with their bucket-name prefixes made once, so that no request
    /// formats a scope's name.
    users: HashMap<String, (Arc<str>, Limits)>,
    agents: HashMap<String, (Arc<str>, Limits)>,
    models: HashMap<String, (Arc<str>, Limits)>,
    upstream: HashMap<Target, (Arc<str>, Limits)>,
}

fn named<K: Clone + Eq + std::hash::Hash + std::fmt::Display>(
    kind: &str,
    table: &HashMap<K, Limits>,
) -> HashMap<K, (Arc<str>, Limits)> {
    table
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(name, l)| (name.clone(), (Arc::from(format!("{kind}:{name}")), *l)))
        .collect()
}

/// What a request is estimated to use, before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub prompt: u64,
    pub output: u64,
}

impl Estimate {
    fn tokens(&self) -> u64 {
        self.prompt + self.output
    }
}

impl Gate {
    /// The limiter for a store (made once per process; see [`SharedLimiter`]).
    pub fn limiter(cfg: &LimitsConfig, store: Store) -> SharedLimiter {
        Arc::new(Limiter::new(
            Arc::new(StoreCounter(store)),
            cfg.lease_slices,
        ))
    }

    pub fn new(
        cfg: LimitsConfig,
        limiter: SharedLimiter,
        prices: sluice_limits::PriceTable,
    ) -> Self {
        Gate {
            limiter,
            users: named("user", &cfg.users),
            agents: named("agent", &cfg.agents),
            models: named("model", &cfg.models),
            upstream: named("upstream", &cfg.upstream),
            cfg,
            prices,
        }
    }

    /// The prices the gate bounds USD budgets with; calls are settled at them too.
    pub fn prices(&self) -> &sluice_limits::PriceTable {
        &self.prices
    }

    /// The scopes a call answers to, with their limits (empty ones left out).
    fn scopes(&self, who: &Principal, meta: &CallMeta, model: &str) -> Vec<(Arc<str>, Limits)> {
        let mut out = Vec::with_capacity(4);
        if !who.limits.is_empty() {
            out.push((who.key_scope.clone(), who.limits));
        }
        let named = [
            (who.user_id.as_deref(), &self.users),
            (meta.agent.as_deref(), &self.agents),
            (Some(model), &self.models),
        ];
        for (name, table) in named {
            if let Some(scope) = name.and_then(|n| table.get(n)) {
                out.push(scope.clone());
            }
        }
        if let Some(c) = meta.channel.as_deref()
            && !c.limits.is_empty()
        {
            out.push((c.scope.clone(), c.limits));
        }
        out
    }

    /// The highest cost among the chain's entries: the reservation must cover whichever
    /// answers. A model without a price costs 0 here (its calls are limited by tokens).
    fn cost_bound(&self, chain: &[Target], est: Estimate) -> u64 {
        chain
            .iter()
            .filter_map(|t| {
                self.prices.cost_nanos(
                    &t.provider,
                    &t.model,
                    Tokens {
                        prompt: est.prompt,
                        completion: est.output,
                        ..Tokens::default()
                    },
                )
            })
            .max()
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0)
    }

    /// Reserves the request in every scope that limits it. `estimate` (which counts the
    /// prompt's tokens) runs only when a token or USD limit applies.
    pub async fn reserve(
        &self,
        who: &Principal,
        meta: &CallMeta,
        model: &str,
        chain: &[Target],
        estimate: impl FnOnce() -> Estimate,
    ) -> Result<Admitted, ServiceError> {
        let scopes = self.scopes(who, meta, model);
        if scopes.is_empty() && meta.run.is_none() {
            return Ok(Admitted::default());
        }
        let counts = |m| scopes.iter().any(|(_, l)| l.counts(m));
        let est =
            (meta.run.is_some() || counts(Meter::Tokens) || counts(Meter::UsdNanos)).then(estimate);
        let usd = if meta.run.is_some() || counts(Meter::UsdNanos) {
            est.map_or(0, |e| self.cost_bound(chain, e))
        } else {
            0
        };
        let tokens = est.map_or(0, |e| e.tokens());
        // The run's budget first: it is in memory, and a refusal there asks nothing of
        // the shared limiter. Given back (dropped) if the limiter refuses.
        let run = match &meta.run {
            Some(run) => Some(run.budget.reserve(tokens, usd).map_err(run_refused)?),
            None => None,
        };
        if scopes.is_empty() {
            return Ok(Admitted {
                run,
                estimate: est,
                ..Admitted::default()
            });
        }
        let demands = demands(&scopes, tokens, usd);
        let now = now_ms();
        let reservation = self.limiter.reserve(&demands, now).await.map_err(refused)?;
        let snapshot = reservation.snapshot(now);
        Ok(Admitted {
            reservation: Some(reservation),
            run,
            snapshot,
            estimate: est,
        })
    }

    /// The per-upstream-model limits of this request's chain, for the router to ask as it
    /// reaches each entry; `None` when no entry has one.
    pub fn upstream(
        self: &Arc<Self>,
        chain: &[Target],
        est: impl FnOnce() -> Estimate,
    ) -> Option<Arc<Upstream>> {
        if self.upstream.is_empty() || !chain.iter().any(|t| self.upstream.contains_key(t)) {
            return None;
        }
        Some(Arc::new(Upstream {
            gate: self.clone(),
            estimate: est(),
            held: Mutex::default(),
        }))
    }
}

fn demands(scopes: &[(Arc<str>, Limits)], tokens: u64, usd: u64) -> Vec<Demand> {
    let mut out = Vec::new();
    for (scope, limits) in scopes {
        for (meter, period, capacity) in limits.each() {
            out.push(Demand {
                scope: scope.clone(),
                meter,
                period,
                capacity,
                amount: match meter {
                    Meter::Requests => 1,
                    Meter::Tokens => tokens,
                    Meter::UsdNanos => usd,
                },
            });
        }
    }
    out
}

/// A run's budget refused the call: said like a lifetime budget of the run (or of the
/// ancestor whose budget it was) that is spent.
fn run_refused(e: Exceeded) -> ServiceError {
    ServiceError::LimitReached(Box::new(Refusal {
        scope: format!("run:{}", e.run),
        meter: match e.meter {
            RunMeter::Tokens => Meter::Tokens,
            RunMeter::Cost => Meter::UsdNanos,
            RunMeter::LlmCalls => Meter::Requests,
        },
        period: Period::Total,
        limit: e.cap,
        retry_after_ms: None,
        oversized: e.used == 0,
    }))
}

fn refused(e: ReserveError) -> ServiceError {
    match e {
        ReserveError::Refused(refusal) => ServiceError::LimitReached(Box::new(refusal)),
        ReserveError::Unavailable(e) => ServiceError::LimitsUnavailable(e.to_string()),
    }
}

/// A call's admission: its reservation (settled by the spend path) and the headroom left
/// (HTTP sends it as `x-ratelimit-*` headers).
#[derive(Debug, Default)]
pub struct Admitted {
    pub reservation: Option<Reservation>,
    /// The run's budget, when the call is a step of a run.
    pub run: Option<RunReservation>,
    pub snapshot: Headroom,
    pub estimate: Option<Estimate>,
}

/// The upstream-model limits of one request's chain: the router asks before each entry;
/// the entry that answers is settled to its use, the others are given back.
#[derive(Debug)]
pub struct Upstream {
    gate: Arc<Gate>,
    estimate: Estimate,
    held: Mutex<Vec<(Target, Reservation)>>,
}

impl Upstream {
    /// Settles the answering entry's reservation; the others' go back when this drops.
    pub fn settle(&self, target: &Target, tokens: u64, usd_nanos: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|(t, _)| t == target) {
            let (_, r) = held.swap_remove(i);
            r.settle(tokens, usd_nanos);
        }
    }
}

impl Admission for Upstream {
    fn headroom(&self, target: &Target) -> Option<f64> {
        let (scope, limits) = self.gate.upstream.get(target)?;
        let now = now_ms();
        limits
            .each()
            .filter(|(_, period, _)| *period == Period::Minute)
            .filter_map(|(meter, period, _)| self.gate.limiter.headroom(scope, meter, period, now))
            .reduce(f64::min)
    }

    fn admit<'a>(
        &'a self,
        target: &'a Target,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>> {
        Box::pin(async move {
            let Some(scope) = self.gate.upstream.get(target) else {
                return Ok(());
            };
            let usd = self
                .gate
                .cost_bound(std::slice::from_ref(target), self.estimate);
            let scopes = [scope.clone()];
            let demands = demands(&scopes, self.estimate.tokens(), usd);
            match self.gate.limiter.reserve(&demands, now_ms()).await {
                Ok(r) => {
                    self.held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((target.clone(), r));
                    Ok(())
                }
                Err(ReserveError::Refused(r)) => {
                    Err(Duration::from_millis(r.retry_after_ms.unwrap_or(60_000)))
                }
                // A provider quota guard: when the store cannot be reached the provider's
                // own 429 still protects it, so the call goes ahead.
                Err(ReserveError::Unavailable(e)) => {
                    tracing::warn!(%target, "upstream limit not checked: {e}");
                    Ok(())
                }
            }
        })
    }
}
