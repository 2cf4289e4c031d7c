//! Money and limits: the price table built from the config's prices and the cost of a
//! provider call, in integer nano-dollars so that sums are exact ([`prices`]); token
//! counting ([`tokens`]); what a limit means ([`spec`]); and the engine that holds limits
//! and budgets across instances by leasing them in slices from a shared counter
//! ([`lease`]).
//!
//! What the operator wrote (the limits of a scope, the price list) is plain data in
//! `sluice-config`; this crate gives it behaviour. No I/O here: the shared counter is a
//! trait the gateway implements on the store.

pub mod lease;
pub mod prices;
pub mod run;
pub mod spec;
pub mod tokens;

pub use prices::{PriceTable, Tokens};
