//! The shared counter a [`super::Limiter`] leases from, and the arithmetic of its rows,
//! which every counter (the store's, the in-memory one) applies the same way.

use std::future::Future;
use std::sync::Mutex;

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

/// A lease applied to a shared row's `(used, updated_ms)`: the row to write (`None`: a
/// refusal leaves it as it is) and the answer. Every [`Counter`] applies it the same way.
pub fn lease_row(used: u64, updated_ms: i64, ask: &LeaseAsk<'_>) -> (Option<(u64, i64)>, Granted) {
    let (used, at) = decay(used, updated_ms, ask.refill_per_min, ask.now_ms);
    let granted = grant(used, ask.capacity, ask.need, ask.want);
    let answer = Granted {
        granted,
        used: used.saturating_add(granted),
    };
    ((granted > 0).then_some((answer.used, at)), answer)
}

/// An adjustment applied to a shared row: `delta` more (or, negative, fewer) units used.
pub fn adjust_row(
    used: u64,
    updated_ms: i64,
    refill_per_min: u64,
    delta: i64,
    now_ms: i64,
) -> (u64, i64) {
    let (used, at) = decay(used, updated_ms, refill_per_min, now_ms);
    (used.saturating_add_signed(delta), at)
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
        let (next, answer) = lease_row(row.0, row.1, &ask);
        if let Some(next) = next {
            *row = next;
        }
        Ok(answer)
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
        *row = adjust_row(row.0, row.1, refill_per_min, delta, now_ms);
        Ok(())
    }
}
