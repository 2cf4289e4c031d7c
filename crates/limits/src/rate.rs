//! Per-instance rate limits in requests and tokens per minute: token buckets that refill
//! continuously (capacity = the per-minute limit, so a full minute's quota can be spent at
//! once, then it comes back at limit/60 per second). A call reserves its estimate before
//! it goes out and settles to its real usage after; an over-run takes the bucket below
//! zero, which later calls wait out. Sharing limits between instances (leases on a shared
//! counter) builds on this and is not here yet.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Bucket {
    capacity: f64,
    per_sec: f64,
    /// (available units, when last refilled). Negative after an over-run.
    state: Mutex<(f64, Instant)>,
}

/// Refused: how long until the amount asked for is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Duration);

impl Bucket {
    pub fn per_minute(limit: u64, now: Instant) -> Bucket {
        let capacity = limit as f64;
        Bucket {
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new((capacity, now)),
        }
    }

    pub fn limit(&self) -> u64 {
        self.capacity as u64
    }

    fn refill(&self, s: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_sec).min(self.capacity);
        s.1 = now.max(s.1);
    }

    /// Takes `n` units if they are all there; returns what is left.
    pub fn try_take(&self, n: u64, now: Instant) -> Result<u64, Wait> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, now);
        let n = n as f64;
        if n > self.capacity {
            // More than a whole minute's quota: never available.
            return Err(Wait(Duration::from_secs(60)));
        }
        if s.0 + 1e-9 >= n {
            s.0 -= n;
            return Ok(s.0.max(0.0) as u64);
        }
        let missing = n - s.0;
        Err(Wait(Duration::from_secs_f64(
            (missing / self.per_sec).max(0.001),
        )))
    }

    /// Settles a reservation: `delta` > 0 gives units back (the call used less than it
    /// reserved), < 0 takes more (it used more), possibly below zero.
    pub fn settle(&self, delta: i64, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, now);
        s.0 = (s.0 + delta as f64).min(self.capacity);
    }

    pub fn remaining(&self, now: Instant) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s, now);
        s.0.max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_exactly_at_the_boundary_and_refills() {
        let t0 = Instant::now();
        let b = Bucket::per_minute(3, t0);
        assert_eq!(b.try_take(1, t0), Ok(2));
        assert_eq!(b.try_take(1, t0), Ok(1));
        assert_eq!(b.try_take(1, t0), Ok(0));
        let Err(Wait(w)) = b.try_take(1, t0) else {
            panic!("the 4th of 3 per minute is refused")
        };
        assert_eq!(w, Duration::from_secs(20), "one unit comes back every 20 s");
        assert_eq!(b.try_take(1, t0 + Duration::from_secs(20)), Ok(0));
    }

    #[test]
    fn settling_gives_back_or_takes_more() {
        let t0 = Instant::now();
        let b = Bucket::per_minute(1000, t0);
        b.try_take(600, t0).unwrap();
        b.settle(500, t0); // used 100 of 600
        assert_eq!(b.remaining(t0), 900);
        b.settle(-1500, t0); // an over-run
        assert_eq!(b.remaining(t0), 0);
        assert!(b.try_take(1, t0).is_err(), "the debt is waited out");
        assert!(b.try_take(1, t0 + Duration::from_secs(37)).is_ok());
    }

    #[test]
    fn more_than_the_limit_is_never_available() {
        let t0 = Instant::now();
        let b = Bucket::per_minute(10, t0);
        assert!(b.try_take(11, t0).is_err());
    }
}
