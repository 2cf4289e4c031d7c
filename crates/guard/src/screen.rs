//! Input screening: [`Guard::screen`] runs the normaliser, the rule detectors, the decoder
//! and the classifier over a text and sums their findings into one score.

use std::ops::Range;

use regex::{Regex, RegexBuilder};

use crate::classifier::Model;
use crate::decode::Decoder;
use crate::detect::{Detectors, Hit};
use crate::normalize::{Normalized, normalize};
use crate::{Detector, GuardError, InvalidPattern};

/// The score at and above which a screening counts as an injection: the threshold the eval
/// figures in `docs/guard.md` are reported at.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Classifier probabilities below this are not reported as a finding (they still add to the
/// total, a little).
const CLASSIFIER_FINDING_MIN: f32 = 0.5;
/// At most this many encoded fragments are decoded per text.
const MAX_FRAGMENTS: usize = 16;

/// Operator patterns (regular expressions, `regex` crate syntax, matched case-insensitively).
///
/// - A `deny` match is a [`Detector::CustomDeny`] finding with score 1.0. Deny patterns are
///   matched against the original text and against the normalised one, so obfuscation
///   (fullwidth, zero-width, homoglyphs) does not dodge them.
/// - An `allow` match marks its span of the original text as trusted: that span is blanked
///   before the built-in detectors and the classifier run, so nothing inside it is found.
///   It does not suppress `custom_deny`. To exempt a whole text, write a pattern that
///   matches all of it (for example `(?s)^BEGIN QUOTED ATTACK.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub deny: Vec<String>,
    pub allow: Vec<String>,
}

/// Where a text comes from: tool results are where indirect injection arrives, and weigh
/// some detectors differently; a system prompt is trusted and weighs everything down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    User,
    ToolResult,
    System,
}

impl Source {
    fn factor(self, d: Detector) -> f32 {
        match self {
            Source::User => 1.0,
            Source::ToolResult => match d {
                // Pages quote "act as" personas and questions about prompts; an instruction
                // to the reading model is what matters there.
                Detector::JailbreakPersona => 0.7,
                Detector::PromptExtraction => 0.8,
                // Content that talks to the model ("in your answer, …") is suspect in a page
                // or an email, unremarkable from a user.
                Detector::Smuggling => 1.3,
                _ => 1.0,
            },
            Source::System => 0.5,
        }
    }
}

/// One thing found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: Detector,
    /// 0..=1: how sure this detector is.
    pub score: f32,
    /// Byte offsets into the original text.
    pub span: Range<usize>,
}

/// The result of screening one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Screening {
    /// 0..=1, the total: a noisy-OR of the findings' scores (see `docs/guard.md`).
    pub score: f32,
    /// At most one finding per detector, strongest first.
    pub findings: Vec<Finding>,
}

impl Screening {
    /// Whether the total reaches `threshold`.
    pub fn exceeds(&self, threshold: f32) -> bool {
        self.score >= threshold
    }

    /// The detector ids of the findings, for `prompt_rejected` (never the matched text).
    pub fn detector_ids(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.detector.as_str()).collect()
    }
}

/// The input screen. Built once (it compiles every pattern), `Send + Sync`, cheap to share
/// in an `Arc`.
pub struct Guard {
    detectors: Detectors,
    decoder: Decoder,
    model: Model,
    deny: Vec<Regex>,
    allow: Vec<Regex>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("deny", &self.deny.len())
            .field("allow", &self.allow.len())
            .finish()
    }
}

fn compile(
    list: &'static str,
    patterns: &[String],
    problems: &mut Vec<InvalidPattern>,
) -> Vec<Regex> {
    let mut out = Vec::new();
    for (index, p) in patterns.iter().enumerate() {
        match RegexBuilder::new(p)
            .case_insensitive(true)
            .size_limit(4 << 20)
            .build()
        {
            Ok(re) => out.push(re),
            Err(e) => problems.push(InvalidPattern {
                list,
                index,
                message: e.to_string(),
            }),
        }
    }
    out
}

/// Scores of one detector, accumulated as a noisy-OR, with the span of its strongest hit.
#[derive(Default, Clone)]
struct Acc {
    miss: f32,
    best: f32,
    span: Range<usize>,
}

impl Guard {
    /// Compiles the operator patterns; every invalid one is reported at once.
    pub fn new(rules: Rules) -> Result<Guard, GuardError> {
        let mut problems = Vec::new();
        let deny = compile("deny", &rules.deny, &mut problems);
        let allow = compile("allow", &rules.allow, &mut problems);
        if !problems.is_empty() {
            return Err(GuardError::InvalidPatterns(problems));
        }
        let detectors = Detectors::new().map_err(|e| GuardError::Builtin(e.to_string()))?;
        let decoder = Decoder::new().map_err(|e| GuardError::Builtin(e.to_string()))?;
        let model = Model::shipped().map_err(|e| GuardError::Builtin(e.to_string()))?;
        Ok(Guard {
            detectors,
            decoder,
            model,
            deny,
            allow,
        })
    }

