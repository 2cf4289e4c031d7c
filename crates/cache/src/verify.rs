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

use std::collections::HashMap;
use std::sync::OnceLock;

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

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Word(String),
    Num(String),
    Sym(String),
    /// Sentence or clause punctuation.
    Break,
}

/// Characters that make an operator token (`+=`, `->`, `!=`, `c++`, `c#`).
fn is_op(c: char) -> bool {
    matches!(
        c,
        '+' | '-' | '*' | '/' | '=' | '<' | '>' | '!' | '&' | '|' | '^' | '~' | '#' | '@' | '\\'
    )
}

fn tokenize(text: &str) -> Vec<Tok> {
    let lower = text.to_lowercase();
    let chars: Vec<char> = lower
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '`' | '\u{b4}' => '\'',
            '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
            _ => c,
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i > 0 { chars[i - 1] } else { ' ' };
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        if c.is_ascii_digit() || (c == '-' && next.is_ascii_digit() && !prev.is_alphanumeric()) {
            // A number: digits with inner '.' or ',' (3.14, 10,000), then a unit glued
            // to it (5km, 10k, 2nd) as its own word.
            let start = i;
            i += 1;
            while i < chars.len() {
                let c = chars[i];
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                if c.is_ascii_digit() || ((c == '.' || c == ',') && next.is_ascii_digit()) {
                    i += 1;
                } else {
                    break;
                }
            }
            let raw: String = chars[start..i].iter().collect();
            let mut suffix = String::new();
            while i < chars.len() && chars[i].is_alphabetic() {
                suffix.push(chars[i]);
                i += 1;
            }
            let (num, suffix) = match suffix.as_str() {
                "st" | "nd" | "rd" | "th" => (canonical_number(&raw), String::new()),
                "k" => (scale(&raw, 1e3), String::new()),
                _ => (canonical_number(&raw), suffix),
            };
            out.push(Tok::Num(num));
            if !suffix.is_empty() {
                out.push(Tok::Word(suffix));
            }
            continue;
        }
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len() {
                let c = chars[i];
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                if c.is_alphanumeric()
                    || c == '_'
                    || (c == '\'' && next.is_alphabetic())
                    || (c == '.' && next.is_alphanumeric() && chars[i - 1].is_alphanumeric())
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let word: String = chars[start..i].iter().collect();
            split_word(&word, &mut out);
            continue;
        }
        match c {
            '$' => out.push(Tok::Word("dollar".into())),
            '\u{20ac}' => out.push(Tok::Word("euro".into())),
            '\u{a3}' => out.push(Tok::Word("gbp".into())),
            '\u{a5}' => out.push(Tok::Word("yen".into())),
            '%' => out.push(Tok::Word("percent".into())),
            '.' | ',' | ';' | ':' | '?' | '!' if !(c == '!' && next == '=') => out.push(Tok::Break),
            c if is_op(c) => {
                // A hyphen or slash between two words joins them ("e-mail", "and/or"):
                // a separator, not an operator.
                if (c == '-' || c == '/') && prev.is_alphanumeric() && next.is_alphanumeric() {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && is_op(chars[i]) {
                    i += 1;
                }
                let op: String = chars[start..i].iter().collect();
                // Lone dashes and slashes in prose are punctuation.
                if !matches!(op.as_str(), "-" | "--" | "/" | "&") {
                    out.push(Tok::Sym(op));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Splits contractions and dotted names; pushes the pieces.
fn split_word(word: &str, out: &mut Vec<Tok>) {
    if let Some(base) = word.strip_suffix("n't") {
        let base = match base {
            "ca" => "can",
            "wo" => "will",
            "sha" => "shall",
            b => b,
        };
        out.push(Tok::Word(base.to_owned()));
        out.push(Tok::Word("not".into()));
        return;
    }
    if let Some((base, _)) = word.split_once('\'') {
        // 's 're 've 'll 'd 'm: possessive or an auxiliary, both dropped.
        out.push(Tok::Word(base.to_owned()));
        return;
    }
    match word {
        "cannot" | "cant" => {
            out.push(Tok::Word("can".into()));
            out.push(Tok::Word("not".into()));
            return;
        }
        "dont" | "doesnt" | "didnt" | "isnt" | "arent" | "wasnt" | "werent" | "wont"
        | "wouldnt" | "shouldnt" | "couldnt" | "havent" | "hasnt" | "hadnt" => {
            out.push(Tok::Word(word[..word.len() - 2].to_owned()));
            out.push(Tok::Word("not".into()));
            return;
        }
        _ => {}
    }
    // "node.js", "e.g.": dotted pieces are words of their own.
    for piece in word.split('.').filter(|p| !p.is_empty()) {
        out.push(Tok::Word(piece.to_owned()));
    }
}

fn canonical_number(raw: &str) -> String {
    let plain: String = raw.chars().filter(|&c| c != ',').collect();
    match plain.parse::<f64>() {
        Ok(v) if v.is_finite() => format_number(v),
        _ => plain,
    }
}

fn scale(raw: &str, by: f64) -> String {
    let plain: String = raw.chars().filter(|&c| c != ',').collect();
    match plain.parse::<f64>() {
        Ok(v) if v.is_finite() => format_number(v * by),
        _ => plain,
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A run of number words at the start of `tokens` ("twenty five", "a hundred", "two
/// thousand and ten"): its value and how many tokens it took.
fn number_words(tokens: &[Tok]) -> Option<(String, usize)> {
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut used = 0;
    let mut any = false;
    for (i, t) in tokens.iter().enumerate() {
        let Tok::Word(w) = t else { break };
        let small = match w.as_str() {
            "zero" => Some(0),
            "one" => Some(1),
            "two" => Some(2),
            "three" => Some(3),
            "four" => Some(4),
            "five" => Some(5),
            "six" => Some(6),
            "seven" => Some(7),
            "eight" => Some(8),
            "nine" => Some(9),
            "ten" => Some(10),
            "eleven" => Some(11),
            "twelve" => Some(12),
            "thirteen" => Some(13),
            "fourteen" => Some(14),
            "fifteen" => Some(15),
            "sixteen" => Some(16),
            "seventeen" => Some(17),
            "eighteen" => Some(18),
            "nineteen" => Some(19),
            "twenty" => Some(20),
            "thirty" => Some(30),
            "forty" => Some(40),
            "fifty" => Some(50),
            "sixty" => Some(60),
            "seventy" => Some(70),
            "eighty" => Some(80),
            "ninety" => Some(90),
            "dozen" => Some(12),
            "twice" | "double" | "pair" => Some(2),
            "half" => None,
            _ => None,
        };
        let mult = match w.as_str() {
            "hundred" => Some(100),
            "thousand" => Some(1_000),
            "million" => Some(1_000_000),
            "billion" => Some(1_000_000_000),
            _ => None,
        };
        if let Some(v) = small {
            current = current.saturating_add(v);
            any = true;
            used = i + 1;
        } else if let Some(m) = mult {
            current = current.max(1).saturating_mul(m);
            if m >= 1_000 {
                total = total.saturating_add(current);
                current = 0;
            }
            any = true;
            used = i + 1;
        } else if w == "and" && any {
            // "two hundred and ten": keep going only if a number word follows.
            continue;
        } else if w == "half" {
            return if any {
                None
            } else {
                Some(("0.5".into(), i + 1))
            };
        } else {
            break;
        }
    }
    any.then(|| (total.saturating_add(current).to_string(), used))
}

fn ordinal(w: &str) -> Option<String> {
    let n = match w {
        "first" => 1,
        "second" => 2,
        "third" => 3,
        "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "twelfth" => 12,
        "twentieth" => 20,
        "hundredth" => 100,
        _ => return None,
    };
    Some(n.to_string())
}

/// Question words that ask for something other than a thing or a way, folded; they must
/// agree, wherever they stand ("why was it declined" / "it was declined, why?").
const ASKS: &[(&str, &str)] = &[
    ("why", "why"),
    ("when", "when"),
    ("where", "where"),
    ("who", "who"),
    ("whom", "who"),
    ("whose", "whose"),
];

/// Function words that relate the words around them (direction, comparison, purpose,
/// means): dropped from the content but never let two words around them swap places.
const RELATIONS: &[&str] = &[
    "to", "than", "for", "by", "with", "vs", "versus", "into", "onto", "via", "between", "about",
    "as", "at", "on", "upon", "through", "within",
];

/// Words that negate their clause.
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
];

/// Words that end a clause (negations are scoped to theirs).
const CLAUSE_BREAKS: &[&str] = &[
    "but", "and", "or", "because", "if", "unless", "while", "whereas", "although", "though", "so",
    "then",
];

/// Function words and politeness: dropped before comparing. Deliberately absent (they
/// are content): direction and state words (from, off, out, up, down, over, under,
/// before, after, since, until), quantifiers and degree (all, every, each, only, most,
/// more, less, few, many, much, too), time (today, next, last, now), why/when/where/who,
/// was/were, he/she/his/her.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "another", "such", "i",
    "me", "my", "mine", "myself", "we", "us", "our", "ours", "you", "your", "yours", "yourself",
    "it", "its", "itself", "they", "them", "their", "theirs", "one", "someone", "somebody",
    "anyone", "anybody", "something", "anything", "there", "here", "be", "is", "are", "am",
    "being", "been", "do", "does", "did", "doing", "done", "have", "has", "having", "can",
    "could", "would", "will", "shall", "should", "might", "must", "let", "lets", "gonna",
    "wanna", "what", "which", "how", "whats", "hows", "whether", "please", "pls", "plz",
    "kindly", "thanks", "thank", "thx", "hi", "hello", "hey", "dear", "ok", "okay", "well",
    "um", "uh", "just", "really", "actually", "basically", "exactly", "also", "even", "still",
    "anyway", "quick", "quickly", "question", "wondering", "wonder", "curious", "know", "tell",
    "explain", "describe", "help", "want", "like", "way", "ways", "possible", "able", "guys",
    "folks", "someone", "idea", "ideas", "im", "ive", "youre", "give", "show", "get", "got",
    "say", "said", "mean", "means", "meaning", "definition", "define", "thing", "things",
    "kind", "sure", "correct", "right", "properly", "exact", "e", "g", "eg", "ie", "etc",
];

fn stopwords() -> &'static HashMap<&'static str, ()> {
    static S: OnceLock<HashMap<&'static str, ()>> = OnceLock::new();
    S.get_or_init(|| STOPWORDS.iter().map(|w| (*w, ())).collect())
}

/// General-English synonyms folded to the first word of each group. Only words that
/// mean the same in any domain; near-synonyms that can change an answer (big/huge,
/// error/exception, fast/cheap) stay apart.
const SYNONYMS: &[&[&str]] = &[
    &["big", "large"],
    &["small", "little", "tiny"],
    &["begin", "start", "commence"],
    &["finish", "complete"],
    &["buy", "purchase"],
    &["car", "automobile"],
    &["fix", "repair", "resolve", "solve"],
    &["make", "create"],
    &["remove", "delete", "erase"],
    &["use", "utilize", "utilise"],
    &["choose", "pick", "select"],
    &["cheap", "inexpensive"],
    &["expensive", "costly", "pricey"],
    &["doctor", "physician"],
    &["child", "kid", "children", "kids"],
    &["movie", "film"],
    &["sofa", "couch"],
    &["fast", "quick", "speedy", "rapid"],
    &["error", "err"],
    &["maximum", "max"],
    &["minimum", "min"],
    &["kilometer", "kilometre", "km"],
    &["meter", "metre"],
    &["kilogram", "kg", "kilo"],
    &["pound", "lb", "lbs"],
    &["mile", "mi"],
    &["hour", "hr", "hrs", "h"],
    &["minute", "mins"],
    &["second", "sec", "secs"],
    &["percent", "percentage", "pct"],
    &["dollar", "usd"],
    &["euro", "eur"],
    &["email", "mail", "e-mail"],
    &["website", "site"],
    &["photo", "picture", "pic", "image"],
    &["smartphone", "phone", "cellphone"],
    &["password", "passcode", "pw"],
    &["signin", "login"],
    &["signup", "register"],
    &["directory", "folder"],
    &["function", "func", "fn"],
    &["database", "db"],
    &["application", "app"],
    &["configuration", "config"],
    &["repository", "repo"],
    &["documentation", "docs", "doc"],
    &["javascript", "js"],
    &["typescript", "ts"],
    &["python", "py"],
    &["weather", "forecast"],
    &["recipe", "recipes"],
    &["near", "nearby", "close"],
    &["happen", "occur"],
    &["allow", "permit"],
    &["need", "require"],
    &["answer", "reply", "respond"],
    &["cost", "price"],
    &["trip", "journey"],
    &["job", "occupation"],
    &["stomach", "tummy", "belly"],
    &["difference", "differ", "different"],
];

fn synonyms() -> &'static HashMap<String, &'static str> {
    static S: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    S.get_or_init(|| {
        let mut m = HashMap::new();
        for group in SYNONYMS {
            for w in group.iter() {
                m.insert((*w).to_owned(), group[0]);
            }
        }
        // Their stems too, so an inflected synonym meets its group ("required" is
        // stemmed to "requir" before the look-up, and must still meet "need").
        for group in SYNONYMS {
            for w in group.iter() {
                // Short stems are ambiguous ("util" is also "utility"): exact words only.
                let s = stem(&american(w));
                if s.len() >= 5 {
                    m.entry(s).or_insert(group[0]);
                }
            }
        }
        m
    })
}

/// A content word's canonical form: synonyms folded, then stemmed (and folded again,
/// so "purchased" meets "buy").
fn canonical(w: &str) -> String {
    if let Some(c) = synonyms().get(w) {
        return stem(c);
    }
    let s = stem(&american(w));
    if let Some(c) = synonyms().get(&s) {
        return stem(c);
    }
    s
}

/// British spellings folded to American by suffix (-ise, -isation, -our, -tre), so
/// "caramelise" meets "caramelize" and "centre" meets "center". Both sides are folded
/// alike; a fold only matters where it merges two different words, which these suffixes
/// almost never do.
fn american(w: &str) -> String {
    if !w.is_ascii() || w.len() < 6 {
        return w.to_owned();
    }
    for (gb, us) in [
        ("isation", "ization"),
        ("isations", "izations"),
        ("ising", "izing"),
        ("ised", "ized"),
        ("ises", "izes"),
        ("ise", "ize"),
        ("our", "or"),
        ("ours", "ors"),
        ("tre", "ter"),
        ("tres", "ters"),
    ] {
        if let Some(base) = w.strip_suffix(gb) {
            return format!("{base}{us}");
        }
    }
    w.to_owned()
}

/// Snowball (Porter 2) English stemming, so inflections of one word meet ("sorting",
/// "sorted", "sorts"). Both sides are stemmed alike.
fn stem(w: &str) -> String {
    static S: OnceLock<rust_stemmers::Stemmer> = OnceLock::new();
    S.get_or_init(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English))
        .stem(w)
        .into_owned()
}
