//! Word alignment with the model's own word vectors: the second chance a pair gets when
//! the word-for-word rule of [`crate::verify()`] refuses it.
//!
//! A static model gives every word a vector, and a word's nearest neighbours are often
//! its synonyms ("purchase"/"buy" 0.79, "refrigerator"/"fridge" 0.87). They are also
//! often its co-hyponyms and antonyms ("husband"/"wife" 0.72, "Monday"/"Tuesday" 0.71,
//! "tenant"/"landlord" 0.71, "lock"/"unlock" 0.61), which must never stand for each
//! other. So a word that is in one text and not the other may stand for one in the other
//! text only when all of these hold:
//!
//! - their cosine is at least [`ALIGN_MIN`], above every co-hyponym and antonym pair
//!   measured (docs/cache.md), and each is the other's closest word in the other text
//!   (no third word is as close to either);
//! - neither is a word whose exact value is the answer: scope and quantity (`all`,
//!   `only`, `most`), direction (`before`, `up`, `left`), time (`today`, `Monday`,
//!   `March`, `summer`), units and currencies, kin and roles (`wife`, `tenant`),
//!   comparatives and superlatives (`best`, `largest`, `cheaper`) ([`FIXED`]);
//! - they are not antonyms by a prefix (`lock`/`unlock`, `increase`/`decrease`,
//!   `upload`/`download`) or by the list [`ANTONYMS`].
//!
//! A typo is the other way in: a word the model's vocabulary does not know, one edit
//! (a letter changed, added, dropped or two swapped) from a known word of the other text,
//! stands for it ("pasword"/"password").
//!
//! A few framing words that carry no answer may be on one side only ([`DROPPABLE`]:
//! "usual", "process", "method", "command", …); at most [`MAX_DROPPED`] in all.
//!
//! The aligned texts then go through the same strict comparison: the same words in the
//! same order, the same numbers, negations and question words.

use crate::embed::WordVector;
use crate::verify::{Analysis, Gap};

/// The least cosine between two word vectors for one to stand for the other. Measured
/// on potion-base-8M: the closest co-hyponym and antonym pairs found are 0.72
/// (husband/wife, Monday/Tuesday, tenant/landlord), and those are [`FIXED`] anyway.
pub const ALIGN_MIN: f32 = 0.74;

/// At most this many framing words ([`DROPPABLE`]) may be on one side only.
pub const MAX_DROPPED: usize = 2;

/// A word's vector, normalised and quantised to i8 (a quarter of the memory; cosines
/// between words move by about 0.005), with its squared norm after quantisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lex {
    q: Box<[i8]>,
    norm2: i64,
    /// Whether the model's vocabulary has the word whole (not as pieces).
    known: bool,
}

impl Lex {
    pub(crate) fn new(w: &WordVector) -> Self {
        let max = w.vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            127.0 / max
        } else {
            0.0
        };
        let q: Box<[i8]> = w
            .vector
            .iter()
            .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let norm2 = q.iter().map(|&x| i64::from(x) * i64::from(x)).sum();
        Self {
            q,
            norm2,
            known: w.known,
        }
    }

    fn cosine(&self, other: &Lex) -> f32 {
        if self.q.len() != other.q.len() || self.norm2 == 0 || other.norm2 == 0 {
            return 0.0;
        }
        let dot: i64 = self
            .q
            .iter()
            .zip(other.q.iter())
            .map(|(&a, &b)| i64::from(a) * i64::from(b))
            .sum();
        (dot as f64 / ((self.norm2 as f64) * (other.norm2 as f64)).sqrt()) as f32
    }

    /// Bytes held besides the struct itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.q.len()
    }
}

