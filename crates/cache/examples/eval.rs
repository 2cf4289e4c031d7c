//! Hit rate and false-hit rate of the semantic cache per kind of pair, on the tuning and
//! the held-out part of `eval/pairs.jsonl` (or the `blind` set, `eval/pairs_blind.jsonl`),
//! with the real model.
//!
//! ```text
//! scripts/fetch-model
//! cargo run --release -p sluice-cache --example eval -- [--threshold 0.8] [--misses] [FILE.jsonl]
//! ```
//!
//! Each line is `{"kind", "split", "domain", "a", "b"}`: `a` is cached, `b` is asked.
//! Kinds `paraphrase` and `near_repeat` should share an answer (a hit is right);
//! `negation`, `entity_swap`, `number_date`, `scope` and `antonym` must not (a hit is a
//! false hit); the false-hit rate is printed with its one-sided 95 % upper bound
//! (Clopper-Pearson), which is what the pair count can prove.
//! A pair is a hit when cosine(a, b) ≥ the threshold and `verify(b, a)` matches, which is
//! what `Cache::search` does. Also printed: the same at every threshold with the cosine
//! alone, and a sweep of thresholds, both on the tuning part only. `--misses` lists the
//! tuning pairs decided wrongly; the held-out part is never listed, so it cannot be
//! tuned on by looking at it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_cache::{DEFAULT_MIN_COSINE, Model2Vec, Query, verify_with};

const SHARE: [&str; 2] = ["paraphrase", "near_repeat"];
const KINDS: [&str; 7] = [
    "paraphrase",
    "near_repeat",
    "negation",
    "entity_swap",
    "number_date",
    "scope",
    "antonym",
];

struct Pair {
    kind: String,
    split: String,
    a: String,
    b: String,
    cosine: f32,
    verdict: sluice_cache::Verdict,
}

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut file = crate_dir.join("eval/pairs.jsonl");
    let mut threshold = DEFAULT_MIN_COSINE;
    let mut misses = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--misses" => misses = true,
            "--threshold" => {
                threshold = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(DEFAULT_MIN_COSINE);
            }
            _ => file = PathBuf::from(a),
        }
    }
    let dir = std::env::var_os("SLUICE_MODEL_DIR").map_or_else(
        || crate_dir.join("../../models/potion-base-8M"),
        PathBuf::from,
    );
    let model = match Model2Vec::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let Ok(body) = std::fs::read_to_string(&file) else {
        eprintln!("cannot read {}", file.display());
        std::process::exit(2);
    };
    let mut pairs = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            eprintln!("bad line: {line}");
            continue;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let (a, b) = (s("a"), s("b"));
        let cosine = Query::new(&model, a.as_str()).cosine(&Query::new(&model, b.as_str()));
        let verdict = verify_with(&model, &b, &a);
        pairs.push(Pair {
            kind: s("kind"),
            split: s("split"),
            a,
            b,
            cosine,
            verdict,
        });
    }

    println!("{} pairs from {}", pairs.len(), file.display());
    println!(
        "threshold (min cosine) {threshold:.2}; hit = cosine >= threshold and verify() matches\n"
    );
    // `blind`: written by someone who never saw the rule (eval/pairs_blind.jsonl); like
    // `held_out`, never listed.
    for split in ["tuning", "held_out", "blind"] {
        if pairs.iter().any(|p| p.split == split) {
            report(&pairs, split, threshold);
        }
    }

    println!("cosine alone (no verification), tuning part:");
    println!(
        "{:>9}  {:>16}  {:>18}",
        "threshold", "share: hit rate", "must not: false hits"
    );
    for t in [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98] {
        let (h, fh) = rates(&pairs, "tuning", t, false);
        println!("{t:>9.2}  {:>15.1}%  {:>17.1}%", h * 100.0, fh * 100.0);
    }
    println!("\ncosine + verify(), tuning part:");
    println!(
        "{:>9}  {:>16}  {:>18}",
        "threshold", "share: hit rate", "must not: false hits"
    );
    for t in [0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9] {
        let (h, fh) = rates(&pairs, "tuning", t, true);
        println!("{t:>9.2}  {:>15.1}%  {:>17.1}%", h * 100.0, fh * 100.0);
    }

    if misses {
        println!("\ntuning pairs decided wrongly at {threshold:.2}:");
        for p in pairs.iter().filter(|p| p.split == "tuning") {
            let hit = p.cosine >= threshold && p.verdict.is_match();
            let share = SHARE.contains(&p.kind.as_str());
            if hit != share {
                let why = match &p.verdict {
                    sluice_cache::Verdict::Match if hit => "FALSE HIT".to_owned(),
                    sluice_cache::Verdict::Match => "below threshold".to_owned(),
                    sluice_cache::Verdict::Mismatch(r) => r.as_str().to_owned(),
                };
                println!(
                    "  [{}] {:.3} {why}: {:?} / {:?}",
                    p.kind, p.cosine, p.a, p.b
                );
            }
        }
    }
}

