//! Limits and budgets that hold across instances, without a database round trip per
//! request: every limit is a bucket in a shared counter (the store's `limit_buckets`),
//! and each instance leases units from it in slices. A request reserves its estimate
//! from the instance's local allowance (memory only) in every bucket that applies, all or
//! nothing; when the answer is known it settles to the real use. Only when a local
//! allowance runs short does a request wait for a lease (one round trip, at most once per
//! slice), and a background prefetch usually gets there first.
//!
//! The bound. A lease is granted only from what is free in the shared bucket, atomically,
//! so the units leased by all instances never exceed the limit. A request is admitted only
//! against units its instance holds. The only use beyond the limit is a settled call that
//! used more than it reserved (its output ran past the reservation): the overshoot of a
//! bucket is at most the sum, over the requests in flight, of (real use − reservation),
//! which the gateway bounds with its per-request output cap. The debt is recorded in the
//! shared bucket at the next sync, so later requests pay it back.
//!
//! What a lease costs: units leased and not used sit idle on one instance while another
//! may be refused; each instance returns a bucket's idle allowance after `idle_ms`, and
//! all of it on shutdown. A crash loses at most one slice per bucket: for a rate limit it
//! refills within a minute, for a budget it stays counted until the window ends.

use std::future::Future;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::spec::{Meter, Period, Window, bucket_name};

/// The shared counter behind the buckets (the store in the gateway, memory in tests).
pub trait Counter: Send + Sync + 'static {
    /// Atomically grants up to `want` (at least `need`) units if `need` are free.
    fn lease(
        &self,
        ask: LeaseAsk<'_>,
    ) -> impl Future<Output = Result<Granted, CounterError>> + Send;

    /// Adds `delta` units to the bucket's use: negative gives leased units back, positive
    /// records use beyond the leases (a debt).
    fn adjust(
        &self,
        bucket: &str,
        refill_per_min: u64,
        delta: i64,
        expires_ms: Option<i64>,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), CounterError>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct LeaseAsk<'a> {
    pub bucket: &'a str,
    pub capacity: u64,
    pub refill_per_min: u64,
    pub need: u64,
    pub want: u64,
    /// When the shared row may be deleted (a calendar window's end plus a margin).
    pub expires_ms: Option<i64>,
    pub now_ms: i64,
}

/// A lease's answer: units granted (0: refused) and the bucket's use after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub granted: u64,
    pub used: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("shared limit counter: {0}")]
pub struct CounterError(pub String);

/// A rate bucket's use after refilling from `updated_ms` to `now_ms`, and the instant the
/// refill is accounted to (advanced only by whole units, so slow refills are not lost to
/// rounding when a bucket is touched often).
pub fn decay(used: u64, updated_ms: i64, refill_per_min: u64, now_ms: i64) -> (u64, i64) {
    if refill_per_min == 0 {
        return (used, now_ms);
    }
    if now_ms <= updated_ms {
        return (used, updated_ms);
    }
    let elapsed = (now_ms - updated_ms) as u128;
    let back = elapsed * u128::from(refill_per_min) / 60_000;
    if back >= u128::from(used) {
        return (0, now_ms);
    }
    let back = back as u64;
    // The time those whole units took to come back.
    let spent = (u128::from(back) * 60_000).div_ceil(u128::from(refill_per_min)) as i64;
    (used - back, updated_ms + spent)
}

/// How many units to grant from a bucket with `used` of `capacity` in use.
pub fn grant(used: u64, capacity: u64, need: u64, want: u64) -> u64 {
    let free = capacity.saturating_sub(used);
    if free < need || need == 0 && free == 0 {
        0
    } else {
        want.max(need).min(free)
    }
}

/// One limit a request must fit in.
#[derive(Debug, Clone)]
pub struct Demand {
    /// `key:…`, `user:…`, `agent:…`, `model:…`, `upstream:…`.
    pub scope: String,
    pub meter: Meter,
    pub period: Period,
    pub capacity: u64,
    pub amount: u64,
}