    /// Screens `text`. Pure and allocation-light; see `docs/guard.md` for the cost.
    pub fn screen(&self, text: &str, source: Source) -> Screening {
        let mut accs: [Acc; 8] = std::array::from_fn(|_| Acc {
            miss: 1.0,
            ..Acc::default()
        });
        let mut add = |d: Detector, w: f32, span: Range<usize>| {
            let w = (w * source.factor(d)).clamp(0.0, 1.0);
            let a = &mut accs[d as usize];
            a.miss *= 1.0 - w;
            if w > a.best {
                a.best = w;
                a.span = span;
            }
        };

        // Operator deny patterns, on the original and on the normalised text.
        let full = normalize(text);
        for re in &self.deny {
            if let Some(m) = re.find(text) {
                add(Detector::CustomDeny, 1.0, m.range());
            } else if let Some(m) = re.find(&full.text) {
                add(Detector::CustomDeny, 1.0, full.to_original(m.range()));
            }
        }

        // Operator allow patterns blank their spans (same length, so offsets hold).
        let blanked: Option<String> = self.allow.iter().any(|re| re.is_match(text)).then(|| {
            let mut owned = text.to_owned();
            for re in &self.allow {
                for m in re.find_iter(text) {
                    owned.replace_range(m.range(), &" ".repeat(m.len()));
                }
            }
            owned
        });
        let scan_text: &str = blanked.as_deref().unwrap_or(text);
        let blanked_norm = blanked.as_deref().map(normalize);
        let norm: &Normalized = blanked_norm.as_ref().unwrap_or(&full);

        let mut hits: Vec<Hit> = Vec::new();
        self.detectors.run(&norm.text, &mut hits);
        for h in hits.drain(..) {
            add(h.detector, h.weight, norm.to_original(h.range));
        }
        // Reversed text ("snoitcurtsni suoiverp lla erongi").
        if ["snoitcurtsni", "erongi", "tpmorp", "tegrof"]
            .iter()
            .any(|w| norm.text.contains(w))
        {
            let rev: String = norm.text.chars().rev().collect();
            self.detectors.run(&rev, &mut hits);
            for h in hits.drain(..) {
                add(h.detector, h.weight, 0..text.len());
                add(Detector::Smuggling, h.weight * 0.8, 0..text.len());
            }
        }

        // Hidden characters.
        let hidden = norm.hidden;
        if hidden.tags > 0 {
            add(
                Detector::Smuggling,
                0.9,
                first_span(text, |c| ('\u{E0000}'..='\u{E007F}').contains(&c)),
            );
        }
        if hidden.zero_width_in_words >= 2 {
            let w = if hidden.zero_width_in_words >= 4 {
                0.55
            } else {
                0.35
            };
            add(
                Detector::Smuggling,
                w,
                first_span(text, |c| {
                    matches!(
                        c,
                        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
                    )
                }),
            );
        }
        if hidden.bidi > 0 {
            add(
                Detector::Smuggling,
                0.3,
                first_span(
                    text,
                    |c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
                ),
            );
        }

        // Encoded fragments: their findings count, and hiding them counts as smuggling.
        let mut scratch = Vec::new();
        for frag in self.decoder.fragments(scan_text, MAX_FRAGMENTS) {
            let inner = normalize(&frag.text);
            self.detectors.run(&inner.text, &mut hits);
            let mut strongest = 0f32;
            for h in hits.drain(..) {
                strongest = strongest.max(h.weight);
                add(h.detector, h.weight, frag.span.clone());
            }
            let (p, _) = self.model.score(&inner.text, &mut scratch);
            strongest = strongest.max(p);
            if p >= CLASSIFIER_FINDING_MIN {
                add(Detector::Classifier, p, frag.span.clone());
            }
            if strongest >= 0.3 {
                add(Detector::Smuggling, strongest * 0.9, frag.span.clone());
            }
        }

        // The classifier over the whole normalised text (windowed); in a tool result also
        // line by line, since an instruction spliced into a page or an e-mail is usually a
        // line of its own, and the rest of the document dilutes it.
        let (mut p, mut window) = self.model.score(&norm.text, &mut scratch);
        if source == Source::ToolResult
            && let Some((z, line)) = self.model.best_line(&norm.text)
            && crate::classifier::sigmoid(z) > p
        {
            (p, window) = (crate::classifier::sigmoid(z), line);
        }
        let p = p * source.factor(Detector::Classifier);

        let mut findings: Vec<Finding> = Vec::new();
        let mut miss = 1.0f32;
        for d in Detector::ALL {
            let a = &accs[d as usize];
            if a.best > 0.0 {
                let score = 1.0 - a.miss;
                miss *= 1.0 - score;
                findings.push(Finding {
                    detector: d,
                    score,
                    span: a.span.clone(),
                });
            }
        }
        if p >= CLASSIFIER_FINDING_MIN
            && !findings.iter().any(|f| f.detector == Detector::Classifier)
        {
            findings.push(Finding {
                detector: Detector::Classifier,
                score: p,
                span: norm.to_original(window),
            });
        }
        miss *= 1.0 - p;
        findings.sort_by(|a, b| b.score.total_cmp(&a.score));
        Screening {
            score: (1.0 - miss).clamp(0.0, 1.0),
            findings,
        }
    }
}

fn first_span(text: &str, pred: impl Fn(char) -> bool) -> Range<usize> {
    let mut start = None;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if pred(c) {
            start.get_or_insert(i);
            end = i + c.len_utf8();
        }
    }
    start.map_or(0..0, |s| s..end)
}
