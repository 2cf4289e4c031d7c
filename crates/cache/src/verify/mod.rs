//! The second check a semantic candidate must pass before it is served.
//!
//! The embedding is a bag of words: it cannot see order ("USD to EUR" and "EUR to USD"
//! score 1.0), and it scores a near-miss (a negation, a swapped entity, another number,
//! a wider or narrower scope) as high as, often higher than, a true paraphrase. So a hit
//! also needs the two texts to say the same thing by a cheap, explainable rule:
//!
//! 1. Both are reduced to their *content*: lower-cased, contractions split (`don't` is
//!    `do not`), function words and politeness dropped, light stemming (`sorting`,
//!    `sorted`, `sorts` are `sort`), a short list of general synonyms folded (`buy` and
//!    `purchase`), number words read as numbers (`twenty five` is `25`).
//! 2. The content words must be the same words **in the same order** (first occurrences).
//!    Order is what the embedding throws away; requiring it turns away every swap.
//! 3. The numbers (digits, number words, ordinals) must be the same, in the same order.
//! 4. The negations must agree: as many, each in a clause with the same content words
//!    (`do not use X, use Y` is not `use X, do not use Y`).
//! 5. Words that look like function words but change the answer are content: direction
//!    and state (`from`, `off`, `out`, `up`, `before`), quantity and scope (`all`, `only`,
//!    `most`, `more`), time (`today`, `next`, `last`), the question word when it asks for
//!    a reason, time, place or person (`why`, `when`, `where`, `who`), past tense
//!    (`was`), third persons (`he`, `she`), code operators and currency signs.
//! 6. At least one content word or number: "hi" and "thanks" share no answer.
//!
//! It turns away many true paraphrases (another verb, another word order): a miss costs
//! one upstream call, a wrong answer costs trust. docs/cache.md gives the figures.

mod lexicon;
mod tokens;

use lexicon::{ASKS, CLAUSE_BREAKS, NEGATIONS, RELATIONS, canonical, stopwords};
use tokens::Tok;
use tokens::{number_words, ordinal, tokenize};

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same content, numbers and negations, in the same order: may share an answer.
    Match,
    /// Must not share an answer, for this reason.
    Mismatch(Reason),
}

/// Why two texts must not share an answer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// One or both have no content word or number to compare.
    TooLittle,
    /// A number (digits, number words, ordinals) differs, is missing or moved.
    Numbers,
    /// The negations differ in count or in what they negate.
    Negation,
    /// A content word is in one text and not the other.
    Words,
    /// The same content words in another order.
    Order,
}

impl Verdict {
    /// Whether the candidate may be served.
    pub fn is_match(&self) -> bool {
        matches!(self, Verdict::Match)
    }
}

impl Reason {
    /// A stable, low-cardinality label (metrics, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::TooLittle => "too_little",
            Reason::Numbers => "numbers",
            Reason::Negation => "negation",
            Reason::Words => "words",
            Reason::Order => "order",
        }
    }
}

/// Whether `query` may be answered with the answer cached for `cached`, word for word
/// (no model). Symmetric.
pub fn verify(query: &str, cached: &str) -> Verdict {
    let a = Analysis::of(query);
    let b = Analysis::of(cached);
    a.compare(&b)
}

/// [`verify`], and where it refuses, a second try with content words aligned by
/// `embedder`'s word vectors (what [`crate::Cache::search`] does for a [`crate::Query`]
/// built with [`crate::Query::new`]). Symmetric.
pub fn verify_with(embedder: &dyn crate::Embedder, query: &str, cached: &str) -> Verdict {
    let a = Analysis::with_words(query, embedder);
    let b = Analysis::with_words(cached, embedder);
    a.compare(&b)
}

