//! The `http_fetch` tool an agent may call through the gateway: one HTTP GET to a host the
//! operator allowed, its text body capped in size. This crate owns that request and the
//! checks around it; it knows nothing of agents, tool schemas or how the result is shown.
//!
//! # Threat model
//!
//! The URL comes from a model, and so from whoever wrote the text the model read: assume it
//! is hostile. The gateway sits inside a network, so the danger is server-side request
//! forgery: making the gateway reach what only it can reach (loopback services, the private
//! network, the cloud metadata endpoint at 169.254.169.254 that hands out credentials) and
//! read the answer back. Each piece below closes one way in:
//!
//! - **Host allowlist** ([`FetchPolicy::allow_hosts`]): only named hosts (`api.example.com`)
//!   or subdomains (`*.example.org`), on ports 80/443 unless an entry names its port. An IP
//!   literal in a URL is fetched only if it lies in [`FetchPolicy::allow_networks`], an
//!   explicit opt-in for internal services and tests.
//! - **Address ranges** ([`blocked_range`]): an allowed name may still point anywhere, so
//!   every address is checked against loopback, private, link-local, CGNAT, metadata,
//!   multicast, reserved and documentation ranges, and their IPv6 equivalents, IPv6 forms
//!   that embed an IPv4 address (v4-mapped, NAT64, 6to4) being judged by that address.
//! - **Resolution and connection in one step**: the client's only DNS resolver is ours; it
//!   refuses an answer if *any* address in it is blocked, and the addresses it returns are
//!   exactly those connected to. There is no gap between a check and a second lookup for a
//!   rebinding DNS server to answer differently.
//! - **IP literals checked before sending**: the HTTP stack connects to a literal without
//!   asking the resolver, so literals are checked on the URL. The URL is parsed the WHATWG
//!   way, as reqwest does, so `http://2130706433/`, `http://0x7f.1/` and
//!   `http://0177.0.0.1/` are already 127.0.0.1 when checked.
//! - **Redirects**: each target is checked like the first URL, and may not go from https to
//!   http; a name on it is resolved through the same guard; the count is capped.
//! - **No proxy**: a proxy from the environment would resolve and connect on our behalf,
//!   past the guard, so none is used.
//! - **Caps**: a whole-request timeout and a connect timeout; a declared length over
//!   `max_bytes` is refused unread, and an undeclared one is cut at `max_bytes`; only text
//!   types are read. No cookies are kept and no compression is asked for, so a response is
//!   never inflated past the cap.
//!
//! Errors say which rule refused ([`FetchError::code`]) and name the host at most: never a
//! response body, and never the address an internal name resolved to.
//!
//! # Layout
//!
//! - `policy`: [`FetchPolicy`], what is allowed, and the URL check shared by the first
//!   request and every redirect.
//! - `ip`: the blocked ranges, a pure classifier.
//! - `resolver`: the guarded DNS resolver.
//! - `redirect`: the redirect policy.
//! - `fetcher`: [`Fetcher::get`], the request and the body cap.
//! - `error`: [`FetchError`] and its codes.

mod error;
mod fetcher;
mod ip;
mod policy;
mod redirect;
mod resolver;

pub use error::FetchError;
pub use fetcher::{Fetched, Fetcher};
pub use ip::{blocked_range, is_blocked};
pub use policy::{FetchPolicy, PolicyError};
