//! Output filtering for streams: canary tokens, secrets and PII are redacted as the text
//! streams through, holding back at most a small window.
//!
//! How it stays streaming-safe: the filter keeps the last `window` bytes unsent. Every
//! pattern is either bounded (it fits in the window, so by the time its first byte would
//! leave, the whole match is visible) or a token with a bounded head (`sk-proj-…`, a JWT, a
//! PEM header): once the head is seen, the redaction marker goes out and the rest of the
//! token is dropped as it arrives (a PEM block up to its END line or the end of the stream).
//! So a finding that straddles chunk boundaries is caught, nothing beyond the window is held
//! back, and the emitted text equals what filtering the whole text at once gives (tested at
//! every split point).

mod patterns;

pub use patterns::{iban_valid, luhn_valid};

use std::sync::OnceLock;

use patterns::{MAX_BOUNDED, PII, SECRETS, Spec, Tail};
use regex::Regex;

/// The built-in patterns, compiled once per process (immutable after that): index 0 is
/// secrets and PII, 1 secrets only, 2 PII only. Compiling per stream would cost more than
/// filtering the stream.
static BUILTIN: [OnceLock<Option<Regex>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
static PEM_END_RE: OnceLock<Option<Regex>> = OnceLock::new();

fn specs(secrets: bool, pii: bool) -> impl Iterator<Item = &'static Spec> {
    SECRETS
        .iter()
        .filter(move |_| secrets)
        .chain(PII.iter().filter(move |_| pii))
}

/// A shared `&'static` (not a clone): a cloned `Regex` starts with a cold lazy-DFA cache,
/// which cost ~0.5 ms per stream to warm up again (measured).
fn builtin(secrets: bool, pii: bool) -> Option<&'static Regex> {
    let slot = match (secrets, pii) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => return None,
    };
    BUILTIN[slot]
        .get_or_init(|| {
            let joined = specs(secrets, pii)
                .map(|s| format!("({})", s.pattern))
                .collect::<Vec<_>>()
                .join("|");
            // A large lazy-DFA cache: the counted repetitions of a dozen patterns make many
            // states, and a thrashing cache falls back to the slow engine (measured 20x).
            regex::RegexBuilder::new(&joined)
                .size_limit(32 << 20)
                .dfa_size_limit(32 << 20)
                .build()
                .ok()
        })
        .as_ref()
}

/// What kind of leak was redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    CanaryLeak,
    ApiKey,
    PrivateKey,
    Jwt,
    AwsKey,
    Email,
    Phone,
    CardNumber,
    Iban,
}

impl OutputKind {
    /// The stable id, also used in the redaction text `[REDACTED:<id>]`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OutputKind::CanaryLeak => "canary_leak",
            OutputKind::ApiKey => "api_key",
            OutputKind::PrivateKey => "private_key",
            OutputKind::Jwt => "jwt",
            OutputKind::AwsKey => "aws_key",
            OutputKind::Email => "email",
            OutputKind::Phone => "phone",
            OutputKind::CardNumber => "card_number",
            OutputKind::Iban => "iban",
        }
    }

    /// What replaces the leaked text.
    pub fn redaction(&self) -> String {
        format!("[REDACTED:{}]", self.as_str())
    }
}

/// What to filter out of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRules {
    /// Canary tokens placed in system prompts ([`canary`]); matched exactly.
    pub canaries: Vec<String>,
    /// Provider API keys, AWS key ids, PEM private keys, JWTs.
    pub secrets: bool,
    /// Emails, phone numbers, card numbers (Luhn-checked), IBANs (mod-97-checked).
    pub pii: bool,
    /// Most bytes held back at the tail of the stream. Raised to the smallest window that
    /// sees every pattern whole ([`OutputFilter::window`]): 64, or a canary's length + 4.
    pub window: usize,
}

impl Default for OutputRules {
    fn default() -> OutputRules {
        OutputRules {
            canaries: Vec::new(),
            secrets: true,
            pii: true,
            window: 64,
        }
    }
}

/// Text that is safe to emit now, and what was redacted from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub text: String,
    pub findings: Vec<OutputFinding>,
}

/// One redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFinding {
    pub kind: OutputKind,
    /// Byte offset of the redaction marker in the whole emitted (redacted) stream.
    pub offset: usize,
}

