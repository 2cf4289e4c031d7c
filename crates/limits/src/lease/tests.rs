use super::*;

/// Units a limiter holds in a bucket at time 0.
fn allowance_of(
    lim: &Limiter<MemoryCounter>,
    scope: &str,
    meter: Meter,
    period: Period,
) -> Option<i64> {
    lim.allowance(&Arc::from(scope), meter, period, 0)
}

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
    assert_eq!(
        allowance_of(&a, "user:u", Meter::Tokens, Period::Day),
        Some(0)
    );
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
    assert_eq!(
        allowance_of(&lim, "key:k", Meter::Tokens, Period::Minute),
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
    assert_eq!(
        allowance_of(&lim, "key:k", Meter::Tokens, Period::Minute),
        Some(1000)
    );
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
        allowance_of(&lim, "key:k", Meter::Tokens, Period::Total),
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
