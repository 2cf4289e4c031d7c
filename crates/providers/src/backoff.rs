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
}
