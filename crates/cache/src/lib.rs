//! The core of the gateway's response cache: an exact cache by request hash and a
//! semantic cache by sentence embedding, in one bounded in-memory index, generic over the
//! cached value. Pure: no async, no network, no I/O but reading the model's files. The
//! caller (the completion service) builds the keys, embeds the varying turn, decides
//! what is cacheable and holds the policy; this crate stores, finds and verifies.
//!
//! # Layout
//! - [`key`]: [`Key`] (exact: the whole canonical request, scope included) and
//!   [`Context`] (semantic partition: everything but the embedded turn, scope included),
//!   and [`Hasher`] to build either from parts.
//! - [`embed`]: the [`Embedder`] trait, the local [`Model2Vec`] model (potion-base-8M,
//!   MIT, MinishLab; fetched by `scripts/fetch-model`) and the [`Query`] it produces.
//! - [`verify`](mod@verify): [`verify()`], the second check a semantic candidate must pass
//!   (content words, numbers, negations and their order), because the embedding alone
//!   cannot tell a paraphrase from a near-miss.
//! - `index`: [`Cache`], bounded by [`Limits`] (entries, bytes, TTL; LRU eviction), with
//!   [`Cache::get`] (exact) and [`Cache::search`] (semantic, within one context).
//!
//! `docs/cache.md` says how to build keys and contexts, how the threshold was chosen, the
//! evaluation per kind of pair and where the semantic cache is blind.

mod align;
pub mod embed;
mod index;
pub mod key;
pub mod verify;

pub use align::{ALIGN_MIN, MAX_DROPPED};
pub use embed::{Embedder, LoadError, MODEL_FILES, Model2Vec, Query, WordVector};
pub use index::{Cache, DEFAULT_MIN_COSINE, Inserted, Limits, MAX_VERIFIED, SemanticHit};
pub use key::{Context, Hasher, Key};
pub use verify::{Analysis, Reason, Verdict, verify, verify_with};
