//! The price table (`config/prices.toml` plus the operator's overrides) and costs.

use std::collections::HashMap;

use serde::Deserialize;

/// USD per 1 million tokens.
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

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("price table: {0}")]
    Parse(String),
    #[error("price of `{model}`: {problem}")]
    Invalid { model: String, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    /// When the prices were taken (documentation; shown in `sluice check-config`).
    taken: Option<String>,
    #[serde(default)]
    models: HashMap<String, ModelPrice>,
}

/// Prices by model, in nano-dollars per token internally (exact integer arithmetic on the
/// way out).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    taken: Option<String>,
    by_model: HashMap<String, Nanos>,
}

/// Nano-dollars per million tokens, so `tokens * rate / 1_000_000` stays in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nanos {
    input: i64,
    output: i64,
    cached_input: i64,
    cache_write: i64,
}

/// Token counts of one call, as the ledger has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Every prompt token, cached ones included (OpenAI's convention).
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub cache_write: u64,
}

fn to_nanos(model: &str, field: &str, usd_per_million: f64) -> Result<i64, PriceError> {
    if !usd_per_million.is_finite() || !(0.0..=1_000_000.0).contains(&usd_per_million) {
        return Err(PriceError::Invalid {
            model: model.to_owned(),
            problem: format!("{field} must be a price between 0 and 1,000,000 USD per 1M tokens"),
        });
    }
    Ok((usd_per_million * 1e9).round() as i64)
}

/// `config/prices.toml` as shipped, compiled in: the table used when `[prices] file` is
/// not set.
pub const SHIPPED: &str = include_str!("../../../config/prices.toml");

impl PriceTable {
    /// The shipped table (a test checks that it parses).
    pub fn shipped() -> Result<PriceTable, PriceError> {
        PriceTable::parse(SHIPPED)
    }

