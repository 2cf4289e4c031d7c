//! What the output filter looks for: the pattern of each kind, how a match ends, and the
//! checksums (Luhn, IBAN mod-97) that keep numbers that merely look like cards or IBANs out.
//!
//! Every pattern is either *bounded* (at most [`MAX_BOUNDED`] bytes, so a hold-back window
//! of that size sees it whole) or a *token*: a bounded recognisable head followed by a run
//! of one character class, which the filter keeps dropping as it streams in. That split is
//! what makes streaming output equal to filtering the whole text at once.

use crate::output::OutputKind;

/// The longest a bounded pattern (or a token's head) may be; the window is at least this
/// plus a UTF-8 character.
pub(crate) const MAX_BOUNDED: usize = 60;

/// How a match ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tail {
    /// The match is all there is.
    Bounded,
    /// The match continues over this class as long as the stream does.
    Run(fn(char) -> bool),
    /// Everything up to the PEM END line (or the end of the stream) goes.
    Pem,
}

pub(crate) struct Spec {
    pub kind: OutputKind,
    pub pattern: &'static str,
    pub tail: Tail,
    pub check: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}
fn alnum_underscore(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
fn alnum_dash(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}
fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}
fn jwt_char(c: char) -> bool {
    key_char(c) || c == '.'
}
fn domain_char(c: char) -> bool {
    alnum_dash(c) || c == '.'
}

pub(crate) const SECRETS: &[Spec] = &[
    Spec {
        kind: OutputKind::PrivateKey,
        pattern: r"-----BEGIN (?:[A-Z0-9]{1,10} ){0,2}PRIVATE KEY-----",
        tail: Tail::Pem,
        check: any,
    },
    Spec {
        kind: OutputKind::Jwt,
        // Segments joined by single dots; a full stop after the token stays outside.
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{10,44}\.eyJ[A-Za-z0-9_-]{4}[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*",
        tail: Tail::Run(jwt_char),
        check: any,
    },
    // Anthropic before OpenAI: both start with `sk-`.
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)sk-ant-[a-z]{3,6}\d{2}-[A-Za-z0-9_-]{16,}",
        tail: Tail::Run(key_char),
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        tail: Tail::Run(key_char),
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)AIza[0-9A-Za-z_-]{35}",
        tail: Tail::Bounded,
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{30,}",
        tail: Tail::Run(alnum),
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)github_pat_[A-Za-z0-9_]{30,}",
        tail: Tail::Run(alnum_underscore),
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)xox[abposre]-[A-Za-z0-9-]{10,}",
        tail: Tail::Run(alnum_dash),
        check: any,
    },
    Spec {
        kind: OutputKind::ApiKey,
        pattern: r"(?-u:\b)[rs]k_live_[A-Za-z0-9]{16,}",
        tail: Tail::Run(alnum),
        check: any,
    },
    Spec {
        kind: OutputKind::AwsKey,
        pattern: r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
        tail: Tail::Bounded,
        check: any,
    },
];

pub(crate) const PII: &[Spec] = &[
    Spec {
        kind: OutputKind::Iban,
        pattern: r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
        tail: Tail::Bounded,
        check: iban_valid,
    },
    Spec {
        kind: OutputKind::CardNumber,
        pattern: r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)",
        tail: Tail::Bounded,
        check: luhn_valid,
    },
    Spec {
        kind: OutputKind::Email,
        // A domain never ends in `.` or `-`: a sentence's full stop after an address
        // stays outside the match.
        pattern: r"[A-Za-z0-9._%+-]{1,24}@[A-Za-z0-9-]{1,30}\.[A-Za-z]{2}[A-Za-z0-9]*(?:[.-]+[A-Za-z0-9]+)*",
        tail: Tail::Run(domain_char),
        check: any,
    },
    Spec {
        kind: OutputKind::Phone,
        pattern: r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?-u:\b)",
        tail: Tail::Bounded,
        check: phone_valid,
    },
    Spec {
        kind: OutputKind::Phone,
        pattern: r"(?:\(\d{3}\) ?|(?-u:\b)\d{3}[ .-])\d{3}[ .-]\d{4}(?-u:\b)",
        tail: Tail::Bounded,
        check: any,
    },
];

/// Luhn checksum over the digits of `s`, which must number 13 to 19.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 check: 15 to 34 characters, moved country code and check digits, mod 97 == 1.
pub fn iban_valid(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn phone_valid(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (8..=15).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("5500-0000-0000-0004"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(!luhn_valid("0000 0000 0000 0000"));
        assert!(!luhn_valid("4111"));
    }

    #[test]
    fn iban() {
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("DE89 3704 0044 0532 0130 01"));
        assert!(!iban_valid("DE89"));
    }

    #[test]
    fn heads_fit_the_window() {
        // The longest bounded pattern or token head, written out.
        for s in [
            "-----BEGIN ENCRYPTED RSA2 PRIVATE KEY-----",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "DE89 3704 0044 0532 0130 0012 3456 789",
        ] {
            assert!(s.len() <= MAX_BOUNDED, "{s}");
        }
    }
}
