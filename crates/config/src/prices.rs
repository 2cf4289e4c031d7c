//! `[prices]` as plain data: the shipped `config/prices.toml` (compiled in) or the table
//! `[prices] file` names, with the operator's `[prices.models]` on top, every price checked.
//! Turning prices into costs is the limits engine's business, not this crate's.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `config/prices.toml` as shipped, compiled in: the table used when `[prices] file` is
/// not set.
const SHIPPED: &str = include_str!("../../../config/prices.toml");

/// The highest price accepted, in USD per 1M tokens: past it a typo (a price per token
/// written per million) is more likely than a real price.
const MAX_USD_PER_MILLION: f64 = 1_000_000.0;

/// One model's prices in USD per 1 million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's cache; `input` when absent.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the cache; `input` when absent.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

impl ModelPrice {
    /// The first price out of range (negative, not finite, or above 1,000,000 USD per 1M
    /// tokens), as `field must be …`.
    fn problem(&self) -> Option<String> {
        [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
        ]
        .into_iter()
        .find_map(|(field, usd)| {
            let usd = usd?;
            (!usd.is_finite() || !(0.0..=MAX_USD_PER_MILLION).contains(&usd)).then(|| {
                format!("{field} must be a price between 0 and 1,000,000 USD per 1M tokens")
            })
        })
    }
}

/// The price table the gateway runs on: a validated [`crate::Config`] holds only prices
/// in range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceList {
    /// The table `[prices] file` named; `None`: the shipped one.
    pub file: Option<PathBuf>,
    /// When the table's prices were taken (documentation).
    pub taken: Option<String>,
    /// By model name as providers return it, or `provider:model`; the operator's
    /// `[prices.models]` included.
    pub models: HashMap<String, ModelPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    taken: Option<String>,
    #[serde(default)]
    models: HashMap<String, ModelPrice>,
}

impl PriceList {
    /// Parses a price table (the shipped `prices.toml`, or one `[prices] file` names; its
    /// `file` is left `None` for the caller to fill). `Err`: every problem found.
    pub fn parse(text: &str) -> Result<PriceList, Vec<String>> {
        let raw: RawTable = toml::from_str(text).map_err(|e| vec![format!("price table: {e}")])?;
        let mut list = PriceList {
            file: None,
            taken: raw.taken,
            models: HashMap::new(),
        };
        list.extend(raw.models)?;
        Ok(list)
    }

    /// The shipped table (a test checks that it parses).
    pub fn shipped() -> Result<PriceList, Vec<String>> {
        PriceList::parse(SHIPPED)
    }

    /// Adds or replaces entries (the operator's `[prices.models]`); nothing is added
    /// unless every price is in range. `Err`: each model with a price out of range.
    pub fn extend(&mut self, models: HashMap<String, ModelPrice>) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = models
            .iter()
            .filter_map(|(model, p)| Some(format!("price of `{model}`: {}", p.problem()?)))
            .collect();
        if !problems.is_empty() {
            problems.sort();
            return Err(problems);
        }
        self.models.extend(models);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64) -> ModelPrice {
        ModelPrice {
            input,
            output: 1.0,
            cached_input: None,
            cache_write: None,
        }
    }

    #[test]
    fn overrides_replace_and_bad_prices_are_refused() {
        let mut list = PriceList::parse("[models.\"gpt-4o\"]\ninput = 2.5\noutput = 10.0\n")
            .expect("a valid table");
        list.extend(HashMap::from([("gpt-4o".to_owned(), price(1.0))]))
            .expect("a valid override");
        assert_eq!(list.models["gpt-4o"], price(1.0), "the override wins");

        let problems = list
            .extend(HashMap::from([
                ("x".to_owned(), price(-1.0)),
                ("y".to_owned(), price(f64::NAN)),
                ("z".to_owned(), price(2e6)),
            ]))
            .expect_err("prices out of range");
        assert_eq!(problems.len(), 3, "each bad model is named: {problems:?}");
        assert!(problems[0].contains("`x`") && problems[0].contains("input"));
        assert!(
            !list.models.contains_key("x"),
            "a refused override adds nothing"
        );
        let cached = ModelPrice {
            cached_input: Some(-0.5),
            ..price(1.0)
        };
        let problems = list
            .extend(HashMap::from([("c".to_owned(), cached)]))
            .expect_err("a bad cache price");
        assert!(problems[0].contains("cached_input"), "{problems:?}");

        let problems = PriceList::parse("[models.x]\ninput = 1\n").expect_err("no output");
        assert!(problems[0].starts_with("price table:"), "{problems:?}");
        assert!(
            PriceList::parse("[models.x]\ninput = 1\noutput = 1\ncolour = 2\n").is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn the_shipped_table_parses() {
        let list = PriceList::shipped().expect("the shipped table is valid");
        assert_eq!(list.taken.as_deref(), Some("2026-11-25"));
        assert_eq!(list.file, None);
        assert!(list.models.contains_key("gpt-4o"));
    }
}
