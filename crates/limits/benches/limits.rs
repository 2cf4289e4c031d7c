//! The limiter's request path: reserving a request's estimate in every bucket that
//! applies (from allowances already leased, as in steady state) and settling it.
//! Run: `cargo bench -p sluice-limits --bench limits`.

#![allow(
    clippy::unwrap_used,
    reason = "a bench whose setup fails is a broken bench"
)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_limits::lease::{Demand, Limiter, MemoryCounter};
use sluice_limits::spec::{Limits, LimitsExt, Meter};

/// Polls once: the warm path never waits, so it is ready at the first poll.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the warm path waited"),
    }
}

fn demands(scopes: &[(&str, Limits)]) -> Vec<Demand> {
    let mut out = Vec::new();
    for (scope, limits) in scopes {
        for (meter, period, capacity) in limits.each() {
            out.push(Demand {
                scope: Arc::from(*scope),
                meter,
                period,
                capacity,
                amount: match meter {
                    Meter::Requests => 1,
                    Meter::Tokens => 1_200,
                    Meter::UsdNanos => 4_000_000,
                },
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let big = u64::MAX / 4;
    let key = Limits {
        rpm: Some(big),
        tpm: Some(big),
        usd_day_nanos: Some(big),
        ..Limits::default()
    };
    let user = Limits {
        usd_month_nanos: Some(big),
        usd_total_nanos: Some(big),
        tokens_day: Some(big),
        tokens_month: Some(big),
        tokens_total: Some(big),
        ..Limits::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // Slices of a quarter of the limit: the benchmark never runs out of allowance.
    let limiter = Limiter::new(Arc::new(MemoryCounter::default()), 4);
    let three = demands(&[("key:k", key)]);
    let eight = demands(&[("key:k", key), ("user:alice", user)]);
    for d in [&three, &eight] {
        rt.block_on(limiter.reserve(d, 0))
            .unwrap()
            .settle(1_000, 3_000_000);
    }
    c.bench_function("reserve + settle, 3 buckets (key rpm, tpm, USD/day)", |b| {
        b.iter(|| {
            now(limiter.reserve(black_box(&three), 1_000))
                .unwrap()
                .settle(1_000, 3_000_000)
        })
    });
    c.bench_function("reserve + settle, 8 buckets (key + user budgets)", |b| {
        b.iter(|| {
            now(limiter.reserve(black_box(&eight), 1_000))
                .unwrap()
                .settle(1_000, 3_000_000)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
