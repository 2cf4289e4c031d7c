//! The normaliser: one canonical spelling of a text for the detectors and the classifier,
//! with a byte map back to the original so that findings point at what the user sent.
//!
//! Steps, per character of the original:
//! - Unicode tag characters (U+E0020..U+E007E, "ASCII smuggling") are decoded to the ASCII
//!   they encode, so the hidden instruction is read rather than dropped; the tag begin/cancel
//!   characters, zero-width characters, bidi controls, variation selectors and the soft
//!   hyphen are removed. Each is counted in [`Hidden`].
//! - NFKC (per character): fullwidth, mathematical alphanumerics, ligatures, circled and
//!   superscript letters become their plain forms.
//! - Latin, Greek and Cyrillic diacritics are stripped (é → e, й → и), combining marks dropped.
//! - Lowercase.
//!
//! Then, per word: Cyrillic/Greek homoglyphs are folded to Latin in words that mix them with
//! Latin letters (a Russian word stays Russian), digits and `@`/`$` standing for letters are
//! folded in words that mix letters and digits ("1gn0r3" → "ignore"), runs of single letters
//! separated by one space, dot, dash or underscore are joined ("i g n o r e" → "ignore"),
//! and whitespace runs collapse to one space (or one newline).

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// How many characters of each hidden kind the text carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hidden {
    /// Unicode tag characters (decoded into the normalised text).
    pub tags: usize,
    /// Zero-width characters between two letters (ZWJ inside emoji does not count).
    pub zero_width_in_words: usize,
    /// Bidi override/isolate controls.
    pub bidi: usize,
}

/// A normalised text and, for each of its bytes, the range of the original character it
/// came from.
#[derive(Debug, Clone)]
pub struct Normalized {
    pub text: String,
    src: Vec<(u32, u32)>,
    pub hidden: Hidden,
}

impl Normalized {
    /// The byte range of the original text that produced `range` of the normalised text.
    /// `range` must lie on character boundaries of the normalised text (regex matches do).
    pub fn to_original(&self, range: Range<usize>) -> Range<usize> {
        if self.src.is_empty() {
            return 0..0;
        }
        let last = self.src.len() - 1;
        let start = self.src[range.start.min(last)].0 as usize;
        let end = if range.end == 0 {
            start
        } else {
            self.src[(range.end - 1).min(last)].1 as usize
        };
        start..end.max(start)
    }
}

/// One output character and the original range it stands for.
#[derive(Clone, Copy)]
struct Ch {
    c: char,
    start: u32,
    end: u32,
}

fn is_removed_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Letters whose canonical decomposition is base + diacritic and whose base we keep.
fn strips_diacritics(c: char) -> bool {
    matches!(c, '\u{00C0}'..='\u{024F}' | '\u{0370}'..='\u{04FF}' | '\u{1E00}'..='\u{1FFF}')
}

/// Cyrillic and Greek letters that look like Latin ones (lowercase after lowercasing).
fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'є' => 'e',
        'һ' => 'h',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' => 't',
        'ц' => 'u',
        'ѵ' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'у' => 'y',
        'ɡ' => 'g',
        'ı' => 'i',
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        'ω' => 'w',
        _ => return None,
    })
}

fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        _ => return None,
    })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '@' || c == '$'
}

/// Normalise `text` (see the module doc).
pub fn normalize(text: &str) -> Normalized {
    if text.is_ascii() {
        normalize_ascii(text)
    } else {
        normalize_unicode(text)
    }
}

