//! The spend-velocity breaker: what stops a retry loop on Friday from running up a bill
//! all weekend. Each instance watches each key's spend over a short sliding window against
//! the key's normal rate (an exponentially weighted average over a longer baseline). When
//! the window's spend passes the configured ceiling, or a multiple of the normal rate (and
//! a floor, so a quiet key's first burst of cents does not trip it), the key is tripped:
//! the trip is written to the store, every instance reads it on its next refresh, and the
//! key's requests get `spend_breaker_open` until an operator resets it or the cool-down
//! passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use sluice_config::SpendBreakerConfig;
use sluice_store::Store;
use sluice_store::breakers::Trip;

use crate::ServiceError;

const SLOTS: usize = 10;
/// A trip made here stays in force locally this long even if a refresh does not show it
/// yet (its write to the store may still be on the way).
const LOCAL_GRACE_MS: i64 = 10_000;

#[derive(Debug)]
pub struct SpendBreaker {
    cfg: Option<SpendBreakerConfig>,
    rates: DashMap<Arc<str>, Mutex<Rates>>,
    trips: ArcSwap<HashMap<String, Trip>>,
    /// Trips made by this instance, with when, until a refresh has seen them.
    local: Mutex<HashMap<String, Trip>>,
    /// Resets made here, by key, with when: a trip written to the store just before
    /// (its write was still on the way) must not bring the breaker back.
    resets: Mutex<HashMap<String, i64>>,
}

#[derive(Debug)]
struct Rates {
    /// Spend in each tenth of the window, a ring; `slot_start` is where `cur` began.
    slots: [u64; SLOTS],
    cur: usize,
    slot_start: i64,
    /// The normal rate, nano-dollars per millisecond.
    baseline: f64,
    last_ms: i64,
}

impl Rates {
    /// Forgets spend from before `until` (the end of a cool-down): the window restarts
    /// then, unless it already did.
    fn start_after(&mut self, until: i64, now_ms: i64) {
        if self.slot_start < until {
            self.slots = [0; SLOTS];
            self.cur = 0;
            self.slot_start = now_ms;
        }
    }
}

impl SpendBreaker {
    pub fn new(cfg: Option<SpendBreakerConfig>) -> Self {
        SpendBreaker {
            cfg,
            rates: DashMap::new(),
            trips: ArcSwap::from_pointee(HashMap::new()),
            local: Mutex::default(),
            resets: Mutex::default(),
        }
    }

