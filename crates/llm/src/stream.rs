use crate::{ChatChunk, DecodeError};

/// Whether a stream has more to come after the event just decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    More,
    /// The provider marked the end of a complete answer (`[DONE]`, `message_stop`, or a
    /// final Gemini candidate). A stream that ends without this was cut.
    Done,
}

/// Turns one provider's server-sent events into canonical chunks. Stateful: formats such
/// as Anthropic's spread one tool call over several events.
pub trait StreamDecoder: Send {
    /// Feeds one SSE event: its `event:` field (empty when absent) and its `data:`.
    /// Appends zero or more chunks to `out`.
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Decoded, DecodeError>;
}