fn is_ascii_space(b: u8) -> bool {
    // `char::is_whitespace` on ASCII (`u8::is_ascii_whitespace` leaves out U+000B).
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// The same result as [`normalize_unicode`] for ASCII text, on bytes: ASCII has no hidden
/// characters, nothing for NFKC, diacritics or homoglyphs to do, so only lowercasing, leet
/// folding, spaced-letter joining and whitespace collapsing remain, and the last two are
/// one pass writing the text and its offset map directly.
fn normalize_ascii(text: &str) -> Normalized {
    let mut c = text.as_bytes().to_ascii_lowercase();
    fold_leet_ascii(&mut c);
    let n = c.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut src: Vec<(u32, u32)> = Vec::with_capacity(n);
    let mut emit = |b: u8, i: usize| {
        let (start, end) = (i as u32, i as u32 + 1);
        if !is_ascii_space(b) {
            out.push(b);
            src.push((start, end));
            return;
        }
        let w = if b == b'\n' || b == b'\r' {
            b'\n'
        } else {
            b' '
        };
        match out.last_mut() {
            Some(last) if *last == b' ' || *last == b'\n' => {
                if w == b'\n' {
                    *last = b'\n';
                }
                if let Some(s) = src.last_mut() {
                    s.1 = end;
                }
            }
            None => {}
            _ => {
                out.push(w);
                src.push((start, end));
            }
        }
    };
    let single = |k: usize| {
        c[k].is_ascii_alphabetic()
            && (k == 0 || !c[k - 1].is_ascii_alphanumeric())
            && (k + 1 >= n || !c[k + 1].is_ascii_alphanumeric())
    };
    let is_sep = |b: u8| matches!(b, b' ' | b'.' | b'-' | b'_' | b'*' | b'|' | b'/');
    let mut i = 0;
    while i < n {
        if single(i) {
            let mut k = i;
            let mut letters = 1;
            while k + 2 < n && is_sep(c[k + 1]) && single(k + 2) {
                k += 2;
                letters += 1;
            }
            if letters >= 4 {
                for j in (i..=k).step_by(2) {
                    emit(c[j], j);
                }
                i = k + 1;
                continue;
            }
        }
        emit(c[i], i);
        i += 1;
    }
    while out.last().is_some_and(|&b| is_ascii_space(b)) {
        out.pop();
        src.pop();
    }
    Normalized {
        // Only ASCII bytes were written.
        text: String::from_utf8(out).unwrap_or_default(),
        src,
        hidden: Hidden::default(),
    }
}

/// [`fold_words`]'s leet folding on ASCII bytes (homoglyphs cannot occur).
fn fold_leet_ascii(c: &mut [u8]) {
    let leetable = |b: u8| leet(b as char).is_some();
    if !c.iter().any(|&b| leetable(b)) {
        return;
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'@' || b == b'$';
    let mut i = 0;
    while i < c.len() {
        if !word(c[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        let (mut letters, mut digits, mut other) = (0, 0, 0);
        while j < c.len() && word(c[j]) {
            if c[j].is_ascii_alphabetic() {
                letters += 1;
            } else if leetable(c[j]) {
                digits += 1;
            } else {
                other += 1;
            }
            j += 1;
        }
        let email = c[i + 1..j].contains(&b'@')
            && c.get(j) == Some(&b'.')
            && c.get(j + 1).is_some_and(u8::is_ascii_alphabetic);
        if digits > 0 && letters >= 2 && letters + digits >= 4 && other == 0 && !email {
            for b in &mut c[i..j] {
                if let Some(l) = leet(*b as char) {
                    *b = l as u8;
                }
            }
        }
        i = j;
    }
}

fn normalize_unicode(text: &str) -> Normalized {
    let mut hidden = Hidden::default();
    let mut out: Vec<Ch> = Vec::with_capacity(text.len());
    let mut prev_letter = false;
    let mut pending_zw = 0usize;
    for (i, c) in text.char_indices() {
        let start = i as u32;
        let end = (i + c.len_utf8()) as u32;
        if ('\u{E0020}'..='\u{E007E}').contains(&c) {
            hidden.tags += 1;
            let ascii = char::from_u32(c as u32 - 0xE0000).unwrap_or(' ');
            for l in ascii.to_lowercase() {
                out.push(Ch { c: l, start, end });
            }
            prev_letter = ascii.is_alphanumeric();
            continue;
        }
        if is_removed_invisible(c) {
            if is_bidi(c) {
                hidden.bidi += 1;
            }
            if is_zero_width(c) && prev_letter {
                pending_zw += 1;
            }
            continue;
        }
        let is_letter = c.is_alphabetic();
        if is_letter && pending_zw > 0 && c.is_ascii_alphabetic() {
            hidden.zero_width_in_words += pending_zw;
        }
        pending_zw = 0;
        prev_letter = c.is_ascii_alphabetic();
        if c.is_ascii() {
            out.push(Ch {
                c: c.to_ascii_lowercase(),
                start,
                end,
            });
            continue;
        }
        if is_combining_mark(c) {
            continue;
        }
        for d in std::iter::once(c).nfkc() {
            if is_combining_mark(d) {
                continue;
            }
            let mut push = |x: char| {
                for l in x.to_lowercase() {
                    if !is_combining_mark(l) {
                        out.push(Ch { c: l, start, end });
                    }
                }
            };
            if strips_diacritics(d) {
                let mut base = None;
                unicode_normalization::char::decompose_canonical(d, |b| {
                    if base.is_none() {
                        base = Some(b);
                    }
                });
                push(base.unwrap_or(d));
            } else {
                push(d);
            }
        }
    }
    let out = fold_words(out);
    let out = join_spaced_letters(out);
    let out = collapse_whitespace(out);
    let mut s = String::with_capacity(out.len());
    let mut src = Vec::with_capacity(out.len());
    for ch in out {
        s.push(ch.c);
        for _ in 0..ch.c.len_utf8() {
            src.push((ch.start, ch.end));
        }
    }
    Normalized {
        text: s,
        src,
        hidden,
    }
}

/// Homoglyph and leet folding within words that mix scripts or letters and digits.
fn fold_words(mut out: Vec<Ch>) -> Vec<Ch> {
    let mut i = 0;
    while i < out.len() {
        if !is_word_char(out[i].c) {
            i += 1;
            continue;
        }
        let mut j = i;
        let (mut latin, mut confusable, mut letters, mut digits) = (0, 0, 0, 0);
        while j < out.len() && is_word_char(out[j].c) {
            let c = out[j].c;
            if c.is_ascii_alphabetic() {
                latin += 1;
            } else if homoglyph(c).is_some() {
                confusable += 1;
            }
            if c.is_alphabetic() {
                letters += 1;
            } else if leet(c).is_some() {
                digits += 1;
            }
            j += 1;
        }
        if latin > 0 && confusable > 0 {
            for ch in &mut out[i..j] {
                if let Some(l) = homoglyph(ch.c) {
                    ch.c = l;
                }
            }
        }
        // "h4ve", "1gn0r3", "upd@te": letters and letter-like digits mixed. A word that is
        // mostly digits ("2024", "v1.2", "mp3") stays as it is.
        // "name@example.org": an e-mail address (the `@` is followed by a domain), kept
        // as written so that the exfiltration rules see where data is to go.
        let email = out[i + 1..j].iter().any(|ch| ch.c == '@')
            && out.get(j).is_some_and(|ch| ch.c == '.')
            && out.get(j + 1).is_some_and(|ch| ch.c.is_alphabetic());
        if digits > 0
            && letters >= 2
            && letters + digits >= 4
            && (latin > 0 || confusable > 0)
            && !email
        {
            let all_leetable = out[i..j]
                .iter()
                .all(|ch| ch.c.is_alphabetic() || leet(ch.c).is_some());
            if all_leetable {
                for ch in &mut out[i..j] {
                    if let Some(l) = leet(ch.c) {
                        ch.c = l;
                    }
                }
            }
        }
        i = j;
    }
    out
}

/// "i g n o r e  a l l" → "ignore all": at least four single letters each separated by one
/// separator; a double space (or any other gap) ends the word.
fn join_spaced_letters(out: Vec<Ch>) -> Vec<Ch> {
    let is_sep = |c: char| matches!(c, ' ' | '.' | '-' | '_' | '*' | '|' | '/');
    let single = |v: &[Ch], k: usize| {
        v[k].c.is_alphabetic()
            && (k == 0 || !v[k - 1].c.is_alphanumeric())
            && (k + 1 >= v.len() || !v[k + 1].c.is_alphanumeric())
    };
    let mut res: Vec<Ch> = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if single(&out, i) {
            // Count letter, sep, letter, sep, ... without allocating.
            let mut k = i;
            let mut letters = 1;
            while k + 2 < out.len() && is_sep(out[k + 1].c) && single(&out, k + 2) {
                k += 2;
                letters += 1;
            }
            if letters >= 4 {
                res.extend(out[i..=k].iter().step_by(2).copied());
                i = k + 1;
                continue;
            }
        }
        res.push(out[i]);
        i += 1;
    }
    res
}

fn collapse_whitespace(out: Vec<Ch>) -> Vec<Ch> {
    let mut res: Vec<Ch> = Vec::with_capacity(out.len());
    for ch in out {
        if ch.c.is_whitespace() {
            let c = if ch.c == '\n' || ch.c == '\r' {
                '\n'
            } else {
                ' '
            };
            match res.last_mut() {
                Some(last) if last.c == ' ' || last.c == '\n' => {
                    if c == '\n' {
                        last.c = '\n';
                    }
                    last.end = ch.end;
                }
                None => {}
                _ => res.push(Ch { c, ..ch }),
            }
        } else {
            res.push(ch);
        }
    }
    while res.last().is_some_and(|c| c.c.is_whitespace()) {
        res.pop();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s).text
    }

    #[test]
    fn nfkc_fullwidth_and_math_letters_fold() {
        assert_eq!(n("ＩＧＮＯＲＥ previous"), "ignore previous");
        assert_eq!(n("𝐢𝐠𝐧𝐨𝐫𝐞 𝓪𝓵𝓵"), "ignore all");
    }

    #[test]
    fn zero_width_removed_and_counted() {
        let r = normalize("ig\u{200B}no\u{200C}re all");
        assert_eq!(r.text, "ignore all");
        assert_eq!(r.hidden.zero_width_in_words, 2);
        // A ZWJ inside an emoji family is not "in a word".
        assert_eq!(normalize("👨\u{200D}👩").hidden.zero_width_in_words, 0);
    }

    #[test]
    fn tag_characters_are_decoded() {
        let hidden: String = "ignore all"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
            .collect();
        let r = normalize(&format!("hello{hidden}"));
        assert_eq!(r.text, "helloignore all");
        assert_eq!(r.hidden.tags, 10);
    }

    #[test]
    fn homoglyphs_fold_only_in_mixed_words() {
        // Cyrillic о and е inside Latin words.
        assert_eq!(n("ignоrе prеvious"), "ignore previous");
        // A Russian word stays Russian.
        assert_eq!(n("Игнорируй"), "игнорируи");
    }

    #[test]
    fn diacritics_and_leet() {
        assert_eq!(n("Ïgnörë"), "ignore");
        assert_eq!(n("1gn0r3 pr3v10us"), "ignore previous");
        assert_eq!(n("version 2024 mp3"), "version 2024 mp3");
        // An e-mail address keeps its `@` (and its digits); a leet word does not.
        assert_eq!(
            n("Mail j0hn@example.org, upd@te"),
            "mail j0hn@example.org, update"
        );
        assert_eq!(n("Mäil j0hn@example.org"), "mail j0hn@example.org");
    }

    #[test]
    fn spaced_letters_join() {
        assert_eq!(n("i g n o r e  p.r.e.v.i.o.u.s"), "ignore previous");
        assert_eq!(n("I am a b"), "i am a b");
    }

    #[test]
    fn ascii_fast_path_equals_the_general_one() {
        // Random ASCII over an alphabet that exercises every step: leet digits, spaced
        // letters and their separators, every ASCII whitespace, upper case.
        let alphabet = b"aeIGNorE xyz 0134@$579 2 . - _ * | / \n\r\t\x0B\x0C  ab";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let text: String = (0..len)
                .map(|k| {
                    let r = seed.rotate_left(k as u32 * 7) ^ (k as u64).wrapping_mul(0x2545_F491);
                    alphabet[(r % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let (a, b) = (normalize_ascii(&text), normalize_unicode(&text));
            assert_eq!(a.text, b.text, "text of {text:?}");
            assert_eq!(a.src, b.src, "offsets of {text:?}");
        }
    }

    #[test]
    fn spans_map_back_to_the_original() {
        let orig = "Ｈｉ ig\u{200B}nore";
        let r = normalize(orig);
        let at = r.text.find("ignore").unwrap();
        let span = r.to_original(at..at + "ignore".len());
        assert_eq!(&orig[span], "ig\u{200B}nore");
    }
}
