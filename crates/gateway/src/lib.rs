//! The HTTP face of Sluice: the OpenAI-compatible routes, gateway-key auth, request ids,
//! body limits, the one place errors become responses, and graceful shutdown.
//!
//! Handlers are thin: parse and authorize, call the router (`sluice-providers`), map the
//! result. Layout: [`server`] (`run(listener, state, shutdown)`, the middleware order),
//! [`routes`] (the route table and one file per route), [`auth`], [`error`], [`sse`]
//! (canonical chunks → `text/event-stream`), [`state`].

pub mod auth;
mod conn;
pub mod error;
pub mod limits;
pub mod profiles;
mod request_id;
pub mod routes;
pub mod server;
mod spend;
mod sse;
pub mod state;
pub mod velocity;

pub use conn::raise_fd_limit;
pub use error::ApiError;
pub use server::run;
pub use sluice_limits::tokens::warm as warm_tokenizers;
pub use state::AppState;