/// A canary token from caller-supplied randomness: `sluice-canary-` and the 128 bits in 26
/// Crockford base32 characters. The crate stays pure; the caller draws the seed.
pub fn canary(seed: u128) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut s = String::with_capacity(40);
    s.push_str("sluice-canary-");
    for i in (0..26).rev() {
        let v = ((seed >> (i * 5)) & 31) as usize;
        s.push(ALPHABET[v] as char);
    }
    s
}

/// A match's validity check (Luhn, mod-97, digit count).
type Check = fn(&str) -> bool;

enum State {
    Normal,
    /// Dropping the rest of a token.
    Run(fn(char) -> bool),
    /// Dropping a PEM body; `tail` keeps enough of it to see an END line split in two.
    Pem {
        tail: String,
    },
}

/// The filter of one response stream.
pub struct OutputFilter {
    matcher: Option<&'static Regex>,
    /// Canary tokens, matched as literals (before the patterns at the same position).
    canaries: Vec<String>,
    pem_end: Option<&'static Regex>,
    specs: Vec<(OutputKind, Tail, Check)>,
    window: usize,
    /// Not yet emitted (original text).
    pending: String,
    /// The last character consumed before `pending`, for word boundaries.
    context: String,
    state: State,
    emitted: usize,
}

impl std::fmt::Debug for OutputFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFilter")
            .field("window", &self.window)
            .field("emitted", &self.emitted)
            .finish()
    }
}

const PEM_END: &str = r"-----END (?:[A-Z0-9]{1,10} ){0,2}PRIVATE KEY-----";
const PEM_END_MAX: usize = 50;

impl OutputFilter {
    /// A filter for one stream. Infallible: canaries are escaped literals and the built-in
    /// patterns are tested.
    pub fn new(rules: &OutputRules) -> OutputFilter {
        let canaries: Vec<String> = rules
            .canaries
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect();
        let matcher = builtin(rules.secrets, rules.pii);
        let specs = specs(rules.secrets, rules.pii)
            .map(|s| (s.kind, s.tail, s.check))
            .collect();
        let pem_end = if rules.secrets {
            PEM_END_RE.get_or_init(|| Regex::new(PEM_END).ok()).as_ref()
        } else {
            None
        };
        let longest = canaries.iter().map(String::len).max().unwrap_or(0);
        let active = matcher.is_some() || !canaries.is_empty();
        let window = if active {
            rules.window.max(MAX_BOUNDED + 4).max(longest + 4)
        } else {
            0
        };
        OutputFilter {
            matcher,
            canaries,
            pem_end,
            specs,
            window,
            pending: String::new(),
            context: String::new(),
            state: State::Normal,
            emitted: 0,
        }
    }

    /// The window in force: the configured one, raised if a pattern needs more.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Feeds a chunk; returns what can be emitted now (redacted), holding back at most
    /// [`OutputFilter::window`] bytes.
    pub fn push(&mut self, chunk: &str) -> Filtered {
        self.pending.push_str(chunk);
        self.process(false)
    }

    /// Ends the stream: flushes everything held back.
    pub fn finish(&mut self) -> Filtered {
        let out = self.process(true);
        self.state = State::Normal;
        out
    }

    fn consume(&mut self, upto: usize) {
        let consumed = &self.pending[..upto];
        if let Some(c) = consumed.chars().next_back() {
            self.context.clear();
            self.context.push(c);
        }
        self.pending.drain(..upto);
    }

