//! Money and (next) limits. Today: the price table and the cost of a provider call, in
//! integer nano-dollars so that sums are exact. Token-aware rate limits and budgets with
//! reservations build on it (issue 4).
//!
//! Pure: the caller hands in the table's text and the usage; nothing here does I/O.

pub mod lease;
pub mod prices;
pub mod rate;
pub mod spec;
pub mod tokens;

pub use prices::{ModelPrice, PriceError, PriceTable, Tokens};
