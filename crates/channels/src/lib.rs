//! Chat channels: Slack, Telegram and WhatsApp post webhooks to Sluice; each message runs
//! the agent configured for its channel, and the answer goes back through the platform's
//! API (issue 19, being built: docs/channels.md will describe the whole).
//!
//! Layout:
//! - [`verify`]: each platform's request authentication, exactly as the platform
//!   documents it, on the raw body before anything parses it, compared in constant time.
//! - [`wire`]: the platforms' webhook payloads, the parts read, and which messages the
//!   agent answers (mentions and direct messages; never a bot's).
//! - [`split`]: answers cut to a platform's message length without losing or breaking a
//!   character.

pub mod split;
pub mod verify;
pub mod wire;
