//! Memory and build time of the encodings, ours against tiktoken-rs's, each in a fresh
//! process: `cargo run --release -p sluice-bpe --example memory -- ours|tiktoken`.

use std::time::Instant;

/// Resident and anonymous memory of this process, in KiB (Linux).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "ours".into());
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(100);
    let (rss0, anon0) = rss();
    let t = Instant::now();
    let n = match which.as_str() {
        "tiktoken" => {
            let o = tiktoken_rs::o200k_base_singleton()
                .encode_ordinary(&text)
                .len();
            o + tiktoken_rs::cl100k_base_singleton()
                .encode_ordinary(&text)
                .len()
        }
        _ => [
            sluice_bpe::Encoding::o200k(),
            sluice_bpe::Encoding::cl100k(),
        ]
        .into_iter()
        .flatten()
        .map(|e| e.count(&text))
        .sum(),
    };
    let took = t.elapsed();
    let (rss1, anon1) = rss();
    println!(
        "{which}: o200k + cl100k built and used in {took:.2?}; RSS +{} KiB (anonymous +{} KiB); {n} tokens",
        rss1 - rss0,
        anon1 - anon0
    );
}