/// A text reduced to what [`verify`] compares. Public so a caller can analyse a cached
/// text once and compare it many times ([`Analysis::compare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Content words (stemmed, synonyms folded), first occurrences, in order.
    pub(crate) words: Vec<String>,
    /// Each content word as written (lower-cased), parallel to `words`.
    pub(crate) surface: Vec<String>,
    /// Numbers in order, canonical spelling.
    pub(crate) numbers: Vec<String>,
    /// One entry per negation: the sorted content words of its clause.
    pub(crate) negations: Vec<Vec<String>>,
    /// What is between `words[i]` and `words[i + 1]` in the text.
    pub(crate) gaps: Vec<Gap>,
    /// The question words that ask for a reason, time, place or person, sorted.
    pub(crate) asks: Vec<&'static str>,
    /// The model's vector of each content word, parallel to `words`, when the analysis
    /// was made with an embedder that has word vectors ([`Analysis::with_words`]).
    pub(crate) lexicon: Option<Vec<crate::align::Lex>>,
}

/// What separates two consecutive content words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Gap {
    /// Nothing, or only words without a relation (articles, auxiliaries, pronouns).
    Plain,
    /// "of" or "in", and otherwise nothing that relates: "capital of France".
    OfIn,
    /// A relation word (to, than, for, by, with, ...), a number, a negation, a break.
    Other,
}

impl Analysis {
    /// Analyses a text.
    pub fn of(text: &str) -> Self {
        let tokens = tokenize(text);
        let mut words: Vec<String> = Vec::new();
        let mut surface: Vec<String> = Vec::new();
        let mut numbers = Vec::new();
        let mut negations = Vec::new();
        let mut clause: Vec<String> = Vec::new();
        let mut clause_negs = 0usize;
        let mut gaps = Vec::new();
        let mut asks = Vec::new();
        // The gap since the last content word.
        let mut gap = Gap::Plain;
        let close = |clause: &mut Vec<String>, negs: &mut usize, out: &mut Vec<Vec<String>>| {
            if *negs > 0 {
                let mut c = clause.clone();
                c.sort();
                c.dedup();
                for _ in 0..*negs {
                    out.push(c.clone());
                }
            }
            clause.clear();
            *negs = 0;
        };
        let mut i = 0;
        while i < tokens.len() {
            let tok = &tokens[i];
            match tok {
                Tok::Break => {
                    close(&mut clause, &mut clause_negs, &mut negations);
                    gap = Gap::Other;
                }
                Tok::Num(n) => {
                    numbers.push(n.clone());
                    clause.push(n.clone());
                    gap = Gap::Other;
                }
                Tok::Sym(s) => {
                    push_word(&mut words, &mut surface, &mut gaps, gap, s, s);
                    clause.push(s.clone());
                    gap = Gap::Plain;
                }
                Tok::Word(w) => {
                    // A run of number words is one number.
                    if let Some((value, used)) = number_words(&tokens[i..]) {
                        numbers.push(value.clone());
                        clause.push(value);
                        i += used;
                        gap = Gap::Other;
                        continue;
                    }
                    let w = w.as_str();
                    if NEGATIONS.contains(&w) {
                        clause_negs += 1;
                        gap = Gap::Other;
                    } else if CLAUSE_BREAKS.contains(&w) {
                        close(&mut clause, &mut clause_negs, &mut negations);
                        gap = Gap::Other;
                    } else if let Some(n) = ordinal(w) {
                        numbers.push(n.clone());
                        clause.push(n);
                        gap = Gap::Other;
                    } else if let Some(q) = ASKS.iter().find(|(k, _)| *k == w) {
                        asks.push(q.1);
                    } else if w == "of" || w == "in" {
                        if gap == Gap::Plain {
                            gap = Gap::OfIn;
                        }
                    } else if RELATIONS.contains(&w) {
                        gap = Gap::Other;
                    } else if !stopwords().contains_key(w) || partitive(w, tokens.get(i + 1)) {
                        let c = canonical(w);
                        clause.push(c.clone());
                        push_word(&mut words, &mut surface, &mut gaps, gap, &c, w);
                        gap = Gap::Plain;
                    }
                }
            }
            i += 1;
        }
        close(&mut clause, &mut clause_negs, &mut negations);
        negations.sort();
        asks.sort_unstable();
        asks.dedup();
        Self {
            words,
            surface,
            numbers,
            negations,
            gaps,
            asks,
            lexicon: None,
        }
    }

