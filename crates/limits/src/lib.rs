//! Money and limits: the price table and the cost of a provider call, in integer
//! nano-dollars so that sums are exact ([`prices`]); token counting ([`tokens`]); what a
//! limit is ([`spec`]); and the engine that holds limits and budgets across instances by
//! leasing them in slices from a shared counter ([`lease`]).
//!
//! No I/O here: the shared counter is a trait the gateway implements on the store.

pub mod lease;
pub mod prices;
pub mod spec;
pub mod tokens;

pub use prices::{ModelPrice, PriceError, PriceTable, Tokens};
