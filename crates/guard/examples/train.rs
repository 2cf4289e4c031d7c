//! Trains the classifier and writes `model/guard.bin`.
//!
//! ```text
//! cargo run --release -p sluice-guard --example train -- [--extra FILE.jsonl]... [--holdout FILE.jsonl]...
//! ```
//!
//! Reads `train/data.jsonl`, `train/synthetic.jsonl` and `train/hard_negatives.jsonl`
//! (committed) and any `--extra`
//! training files (one JSON object per line: `text`, `label` 0/1, optionally `weight`, how
//! many times the example counts, `group`, what the validation split hashes instead of the
//! text, so a poisoned document and its clean twin fall on the same side, and `source`).
//! Before training, every example whose normalised text equals or near-duplicates an
//! evaluation item (`eval/corpus.jsonl`, `eval/external_*.jsonl`, `eval/blind.jsonl` and every `--holdout`
//! file) is dropped, so the eval figures stay held out. Featurisation is the crate's own
//! ([`sluice_guard::classifier::featurize`]), so training and inference see the same
//! features. Logistic regression, AdaGrad, class- and source-balanced, a fixed shuffle
//! seed: the same data gives the same weights.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sluice_guard::classifier::{DIM, Model, featurize};
use sluice_guard::normalize::normalize;

/// One training example.
struct Example {
    text: String,
    label: u8,
    /// Counts the example this many times (default 1).
    weight: f32,
    /// What the validation split hashes: `group` if given (a poisoned text names its clean
    /// twin, so the two fall on the same side), else the text.
    group: Option<String>,
    /// Where it came from, for the per-source validation figures and source balancing.
    source: String,
}

fn read_jsonl(path: &Path) -> Vec<Example> {
    let Ok(body) = std::fs::read_to_string(path) else {
        eprintln!("skipping {} (unreadable)", path.display());
        return Vec::new();
    };
    body.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some(Example {
                text: v.get("text")?.as_str()?.to_owned(),
                label: v.get("label")?.as_u64()? as u8,
                weight: v.get("weight").and_then(|w| w.as_f64()).unwrap_or(1.0) as f32,
                group: v.get("group").and_then(|g| g.as_str()).map(str::to_owned),
                source: v
                    .get("source")
                    .and_then(|s| s.as_str())
                    .unwrap_or("?")
                    .to_owned(),
            })
        })
        .collect()
}

/// Character 8-gram shingles of the normalised text without spaces.
fn shingles(text: &str) -> HashSet<u64> {
    let t: Vec<char> = normalize(text)
        .text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = HashSet::new();
    if t.len() < 8 {
        let mut h = 0xcbf29ce484222325u64;
        for c in &t {
            h = (h ^ *c as u64).wrapping_mul(0x100000001b3);
        }
        out.insert(h);
        return out;
    }
    for w in t.windows(8) {
        let mut h = 0xcbf29ce484222325u64;
        for c in w {
            h = (h ^ *c as u64).wrapping_mul(0x100000001b3);
        }
        out.insert(h);
    }
    out
}

