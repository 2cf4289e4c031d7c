//! Exponential backoff with full jitter, one formula in two shapes: [`full_jitter`] for a
//! caller that counts its own attempts, [`Backoff`] for a retry loop that holds the count.

use std::time::Duration;

/// Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter"): a uniform
/// delay in `[0, min(max, base · 2^attempt)]`, so clients that failed together do not
/// retry together. `attempt` counts from 0 for the first retry.
pub fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(max);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

/// [`full_jitter`] with the attempt counted for the caller: each delay's ceiling doubles
/// from `first` up to `max` until [`Backoff::reset`]. The jitter keeps several instances
/// that lost one database together from coming back to it in step.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the ceiling of the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = full_jitter(self.first, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// After a success: the next delay is drawn under `first` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_the_growing_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 0..40 {
            let ceiling = (100u64 << attempt.min(20)).min(1000);
            for _ in 0..50 {
                let d = full_jitter(base, max, attempt);
                assert!(
                    d <= Duration::from_millis(ceiling),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn the_counter_doubles_its_ceiling_up_to_max_and_reset_starts_over() {
        let (first, max) = (Duration::from_millis(10), Duration::from_millis(80));
        for _ in 0..50 {
            let mut b = Backoff::new(first, max);
            for ceiling_ms in [10, 20, 40, 80, 80, 80] {
                let d = b.next_delay();
                assert!(
                    d <= Duration::from_millis(ceiling_ms),
                    "{d:?} over {ceiling_ms} ms"
                );
            }
            assert_eq!(b.attempt, 6, "each delay counts one attempt");
            b.reset();
            assert_eq!(b.attempt, 0, "a reset starts the count over");
            assert!(
                b.next_delay() <= first,
                "after a reset the first ceiling applies again"
            );
        }
    }

    #[test]
    fn delays_spread_under_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(1000));
        let delays: std::collections::HashSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            delays.len() > 1,
            "twenty draws from 0..=1000 ms should not all be equal: {delays:?}"
        );
    }
}