    /// The leftmost valid match starting before `cut` (offsets relative to `pending`); a
    /// canary wins a tie with a pattern.
    fn next_match(
        &self,
        hay: &str,
        base: usize,
        cut: usize,
    ) -> Option<(usize, usize, OutputKind, Tail)> {
        let canary = self
            .canaries
            .iter()
            .filter_map(|c| hay[base..].find(c.as_str()).map(|s| (s, s + c.len())))
            .min_by_key(|&(s, e)| (s, std::cmp::Reverse(e)))
            .filter(|&(s, _)| s < cut);
        let limit = canary.map_or(cut, |(s, _)| s + 1);
        let mut pattern = None;
        if let Some(matcher) = self.matcher {
            let mut from = base;
            while let Some(caps) = matcher.captures_at(hay, from) {
                let Some(m) = caps.get(0) else { break };
                if m.start() - base >= limit {
                    break;
                }
                let Some(i) = (1..caps.len()).find(|&i| caps.get(i).is_some()) else {
                    break;
                };
                let (kind, tail, check) = self.specs[i - 1];
                if check(m.as_str()) {
                    pattern = Some((m.start() - base, m.end() - base, kind, tail));
                    break;
                }
                from = m.start() + hay[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
        }
        match (canary, pattern) {
            (Some((cs, _)), Some(p)) if p.0 < cs => Some(p),
            (Some((cs, ce)), _) => Some((cs, ce, OutputKind::CanaryLeak, Tail::Bounded)),
            (None, p) => p,
        }
    }

    fn process(&mut self, at_end: bool) -> Filtered {
        let mut out = Filtered::default();
        if self.matcher.is_none() && self.canaries.is_empty() {
            out.text = std::mem::take(&mut self.pending);
            self.emitted += out.text.len();
            return out;
        }
        loop {
            match &mut self.state {
                State::Normal => {}
                State::Run(class) => {
                    // The rest of a redacted token that went on past a chunk's end. Its
                    // trailing full stops are kept until what follows shows whether they
                    // join another segment ("a.b") or end a sentence ("a. Next").
                    let class = *class;
                    let len = self.pending.len();
                    let run = self.pending.find(|c: char| !class(c)).unwrap_or(len);
                    let dots =
                        self.pending[..run].len() - self.pending[..run].trim_end_matches('.').len();
                    // More dots than the window: not a segment separator; the window's
                    // bound on what is held back wins.
                    let open = run == len && !at_end && dots <= self.window;
                    self.consume(run - dots);
                    if open {
                        break;
                    }
                    self.state = State::Normal;
                }
                State::Pem { tail } => {
                    let hay = format!("{tail}{}", self.pending);
                    let found = self
                        .pem_end
                        .as_ref()
                        .and_then(|re| re.find(&hay))
                        .map(|m| m.end());
                    match found {
                        Some(end) => {
                            let upto = end.saturating_sub(tail.len());
                            self.consume(upto);
                            self.state = State::Normal;
                        }
                        None => {
                            let mut keep = hay.len().saturating_sub(PEM_END_MAX);
                            while !hay.is_char_boundary(keep) {
                                keep += 1;
                            }
                            *tail = hay[keep..].to_owned();
                            let all = self.pending.len();
                            self.consume(all);
                            break;
                        }
                    }
                }
            }
            let len = self.pending.len();
            let cut = if at_end {
                len
            } else if len > self.window {
                let mut c = len - self.window;
                while !self.pending.is_char_boundary(c) {
                    c += 1;
                }
                c
            } else {
                0
            };
            let hay = format!("{}{}", self.context, self.pending);
            let base = self.context.len();
            let found = self.next_match(&hay, base, cut);
            let Some((start, end, kind, tail)) = found else {
                out.text.push_str(&self.pending[..cut]);
                self.consume(cut);
                break;
            };
            out.text.push_str(&self.pending[..start]);
            out.findings.push(OutputFinding {
                kind,
                offset: self.emitted + out.text.len(),
            });
            out.text.push_str(&kind.redaction());
            self.consume(end);
            match tail {
                Tail::Bounded => {}
                Tail::Run(class) => {
                    // Only what a match never ends with ('.', '-') may be left: the token
                    // may go on in the next chunk.
                    if !at_end && self.pending.chars().all(|c| c == '.' || c == '-') {
                        self.state = State::Run(class);
                    }
                }
                Tail::Pem => {
                    self.state = State::Pem {
                        tail: String::new(),
                    }
                }
            }
            if at_end && self.pending.is_empty() {
                break;
            }
        }
        if at_end {
            // A PEM block that never ended: its body is already dropped.
            self.pending.clear();
        }
        self.emitted += out.text.len();
        out
    }
}

/// Redacts a whole text at once: what a stream of it emits, whatever its chunking.
pub fn redact(text: &str, rules: &OutputRules) -> Filtered {
    let mut f = OutputFilter::new(rules);
    let mut out = f.push(text);
    let rest = f.finish();
    out.text.push_str(&rest.text);
    out.findings.extend(rest.findings);
    out
}

#[cfg(test)]
mod tests;
