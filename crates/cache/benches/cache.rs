//! Lookup cost at 10k and 100k entries (exact, and semantic with every entry in one
//! context: the worst case, a linear scan of all vectors), insert cost at capacity, the
//! verification of one candidate, and embedding time per prompt on the real model (when
//! its files are present).
//!
//! ```text
//! cargo bench -p sluice-cache --bench cache -- --warm-up-time 1 --measurement-time 3
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice_cache::{
    Cache, Context, DEFAULT_MIN_COSINE, Embedder, Inserted, Key, Limits, Model2Vec, Query, verify,
};

const DIM: usize = 256;

/// A deterministic pseudo-random unit vector (xorshift); real embeddings cost the same
/// to scan.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn text(i: u64) -> String {
    format!("How do I configure feature number {i} in the dashboard?")
}

fn filled(n: u64) -> (Cache<Vec<u8>>, Context, Instant) {
    let cache = Cache::new(Limits {
        max_entries: n as usize,
        max_bytes: usize::MAX,
        ttl: Duration::from_secs(3600),
    });
    let ctx = Context::of(b"one tenant, one model, one system prompt");
    let now = Instant::now();
    for i in 0..n {
        let _ = put(&cache, ctx, i, now);
    }
    (cache, ctx, now)
}

/// Entry `i`: its text and vector, a 512-byte answer.
fn put(cache: &Cache<Vec<u8>>, ctx: Context, i: u64, now: Instant) -> Inserted {
    let q = Query::from_vector(text(i), vector(i));
    cache.insert(
        Key::of(&i.to_le_bytes()),
        ctx,
        Some(q),
        vec![0u8; 512],
        512,
        now,
    )
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [10_000u64, 100_000] {
        let (cache, ctx, now) = filled(n);
        let key = Key::of(&(n / 2).to_le_bytes());
        g.bench_with_input(BenchmarkId::new("exact_hit", n), &n, |b, _| {
            b.iter(|| cache.get(&key, now))
        });
        let absent = Key::of(b"absent");
        g.bench_with_input(BenchmarkId::new("exact_miss", n), &n, |b, _| {
            b.iter(|| cache.get(&absent, now))
        });
        // No vector near the query: every row is scored, none verified.
        let miss = Query::from_vector("What is the refund policy?", vector(u64::MAX));
        g.bench_with_input(
            BenchmarkId::new("semantic_miss_one_context", n),
            &n,
            |b, _| b.iter(|| cache.search(&ctx, &miss, DEFAULT_MIN_COSINE, now)),
        );
        // One row matches and verifies: the scan plus one verification.
        let hit = Query::from_vector(text(n / 2), vector(n / 2));
        g.bench_with_input(
            BenchmarkId::new("semantic_hit_one_context", n),
            &n,
            |b, _| b.iter(|| cache.search(&ctx, &hit, DEFAULT_MIN_COSINE, now)),
        );
        let mut i = n;
        g.bench_with_input(BenchmarkId::new("insert_at_capacity", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                put(&cache, ctx, i, now)
            })
        });
    }
    g.finish();
}

fn verification(c: &mut Criterion) {
    c.bench_function("verify/one_candidate", |b| {
        b.iter(|| {
            verify(
                "How can I reset the password of my account?",
                "How do I reset my account password?",
            )
        })
    });
}

fn embedding(c: &mut Criterion) {
    let dir = std::env::var_os("SLUICE_MODEL_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/potion-base-8M"),
        PathBuf::from,
    );
    let model = match Model2Vec::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("embedding benches skipped: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("embed");
    let short = "How do I reset my password?";
    let long = "I am trying to deploy a small web service written in Rust behind nginx on a \
                Debian server; requests larger than one megabyte fail with a 413 error even \
                though I raised the limit in my axum router. Which setting am I missing, and \
                where should it go so that uploads of up to fifty megabytes work?";
    g.bench_function("short_prompt", |b| b.iter(|| model.embed(short)));
    g.bench_function("paragraph_prompt", |b| b.iter(|| model.embed(long)));
    // What the gateway builds per semantic lookup: the vector and the analysis the
    // second check compares (with the content words' vectors for alignment).
    g.bench_function("query_short", |b| b.iter(|| Query::new(&model, short)));
    g.bench_function("query_paragraph", |b| b.iter(|| Query::new(&model, long)));
    g.bench_function("load_model", |b| {
        b.iter(|| Model2Vec::load(&dir).map(|m| m.dim()))
    });
    g.finish();
}

criterion_group!(benches, lookups, verification, embedding);
criterion_main!(benches);
