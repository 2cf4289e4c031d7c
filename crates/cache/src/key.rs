//! What an entry is found by: the exact [`Key`] and the semantic [`Context`].

use sha2::{Digest, Sha256};

/// The exact-cache key: SHA-256 of the caller's canonical bytes for the whole request,
/// scope included. Two requests share an answer exactly when their keys are equal, so
/// everything that can change the answer (tenant or key scope, model, messages, tools,
/// parameters) must be in those bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

/// The semantic partition: SHA-256 of everything in the request except the part that is
/// embedded (the last user turn), scope included. Semantic search only compares entries
/// with an equal context, so one tenant, model, system prompt or conversation can never
/// be served another's answer, whatever the cosine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Context(pub [u8; 32]);

impl Key {
    /// The key of the caller's canonical bytes.
    pub fn of(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }
}

impl Context {
    /// The context of the caller's canonical bytes (everything but the embedded turn).
    pub fn of(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }
}

/// Builds a [`Key`] or [`Context`] from several parts without ambiguity: each part is
/// hashed with its length first, so `("ab", "c")` and `("a", "bc")` differ.
///
/// ```
/// use sluice_cache::{Context, Hasher};
/// let ctx: Context = Hasher::new("chat/v1")
///     .part(b"tenant-42")
///     .part(b"gpt-4o-mini")
///     .part(b"You are a helpful assistant.")
///     .context();
/// # let _ = ctx;
/// ```
#[derive(Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts a hash whose first part is a domain tag (say `"chat/v1"`), so keys built
    /// for different purposes or by different versions of the canonical form never meet.
    pub fn new(domain: &str) -> Self {
        Self(Sha256::new()).part(domain.as_bytes())
    }

    /// Adds one length-prefixed part.
    #[must_use]
    pub fn part(mut self, bytes: &[u8]) -> Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Ends as an exact key.
    pub fn key(self) -> Key {
        Key(self.0.finalize().into())
    }

    /// Ends as a semantic context.
    pub fn context(self) -> Context {
        Context(self.0.finalize().into())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", short_hex(&self.0))
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Context({})", short_hex(&self.0))
    }
}

/// The first 8 bytes in hex: enough to tell entries apart in a log line.
fn short_hex(bytes: &[u8; 32]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}
