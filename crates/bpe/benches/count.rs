//! Counting tokens, which Sluice does before each call (the prompt) and after streams
//! whose provider reports no usage. Run: `cargo bench -p sluice-bpe`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_bpe::Encoding;

fn bench(c: &mut Criterion) {
    let Some(o200k) = Encoding::o200k() else {
        return;
    };
    let short = "Write one short sentence about the sea.";
    let prose = "The quick brown fox jumps over the lazy dog. ".repeat(90); // ~4 KiB
    let code =
        "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n".repeat(60);
    c.bench_function("o200k count, short sentence", |b| {
        b.iter(|| o200k.count(black_box(short)))
    });
    c.bench_function("o200k count, 4 KiB of prose", |b| {
        b.iter(|| o200k.count(black_box(&prose)))
    });
    c.bench_function("o200k count, 4 KiB of code", |b| {
        b.iter(|| o200k.count(black_box(&code)))
    });
    // The same texts through tiktoken-rs, for the ratio within one run.
    let theirs = tiktoken_rs::o200k_base_singleton();
    c.bench_function("tiktoken-rs o200k encode, 4 KiB of prose", |b| {
        b.iter(|| theirs.encode_ordinary(black_box(&prose)).len())
    });
    c.bench_function("tiktoken-rs o200k encode, 4 KiB of code", |b| {
        b.iter(|| theirs.encode_ordinary(black_box(&code)).len())
    });
    c.bench_function("cl100k count, 4 KiB of prose", |b| {
        b.iter(|| Encoding::cl100k().map(|e| e.count(black_box(&prose))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