fn report(pairs: &[Pair], split: &str, threshold: f32) {
    println!("{split}:");
    println!(
        "  {:<12} {:>5}  {:>6}  {:>9}  {:>12}",
        "kind", "pairs", "hits", "rate", "cosine only"
    );
    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for p in pairs.iter().filter(|p| p.split == split) {
        let e = by_kind.entry(p.kind.as_str()).or_default();
        e.0 += 1;
        if p.cosine >= threshold {
            e.2 += 1;
            if p.verdict.is_match() {
                e.1 += 1;
            }
        }
    }
    let (mut share, mut share_hits, mut not, mut not_hits) = (0, 0, 0, 0);
    for kind in KINDS {
        let Some(&(n, hits, cos_only)) = by_kind.get(kind) else {
            continue;
        };
        let is_share = SHARE.contains(&kind);
        let label = if is_share { "hit" } else { "false hit" };
        println!(
            "  {kind:<12} {n:>5}  {hits:>6}  {:>8.1}%  {:>11.1}%   ({label})",
            pct(hits, n),
            pct(cos_only, n)
        );
        if is_share {
            share += n;
            share_hits += hits;
        } else {
            not += n;
            not_hits += hits;
        }
    }
    println!(
        "  share:       {share_hits}/{share} hits ({:.1}%); must not share: {not_hits}/{not} false hits ({:.1}%, 95% upper bound {:.1}%)\n",
        pct(share_hits, share),
        pct(not_hits, not),
        100.0 * upper_bound_95(not_hits, not)
    );
}

/// (hit rate on share pairs, false-hit rate on must-not pairs) of one split.
fn rates(pairs: &[Pair], split: &str, t: f32, with_verify: bool) -> (f64, f64) {
    let (mut s, mut sh, mut n, mut nh) = (0, 0, 0, 0);
    for p in pairs.iter().filter(|p| p.split == split) {
        let hit = p.cosine >= t && (!with_verify || p.verdict.is_match());
        if SHARE.contains(&p.kind.as_str()) {
            s += 1;
            sh += usize::from(hit);
        } else {
            n += 1;
            nh += usize::from(hit);
        }
    }
    (sh as f64 / s.max(1) as f64, nh as f64 / n.max(1) as f64)
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

/// The one-sided 95 % Clopper-Pearson upper bound on a rate seen as `k` of `n`: the
/// largest p for which seeing at most `k` had a 5 % chance (bisection on the binomial
/// tail). With k = 0 it is 1 - 0.05^(1/n), about 3/n.
fn upper_bound_95(k: usize, n: usize) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    let at_most_k = |p: f64| -> f64 {
        // P(X <= k) for X ~ Binomial(n, p), summed in log space.
        let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
        let mut ln_choose = 0.0f64;
        let mut sum = 0.0;
        for i in 0..=k {
            if i > 0 {
                ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            sum += (ln_choose + i as f64 * ln_p + (n - i) as f64 * ln_q).exp();
        }
        sum
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if at_most_k(mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}
