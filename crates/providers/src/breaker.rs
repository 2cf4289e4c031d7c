//! A circuit breaker per provider+model: closed → (N consecutive failures) → open →
//! (after `open_for`) → half-open, where a few trial requests decide: one success closes
//! it, a failure opens it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
}

/// The lock is per provider+model and held only for a few field updates.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to send one request. Report how it went with [`Permit::record`]; a permit
/// dropped without a verdict (a bad request, a client gone mid-stream) frees its probe
/// slot. It owns its breaker so a stream can carry it until it ends.
#[derive(Debug)]
#[must_use]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Permit {
    pub fn record(mut self, verdict: Verdict, now: Instant) {
        self.done = true;
        self.breaker.apply(self.probe, verdict, now);
    }
}

/// The outcome of one request as far as the provider's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    /// Says nothing about health (rate limit, bad request, cancelled).
    Neutral,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probes_in_flight: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent plain data; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state now, moving open → half-open once `open_for` has passed.
    pub fn state(&self, now: Instant) -> BreakerState {
        let mut g = self.lock();
        Self::tick(&mut g, self.cfg.open_for, now);
        g.state
    }

    fn tick(g: &mut Inner, open_for: Duration, now: Instant) {
        if g.state == BreakerState::Open
            && g.opened_at
                .is_some_and(|t| now.duration_since(t) >= open_for)
        {
            g.state = BreakerState::HalfOpen;
            g.probes_in_flight = 0;
        }
    }

    /// A permit to call, or `None` while open (or half-open with all probes out).
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut g = self.lock();
        Self::tick(&mut g, self.cfg.open_for, now);
        match g.state {
            BreakerState::Closed => Some(Permit {
                breaker: self.clone(),
                probe: false,
                done: false,
            }),
            BreakerState::Open => None,
            BreakerState::HalfOpen if g.probes_in_flight < self.cfg.half_open_probes => {
                g.probes_in_flight += 1;
                Some(Permit {
                    breaker: self.clone(),
                    probe: true,
                    done: false,
                })
            }
            BreakerState::HalfOpen => None,
        }
    }

    /// Closes the breaker (an operator's reset): traffic flows again at once, and the
    /// failures counted so far are forgotten.
    pub fn reset(&self) {
        let mut g = self.lock();
        g.state = BreakerState::Closed;
        g.consecutive_failures = 0;
        g.opened_at = None;
        g.probes_in_flight = 0;
    }

    /// When an open breaker will let a probe through.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        let g = self.lock();
        match (g.state, g.opened_at) {
            (BreakerState::Open, Some(t)) => {
                Some(self.cfg.open_for.saturating_sub(now.duration_since(t)))
            }
            _ => None,
        }
    }

    fn apply(&self, probe: bool, verdict: Verdict, now: Instant) {
        let mut g = self.lock();
        if probe {
            g.probes_in_flight = g.probes_in_flight.saturating_sub(1);
        }
        match verdict {
            Verdict::Success => {
                g.consecutive_failures = 0;
                if g.state == BreakerState::HalfOpen || probe {
                    g.state = BreakerState::Closed;
                    g.opened_at = None;
                }
            }
            Verdict::Failure => {
                g.consecutive_failures += 1;
                let trip = probe
                    || g.state == BreakerState::HalfOpen
                    || g.consecutive_failures >= self.cfg.failure_threshold;
                if trip && g.state != BreakerState::Open {
                    g.state = BreakerState::Open;
                    g.opened_at = Some(now);
                    tracing::warn!(failures = g.consecutive_failures, "circuit breaker opened");
                }
            }
            Verdict::Neutral => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut g = self.breaker.lock();
            g.probes_in_flight = g.probes_in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Arc<Breaker> {
        Arc::new(Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        }))
    }

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..2 {
            let p = b.try_acquire(t0).unwrap();
            p.record(Verdict::Failure, t0);
        }
        assert_eq!(
            b.state(t0),
            BreakerState::Closed,
            "two failures are under the threshold"
        );
        let p = b.try_acquire(t0).unwrap();
        p.record(Verdict::Failure, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(
            b.try_acquire(t0 + Duration::from_secs(9)).is_none(),
            "open refuses"
        );

        let t1 = t0 + Duration::from_secs(10);
        let probe = b.try_acquire(t1).expect("half-open lets one probe through");
        assert!(b.try_acquire(t1).is_none(), "only one probe at a time");
        probe.record(Verdict::Success, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn failed_probe_reopens_and_dropped_probe_frees_its_slot() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            let p = b.try_acquire(t0).unwrap();
            p.record(Verdict::Failure, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        drop(b.try_acquire(t1).unwrap());
        let probe = b
            .try_acquire(t1)
            .expect("the dropped probe gave its slot back");
        probe.record(Verdict::Failure, t1);
        assert_eq!(
            b.state(t1),
            BreakerState::Open,
            "a failed probe opens it again"
        );
        assert!(b.try_acquire(t1 + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn success_resets_the_count() {
        let b = breaker();
        let t = Instant::now();
        for v in [
            Verdict::Failure,
            Verdict::Failure,
            Verdict::Success,
            Verdict::Failure,
            Verdict::Failure,
        ] {
            let p = b.try_acquire(t).unwrap();
            p.record(v, t);
        }
        assert_eq!(
            b.state(t),
            BreakerState::Closed,
            "failures must be consecutive"
        );
    }
}
