//! The HTTP face of Sluice: the OpenAI-compatible routes, the admin API, probes, request
//! ids, body limits, connection handling, the one place errors become HTTP responses, and
//! graceful shutdown.
//!
//! Transport only: handlers parse and authorize, call the completion service
//! (`sluice-service`) or the scheduler (`sluice-scheduler`, agent runs), and encode the
//! answer. No model call bypasses the service; the admin API only reads and resets router
//! state (key cool-downs, groups).
//!
//! Layout: [`server`] (`run(listener, state, shutdown)`, the middleware order), `conn`
//! (the accept loop and per-connection timers), [`routes`] (the route table and one file
//! per route), [`auth`] (the Bearer header → a principal), [`error`] (service and
//! scheduler errors → statuses), `sse` (a metered stream, or a run's events →
//! `text/event-stream`), [`ws`] (`GET /ws`: WebSocket sessions), [`state`].

pub mod auth;
mod conn;
pub mod error;
mod metrics;
mod request_id;
pub mod routes;
pub mod server;
mod sse;
pub mod state;
pub mod ws;

pub use conn::raise_fd_limit;
pub use error::ApiError;
pub use server::run;
pub use state::{AppState, StartError};
