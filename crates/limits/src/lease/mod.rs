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

mod counter;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use dashmap::DashMap;

pub use counter::{
    Counter, CounterError, Granted, LeaseAsk, MemoryCounter, adjust_row, decay, grant, lease_row,
};

use crate::spec::{Meter, Period, Window, bucket_name};

/// One limit a request must fit in.
#[derive(Debug, Clone)]
pub struct Demand {
    /// `key:…`, `user:…`, `agent:…`, `model:…`, `upstream:…` (shared, not copied, per
    /// request).
    pub scope: Arc<str>,
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

/// Where a bucket is found in memory: built from a demand without allocating (the
/// bucket's name, a string, is only made when the bucket is first used).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    scope: Arc<str>,
    meter: Meter,
    window: Window,
}

#[derive(Debug)]
struct Local {
    /// The shared row's name.
    name: String,
    window: Window,
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
        self.window.period.refill_per_min(s.capacity)
    }

    /// When the shared row may go: a calendar window's end plus a week.
    fn expires_ms(&self) -> Option<i64> {
        self.window.ends_ms.map(|e| e + 7 * crate::spec::DAY_MS)
    }

    /// The share of a rate bucket still free as this instance knows it: the shared use as
    /// last seen, refilled to `now_ms`, less what this instance holds unused (held units
    /// count as used in the shared row but are still its to spend; a debt is use the
    /// shared row has not heard of yet). Returns (units left, capacity).
    fn left(&self, now_ms: i64) -> (u64, u64) {
        let s = *self.lock();
        let (used, _) = decay(s.seen_used, s.seen_ms, self.refill(&s), now_ms);
        let left = (i128::from(s.capacity) - i128::from(used) + i128::from(s.allowance))
            .clamp(0, i128::from(s.capacity)) as u64;
        (left, s.capacity)
    }
}

/// One lease for `local` (its caller holds its `leasing` lock): the grant is added to its
/// allowance along with what the counter said about the shared row.
async fn lease_into<C: Counter>(
    counter: &C,
    local: &Local,
    capacity: u64,
    need: u64,
    want: u64,
    now_ms: i64,
) -> Result<Granted, CounterError> {
    let refill = {
        let s = local.lock();
        local.refill(&s)
    };
    let answer = counter
        .lease(LeaseAsk {
            bucket: &local.name,
            capacity,
            refill_per_min: refill,
            need,
            want,
            expires_ms: local.expires_ms(),
            now_ms,
        })
        .await?;
    let mut s = local.lock();
    s.allowance = s.allowance.saturating_add(to_i64(answer.granted));
    s.seen_used = answer.used;
    s.seen_ms = now_ms;
    Ok(answer)
}

/// What one instance holds of every bucket, and the counter it leases from.
#[derive(Debug)]
pub struct Limiter<C> {
    counter: Arc<C>,
    buckets: DashMap<BucketKey, Arc<Local>>,
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
            if local.window.period != Period::Minute {
                continue;
            }
            let (left, capacity) = local.left(now_ms);
            let (limit, remaining) = match meter {
                Meter::Requests => (&mut snap.limit_requests, &mut snap.remaining_requests),
                Meter::Tokens => (&mut snap.limit_tokens, &mut snap.remaining_tokens),
                Meter::UsdNanos => continue,
            };
            if remaining.is_none_or(|r| left < r) {
                *remaining = Some(left);
                *limit = Some(capacity);
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

    fn local(&self, d: &Demand, window: Window, now_ms: i64) -> Arc<Local> {
        let key = BucketKey {
            scope: d.scope.clone(),
            meter: d.meter,
            window,
        };
        if let Some(l) = self.buckets.get(&key) {
            let l = l.clone();
            l.lock().capacity = d.capacity; // an edited limit applies at once
            return l;
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Local {
                    name: bucket_name(&d.scope, d.meter, &window),
                    window,
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
                    scope: d.scope.to_string(),
                    meter: d.meter,
                    period: d.period,
                    limit: d.capacity,
                    retry_after_ms: None,
                    oversized: true,
                }));
            }
            items.push((self.local(d, window, now_ms), d, window));
        }
        let mut last_short = 0;
        for _ in 0..MAX_ROUNDS {
            match take_all(&items, now_ms) {
                Ok(()) => {
                    for (local, d, _) in &items {
                        self.prefetch(local, d, now_ms);
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
        let (amount, capacity) = (d.amount, d.capacity);
        // The lease and its allowance update run as one task: a request that goes away
        // mid-lease (its client left) must not lose units the store already granted.
        let task = async move {
            let _one = mine.leasing.lock().await;
            let allowance = mine.lock().allowance;
            if allowance >= to_i64(amount) {
                return Ok(None); // another request's lease covered it
            }
            let need = u64::try_from(to_i64(amount).saturating_sub(allowance)).unwrap_or(u64::MAX);
            let answer =
                lease_into(&*counter, &mine, capacity, need, need.max(slice), now_ms).await?;
            mine.lock().touched_ms = now_ms;
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
            scope: d.scope.to_string(),
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
    fn prefetch(&self, local: &Arc<Local>, d: &Demand, now_ms: i64) {
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
        let capacity = d.capacity;
        runtime.spawn(async move {
            {
                let _one = local.leasing.lock().await;
                // A failed prefetch is not an error: the next request leases on demand.
                let _ = lease_into(&*counter, &local, capacity, slice, slice, now_ms).await;
            }
            local.prefetching.store(false, Ordering::Release);
        });
    }

    /// Writes each bucket's balance to the shared counter: a debt (use beyond the leases)
    /// always, an unused allowance when the bucket has been idle for `idle_ms` (or always,
    /// with `idle_ms = 0`, as on shutdown). Buckets idle with nothing held are forgotten.
    pub async fn sync(&self, now_ms: i64, idle_ms: i64) -> Result<(), CounterError> {
        let all: Vec<(BucketKey, Arc<Local>)> = self
            .buckets
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let mut first_error = None;
        for (key, local) in all {
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
                    && (idle || local.window.ends_ms.is_some_and(|e| e <= now_ms))
                    && now_ms - s.touched_ms >= idle_ms.max(60_000)
            };
            if forget {
                // Only when nothing else holds it (a reservation in flight, a request about
                // to lease): the map's reference and ours.
                self.buckets.remove_if(&key, |_, l| {
                    Arc::ptr_eq(l, &local) && Arc::strong_count(&local) == 2
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn find(&self, scope: &Arc<str>, meter: Meter, window: Window) -> Option<Arc<Local>> {
        let key = BucketKey {
            scope: scope.clone(),
            meter,
            window,
        };
        self.buckets.get(&key).map(|l| l.clone())
    }

    /// The share of a bucket still free as this instance knows it; `None` for a bucket it
    /// has not used yet.
    pub fn headroom(
        &self,
        scope: &Arc<str>,
        meter: Meter,
        period: Period,
        now_ms: i64,
    ) -> Option<f64> {
        let (left, capacity) = self.find(scope, meter, period.window(now_ms))?.left(now_ms);
        Some(left as f64 / capacity.max(1) as f64)
    }

    /// Units this instance holds in a bucket (for tests and status views).
    pub fn allowance(
        &self,
        scope: &Arc<str>,
        meter: Meter,
        period: Period,
        now_ms: i64,
    ) -> Option<i64> {
        self.find(scope, meter, period.window(now_ms))
            .map(|l| l.lock().allowance)
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