    /// Parses a table (the shipped `prices.toml`).
    pub fn parse(text: &str) -> Result<PriceTable, PriceError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| PriceError::Parse(e.to_string()))?;
        let mut table = PriceTable {
            taken: raw.taken,
            by_model: HashMap::new(),
        };
        table.extend(raw.models)?;
        Ok(table)
    }

    /// Adds or replaces entries (the operator's `[prices.models]`).
    pub fn extend(&mut self, models: HashMap<String, ModelPrice>) -> Result<(), PriceError> {
        for (model, p) in models {
            let n = Nanos {
                input: to_nanos(&model, "input", p.input)?,
                output: to_nanos(&model, "output", p.output)?,
                cached_input: to_nanos(&model, "cached_input", p.cached_input.unwrap_or(p.input))?,
                cache_write: to_nanos(&model, "cache_write", p.cache_write.unwrap_or(p.input))?,
            };
            self.by_model.insert(model, n);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    pub fn taken(&self) -> Option<&str> {
        self.taken.as_deref()
    }

    /// Whether a model has a price: `provider:model` first, then the bare model name,
    /// then the model name without a date suffix (`claude-sonnet-4-5-20250929` →
    /// `claude-sonnet-4-5`).
    fn find(&self, provider: &str, model: &str) -> Option<&Nanos> {
        self.by_model
            .get(&format!("{provider}:{model}"))
            .or_else(|| self.by_model.get(model))
            .or_else(|| {
                let (base, suffix) = model.rsplit_once('-')?;
                (suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| self.by_model.get(base))
                    .flatten()
            })
    }

    /// The cost of one call in nano-dollars, or `None` when the model has no price (the
    /// call is still limited by tokens; the caller flags it).
    pub fn cost_nanos(&self, provider: &str, model: &str, t: Tokens) -> Option<i64> {
        let p = self.find(provider, model)?;
        let cached = t.cached.min(t.prompt);
        let cache_write = t.cache_write.min(t.prompt - cached);
        let fresh = t.prompt - cached - cache_write;
        let part = |tokens: u64, rate: i64| -> i128 { i128::from(tokens) * i128::from(rate) };
        let total = part(fresh, p.input)
            + part(cached, p.cached_input)
            + part(cache_write, p.cache_write)
            + part(t.completion, p.output);
        // Round to the nearest nano-dollar.
        Some(i64::try_from((total + 500_000) / 1_000_000).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::parse(
            r#"
            taken = "2026-11-25"
            [models."gpt-4o"]
            input = 2.50
            output = 10.00
            cached_input = 1.25
            [models."claude-sonnet-4-5"]
            input = 3.00
            output = 15.00
            cached_input = 0.30
            cache_write = 3.75
            [models."groq:llama-3.3-70b-versatile"]
            input = 0.59
            output = 0.79
            "#,
        )
        .unwrap()
    }

    #[test]
    fn costs_are_exact_in_nano_dollars() {
        let t = table();
        // 1M fresh input + 1M output at 2.50 / 10.00 = 12.50 USD.
        let c = t.cost_nanos(
            "openai",
            "gpt-4o",
            Tokens {
                prompt: 1_000_000,
                completion: 1_000_000,
                ..Tokens::default()
            },
        );
        assert_eq!(c, Some(12_500_000_000));
        // 1000 prompt of which 400 cached, 100 completion:
        // 600 * 2.5e3 + 400 * 1.25e3 + 100 * 10e3 nanos = 1.5e6 + 0.5e6 + 1e6 = 3,000,000.
        let c = t.cost_nanos(
            "openai",
            "gpt-4o",
            Tokens {
                prompt: 1000,
                completion: 100,
                cached: 400,
                cache_write: 0,
            },
        );
        assert_eq!(c, Some(3_000_000));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_priced_apart() {
        let t = table();
        let c = t.cost_nanos(
            "anthropic",
            "claude-sonnet-4-5-20250929",
            Tokens {
                prompt: 1000,
                completion: 0,
                cached: 500,
                cache_write: 500,
            },
        );
        // 500 * 300 + 500 * 3750 = 150,000 + 1,875,000 nanos.
        assert_eq!(
            c,
            Some(2_025_000),
            "a dated model name finds its base price"
        );
    }

    #[test]
    fn provider_specific_prices_win_and_unknown_models_have_none() {
        let t = table();
        assert!(
            t.cost_nanos(
                "groq",
                "llama-3.3-70b-versatile",
                Tokens {
                    prompt: 10,
                    ..Tokens::default()
                }
            )
            .is_some()
        );
        assert_eq!(
            t.cost_nanos("together", "llama-3.3-70b-versatile", Tokens::default()),
            None
        );
        assert_eq!(t.cost_nanos("openai", "gpt-9", Tokens::default()), None);
    }

    #[test]
    fn overrides_replace_and_bad_prices_are_refused() {
        let mut t = table();
        let mut over = HashMap::new();
        over.insert(
            "gpt-4o".to_owned(),
            ModelPrice {
                input: 1.0,
                output: 1.0,
                cached_input: None,
                cache_write: None,
            },
        );
        t.extend(over).unwrap();
        assert_eq!(
            t.cost_nanos(
                "openai",
                "gpt-4o",
                Tokens {
                    prompt: 1_000_000,
                    ..Tokens::default()
                }
            ),
            Some(1_000_000_000)
        );
        let mut bad = HashMap::new();
        bad.insert(
            "x".to_owned(),
            ModelPrice {
                input: -1.0,
                output: 1.0,
                cached_input: None,
                cache_write: None,
            },
        );
        assert!(t.extend(bad).is_err());
        assert!(
            PriceTable::parse("[models.x]\ninput = 1\n").is_err(),
            "output is required"
        );
        assert!(PriceTable::parse("[models.x]\ninput = 1\noutput = 1\ncolour = 2\n").is_err());
    }

    #[test]
    fn the_shipped_table_loads_and_covers_the_providers() {
        let t = PriceTable::shipped().unwrap();
        assert_eq!(t.taken(), Some("2026-11-25"));
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("anthropic", "claude-sonnet-4-5"),
            ("gemini", "gemini-2.5-pro"),
            ("mistral", "mistral-large-latest"),
            ("deepseek", "deepseek-chat"),
            ("groq", "llama-3.3-70b-versatile"),
            ("xai", "grok-4"),
        ] {
            assert!(
                t.cost_nanos(
                    provider,
                    model,
                    Tokens {
                        prompt: 1,
                        ..Tokens::default()
                    }
                )
                .is_some(),
                "{provider}:{model}"
            );
        }
    }
}