    /// Refuses a tripped key.
    pub fn check(&self, key_ref: &str, now_ms: i64) -> Result<(), ServiceError> {
        let trips = self.trips.load();
        if trips.is_empty() {
            return Ok(());
        }
        match trips.get(key_ref) {
            Some(t) if t.until_ms.is_none_or(|u| u > now_ms) => {
                Err(ServiceError::SpendBreakerOpen {
                    reason: t.reason.clone(),
                    retry_after_ms: t.until_ms.map(|u| u64::try_from(u - now_ms).unwrap_or(0)),
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts a call's cost against its key; trips the key (and returns the trip, to be
    /// written to the store) when the window's spend is anomalous.
    pub fn record(&self, key_ref: &Arc<str>, cost_nanos: u64, now_ms: i64) -> Option<Trip> {
        let cfg = self.cfg?;
        if cost_nanos == 0 {
            return None;
        }
        // A trip whose cool-down has passed no longer holds the key, and the key is
        // watched again from its first call: the window starts afresh at the end of the
        // cool-down (what it held was spent before the trip), and the next anomaly trips
        // again at once, without waiting for a refresh to clear the old trip.
        let cooled_at = self
            .trips
            .load()
            .get(&**key_ref)
            .and_then(|t| t.until_ms)
            .filter(|until| *until <= now_ms);
        let window_ms = i64::try_from(cfg.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let baseline_ms = cfg.baseline.as_millis() as f64;
        let entry = self.rates.entry(key_ref.clone()).or_insert_with(|| {
            Mutex::new(Rates {
                slots: [0; SLOTS],
                cur: 0,
                slot_start: now_ms,
                baseline: 0.0,
                last_ms: now_ms,
            })
        });
        let mut r = entry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = cooled_at {
            r.start_after(until, now_ms);
        }
        let slot_ms = (window_ms / SLOTS as i64).max(1);
        let steps = (now_ms - r.slot_start).max(0) / slot_ms;
        for _ in 0..steps.min(SLOTS as i64) {
            r.cur = (r.cur + 1) % SLOTS;
            let cur = r.cur;
            r.slots[cur] = 0;
        }
        r.slot_start += steps * slot_ms;
        let cur = r.cur;
        r.slots[cur] = r.slots[cur].saturating_add(cost_nanos);
        let window_spend: u64 = r.slots.iter().sum();
        let normal = r.baseline;
        // The baseline learns from every call, after the check has used the old value.
        let dt = (now_ms - r.last_ms).max(0) as f64;
        r.baseline = r.baseline * (-dt / baseline_ms).exp() + cost_nanos as f64 / baseline_ms;
        r.last_ms = now_ms;
        drop(r);
        drop(entry);

        let usd = |n: u64| n as f64 / 1e9;
        let reason = if cfg.max_nanos.is_some_and(|max| window_spend > max) {
            Some(format!(
                "spent ${:.4} in the last {} s, over the ceiling of ${:.4}",
                usd(window_spend),
                window_ms / 1000,
                usd(cfg.max_nanos.unwrap_or(0))
            ))
        } else if let Some(multiple) = cfg.multiple
            && window_spend >= cfg.min_nanos
            && window_spend as f64 / window_ms as f64 > multiple * normal
        {
            Some(format!(
                "spent ${:.4} in the last {} s, over {multiple}x its normal rate of ${:.4} per window",
                usd(window_spend),
                window_ms / 1000,
                normal * window_ms as f64 / 1e9
            ))
        } else {
            None
        }?;
        let trip = Trip {
            key_id: key_ref.to_string(),
            tripped_at_ms: now_ms,
            until_ms: cfg
                .cooldown
                .map(|c| now_ms + i64::try_from(c.as_millis()).unwrap_or(i64::MAX)),
            reason,
        };
        let open = self
            .trips
            .load()
            .get(&trip.key_id)
            .is_some_and(|t| t.until_ms.is_none_or(|u| u > now_ms));
        if open {
            return None;
        }
        tracing::warn!(key = %trip.key_id, "spend breaker tripped: {}", trip.reason);
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(trip.key_id.clone(), trip.clone());
        self.trips.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(trip.key_id.clone(), trip.clone());
            m
        });
        Some(trip)
    }

    /// Takes the store's open trips (plus this instance's newest, which the store may not
    /// show yet). A key whose trip went away starts its window afresh.
    pub async fn refresh(
        &self,
        store: &Store,
        now_ms: i64,
    ) -> Result<(), sluice_store::StoreError> {
        let open = store.open_trips(now_ms).await?;
        let mut stale = Vec::new();
        let mut next: HashMap<String, Trip> = HashMap::new();
        {
            let mut resets = self.resets.lock().unwrap_or_else(|p| p.into_inner());
            resets.retain(|_, at| now_ms - *at < LOCAL_GRACE_MS);
            for t in open {
                if resets
                    .get(&t.key_id)
                    .is_some_and(|at| t.tripped_at_ms <= *at)
                {
                    stale.push(t.key_id.clone());
                } else {
                    next.insert(t.key_id.clone(), t);
                }
            }
        }
        for id in stale {
            store.reset_trip(&id).await?;
        }
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.retain(|id, t| {
                now_ms - t.tripped_at_ms < LOCAL_GRACE_MS
                    && t.until_ms.is_none_or(|u| u > now_ms)
                    && !next.contains_key(id)
            });
            for (id, t) in local.iter() {
                next.insert(id.clone(), t.clone());
            }
        }
        let before = self.trips.load();
        for (id, t) in before.iter().filter(|(id, _)| !next.contains_key(*id)) {
            match t.until_ms.filter(|u| *u <= now_ms) {
                // Cooled down: the window starts at the end of the cool-down, whether
                // `record` saw the expired trip first (then this changes nothing) or not.
                Some(until) => {
                    if let Some(rates) = self.rates.get(id.as_str()) {
                        rates
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .start_after(until, now_ms);
                    }
                }
                // Reset (here or elsewhere): the key starts afresh; no call was let
                // through since.
                None => {
                    self.rates.remove(id.as_str());
                }
            }
            tracing::info!(key = %id, "spend breaker closed");
        }
        self.trips.store(Arc::new(next));
        Ok(())
    }

    /// Closes a key's breaker here and in the store.
    pub async fn reset(
        &self,
        store: &Store,
        key_ref: &str,
    ) -> Result<bool, sluice_store::StoreError> {
        self.resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_ref.to_owned(), crate::ids::now_ms());
        let was = store.reset_trip(key_ref).await?;
        let local = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_ref)
            .is_some();
        let here = self.trips.load().contains_key(key_ref);
        self.trips.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(key_ref);
            m
        });
        self.rates.remove(key_ref);
        Ok(was || local || here)
    }

    /// What a key spent within the window ending at `now_ms`, as this instance counted
    /// it (nano-dollars); 0 for a key not watched.
    pub fn window_spend(&self, key_ref: &str, now_ms: i64) -> u64 {
        let Some(cfg) = self.cfg else { return 0 };
        let Some(entry) = self.rates.get(key_ref) else {
            return 0;
        };
        let r = entry.lock().unwrap_or_else(|p| p.into_inner());
        let window_ms = i64::try_from(cfg.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let slot_ms = (window_ms / SLOTS as i64).max(1);
        // Slots older than the window (the ring has not moved past them yet) hold no
        // spend of it.
        let stale = usize::try_from(((now_ms - r.slot_start).max(0) / slot_ms).min(SLOTS as i64))
            .unwrap_or(SLOTS);
        (0..SLOTS.saturating_sub(stale))
            .map(|back| r.slots[(r.cur + SLOTS - back) % SLOTS])
            .sum()
    }

    /// The trips in force, for the admin view.
    pub fn open(&self) -> Vec<Trip> {
        let mut all: Vec<Trip> = self.trips.load().values().cloned().collect();
        all.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(multiple: Option<f64>, max_usd: Option<f64>) -> SpendBreakerConfig {
        SpendBreakerConfig {
            window: Duration::from_secs(60),
            baseline: Duration::from_secs(3600),
            multiple,
            min_nanos: 1_000_000_000,
            max_nanos: max_usd.map(|u| (u * 1e9) as u64),
            cooldown: None,
        }
    }

    #[test]
    fn the_ceiling_trips_within_the_window_only() {
        let b = SpendBreaker::new(Some(cfg(None, Some(5.0))));
        let k: Arc<str> = Arc::from("k");
        // $1 a minute for an hour never passes $5 in a window.
        for m in 0..60 {
            assert!(b.record(&k, 1_000_000_000, m * 60_000).is_none());
        }
        // $6 within ten seconds does.
        let t0 = 3_600_000;
        let mut tripped = None;
        for s in 0..6 {
            tripped = tripped.or(b.record(&k, 1_000_000_000, t0 + s * 2_000));
        }
        let trip = tripped.expect("tripped");
        assert!(trip.reason.contains("ceiling"), "{}", trip.reason);
        assert!(b.check("k", t0 + 20_000).is_err());
        assert!(b.check("other", t0).is_ok());
    }

    #[test]
    fn after_a_cool_down_the_key_is_watched_from_its_first_call() {
        let mut c = cfg(None, Some(5.0));
        c.cooldown = Some(Duration::from_secs(30));
        let b = SpendBreaker::new(Some(c));
        let k: Arc<str> = Arc::from("k");
        let trip = (0..6)
            .find_map(|s| b.record(&k, 1_000_000_000, s * 1_000))
            .expect("tripped");
        let until = trip.until_ms.expect("a cool-down");
        assert!(b.check("k", until - 1).is_err());
        assert!(
            b.check("k", until).is_ok(),
            "open again after the cool-down"
        );
        // No refresh has run: the expired trip is still known. Calls are watched anyway,
        // from a window that starts after the cool-down: five dollars pass, the sixth trips.
        let again =
            (0..10).find_map(|s| b.record(&k, 1_000_000_000, until + s * 100).map(|t| (s, t)));
        let (at, trip) = again.expect("the runaway is stopped again");
        assert_eq!(at, 5, "the same allowance as before the trip, no more");
        assert!(b.check("k", trip.tripped_at_ms + 1).is_err());
    }

    #[test]
    fn a_multiple_of_the_normal_rate_trips_above_the_floor() {
        let b = SpendBreaker::new(Some(cfg(Some(10.0), None)));
        let k: Arc<str> = Arc::from("k");
        // Normal: 10 cents a minute for two hours.
        for m in 0..120 {
            assert!(b.record(&k, 100_000_000, m * 60_000).is_none());
        }
        // 3x normal is not an anomaly; 20x is ($2 in a minute, above the $1 floor).
        let t0 = 120 * 60_000;
        for s in 0..3 {
            assert!(b.record(&k, 100_000_000, t0 + s * 1_000).is_none());
        }
        let mut tripped = false;
        for s in 0..20 {
            tripped |= b
                .record(&k, 100_000_000, t0 + 120_000 + s * 1_000)
                .is_some();
        }
        assert!(tripped);
    }
}
