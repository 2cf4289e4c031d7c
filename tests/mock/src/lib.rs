//! Scriptable mock provider servers for Sluice's end-to-end tests: OpenAI chat completions and
//! embeddings, Anthropic Messages and Gemini `generateContent`, speaking each provider's real
//! wire format (JSON and SSE, field order and layout included), counting calls and recording
//! what they received. Also, in [`chat`], mock Slack, Telegram and WhatsApp APIs on one server,
//! and their signed webhook deliveries. It owns no Sluice types and depends on no Sluice crate.
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_mock::{MockProvider, Step, Wire};
//! let mock = MockProvider::start(Wire::OpenAi).await;
//! mock.script("gpt-4o", vec![Step::RateLimited { retry_after_secs: Some(1) }, Step::Text("ok".into())]);
//! // point a provider config at mock.base_url(), send two requests…
//! assert_eq!(mock.calls_for("gpt-4o"), 2, "the 429 should have been retried once");
//! # }
//! ```
//!
//! # Layout
//! - `lib.rs`: [`MockProvider`], the handle tests hold.
//! - `server.rs`: the accept loop on `127.0.0.1:0`, per-connection tasks, shutdown.
//! - `state.rs`: scripts and the log of [`Recorded`] calls.
//! - `script.rs`: [`Step`] and how its timing (delay, hang, gaps, cuts) plays out.
//! - `openai.rs`, `anthropic.rs`, `gemini.rs`: routes, and each format's answers and errors.
//! - `sse.rs`: paced event streams; `json.rs`: key-ordered JSON in the providers' layouts;
//!   `tokens.rs`: deterministic token counts and embedding vectors.
//! - `chat/`: [`chat::MockChat`], the chat platforms on one server. `chat/mod.rs`: the handle
//!   and the public types; `chat/state.rs`: what it records and the one path every call takes
//!   (record, scripted failure or apply, latency, answer); `chat/slack.rs`,
//!   `chat/telegram.rs`, `chat/whatsapp.rs`: each platform's routes, checks and answers;
//!   `chat/sign.rs`: the webhook signatures; `chat/send.rs`: delivering webhooks;
//!   `chat/payload.rs`: the documented webhook payloads.

mod anthropic;
pub mod chat;
mod gemini;
mod json;
mod openai;
mod script;
mod server;
mod sse;
mod state;
mod tokens;

pub use script::Step;
pub use state::Recorded;

use axum::Router;
use axum::routing::get;
use server::Server;
use state::State;
use std::net::SocketAddr;
use std::sync::Arc;

/// The wire format a mock speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// A running mock provider. Clones share one server, which stops when the last clone drops or
/// on [`MockProvider::shutdown`].
#[derive(Clone)]
pub struct MockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    server: Server,
}

impl MockProvider {
    /// Starts a mock on a fresh loopback port; it is accepting when this returns.
    ///
    /// # Panics
    /// When no loopback port can be bound. Must be called inside a Tokio runtime.
    pub async fn start(wire: Wire) -> MockProvider {
        let state = Arc::new(State::new(wire));
        let routes = match wire {
            Wire::OpenAi => openai::routes(),
            Wire::Anthropic => anthropic::routes(),
            Wire::Gemini => gemini::routes(),
        };
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(routes)
            .with_state(Arc::clone(&state));
        let server = Server::start(router).await;
        MockProvider {
            inner: Arc::new(Inner { state, server }),
        }
    }

    pub fn wire(&self) -> Wire {
        self.inner.state.wire
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.server.addr()
    }

    /// The base URL for a Sluice provider config: `http://127.0.0.1:P/v1` for OpenAI and
    /// Anthropic, `http://127.0.0.1:P/v1beta` for Gemini.
    pub fn base_url(&self) -> String {
        let version = match self.wire() {
            Wire::OpenAi | Wire::Anthropic => "v1",
            Wire::Gemini => "v1beta",
        };
        format!("http://{}/{version}", self.addr())
    }

    /// Calls for `model` take `steps` in order and the last one forever after. Without a
    /// script a model answers `Step::Text("Hello from <model>")`; an empty list removes the
    /// script. Replacing a script starts it over.
    pub fn script(&self, model: &str, steps: Vec<Step>) {
        self.inner.state.scripts().set_model(model, steps);
    }

    /// Like [`MockProvider::script`], for calls made with `api_key`; a key script wins over a
    /// model script.
    pub fn script_key(&self, api_key: &str, steps: Vec<Step>) {
        self.inner.state.scripts().set_key(api_key, steps);
    }

    /// Headers sent on every answer from now on (OpenAI format only), such as a provider's
    /// `x-ratelimit-remaining-tokens`; an empty list stops them.
    pub fn answer_headers(&self, headers: &[(&str, &str)]) {
        *self
            .inner
            .state
            .answer_headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Chat and embeddings calls received, including ones the mock rejected (missing key,
    /// missing `anthropic-version`, bad JSON). `/health` does not count.
    pub fn calls(&self) -> usize {
        self.inner.state.log().len()
    }

    pub fn calls_for(&self, model: &str) -> usize {
        let log = self.inner.state.log();
        log.iter().filter(|call| call.model == model).count()
    }

    /// Every call in the order received.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.state.log().clone()
    }

    /// Stops listening (a connect after this returns is refused) and closes open connections,
    /// hanging ones included. Recorded calls stay readable.
    pub fn shutdown(&self) {
        self.inner.server.stop();
    }
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider")
            .field("wire", &self.wire())
            .field("addr", &self.addr())
            .finish()
    }
}
