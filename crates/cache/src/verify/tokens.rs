//! Text to tokens: words (contractions split), numbers (digits, number words,
//! ordinals, read as one canonical form), operator symbols, and clause breaks.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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

pub(super) fn tokenize(text: &str) -> Vec<Tok> {
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
pub(super) fn number_words(tokens: &[Tok]) -> Option<(String, usize)> {
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

pub(super) fn ordinal(w: &str) -> Option<String> {
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