/// Exponent of the source balancing (0: every example weighs the same).
const BALANCE: f32 = 0.5;
/// Sources left out of the bias calibration (they still train the weights).
const CALIBRATION_SKIPS: &[&str] = &["hard_negative"];

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut extra = Vec::new();
    let mut holdout = vec![crate_dir.join("eval/corpus.jsonl")];
    if let Ok(dir) = std::fs::read_dir(crate_dir.join("eval")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("external") || name == "blind.jsonl") && name.ends_with(".jsonl") {
                holdout.push(e.path());
            }
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--extra", Some(p)) => extra.push(PathBuf::from(p)),
            ("--holdout", Some(p)) => holdout.push(PathBuf::from(p)),
            _ => {
                eprintln!("usage: train [--extra FILE]... [--holdout FILE]...");
                std::process::exit(2);
            }
        }
    }

    // The held-out items, indexed by shingle.
    let held: Vec<HashSet<u64>> = holdout
        .iter()
        .flat_map(|p| read_jsonl(p))
        .map(|e| shingles(&e.text))
        .collect();
    let mut index: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, s) in held.iter().enumerate() {
        for h in s {
            index.entry(*h).or_default().push(i as u32);
        }
    }
    let mut data = read_jsonl(&crate_dir.join("train/data.jsonl"));
    data.extend(read_jsonl(&crate_dir.join("train/synthetic.jsonl")));
    data.extend(read_jsonl(&crate_dir.join("train/hard_negatives.jsonl")));
    for p in &extra {
        data.extend(read_jsonl(p));
    }
    let before = data.len();
    let mut seen = HashSet::new();
    data.retain(|e| {
        let s = shingles(&e.text);
        if !seen.insert(
            s.iter()
                .fold(0u64, |a, h| a ^ h.rotate_left(7))
                .wrapping_add(s.len() as u64),
        ) {
            return false; // duplicate within the training set
        }
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for h in &s {
            for &i in index.get(h).map(Vec::as_slice).unwrap_or(&[]) {
                *counts.entry(i).or_default() += 1;
            }
        }
        // Near-duplicate: 60 % of the smaller text's shingles shared with a held-out item.
        !counts
            .iter()
            .any(|(&i, &c)| c * 10 >= 6 * s.len().min(held[i as usize].len()).max(1))
    });
    eprintln!(
        "training on {} of {} examples ({} held-out items from {} files)",
        data.len(),
        before,
        held.len(),
        holdout.len()
    );

    // 10 % of the training data (by a hash of the text) calibrates the bias and is not
    // trained on.
    let is_validation = |t: &str| {
        t.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        }) % 10
            == 0
    };
    // Each source's examples weigh (median source size / its size)^BALANCE, so that one big
    // set does not decide what an injection looks like.
    let mut per_source: HashMap<&str, usize> = HashMap::new();
    for e in &data {
        *per_source.entry(&e.source).or_default() += 1;
    }
    let mut sizes: Vec<usize> = per_source.values().copied().collect();
    sizes.sort_unstable();
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(1) as f32;
    let balance = |s: &str| {
        (median / per_source.get(s).copied().unwrap_or(1) as f32)
            .powf(BALANCE)
            .clamp(0.25, 4.0)
    };
    let mut feats: Vec<(Vec<u32>, f32)> = Vec::new();
    let mut weights: Vec<f32> = Vec::new();
    let mut valid: Vec<(Vec<u32>, f32)> = Vec::new();
    let mut valid_text: Vec<&str> = Vec::new();
    let mut valid_source: Vec<&str> = Vec::new();
    for e in &data {
        let f = (featurize(&e.text), e.label as f32);
        if is_validation(e.group.as_deref().unwrap_or(&e.text)) {
            valid.push(f);
            valid_text.push(&e.text);
            valid_source.push(&e.source);
        } else {
            feats.push(f);
            weights.push(e.weight * balance(&e.source));
        }
    }
    let pos = feats.iter().filter(|f| f.1 > 0.5).count().max(1) as f32;
    let neg = (feats.len() as f32 - pos).max(1.0);
    let n = feats.len() as f32;
    // Balanced classes, with false positives weighed more than misses.
    let (w_pos, w_neg) = (n / (2.0 * pos), 2.0 * n / (2.0 * neg));
    eprintln!(
        "positives {pos}, negatives {neg}, validation {}",
        valid.len()
    );

    // One logistic regression per shuffle seed, averaged: the order examples come in moves
    // a single AdaGrad run's weights, and with them the calibrated bias (a few benign
    // texts set it); the average of several runs depends far less on it.
    let (mut w, mut b) = (vec![0f32; DIM], 0f32);
    for (k, seed) in SEEDS.iter().enumerate() {
        let (wk, bk) = fit(&feats, &weights, (w_pos, w_neg), *seed);
        eprintln!("run {k}: done");
        for (a, x) in w.iter_mut().zip(&wk) {
            *a += x / SEEDS.len() as f32;
        }
        b += bk / SEEDS.len() as f32;
    }
    // Calibrate: lower the bias until at most 0.75 % of the validation benign texts score
    // above 0.5 on the classifier alone.
    let model = Model::new(w.clone(), b);
    // Validation texts are scored as the guard scores them (windows and all).
    let mut scratch = Vec::new();
    let valid_norm: Vec<String> = valid_text.iter().map(|t| normalize(t).text).collect();
    let mut logit = |m: &Model, i: usize| {
        let (p, _) = m.score(&valid_norm[i], &mut scratch);
        (p / (1.0 - p).max(1e-9)).ln()
    };
    // The operating point is set on ordinary benign text: the hard negatives (texts about
    // prompts and attacks, train/hard_negatives.py) teach the weights, but would otherwise
    // also raise the bias for everyone.
    let mut ranked: Vec<(f32, &str)> = (0..valid.len())
        .filter(|&i| valid[i].1 < 0.5 && !CALIBRATION_SKIPS.contains(&valid_source[i]))
        .map(|i| (logit(&model, i), valid_text[i]))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    // The benign texts that set the bias: worth reading when the shift is large.
    for (z, t) in ranked.iter().take(5) {
        let t: String = t.chars().take(100).collect();
        eprintln!("  benign logit {z:.2}: {}", t.replace('\n', " "));
    }
    let benign: Vec<f32> = ranked.iter().map(|r| r.0).collect();
    let allowed = benign.len() * 3 / 400;
    let shift = benign.get(allowed).map_or(0.0, |z| z.max(0.0) + 0.05);
    b -= shift;
    let model = Model::new(w, b);
    let tp = (0..valid.len())
        .filter(|&i| valid[i].1 > 0.5 && logit(&model, i) >= 0.0)
        .count();
    let p_all = valid.iter().filter(|v| v.1 > 0.5).count().max(1);
    let fp = (0..valid.len())
        .filter(|&i| {
            valid[i].1 < 0.5
                && !CALIBRATION_SKIPS.contains(&valid_source[i])
                && logit(&model, i) >= 0.0
        })
        .count();
    eprintln!(
        "bias shifted by {shift:.3}; validation: classifier recall {:.3}, FPR {:.3} ({} benign)",
        tp as f32 / p_all as f32,
        fp as f32 / benign.len().max(1) as f32,
        benign.len()
    );
    // Line scoring for documents: the offset that keeps at most 1 % of the validation
    // benign documents (multi-line texts) from flagging on one line, and what it catches.
    let is_doc = |i: usize| valid_norm[i].matches('\n').count() >= 2;
    let mut doc_benign: Vec<f32> = (0..valid.len())
        .filter(|&i| valid[i].1 < 0.5 && is_doc(i))
        .map(|i| model.best_line(&valid_norm[i]).map_or(f32::MIN, |l| l.0))
        .collect();
    doc_benign.sort_by(|a, b| b.total_cmp(a));
    let offset = doc_benign
        .get(doc_benign.len() / 100)
        .map_or(0.0, |z| z.max(0.0) + 0.05);
    let docs_pos: Vec<usize> = (0..valid.len())
        .filter(|&i| valid[i].1 > 0.5 && is_doc(i))
        .collect();
    let whole = docs_pos
        .iter()
        .filter(|&&i| logit(&model, i) >= 0.0)
        .count();
    let either = docs_pos
        .iter()
        .filter(|&&i| {
            logit(&model, i) >= 0.0
                || model
                    .best_line(&valid_norm[i])
                    .is_some_and(|l| l.0 >= offset)
        })
        .count();
    eprintln!(
        "line scoring: offset {offset:.3} over {} benign documents; document attacks caught {whole}/{} whole, {either}/{} with lines",
        doc_benign.len(),
        docs_pos.len(),
        docs_pos.len()
    );
    // Per source: attacks caught / benign flagged, and the mean recall over sources with
    // attacks (what source balancing is judged by).
    let mut by_source: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
    for i in 0..valid.len() {
        let hit = logit(&model, i) >= 0.0;
        let t = by_source.entry(valid_source[i]).or_default();
        let k = if valid[i].1 > 0.5 { 0 } else { 2 };
        t[k] += hit as usize;
        t[k + 1] += 1;
    }
    let mut recalls = Vec::new();
    for (s, t) in &by_source {
        eprintln!(
            "  {s:<40} attacks {}/{}  benign flagged {}/{}",
            t[0], t[1], t[2], t[3]
        );
        if t[1] >= 10 {
            recalls.push(t[0] as f32 / t[1] as f32);
        }
    }
    eprintln!(
        "  mean recall over sources: {:.3}",
        recalls.iter().sum::<f32>() / recalls.len().max(1) as f32
    );
    let out = crate_dir.join("model/guard.bin");
    if let Err(e) = std::fs::write(&out, model.to_bytes()) {
        eprintln!("writing {}: {e}", out.display());
        std::process::exit(1);
    }
    eprintln!("wrote {}", out.display());
}