/// Why a request does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub scope: String,
    pub meter: Meter,
    pub period: Period,
    pub limit: u64,
    /// When asking again may succeed: the refill of a rate limit, the end of a budget's
    /// window; `None` for a lifetime budget, or a request larger than the limit itself.
    pub retry_after_ms: Option<u64>,
    /// The request alone is larger than the whole limit.
    pub oversized: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("{} limit of {} per {} reached for {}", .0.meter.as_str(), .0.limit, .0.period.as_str(), .0.scope)]
    Refused(Refusal),
    #[error(transparent)]
    Unavailable(#[from] CounterError),
}

#[derive(Debug)]
struct Local {
    name: String,
    period: Period,
    ends_ms: Option<i64>,
    state: Mutex<LocalState>,
    /// One lease at a time per bucket: concurrent requests that find the allowance short
    /// wait for the one lease rather than each asking for a slice.
    leasing: tokio::sync::Mutex<()>,
    /// A background lease of the next slice is on its way.
    prefetching: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct LocalState {
    capacity: u64,
    /// Leased units not yet reserved; negative after calls used more than they reserved.
    allowance: i64,
    touched_ms: i64,
    /// The shared bucket's use as of the last answer from the counter.
    seen_used: u64,
    seen_ms: i64,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give(&self, units: i64) {
        let mut s = self.lock();
        s.allowance = s.allowance.saturating_add(units);
    }

    /// Units per minute a rate bucket gets back, from its current (maybe edited) limit.
    fn refill(&self, s: &LocalState) -> u64 {
        self.period.refill_per_min(s.capacity)
    }

    fn expires_ms(&self) -> Option<i64> {
        self.ends_ms.map(|e| e + 7 * crate::spec::DAY_MS)
    }
}

/// What one instance holds of every bucket, and the counter it leases from.
#[derive(Debug)]
pub struct Limiter<C> {
    counter: Arc<C>,
    buckets: DashMap<String, Arc<Local>>,
    /// A lease asks for 1/`slices` of the limit (at least what the request needs).
    slices: u64,
}

/// Units a request holds in each bucket; settled with [`Reservation::settle`], or given
/// back when dropped unsettled (the call failed; its request still counts).
#[derive(Debug)]
pub struct Reservation {
    items: Vec<(Arc<Local>, Meter, u64)>,
    settled: bool,
}

/// Headroom of the tightest per-minute limits, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl Reservation {
    /// An empty reservation (nothing limited).
    pub fn none() -> Reservation {
        Reservation {
            items: Vec::new(),
            settled: false,
        }
    }

    /// Settles to the real use: `tokens` and `usd_nanos` replace the estimates (more than
    /// reserved takes the allowance below zero, a debt recorded at the next sync).
    pub fn settle(mut self, tokens: u64, usd_nanos: u64) {
        self.settled = true;
        for (local, meter, reserved) in &self.items {
            let used = match meter {
                Meter::Requests => *reserved,
                Meter::Tokens => tokens,
                Meter::UsdNanos => usd_nanos,
            };
            local.give(to_i64(*reserved) - to_i64(used));
        }
    }

