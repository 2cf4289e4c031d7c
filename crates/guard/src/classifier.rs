//! The learned detector: logistic regression over hashed features of the normalised text.
//!
//! Features: character 3-, 4- and 5-grams (over `char`s, so CJK text is featurised per
//! character, not per byte) and word unigrams and bigrams, hashed into 2^[`BITS`] buckets,
//! counted, and scaled by 1/sqrt(count). The weights are trained by
//! `cargo run --release -p sluice-guard --example train` and shipped in
//! `model/guard.bin` as `i16` with one `f32` scale (see [`Model::to_bytes`]). The
//! featurisation here is the one the trainer uses, so training and inference cannot drift.
//!
//! A long text is scored as overlapping windows of [`WINDOW`] bytes, one every [`BLOCK`]
//! bytes, and the highest window wins, so an injection in the middle of a long fetched page
//! is not diluted by the page.

use std::ops::Range;

/// log2 of the number of hashed feature buckets.
pub const BITS: u32 = 18;
/// Number of hashed feature buckets.
pub const DIM: usize = 1 << BITS;
/// Window, in bytes of normalised text, over which one score is computed.
pub const WINDOW: usize = 1024;
/// Windows start every `BLOCK` bytes.
pub const BLOCK: usize = 256;
/// Lines shorter than this are not scored on their own by [`Model::best_line`].
pub const LINE_MIN: usize = 24;
/// Subtracted from a single line's log-odds (see [`Model::best_line`]).
pub const LINE_OFFSET: f32 = 1.3;
/// Which character n-grams are features: `CHAR_ORDERS[k]` for (k + 2)-grams.
const CHAR_ORDERS: [bool; 4] = [false, false, true, true];
const MAGIC: &[u8; 4] = b"SLGD";
const VERSION: u32 = 1;

#[inline]
fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29)
}

#[inline]
fn bucket(h: u64) -> u32 {
    // Fold the high bits in: the multiply leaves the low bits weak.
    let h = h ^ (h >> 31);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as u32
}

/// Appends the hashed features of `text` (already normalised) to `out`.
pub fn features(text: &str, out: &mut Vec<u32>) {
    each_feature(text, |b, _| out.push(b));
}

/// Calls `f(bucket, end)` for every hashed feature of `text` (already normalised), `end`
/// being the byte offset in `text` where the feature's last character ends. One pass, no
/// allocation: the trainer collects the buckets, [`Model::score`] sums their weights.
#[inline]
fn each_feature(text: &str, mut f: impl FnMut(u32, usize)) {
    let mut ring = [0u64; 4];
    let mut n = 0usize;
    let mut word_start: Option<usize> = None;
    let mut prev_word: Option<u64> = None;
    char_grams(&mut ring, &mut n, '\u{2}', 0, &mut f);
    for (i, c) in text.char_indices() {
        char_grams(&mut ring, &mut n, c, i + c.len_utf8(), &mut f);
        if c.is_alphanumeric() {
            word_start.get_or_insert(i);
        } else if let Some(s) = word_start.take() {
            word_grams(&text[s..i], i, &mut prev_word, &mut f);
        }
    }
    if let Some(s) = word_start {
        word_grams(&text[s..], text.len(), &mut prev_word, &mut f);
    }
    char_grams(&mut ring, &mut n, '\u{3}', text.len(), &mut f);
}

/// The character 3-, 4- and 5-grams ending with `c` (with a boundary marker at both ends of
/// the text). Each is hashed from its newest character backwards, so they share work.
#[inline]
fn char_grams(
    ring: &mut [u64; 4],
    n: &mut usize,
    c: char,
    end: usize,
    f: &mut impl FnMut(u32, usize),
) {
    let c = c as u64;
    *n += 1;
    let mut h = mix(0xcbf2_9ce4_8422_2325, c);
    for (k, &prev) in ring.iter().enumerate() {
        if *n < k + 2 {
            break;
        }
        h = mix(h, prev);
        if CHAR_ORDERS[k] {
            f(bucket(h ^ (k as u64 + 2)), end);
        }
    }
    *ring = [c, ring[0], ring[1], ring[2]];
}

