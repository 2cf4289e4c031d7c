//! Provider clients and the router: for each request, walk the model's priority chain,
//! call each `provider:model` entry with one of its API keys, and on failure apply the
//! class's rule (retry with backoff and jitter, rotate the key, cool it down, fall back to
//! the next entry, or fail at once), behind a circuit breaker per provider+model.
//!
//! Translation between formats is `sluice-llm`'s; this crate owns I/O, timeouts and the
//! failover policy. It knows nothing of HTTP servers or clients of the gateway.
//!
//! Layout: [`router`] (the chain walk), [`call`] (what a walk shares with its caller), [`failure`] (classification and rules),
//! [`auth`] (key rotation and cool-downs), [`breaker`], [`stream`]
//! (provider SSE → canonical chunks), `upstream` (one HTTP call), `mock` (the built-in
//! provider kind).

pub mod auth;
pub mod balance;
pub mod breaker;
pub mod call;
pub mod failure;
mod mock;
pub mod router;
pub mod stream;
mod upstream;

use bytes::Bytes;
use sluice_llm::{ChatResponse, EmbeddingsResponse};

pub use call::{Admission, CallContext, Exhaustion, FailedCall, RouteError, Routed};
pub use failure::{Action, Failure, FailureClass};
pub use router::{BuildError, ProfileEvent, Route, Router};
pub use stream::{ChunkStream, StreamError};

/// A chat answer: whole, or a stream that has already produced its first substantive
/// chunk (so the chain can no longer fail over).
pub enum ChatReply {
    Complete {
        response: Box<ChatResponse>,
        /// The provider's own bytes, when it spoke the OpenAI format: sent to the client
        /// as they came.
        raw: Option<Bytes>,
    },
    Stream(ChunkStream),
}

impl std::fmt::Debug for ChatReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatReply::Complete { response, .. } => {
                f.debug_tuple("Complete").field(&response.id).finish()
            }
            ChatReply::Stream(_) => f.write_str("Stream"),
        }
    }
}

#[derive(Debug)]
pub struct EmbeddingsReply {
    pub response: EmbeddingsResponse,
    pub raw: Option<Bytes>,
}
