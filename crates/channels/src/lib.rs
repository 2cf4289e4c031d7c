//! Chat channels: Slack, Telegram and WhatsApp post webhooks to Sluice; each message runs
//! the agent configured for its channel, and the answer goes back through the platform's
//! API (issue 19, being built: docs/channels.md will describe the whole).
//!
//! Layout:
//! - [`verify`]: each platform's request authentication, exactly as the platform
//!   documents it, on the raw body before anything parses it, compared in constant time.

pub mod verify;