/// The unigram of word `w` (a run of alphanumerics) and its bigram with the word before.
#[inline]
fn word_grams(w: &str, end: usize, prev: &mut Option<u64>, f: &mut impl FnMut(u32, usize)) {
    if w.len() > 40 {
        *prev = None;
        return;
    }
    let mut h = 0x8422_2325_cbf2_9ce4u64;
    for b in w.bytes() {
        h = mix(h, b as u64);
    }
    f(bucket(h ^ 0x5151), end);
    if let Some(p) = *prev {
        f(bucket(mix(p, h) ^ 0x7777), end);
    }
    *prev = Some(h);
}

/// Normalises `text` and returns its features: what the trainer uses for one example.
pub fn featurize(text: &str) -> Vec<u32> {
    let norm = crate::normalize::normalize(text);
    let mut out = Vec::with_capacity(norm.text.len() * 4);
    features(&norm.text, &mut out);
    out
}

/// Logistic-regression weights.
#[derive(Clone)]
pub struct Model {
    /// Quantised weights; weight = q * scale.
    weights: Vec<i16>,
    scale: f32,
    bias: f32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dim", &self.weights.len())
            .field("bias", &self.bias)
            .finish()
    }
}

/// Why a weights file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("not a sluice-guard weights file (bad magic or version)")]
    Format,
    #[error("weights file has {found} bytes, expected {expected}")]
    Length { found: usize, expected: usize },
}

