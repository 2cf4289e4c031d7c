//! Prompt-injection screening of inputs and leak filtering of outputs, as pure functions:
//! no I/O, no async, no global mutable state. The service decides what to do with a
//! finding (block, flag, log, end a stream); this crate only finds and redacts.
//!
//! # Layout
//! - [`normalize`]: one canonical spelling of a text (NFKC, hidden characters decoded or
//!   removed, homoglyphs and leetspeak folded, spaced letters joined) with a byte map back to
//!   the original, so every span points into what the caller passed.
//! - `detect/`: the rule detectors, one file per family (instruction override, role
//!   impersonation, prompt extraction, smuggling, exfiltration, jailbreak personas).
//! - `decode`: base64, hex and URL-encoded fragments, decoded and screened too.
//! - [`classifier`]: logistic regression over hashed character and word n-grams, weights
//!   shipped in `model/guard.bin` and trained by `examples/train.rs`.
//! - `screen`: [`Guard`], [`Rules`], [`Screening`]: everything above summed into one score.
//! - [`output`]: the streaming [`OutputFilter`] (canaries, secrets, PII) and [`canary`].
//!
//! `docs/guard.md` says what each part catches, where it is blind, and what it costs.

pub mod classifier;
mod decode;
mod detect;
pub mod normalize;
pub mod output;
mod screen;

pub use output::{Filtered, OutputFilter, OutputFinding, OutputKind, OutputRules, canary};
pub use screen::{DEFAULT_THRESHOLD, Finding, Guard, Rules, Screening, Source};

/// What found something. The ids ([`Detector::as_str`]) are stable: policies and
/// `prompt_rejected` errors name them.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    InstructionOverride = 0,
    RoleImpersonation = 1,
    PromptExtraction = 2,
    Smuggling = 3,
    Exfiltration = 4,
    JailbreakPersona = 5,
    Classifier = 6,
    CustomDeny = 7,
}

impl Detector {
    /// Every detector, in id order.
    pub const ALL: [Detector; 8] = [
        Detector::InstructionOverride,
        Detector::RoleImpersonation,
        Detector::PromptExtraction,
        Detector::Smuggling,
        Detector::Exfiltration,
        Detector::JailbreakPersona,
        Detector::Classifier,
        Detector::CustomDeny,
    ];

    /// The stable id.
    pub fn as_str(&self) -> &'static str {
        match self {
            Detector::InstructionOverride => "instruction_override",
            Detector::RoleImpersonation => "role_impersonation",
            Detector::PromptExtraction => "prompt_extraction",
            Detector::Smuggling => "smuggling",
            Detector::Exfiltration => "exfiltration",
            Detector::JailbreakPersona => "jailbreak_persona",
            Detector::Classifier => "classifier",
            Detector::CustomDeny => "custom_deny",
        }
    }
}

/// An operator pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern {
    /// `"deny"` or `"allow"`.
    pub list: &'static str,
    /// Its index in that list.
    pub index: usize,
    pub message: String,
}

/// Why a [`Guard`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Operator patterns that do not compile, every one of them.
    #[error("invalid guard patterns: {}", .0.iter().map(|p| format!("{}[{}]: {}", p.list, p.index, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidPatterns(Vec<InvalidPattern>),
    /// A built-in pattern or the shipped weights failed to load (a bug; tests cover it).
    #[error("guard built-ins failed to load: {0}")]
    Builtin(String),
}
