//! The price table built from the config's [`PriceList`], and the cost of a call in
//! integer nano-dollars.

use std::collections::HashMap;

use sluice_config::PriceList;

/// Prices by model, in nano-dollars per million tokens internally (exact integer
/// arithmetic on the way out).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
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

/// USD per 1M tokens as nano-dollars per 1M tokens. Config validation refuses prices
/// outside 0..=1,000,000 USD; one that got past it anyway is held to that range (NaN
/// counts as 0) rather than priced negative or overflowing.
fn to_nanos(usd_per_million: f64) -> i64 {
    (usd_per_million.clamp(0.0, 1_000_000.0) * 1e9).round() as i64
}

impl PriceTable {
    /// The table the config's prices describe (the shipped or `[prices] file` table with
    /// the operator's overrides).
    pub fn from_config(prices: &PriceList) -> PriceTable {
        let by_model = prices
            .models
            .iter()
            .map(|(model, p)| {
                let n = Nanos {
                    input: to_nanos(p.input),
                    output: to_nanos(p.output),
                    cached_input: to_nanos(p.cached_input.unwrap_or(p.input)),
                    cache_write: to_nanos(p.cache_write.unwrap_or(p.input)),
                };
                (model.clone(), n)
            })
            .collect();
        PriceTable { by_model }
    }

    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
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
        let list = PriceList::parse(
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
        .unwrap();
        PriceTable::from_config(&list)
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
    fn a_configs_prices_and_overrides_cost_what_they_say() {
        let cfg = sluice_config::Config::parse(
            "[prices.models.\"my-model\"]\ninput = 1.0\noutput = 2.0\n\
             [prices.models.\"gpt-4o\"]\ninput = 1.0\noutput = 1.0\n",
            &|_| None,
        )
        .unwrap();
        let t = PriceTable::from_config(&cfg.prices);
        let million_in = Tokens {
            prompt: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(
            t.cost_nanos("p", "my-model", million_in),
            Some(1_000_000_000)
        );
        assert_eq!(
            t.cost_nanos("openai", "gpt-4o", million_in),
            Some(1_000_000_000),
            "an override replaces the shipped price"
        );
        assert!(
            t.cost_nanos("anthropic", "claude-sonnet-4-5", million_in)
                .is_some(),
            "the shipped table is there too"
        );
    }

    #[test]
    fn prices_past_validation_are_held_in_range() {
        let mut list = PriceList::default();
        list.models.insert(
            "x".to_owned(),
            sluice_config::ModelPrice {
                input: -1.0,
                output: f64::NAN,
                cached_input: Some(f64::INFINITY),
                cache_write: None,
            },
        );
        let t = PriceTable::from_config(&list);
        let tokens = Tokens {
            prompt: 2,
            completion: 1,
            cached: 1,
            cache_write: 0,
        };
        // 1 fresh at 0, 1 cached at the 1,000,000 USD ceiling, 1 completion at 0.
        assert_eq!(t.cost_nanos("p", "x", tokens), Some(1_000_000_000));
    }

    #[test]
    fn the_shipped_table_loads_and_covers_the_providers() {
        let t = PriceTable::from_config(&PriceList::shipped().unwrap());
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