    /// Analyses a text and looks up each content word's vector in `embedder`'s model
    /// ([`Embedder::word`](crate::Embedder::word)), so that [`Analysis::compare`] may let
    /// two different words stand for each other when the model puts them close enough
    /// (`verify_with`). With an embedder without word vectors this is [`Analysis::of`].
    pub fn with_words(text: &str, embedder: &dyn crate::Embedder) -> Self {
        let mut a = Self::of(text);
        a.lexicon = a
            .surface
            .iter()
            .map(|w| embedder.word(w).map(|v| crate::align::Lex::new(&v)))
            .collect();
        a
    }

    /// [`verify`] on two analyses. When both carry word vectors
    /// ([`Analysis::with_words`]), a pair that fails the word-for-word rule gets a second
    /// chance with words aligned by the model (`crate::align`); everything else (numbers,
    /// negations, question words, order) must still agree.
    pub fn compare(&self, other: &Analysis) -> Verdict {
        let strict = self.compare_strict(other);
        if strict.is_match() {
            return strict;
        }
        if let Some((a, b)) = crate::align::rewrite(self, other)
            && a.compare_strict(&b).is_match()
        {
            return Verdict::Match;
        }
        strict
    }

    /// Heap bytes held by the word vectors (counted in [`crate::Cache::entry_cost`]).
    pub(crate) fn word_vector_bytes(&self) -> usize {
        self.lexicon
            .as_ref()
            .map_or(0, |l| l.iter().map(|x| x.heap_bytes() + 32).sum())
    }

    fn compare_strict(&self, other: &Analysis) -> Verdict {
        if (self.words.is_empty() && self.numbers.is_empty())
            || (other.words.is_empty() && other.numbers.is_empty())
        {
            return Verdict::Mismatch(Reason::TooLittle);
        }
        if self.numbers != other.numbers {
            return Verdict::Mismatch(Reason::Numbers);
        }
        if self.negations != other.negations {
            return Verdict::Mismatch(Reason::Negation);
        }
        if self.asks != other.asks {
            return Verdict::Mismatch(Reason::Words);
        }
        if self.words != other.words {
            let mut a = self.words.clone();
            let mut b = other.words.clone();
            a.sort();
            b.sort();
            if a != b {
                return Verdict::Mismatch(Reason::Words);
            }
            if !self.inverts_to(other) {
                return Verdict::Mismatch(Reason::Order);
            }
        }
        Verdict::Match
    }

    /// Whether `other`'s words are these in the same order but for pairs written "X of Y"
    /// or "X in Y" on one side and "Y X" (or "Y's X") on the other: "capital of France"
    /// and "France's capital", "a list in Python" and "a Python list". Any other move is
    /// refused: "USD to EUR" is not "EUR to USD", "my child adult syrup" is not "my adult
    /// child syrup".
    fn inverts_to(&self, other: &Analysis) -> bool {
        let (a, b) = (&self.words, &other.words);
        let gap = |x: &Analysis, i: usize| x.gaps.get(i).copied().unwrap_or(Gap::Other);
        let mut i = 0;
        while i < a.len() {
            if a[i] == b[i] {
                i += 1;
                continue;
            }
            let swapped = i + 1 < a.len() && a[i] == b[i + 1] && a[i + 1] == b[i];
            let inverted = matches!(
                (gap(self, i), gap(other, i)),
                (Gap::OfIn, Gap::Plain) | (Gap::Plain, Gap::OfIn)
            );
            if !(swapped && inverted) {
                return false;
            }
            i += 2;
        }
        true
    }
}

/// Adds a content word (first occurrences only) and the gap before it. A repeated word
/// makes the gap after the previous one unknown.
fn push_word(
    words: &mut Vec<String>,
    surface: &mut Vec<String>,
    gaps: &mut Vec<Gap>,
    gap: Gap,
    w: &str,
    written: &str,
) {
    if words.iter().any(|x| x == w) {
        if let Some(last) = gaps.last_mut() {
            *last = Gap::Other;
        }
        return;
    }
    if !words.is_empty() {
        gaps.push(gap);
    }
    words.push(w.to_owned());
    surface.push(written.to_owned());
}

/// "some of" (and "any of", "one of") take a part of a whole: "export some of my
/// contacts" is not "export my contacts", so there the word is content.
fn partitive(w: &str, next: Option<&Tok>) -> bool {
    matches!(w, "some" | "any" | "one") && matches!(next, Some(Tok::Word(n)) if n == "of")
}
