//! Counting a request's prompt tokens (done before each call once reservations exist) and
//! pricing a call. Run: `cargo bench -p sluice-limits`.

#![allow(
    clippy::unwrap_used,
    reason = "a bench input that fails to parse is a broken bench"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_limits::tokens::prompt_tokens;
use sluice_limits::{PriceTable, Tokens};
use sluice_llm::ChatRequest;

fn bench(c: &mut Criterion) {
    let small: ChatRequest = serde_json::from_str(
        r#"{"model":"mock","max_tokens":64,"messages":[{"role":"user","content":"Write one short sentence."}]}"#,
    )
    .unwrap();
    let long_text = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let long: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "gpt-4o", "messages": [{"role": "system", "content": long_text}, {"role": "user", "content": "Summarise."}]
    }))
    .unwrap();
    // Warm the BPE singletons outside the measurement.
    prompt_tokens(&small, "gpt-4o");
    prompt_tokens(&small, "claude-sonnet-4-5");
    c.bench_function("prompt tokens, 1 short message (gpt-4o)", |b| {
        b.iter(|| prompt_tokens(black_box(&small), "gpt-4o"))
    });
    c.bench_function("prompt tokens, ~2k-token system prompt (gpt-4o)", |b| {
        b.iter(|| prompt_tokens(black_box(&long), "gpt-4o"))
    });
    let huge: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "gpt-4o", "messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. ".repeat(10_000)}]
    }))
    .unwrap();
    c.bench_function("prompt tokens, ~100k-token prompt, sampled (gpt-4o)", |b| {
        b.iter(|| prompt_tokens(black_box(&huge), "gpt-4o"))
    });
    let prices = PriceTable::from_config(&sluice_config::PriceList::shipped().unwrap());
    let t = Tokens {
        prompt: 1200,
        completion: 300,
        cached: 400,
        cache_write: 0,
    };
    c.bench_function("price one call", |b| {
        b.iter(|| prices.cost_nanos("anthropic", black_box("claude-sonnet-4-5-20250929"), t))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