/// Shuffle seeds of the averaged runs.
const SEEDS: [u64; 5] = [
    0x2545_f491_4f6c_dd1d,
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
];

/// One run of logistic regression (AdaGrad, L2) over `feats`, examples weighed by
/// `weights` and by class (`class.0` positives, `class.1` negatives), shuffled by `seed`.
fn fit(
    feats: &[(Vec<u32>, f32)],
    weights: &[f32],
    class: (f32, f32),
    mut seed: u64,
) -> (Vec<f32>, f32) {
    let (w_pos, w_neg) = class;
    let mut w = vec![0f32; DIM];
    let mut g2 = vec![1e-6f32; DIM];
    let (mut b, mut gb2) = (0f32, 1e-6f32);
    let (lr, l2, epochs) = (0.3f32, 1e-6f32, 12);
    let mut order: Vec<usize> = (0..feats.len()).collect();
    for epoch in 0..epochs {
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut loss = 0f64;
        for &i in &order {
            let (f, y) = &feats[i];
            if f.is_empty() {
                continue;
            }
            let scale = 1.0 / (f.len() as f32).sqrt();
            let z = b + f.iter().map(|&j| w[j as usize]).sum::<f32>() * scale;
            let p = 1.0 / (1.0 + (-z).exp());
            let cw = weights[i] * if *y > 0.5 { w_pos } else { w_neg };
            loss -= cw as f64
                * if *y > 0.5 {
                    (p.max(1e-7) as f64).ln()
                } else {
                    ((1.0 - p).max(1e-7) as f64).ln()
                };
            let g = (p - y) * cw;
            for &j in f {
                let j = j as usize;
                let gj = g * scale + l2 * w[j];
                g2[j] += gj * gj;
                w[j] -= lr * gj / g2[j].sqrt();
            }
            gb2 += g * g;
            b -= lr * g / gb2.sqrt();
        }
        if epoch + 1 == epochs {
            eprintln!("  last epoch: loss {:.4}", loss / feats.len() as f64);
        }
    }
    (w, b)
}
