//! The canonical chat model (OpenAI's chat-completions format, with tools, tool calls and
//! usage including cached tokens) and pure translation between it and each provider's wire
//! format: OpenAI-compatible, Anthropic Messages and Gemini `generateContent`, for whole
//! responses and for streams.
//!
//! Nothing here does I/O, reads a clock or makes ids: callers pass those in
//! ([`ResponseMeta`]), so every function is a plain value-to-value translation tested with
//! golden files. HTTP, retries and routing live in `sluice-providers`.
//!
//! Layout:
//! - [`types`]: the canonical request, response, stream chunk and usage types.
//! - [`stream`]: the [`StreamDecoder`] trait every provider stream format implements.
//! - [`openai`], [`anthropic`], [`gemini`]: one module per wire format.
//! - [`assemble`]: a stream's chunks folded back into one assistant message.

pub mod anthropic;
pub mod assemble;
mod error;
pub mod gemini;
pub mod openai;
pub mod stream;
pub mod types;

pub use error::{DecodeError, TranslateError, UpstreamError};
pub use stream::{Decoded, StreamDecoder};
pub use types::*;

/// What a translated response carries that the provider may not supply itself: the id to
/// use when the provider gives none, the creation time, and the model name asked for.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}