    /// The per-minute headroom left after this reservation, as this instance knows it.
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let mut snap = Snapshot::default();
        for (local, meter, _) in &self.items {
            if local.period != Period::Minute {
                continue;
            }
            let s = *local.lock();
            let (used, _) = decay(s.seen_used, s.seen_ms, local.refill(&s), now_ms);
            // Units held here count as used in the shared bucket but are still ours to
            // spend; a debt is use the shared bucket has not heard of yet.
            let left = (i128::from(s.capacity) - i128::from(used) + i128::from(s.allowance))
                .clamp(0, i128::from(s.capacity)) as u64;
            let (limit, remaining) = match meter {
                Meter::Requests => (&mut snap.limit_requests, &mut snap.remaining_requests),
                Meter::Tokens => (&mut snap.limit_tokens, &mut snap.remaining_tokens),
                Meter::UsdNanos => continue,
            };
            if remaining.is_none_or(|r| left < r) {
                *remaining = Some(left);
                *limit = Some(s.capacity);
            }
        }
        snap
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        for (local, meter, reserved) in &self.items {
            if *meter != Meter::Requests {
                local.give(to_i64(*reserved));
            }
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rounds of "take from the allowances, lease for the short ones" before a request that
/// keeps losing its leased units to concurrent requests is refused.
const MAX_ROUNDS: usize = 8;

impl<C: Counter> Limiter<C> {
    pub fn new(counter: Arc<C>, slices: u64) -> Self {
        Limiter {
            counter,
            buckets: DashMap::new(),
            slices: slices.max(1),
        }
    }

    pub fn counter(&self) -> &Arc<C> {
        &self.counter
    }

    fn local(&self, d: &Demand, window: &Window, now_ms: i64) -> Arc<Local> {
        let name = bucket_name(&d.scope, d.meter, window);
        if let Some(l) = self.buckets.get(&name) {
            let l = l.clone();
            l.lock().capacity = d.capacity; // an edited limit applies at once
            return l;
        }
        self.buckets
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Local {
                    name,
                    period: d.period,
                    ends_ms: window.ends_ms,
                    state: Mutex::new(LocalState {
                        capacity: d.capacity,
                        allowance: 0,
                        touched_ms: now_ms,
                        seen_used: 0,
                        seen_ms: now_ms,
                    }),
                    leasing: tokio::sync::Mutex::new(()),
                    prefetching: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Reserves every demand, all or nothing. Waits only when an allowance must be
    /// leased from the shared counter.
    pub async fn reserve(
        &self,
        demands: &[Demand],
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        let mut items = Vec::with_capacity(demands.len());
        for d in demands {
            let window = d.period.window(now_ms);
            if d.amount > d.capacity {
                // Larger than the whole limit: no wait makes it fit.
                return Err(ReserveError::Refused(Refusal {
                    scope: d.scope.clone(),
                    meter: d.meter,
                    period: d.period,
                    limit: d.capacity,
                    retry_after_ms: None,
                    oversized: true,
                }));
            }
            items.push((self.local(d, &window, now_ms), d, window));
        }
        let mut last_short = 0;
        for _ in 0..MAX_ROUNDS {
            match take_all(&items, now_ms) {
                Ok(()) => {
                    for (local, d, window) in &items {
                        self.prefetch(local, d, window, now_ms);
                    }
                    let reservation = Reservation {
                        items: items
                            .iter()
                            .map(|(l, d, _)| (l.clone(), d.meter, d.amount))
                            .collect(),
                        settled: false,
                    };
                    return Ok(reservation);
                }
                Err(i) => last_short = i,
            }
            // Lease for every bucket that is short (a cold request may find all of them
            // empty), then try again.
            for (local, d, window) in &items {
                if local.lock().allowance < to_i64(d.amount) {
                    self.lease_for(local, d, window, now_ms).await?;
                }
            }
        }
        // Concurrent requests kept taking what was leased for this one: not a limit
        // reached, so a retryable error rather than a refusal.
        let (_, d, _) = &items[last_short];
        Err(ReserveError::Unavailable(CounterError(format!(
            "the allowance of {} kept running out under concurrent requests",
            d.scope
        ))))
    }

    async fn lease_for(
        &self,
        local: &Arc<Local>,
        d: &Demand,
        window: &Window,
        now_ms: i64,
    ) -> Result<(), ReserveError> {
        let slice = self.slice(d.capacity);
        let (mine, counter) = (local.clone(), self.counter.clone());
        let (amount, capacity, expires_ms) = (d.amount, d.capacity, mine.expires_ms());
        // The lease and its allowance update run as one task: a request that goes away
        // mid-lease (its client left) must not lose units the store already granted.
        let task = async move {
            let _one = mine.leasing.lock().await;
            let (allowance, refill) = {
                let s = mine.lock();
                (s.allowance, mine.refill(&s))
            };
            if allowance >= to_i64(amount) {
                return Ok(None); // another request's lease covered it
            }
            let need = u64::try_from(to_i64(amount).saturating_sub(allowance)).unwrap_or(u64::MAX);
            let answer = counter
                .lease(LeaseAsk {
                    bucket: &mine.name,
                    capacity,
                    refill_per_min: refill,
                    need,
                    want: need.max(slice),
                    expires_ms,
                    now_ms,
                })
                .await?;
            let mut s = mine.lock();
            s.allowance = s.allowance.saturating_add(to_i64(answer.granted));
            s.seen_used = answer.used;
            s.seen_ms = now_ms;
            s.touched_ms = now_ms;
            Ok::<_, CounterError>(Some((answer, need)))
        };
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn(task)
                .await
                .map_err(|e| CounterError(e.to_string()))??,
            Err(_) => task.await?,
        };
        let Some((answer, need)) = outcome else {
            return Ok(());
        };
        if answer.granted > 0 {
            return Ok(());
        }
        let retry_after_ms = match (d.period, window.ends_ms) {
            (Period::Minute, _) => {
                let free = d.capacity.saturating_sub(answer.used);
                let missing = need.saturating_sub(free).max(1);
                Some((u128::from(missing) * 60_000).div_ceil(u128::from(d.capacity.max(1))) as u64)
            }
            (_, Some(end)) => u64::try_from(end - now_ms).ok(),
            (_, None) => None,
        };
        Err(ReserveError::Refused(Refusal {
            scope: d.scope.clone(),
            meter: d.meter,
            period: d.period,
            limit: d.capacity,
            retry_after_ms,
            oversized: false,
        }))
    }

    fn slice(&self, capacity: u64) -> u64 {
        capacity.div_ceil(self.slices).max(1)
    }

    /// Leases the next slice in the background when a bucket's allowance runs below half
    /// a slice, so that the requests after this one find it here instead of waiting. Not
    /// when the shared bucket (as last seen) has less than a slice free: the last units
    /// of a limit are leased on demand, not held idle by one instance.
    fn prefetch(&self, local: &Arc<Local>, d: &Demand, window: &Window, now_ms: i64) {
        use std::sync::atomic::Ordering;
        let slice = self.slice(d.capacity);
        let s = *local.lock();
        let refill = local.refill(&s);
        let (seen, _) = decay(s.seen_used, s.seen_ms, refill, now_ms);
        if s.allowance >= to_i64(slice / 2) || seen.saturating_add(slice) > d.capacity {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if local.prefetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = local.clone();
        let counter = self.counter.clone();
        let _ = window;
        let (capacity, expires_ms) = (d.capacity, local.expires_ms());
        runtime.spawn(async move {
            {
                let _one = local.leasing.lock().await;
                let ask = LeaseAsk {
                    bucket: &local.name,
                    capacity,
                    refill_per_min: refill,
                    need: slice,
                    want: slice,
                    expires_ms,
                    now_ms,
                };
                if let Ok(answer) = counter.lease(ask).await {
                    let mut s = local.lock();
                    s.allowance = s.allowance.saturating_add(to_i64(answer.granted));
                    s.seen_used = answer.used;
                    s.seen_ms = now_ms;
                }
            }
            local.prefetching.store(false, Ordering::Release);
        });
    }

    /// Writes each bucket's balance to the shared counter: a debt (use beyond the leases)
    /// always, an unused allowance when the bucket has been idle for `idle_ms` (or always,
    /// with `idle_ms = 0`, as on shutdown). Buckets idle with nothing held are forgotten.
    pub async fn sync(&self, now_ms: i64, idle_ms: i64) -> Result<(), CounterError> {
        let all: Vec<Arc<Local>> = self.buckets.iter().map(|e| e.value().clone()).collect();
        let mut first_error = None;
        for local in all {
            let Ok(_one) = local.leasing.try_lock() else {
                continue; // a lease is in flight; next time
            };
            // A debt is always recorded; an idle allowance is given back. Read and cleared
            // under one lock, so a reservation cannot take units already handed back.
            let (delta, idle, refill) = {
                let mut s = local.lock();
                let idle = now_ms - s.touched_ms >= idle_ms;
                let delta = if s.allowance < 0 || idle {
                    s.allowance.saturating_neg()
                } else {
                    0
                };
                s.allowance = s.allowance.saturating_add(delta);
                (delta, idle, local.refill(&s))
            };
            if delta != 0
                && let Err(e) = self
                    .counter
                    .adjust(&local.name, refill, delta, local.expires_ms(), now_ms)
                    .await
            {
                local.give(-delta);
                first_error.get_or_insert(e);
                continue;
            }
            let forget = {
                let s = local.lock();
                s.allowance == 0
                    && (idle || local.ends_ms.is_some_and(|e| e <= now_ms))
                    && now_ms - s.touched_ms >= idle_ms.max(60_000)
            };
            if forget {
                // Only when nothing else holds it (a reservation in flight, a request about
                // to lease): the map's reference and ours.
                self.buckets.remove_if(&local.name, |_, l| {
                    Arc::ptr_eq(l, &local) && Arc::strong_count(&local) == 2
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The share of a rate bucket still free as this instance knows it (the shared use as
    /// last seen, refilled to `now_ms`, plus what it holds); `None` for a bucket it has not
    /// used yet.
    pub fn headroom(&self, bucket: &str, now_ms: i64) -> Option<f64> {
        let local = self.buckets.get(bucket)?;
        let s = *local.lock();
        let (used, _) = decay(s.seen_used, s.seen_ms, local.refill(&s), now_ms);
        let left = (i128::from(s.capacity) - i128::from(used) + i128::from(s.allowance))
            .clamp(0, i128::from(s.capacity));
        Some(left as f64 / s.capacity.max(1) as f64)
    }

    /// Units this instance holds in a bucket (for tests and status views).
    pub fn allowance(&self, bucket: &str) -> Option<i64> {
        self.buckets.get(bucket).map(|l| l.lock().allowance)
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

/// Takes every item's amount from its allowance, or none; `Err(i)`: item `i` is short.
fn take_all(items: &[(Arc<Local>, &Demand, Window)], now_ms: i64) -> Result<(), usize> {
    for (i, (local, d, _)) in items.iter().enumerate() {
        let mut s = local.lock();
        if s.allowance >= to_i64(d.amount) {
            s.allowance -= to_i64(d.amount);
            s.touched_ms = now_ms;
        } else {
            drop(s);
            for (l, d, _) in &items[..i] {
                l.give(to_i64(d.amount));
            }
            return Err(i);
        }
    }
    Ok(())
}

/// A counter in memory: one instance's buckets, for tests and benches. The store
/// implements the same contract on SQLite and Postgres.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    rows: Mutex<std::collections::HashMap<String, (u64, i64)>>,
    pub leases: std::sync::atomic::AtomicU64,
}

impl MemoryCounter {
    pub fn used(&self, bucket: &str, refill_per_min: u64, now_ms: i64) -> u64 {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.get(bucket)
            .map_or(0, |(u, t)| decay(*u, *t, refill_per_min, now_ms).0)
    }
}

impl Counter for MemoryCounter {
    async fn lease(&self, ask: LeaseAsk<'_>) -> Result<Granted, CounterError> {
        self.leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(ask.bucket.to_owned()).or_insert((0, ask.now_ms));
        let (used, at) = decay(row.0, row.1, ask.refill_per_min, ask.now_ms);
        let granted = grant(used, ask.capacity, ask.need, ask.want);
        *row = (used + granted, at);
        Ok(Granted {
            granted,
            used: used + granted,
        })
    }

    async fn adjust(
        &self,
        bucket: &str,
        refill_per_min: u64,
        delta: i64,
        _expires_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), CounterError> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(bucket.to_owned()).or_insert((0, now_ms));
        let (used, at) = decay(row.0, row.1, refill_per_min, now_ms);
        *row = (used.saturating_add_signed(delta), at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(scope: &str, meter: Meter, period: Period, capacity: u64, amount: u64) -> Demand {
        Demand {
            scope: scope.into(),
            meter,
            period,
            capacity,
            amount,
        }
    }

    #[test]
    fn decay_keeps_the_fraction_of_slow_refills() {
        // 3 per minute: one unit every 20 s. Touching the bucket every 5 s must not lose time.
        let (mut used, mut at) = (3, 0);
        for t in (5_000..=20_000).step_by(5_000) {
            (used, at) = decay(used, at, 3, t);
        }
        assert_eq!(used, 2);
        assert_eq!(decay(3, 0, 3, 59_999).0, 1);
        assert_eq!(decay(3, 0, 3, 60_000), (0, 60_000));
        assert_eq!(decay(7, 0, 0, 1_000_000).0, 7, "budgets never refill");
    }

    #[test]
    fn grants_all_or_nothing_of_what_is_needed() {
        assert_eq!(grant(0, 100, 10, 25), 25);
        assert_eq!(grant(90, 100, 10, 25), 10);
        assert_eq!(grant(91, 100, 10, 25), 0);
    }

    #[tokio::test]
    async fn requests_are_refused_at_the_exact_boundary_with_the_refill_wait() {
        let lim = Limiter::new(Arc::new(MemoryCounter::default()), 10);
        let d = [demand("key:k", Meter::Requests, Period::Minute, 3, 1)];
        for _ in 0..3 {
            std::mem::forget(lim.reserve(&d, 0).await.unwrap());
        }
        let Err(ReserveError::Refused(r)) = lim.reserve(&d, 0).await else {
            panic!("the 4th of 3 per minute is refused")
        };
        assert_eq!(r.retry_after_ms, Some(20_000));
        assert!(
            lim.reserve(&d, 20_000).await.is_ok(),
            "one comes back after 20 s"
        );
    }

    #[tokio::test]
    async fn a_budget_holds_for_two_instances_on_one_counter_and_settles() {
        let counter = Arc::new(MemoryCounter::default());
        let a = Limiter::new(counter.clone(), 4);
        let b = Limiter::new(counter.clone(), 4);
        let d = [demand("user:u", Meter::Tokens, Period::Day, 1000, 100)];
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..20 {
            let lim = if i % 2 == 0 { &a } else { &b };
            match lim.reserve(&d, 0).await {
                Ok(r) => held.push(r),
                Err(ReserveError::Refused(r)) => {
                    refused += 1;
                    assert_eq!(r.retry_after_ms, Some(crate::spec::DAY_MS as u64));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(held.len(), 10, "exactly the budget's worth is admitted");
        assert_eq!(refused, 10);
        // Each used 40 of its 100: settling frees 60 each, and the shared row learns it.
        for r in held {
            r.settle(40, 0);
        }
        a.sync(1, 0).await.unwrap();
        b.sync(1, 0).await.unwrap();
        let name = bucket_name("user:u", Meter::Tokens, &Period::Day.window(0));
        assert_eq!(counter.used(&name, 0, 1), 400);
        assert_eq!(a.allowance(&name), Some(0));
    }

    #[tokio::test]
    async fn overshoot_is_recorded_as_debt_and_paid_back() {
        let counter = Arc::new(MemoryCounter::default());
        let lim = Limiter::new(counter.clone(), 1);
        let d = [demand("key:k", Meter::Tokens, Period::Total, 1000, 100)];
        lim.reserve(&d, 0).await.unwrap().settle(700, 0); // ran past its reservation
        lim.sync(0, 0).await.unwrap();
        let name = bucket_name("key:k", Meter::Tokens, &Period::Total.window(0));
        assert_eq!(counter.used(&name, 0, 0), 700);
        let mut held = Vec::new();
        while let Ok(r) = lim.reserve(&d, 0).await {
            held.push(r);
            assert!(held.len() <= 3, "only 300 are left after the overshoot");
        }
        assert_eq!(held.len(), 3);
    }

    #[tokio::test]
    async fn all_or_nothing_gives_back_what_a_refused_request_took() {
        let counter = Arc::new(MemoryCounter::default());
        let lim = Limiter::new(counter.clone(), 1);
        let ok = demand("key:k", Meter::Tokens, Period::Minute, 1000, 10);
        let full = demand("model:m", Meter::Requests, Period::Minute, 1, 1);
        std::mem::forget(lim.reserve(std::slice::from_ref(&full), 0).await.unwrap());
        assert!(lim.reserve(&[ok.clone(), full], 0).await.is_err());
        let name = bucket_name("key:k", Meter::Tokens, &Period::Minute.window(0));
        assert_eq!(
            lim.allowance(&name),
            Some(1000),
            "the key's tokens were given back"
        );
        // A failed call's tokens come back, its request slot does not.
        let r = lim
            .reserve(
                &[ok, demand("key:k", Meter::Requests, Period::Minute, 5, 1)],
                0,
            )
            .await
            .unwrap();
        drop(r);
        assert_eq!(lim.allowance(&name), Some(1000));
    }

    #[tokio::test]
    async fn the_next_slice_is_leased_in_the_background_before_it_is_needed() {
        use std::sync::atomic::Ordering;
        let counter = Arc::new(MemoryCounter::default());
        let lim = Limiter::new(counter.clone(), 4); // slices of 25
        let d = [demand("key:k", Meter::Tokens, Period::Total, 100, 10)];
        let name = bucket_name("key:k", Meter::Tokens, &Period::Total.window(0));
        let mut held = vec![lim.reserve(&d, 0).await.unwrap()];
        assert_eq!(counter.leases.load(Ordering::Relaxed), 1, "the first waits");
        held.push(lim.reserve(&d, 0).await.unwrap()); // 5 left: below half a slice
        for _ in 0..100 {
            if counter.leases.load(Ordering::Relaxed) == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(
            lim.allowance(&name),
            Some(30),
            "a slice arrived in the background"
        );
        held.push(lim.reserve(&d, 0).await.unwrap());
        held.push(lim.reserve(&d, 0).await.unwrap());
        assert_eq!(
            counter.leases.load(Ordering::Relaxed),
            2,
            "no request waited for it"
        );
        // 50 used of 100, 10 held: a slice of 25 is still free, so the prefetch goes on,
        // but the last units are not prefetched.
        for _ in 0..6 {
            held.push(lim.reserve(&d, 0).await.unwrap());
        }
        assert!(lim.reserve(&d, 0).await.is_err());
        assert_eq!(counter.used(&name, 0, 0), 100);
    }

    #[tokio::test]
    async fn a_first_request_leases_every_cold_bucket_it_needs() {
        let lim = Limiter::new(Arc::new(MemoryCounter::default()), 20);
        let mut d = Vec::new();
        for scope in ["key:k", "user:u", "agent:a", "model:m"] {
            for (meter, period) in [
                (Meter::Requests, Period::Minute),
                (Meter::Tokens, Period::Minute),
                (Meter::UsdNanos, Period::Day),
                (Meter::Tokens, Period::Month),
            ] {
                d.push(demand(scope, meter, period, 1_000_000, 10));
            }
        }
        assert!(
            lim.reserve(&d, 0).await.is_ok(),
            "16 cold buckets, one request"
        );
    }

    #[tokio::test]
    async fn an_edited_rate_limit_refills_at_its_new_rate() {
        let counter = Arc::new(MemoryCounter::default());
        let lim = Limiter::new(counter.clone(), 1_000);
        let mut held = Vec::new();
        held.push(
            lim.reserve(
                &[demand("key:k", Meter::Requests, Period::Minute, 1000, 1)],
                0,
            )
            .await
            .unwrap(),
        );
        // Lowered to 10 a minute: 10 in use, and one back every 6 s, not every 60 ms.
        let d = [demand("key:k", Meter::Requests, Period::Minute, 10, 1)];
        for _ in 0..9 {
            held.push(lim.reserve(&d, 0).await.unwrap());
        }
        lim.sync(0, 0).await.unwrap();
        assert!(
            lim.reserve(&d, 3_000).await.is_err(),
            "nothing back after 3 s"
        );
        assert!(lim.reserve(&d, 6_000).await.is_ok(), "one back after 6 s");
    }

    #[tokio::test]
    async fn a_daily_budget_rolls_over_at_utc_midnight() {
        let lim = Limiter::new(Arc::new(MemoryCounter::default()), 1);
        let d = [demand("key:k", Meter::UsdNanos, Period::Day, 100, 60)];
        let last_ms = crate::spec::DAY_MS * 20_000 - 1; // 23:59:59.999 UTC
        let held = lim.reserve(&d, last_ms).await.unwrap();
        let Err(ReserveError::Refused(r)) = lim.reserve(&d, last_ms).await else {
            panic!("the day's budget has 40 left")
        };
        assert_eq!(r.retry_after_ms, Some(1), "back at midnight");
        let next_day = lim.reserve(&d, last_ms + 1).await;
        assert!(next_day.is_ok(), "a new day, a new budget");
        drop(held);
    }

    #[tokio::test]
    async fn a_larger_request_than_the_limit_is_refused_for_good() {
        let lim = Limiter::new(Arc::new(MemoryCounter::default()), 1);
        let d = [demand("key:k", Meter::Tokens, Period::Minute, 100, 101)];
        let Err(ReserveError::Refused(r)) = lim.reserve(&d, 0).await else {
            panic!()
        };
        assert_eq!(r.retry_after_ms, None);
    }
}