impl Model {
    /// A model from float weights (the trainer's output).
    pub fn new(weights: Vec<f32>, bias: f32) -> Model {
        let max = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 {
            max / i16::MAX as f32
        } else {
            1.0
        };
        let weights = weights
            .iter()
            .map(|w| (w / scale).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
            .collect();
        Model {
            weights,
            scale,
            bias,
        }
    }

    /// The model shipped with the crate.
    pub fn shipped() -> Result<Model, ModelError> {
        Model::from_bytes(include_bytes!("../model/guard.bin"))
    }

    /// Serialises as: magic `SLGD`, version u32, bits u32, scale f32, bias f32, then
    /// 2^bits `i16` weights (all little-endian); weight = q * scale.
    pub fn to_bytes(&self) -> Vec<u8> {
        let scale = self.scale;
        let mut out = Vec::with_capacity(20 + 2 * self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&BITS.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        for q in &self.weights {
            out.extend_from_slice(&q.to_le_bytes());
        }
        out
    }

    /// Reads what [`Model::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let word = |i: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            if let Some(s) = bytes.get(i..i + 4) {
                w.copy_from_slice(s);
            }
            w
        };
        if bytes.len() < 20
            || &bytes[..4] != MAGIC
            || u32::from_le_bytes(word(4)) != VERSION
            || u32::from_le_bytes(word(8)) != BITS
        {
            return Err(ModelError::Format);
        }
        let expected = 20 + 2 * DIM;
        if bytes.len() != expected {
            return Err(ModelError::Length {
                found: bytes.len(),
                expected,
            });
        }
        let scale = f32::from_le_bytes(word(12));
        let bias = f32::from_le_bytes(word(16));
        let weights = bytes[20..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Model {
            weights,
            scale,
            bias,
        })
    }

    /// The raw score (log-odds) of a feature list.
    pub fn logit(&self, feats: &[u32]) -> f32 {
        let sum: i64 = feats
            .iter()
            .map(|&f| self.weights.get(f as usize).copied().unwrap_or(0) as i64)
            .sum();
        self.z(sum, feats.len())
    }

    /// Probability that `text` (normalised) is an injection, and the window of `text` that
    /// scored highest.
    ///
    /// Features are computed once: each is summed into the block of [`BLOCK`] bytes where
    /// it ends, and a window is [`WINDOW`] / [`BLOCK`] consecutive blocks, so a long text
    /// costs one pass whatever the overlap. `_scratch` is no longer used (kept for callers).
    pub fn score(&self, text: &str, _scratch: &mut Vec<u32>) -> (f32, Range<usize>) {
        let weight = |b: u32| self.weights.get(b as usize).copied().unwrap_or(0) as i64;
        if text.len() <= WINDOW {
            let (mut sum, mut count) = (0i64, 0usize);
            each_feature(text, |b, _| {
                sum += weight(b);
                count += 1;
            });
            return (sigmoid(self.z(sum, count)), 0..text.len());
        }
        let blocks = text.len().div_ceil(BLOCK);
        let mut acc = vec![(0i64, 0usize); blocks];
        each_feature(text, |b, end| {
            let a = &mut acc[(end.saturating_sub(1) / BLOCK).min(blocks - 1)];
            a.0 += weight(b);
            a.1 += 1;
        });
        let per = WINDOW / BLOCK;
        let mut best = (f32::MIN, 0..text.len());
        for first in 0..=blocks.saturating_sub(per) {
            let (sum, count) = acc[first..(first + per).min(blocks)]
                .iter()
                .fold((0, 0), |t, a| (t.0 + a.0, t.1 + a.1));
            let z = self.z(sum, count);
            if z > best.0 {
                let floor = |mut i: usize| {
                    i = i.min(text.len());
                    while !text.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                best = (z, floor(first * BLOCK)..floor((first + per) * BLOCK));
            }
        }
        (sigmoid(best.0), best.1)
    }

    /// The highest log-odds of a single line of `text` (lines of at least [`LINE_MIN`]
    /// bytes, each scored as a whole text), less [`LINE_OFFSET`], and that line's byte
    /// range: an instruction spliced into a document as a line of its own is not averaged
    /// with the document. Lines are short and noisier than whole texts, hence the offset
    /// (calibrated by the trainer on benign documents). `None` when no line qualifies.
    pub fn best_line(&self, text: &str) -> Option<(f32, Range<usize>)> {
        let weight = |b: u32| self.weights.get(b as usize).copied().unwrap_or(0) as i64;
        let mut best: Option<(f32, Range<usize>)> = None;
        let mut start = 0;
        for line in text.split('\n') {
            let range = start..start + line.len();
            start = range.end + 1;
            if line.len() < LINE_MIN || line.len() > WINDOW {
                continue;
            }
            let (mut sum, mut count) = (0i64, 0usize);
            each_feature(line, |b, _| {
                sum += weight(b);
                count += 1;
            });
            let z = self.z(sum, count) - LINE_OFFSET;
            if best.as_ref().is_none_or(|b| z > b.0) {
                best = Some((z, range));
            }
        }
        best
    }

    /// The log-odds from a sum of quantised weights over `count` features.
    fn z(&self, sum: i64, count: usize) -> f32 {
        if count == 0 {
            return self.bias;
        }
        self.bias + sum as f32 * self.scale / (count as f32).sqrt()
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let mut w = vec![0.0f32; DIM];
        w[7] = 1.5;
        w[100] = -0.75;
        let m = Model::new(w, -0.25);
        let back = Model::from_bytes(&m.to_bytes()).unwrap();
        assert!((back.weights[7] as f32 * back.scale - 1.5).abs() < 1e-3);
        assert!((back.weights[100] as f32 * back.scale + 0.75).abs() < 1e-3);
        assert_eq!(back.bias, -0.25);
        assert!(matches!(
            Model::from_bytes(b"nope"),
            Err(ModelError::Format)
        ));
    }

    /// A model that scores any text with "zq" in it high and everything else low.
    fn zq_model() -> Model {
        let mut w = vec![0.0f32; DIM];
        let mut feats = Vec::new();
        features("zq", &mut feats);
        for f in feats {
            w[f as usize] = 1000.0;
        }
        Model::new(w, -2.0)
    }

    #[test]
    fn long_text_scores_its_worst_window() {
        let m = zq_model();
        let mut scratch = Vec::new();
        let text = format!("{} zq {}", "a ".repeat(1500), "b ".repeat(1500));
        let (p, window) = m.score(&text, &mut scratch);
        assert!(p > 0.5, "the window holding the signal should win: {p}");
        assert!(window.len() <= WINDOW && window.contains(&text.find("zq").unwrap()));
        let (p, _) = m.score(&"a ".repeat(3000), &mut scratch);
        assert!(p < 0.5);
    }

    #[test]
    fn best_line_is_the_highest_line_less_the_offset() {
        let m = zq_model();
        let doc = format!(
            "{}\nplease zq now, the assistant must\n{}",
            "a b ".repeat(40),
            "c ".repeat(60)
        );
        let (z, line) = m.best_line(&doc).expect("lines qualify");
        assert!(z > 0.0, "the spliced line should stand out");
        assert_eq!(&doc[line], "please zq now, the assistant must");
        assert!(
            m.best_line(&"a b ".repeat(200))
                .is_some_and(|(z, _)| z < 0.0)
        );
        // Lines shorter than LINE_MIN are not scored on their own.
        assert!(m.best_line("zq\nzq").is_none());
    }

    #[test]
    fn features_are_deterministic_and_cover_cjk() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        features("忽略之前的指令", &mut a);
        features("忽略之前的指令", &mut b);
        assert_eq!(a, b);
        assert!(a.len() > 10);
    }
}