/// Both analyses rewritten so that aligned words are spelt alike (the cached text's word
/// becomes the query's) and dropped framing words are gone; `None` when either has no
/// word vectors or nothing could be aligned or dropped.
pub(crate) fn rewrite(a: &Analysis, b: &Analysis) -> Option<(Analysis, Analysis)> {
    let (la, lb) = (a.lexicon.as_ref()?, b.lexicon.as_ref()?);
    if la.len() != a.words.len() || lb.len() != b.words.len() {
        return None;
    }
    let only_a: Vec<usize> = (0..a.words.len())
        .filter(|&i| !b.words.contains(&a.words[i]))
        .collect();
    let only_b: Vec<usize> = (0..b.words.len())
        .filter(|&j| !a.words.contains(&b.words[j]))
        .collect();
    if only_a.is_empty() && only_b.is_empty() {
        return None;
    }
    // Every alignable pair with its score, best first; typos score above any cosine.
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for &i in &only_a {
        for &j in &only_b {
            let (sa, sb) = (&a.surface[i], &b.surface[j]);
            if !word_like(sa) || !word_like(sb) || fixed(sa) || fixed(sb) || antonyms(sa, sb) {
                continue;
            }
            if typo(sa, &la[i], sb, &lb[j]) {
                pairs.push((2.0, i, j));
                continue;
            }
            let c = la[i].cosine(&lb[j]);
            if c < ALIGN_MIN {
                continue;
            }
            // Each must be the other's closest word in the other text.
            let rival_b = (0..b.words.len()).any(|k| k != j && la[i].cosine(&lb[k]) >= c);
            let rival_a = (0..a.words.len()).any(|k| k != i && la[k].cosine(&lb[j]) >= c);
            if !rival_a && !rival_b {
                pairs.push((c, i, j));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut a_to: Vec<Option<usize>> = vec![None; a.words.len()];
    let mut b_to: Vec<Option<usize>> = vec![None; b.words.len()];
    for (_, i, j) in pairs {
        if a_to[i].is_none() && b_to[j].is_none() {
            a_to[i] = Some(j);
            b_to[j] = Some(i);
        }
    }
    let drop_a: Vec<usize> = only_a
        .iter()
        .copied()
        .filter(|&i| a_to[i].is_none())
        .collect();
    let drop_b: Vec<usize> = only_b
        .iter()
        .copied()
        .filter(|&j| b_to[j].is_none())
        .collect();
    let aligned = a_to.iter().any(Option::is_some);
    let dropped = drop_a.len() + drop_b.len();
    if dropped > MAX_DROPPED
        || drop_a.iter().any(|&i| !droppable(&a.surface[i]))
        || drop_b.iter().any(|&j| !droppable(&b.surface[j]))
        || (!aligned && dropped == 0)
    {
        return None;
    }
    // The cached text speaks the query's words.
    let renames: Vec<(String, String)> = b_to
        .iter()
        .enumerate()
        .filter_map(|(j, i)| i.map(|i| (b.words[j].clone(), a.words[i].clone())))
        .collect();
    let dropped_a: Vec<String> = drop_a.iter().map(|&i| a.words[i].clone()).collect();
    let dropped_b: Vec<String> = drop_b.iter().map(|&j| b.words[j].clone()).collect();
    let mut a2 = without(a, &dropped_a);
    let mut b2 = without(b, &dropped_b);
    for w in b2.words.iter_mut() {
        if let Some((_, to)) = renames.iter().find(|(from, _)| from == w) {
            *w = to.clone();
        }
    }
    for clause in b2.negations.iter_mut() {
        for w in clause.iter_mut() {
            if let Some((_, to)) = renames.iter().find(|(from, _)| from == w) {
                *w = to.clone();
            }
        }
        clause.sort();
        clause.dedup();
    }
    b2.negations.sort();
    a2.lexicon = None;
    b2.lexicon = None;
    Some((a2, b2))
}

/// A copy of `x` without the content words in `drop` (and their gaps, merged so that the
/// stricter one stands between the neighbours).
fn without(x: &Analysis, drop: &[String]) -> Analysis {
    let mut out = Analysis {
        words: Vec::with_capacity(x.words.len()),
        surface: Vec::new(),
        numbers: x.numbers.clone(),
        negations: x.negations.clone(),
        gaps: Vec::with_capacity(x.gaps.len()),
        asks: x.asks.clone(),
        lexicon: None,
    };
    // The gap pending before the next kept word.
    let mut pending: Option<Gap> = None;
    for (i, w) in x.words.iter().enumerate() {
        let before = if i == 0 {
            None
        } else {
            x.gaps.get(i - 1).copied()
        };
        let gap = match (pending, before) {
            (Some(p), Some(g)) => Some(p.max(g)),
            (p, g) => p.or(g),
        };
        if drop.contains(w) {
            pending = gap;
            continue;
        }
        if !out.words.is_empty() {
            out.gaps.push(gap.unwrap_or(Gap::Other));
        }
        pending = None;
        out.words.push(w.clone());
    }
    if !drop.is_empty() {
        for clause in out.negations.iter_mut() {
            clause.retain(|w| !drop.contains(w));
        }
    }
    out
}

/// Letters only (symbols, operators and codes are never aligned).
fn word_like(w: &str) -> bool {
    w.chars().all(char::is_alphabetic)
}

/// One edit apart (substitution, insertion, deletion or a swap of two neighbours), one
/// of them unknown to the model and the other known, both of four letters or more.
fn typo(sa: &str, la: &Lex, sb: &str, lb: &Lex) -> bool {
    if la.known == lb.known || sa.chars().count() < 4 || sb.chars().count() < 4 {
        return false;
    }
    one_edit(sa, sb)
}

fn one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a == b {
        return false;
    }
    let p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let s = a[p..]
        .iter()
        .rev()
        .zip(b[p..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ra, rb) = (a.len() - p - s, b.len() - p - s);
    match (ra, rb) {
        (1, 1) | (0, 1) | (1, 0) => true,
        // A swap of two neighbours: "ht" / "th".
        (2, 2) => a[p] == b[p + 1] && a[p + 1] == b[p],
        _ => false,
    }
}

/// Prefixes that turn a word into its opposite or its converse.
const OPPOSING_PREFIXES: &[&str] = &[
    "", "un", "dis", "de", "in", "im", "ir", "il", "non", "mis", "anti", "en", "ex", "up", "down",
    "out", "over", "under", "re", "pre", "post",
];

/// Whether the two words are the same stem under two different prefixes ("lock" /
/// "unlock", "increase" / "decrease", "import" / "export") or listed as opposites.
fn antonyms(a: &str, b: &str) -> bool {
    for pa in OPPOSING_PREFIXES {
        let Some(ra) = a.strip_prefix(pa) else {
            continue;
        };
        for pb in OPPOSING_PREFIXES {
            if pa != pb && ra.len() >= 4 && b.strip_prefix(pb) == Some(ra) {
                return true;
            }
        }
    }
    let (a, b) = (base(a), base(b));
    ANTONYMS
        .iter()
        .any(|(x, y)| (a == *x && b == *y) || (a == *y && b == *x))
}

/// Crude inflection removal for list look-ups ("sells" → "sell", "rising" → "ris").
fn base(w: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(b) = w.strip_suffix(suffix)
            && b.len() >= 3
        {
            return b;
        }
    }
    w
}

fn fixed(w: &str) -> bool {
    FIXED.contains(&w)
        || FIXED.contains(&base(w))
        // Superlatives and comparatives: "cheapest", "faster".
        || (w.len() > 5 && (w.ends_with("est") || w.ends_with("ier")))
}

fn droppable(w: &str) -> bool {
    DROPPABLE.contains(&w) || DROPPABLE.contains(&base(w))
}

/// Words whose exact value is the answer: never aligned to another word, only matched.
#[rustfmt::skip]
pub(crate) const FIXED: &[&str] = &[
    // scope and quantity
    "all", "every", "each", "only", "most", "more", "less", "least", "fewer", "few", "many",
    "much", "several", "some", "both", "either", "any", "whole", "entire", "half", "single",
    "double", "enough", "too", "very", "extra", "total", "partial", "full", "empty",
    // direction and position
    "from", "off", "out", "up", "down", "over", "under", "above", "below", "inside",
    "outside", "before", "after", "during", "since", "until", "till", "upper", "lower",
    "left", "right", "north", "south", "east", "west", "front", "back", "top", "bottom",
    "forward", "backward", "internal", "external", "local", "remote", "global",
    // time
    "today", "tomorrow", "yesterday", "tonight", "now", "next", "last", "previous", "recent",
    "latest", "earliest", "early", "late", "soon", "daily", "weekly", "monthly", "yearly",
    "annual", "annually", "hourly", "morning", "afternoon", "evening", "night", "day",
    "week", "month", "year", "decade", "century", "weekend", "weekday", "past", "future",
    "current", "old", "new", "young", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december", "spring", "summer",
    "autumn", "fall", "winter", "was", "were", "will",
    // units and currencies
    "second", "minute", "hour", "meter", "metre", "kilometer", "kilometre", "km", "mile",
    "foot", "feet", "inch", "yard", "cm", "mm", "gram", "kg", "kilogram", "pound", "lb",
    "ounce", "oz", "liter", "litre", "ml", "gallon", "cup", "tablespoon", "teaspoon",
    "celsius", "fahrenheit", "kelvin", "degree", "percent", "dollar", "euro", "yen", "gbp",
    "usd", "eur", "cent", "byte", "bit", "gb", "mb", "kb", "tb", "ghz", "mhz", "watt",
    "volt", "amp", "calorie", "acre", "hectare",
    // people: kin, sex, roles on two sides of a relation
    "he", "she", "him", "his", "her", "man", "woman", "men", "women", "male", "female",
    "boy", "girl", "husband", "wife", "mother", "father", "mom", "dad", "son", "daughter",
    "brother", "sister", "king", "queen", "parent", "child", "adult", "baby", "employer",
    "employee", "tenant", "landlord", "buyer", "seller", "teacher", "student", "host",
    "guest", "sender", "recipient", "receiver", "client", "server", "customer", "vendor",
    "doctor", "nurse", "patient",
    // comparison and rank
    "max", "maximum", "min", "minimum", "best", "worst", "better", "worse", "higher",
    "lower", "bigger", "smaller", "larger", "greater", "faster", "slower", "cheaper",
    "first", "third", "final", "primary", "secondary", "major", "minor", "same",
    "different", "similar", "true", "false", "yes",
];

/// Opposites the prefix rule does not catch, by their base form ([`base`]).
#[rustfmt::skip]
const ANTONYMS: &[(&str, &str)] = &[
    ("buy", "sell"), ("increase", "reduce"), ("increase", "lower"), ("rise", "fall"),
    ("rise", "decline"), ("gain", "lose"), ("win", "lose"), ("accept", "reject"),
    ("accept", "decline"), ("open", "close"), ("open", "shut"), ("start", "stop"),
    ("start", "end"), ("start", "finish"), ("begin", "end"), ("push", "pull"),
    ("attract", "repel"), ("float", "sink"), ("freeze", "thaw"), ("freeze", "melt"),
    ("heat", "cool"), ("hot", "cold"), ("warm", "cool"), ("warm", "cold"),
    ("safe", "dangerous"), ("safe", "unsafe"), ("good", "bad"), ("fast", "slow"),
    ("quick", "slow"), ("cheap", "expensive"), ("high", "low"), ("hard", "soft"),
    ("hard", "easy"), ("difficult", "easy"), ("light", "heavy"), ("light", "dark"),
    ("strong", "weak"), ("rich", "poor"), ("thick", "thin"), ("thicken", "thin"),
    ("wet", "dry"), ("moist", "dry"), ("long", "short"), ("tall", "short"), ("big", "small"),
    ("enter", "exit"), ("arrive", "depart"), ("arrive", "leave"), ("send", "receive"),
    ("give", "take"), ("lend", "borrow"), ("credit", "debit"), ("deposit", "withdraw"),
    ("ascend", "descend"), ("asc", "desc"), ("add", "remove"), ("add", "subtract"),
    ("add", "delete"), ("multiply", "divide"), ("include", "exclude"), ("allow", "deny"),
    ("allow", "block"), ("allow", "forbid"), ("permit", "forbid"), ("pass", "fail"),
    ("success", "failure"), ("succeed", "fail"), ("public", "private"), ("plus", "minus"),
    ("positive", "negative"), ("love", "hate"), ("like", "hate"), ("always", "never"),
    ("remember", "forget"), ("raise", "lower"), ("expand", "shrink"), ("expand", "contract"),
    ("expand", "collapse"), ("show", "hide"), ("visible", "hidden"), ("online", "offline"),
    ("sunrise", "sunset"), ("question", "answer"), ("cause", "effect"), ("offense", "defense"),
    ("attack", "defend"), ("import", "export"), ("input", "output"), ("inbound", "outbound"),
    ("incoming", "outgoing"), ("upload", "download"), ("install", "remove"),
    ("soft", "crispy"), ("soft", "crunchy"), ("clean", "dirty"), ("full", "empty"),
    ("early", "late"), ("before", "after"), ("above", "below"), ("inside", "outside"),
    ("mean", "median"), ("read", "write"), ("get", "set"), ("save", "spend"),
    ("save", "load"), ("lead", "follow"), ("teach", "learn"), ("hire", "fire"),
    ("legal", "illegal"), ("vertical", "horizontal"), ("encode", "decode"),
    ("compress", "decompress"), ("zip", "unzip"), ("mount", "unmount"), ("ban", "unban"),
    ("sunny", "rainy"), ("dead", "alive"), ("live", "die"), ("true", "false"),
];

/// Framing words that may be on one side only: they change how a question is put, not
/// what answers it. Deliberately not here: anything of scope, time, degree or quality
/// (`best`, `simple`, `good`, `all`).
#[rustfmt::skip]
const DROPPABLE: &[&str] = &[
    "usual", "usually", "typical", "typically", "generally", "general", "normally",
    "commonly", "simply", "basically", "roughly", "approximately", "precisely", "exactly",
    "process", "procedure", "method", "step", "steps", "command", "instructions",
    "tip", "tips", "advice", "guide", "tutorial", "suggestions", "recommendations",
    "recommended", "overview", "briefly", "find", "figure", "advance",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_edit_is_one_change_or_one_swap() {
        assert!(one_edit("pasword", "password"), "a letter dropped");
        assert!(one_edit("pyhton", "python"), "two neighbours swapped");
        assert!(one_edit("vissa", "visa"), "a letter added");
        assert!(!one_edit("revert", "reverse"), "two edits");
        assert!(!one_edit("same", "same"), "no edit");
    }

    #[test]
    fn prefix_and_listed_opposites_are_antonyms() {
        for (a, b) in [
            ("lock", "unlock"),
            ("increase", "decrease"),
            ("upload", "download"),
            ("import", "export"),
            ("buys", "selling"),
        ] {
            assert!(antonyms(a, b), "{a} / {b}");
        }
        assert!(!antonyms("purchase", "buy"), "synonyms are not opposites");
        assert!(fixed("cheapest") && fixed("tuesday") && fixed("tenants"));
        assert!(!fixed("purchase"));
    }
}
