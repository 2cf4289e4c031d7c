//! `[limits]` and the limits of keys: raw amounts (USD as floats) to [`Limits`] (integer
//! nano-dollars), scopes checked against the models and providers they name.

use std::collections::{BTreeMap, HashMap};

use crate::raw::{RawLimits, RawLimitsSection};
use crate::{Limits, LimitsConfig, ModelAlias, ProviderConfig, SpendBreakerConfig};

use super::{ms, parse_target};

pub(super) fn limits_section(
    raw: RawLimitsSection,
    models: &BTreeMap<String, ModelAlias>,
    providers: &BTreeMap<String, ProviderConfig>,
    p: &mut Vec<String>,
) -> LimitsConfig {
    if raw.lease_slices == 0 || raw.sync_ms == 0 {
        p.push("limits: lease_slices and sync_ms must be greater than 0".into());
    }
    let max_output_tokens = match raw.max_output_tokens {
        0 => None,
        n => Some(u32::try_from(n).unwrap_or_else(|_| {
            p.push("limits.max_output_tokens: must fit in 32 bits".into());
            u32::MAX
        })),
    };
    if max_output_tokens.is_some_and(|cap| u64::from(cap) < raw.output_reserve) {
        p.push(
            "limits.output_reserve: must not exceed limits.max_output_tokens (nothing can use the difference)"
                .into(),
        );
    }
    let scoped = |section: &str, all: &BTreeMap<String, RawLimits>, p: &mut Vec<String>| {
        all.iter()
            .map(|(name, l)| {
                (
                    name.clone(),
                    limits(&format!("limits.{section}.{name}"), l, p),
                )
            })
            .collect::<HashMap<_, _>>()
    };
    let users = scoped("users", &raw.users, p);
    let agents = scoped("agents", &raw.agents, p);
    let by_model = scoped("models", &raw.models, p);
    for name in by_model.keys() {
        if !models.contains_key(name) && parse_target(name).is_err() {
            p.push(format!(
                "limits.models.{name}: not an alias under [models] (nor a provider:model)"
            ));
        }
    }
    let mut upstream = HashMap::new();
    for (name, l) in &raw.upstream {
        let path = format!("limits.upstream.\"{name}\"");
        let l = limits(&path, l, p);
        match parse_target(name) {
            Ok(t) if providers.contains_key(&t.provider) => {
                upstream.insert(t, l);
            }
            Ok(t) => p.push(format!(
                "{path}: provider `{}` is not defined under [providers]",
                t.provider
            )),
            Err(e) => p.push(format!("{path}: {e}")),
        }
    }
    let b = raw.spend_breaker;
    let usd = |field: &str, v: f64, p: &mut Vec<String>| {
        usd_nanos(v).unwrap_or_else(|| {
            p.push(format!(
                "limits.spend_breaker.{field}: must be a non-negative amount of USD"
            ));
            0
        })
    };
    let min_nanos = usd("min_usd", b.min_usd, p);
    let max_nanos = b.max_usd.map(|v| usd("max_usd", v, p));
    if !(b.multiple.is_finite() && b.multiple >= 0.0) || (b.multiple > 0.0 && b.multiple <= 1.0) {
        p.push("limits.spend_breaker.multiple: must be 0 (off) or greater than 1".into());
    }
    if b.window_ms == 0 || b.baseline_ms <= b.window_ms {
        p.push(
            "limits.spend_breaker: window_ms must be greater than 0 and baseline_ms longer than it"
                .into(),
        );
    }
    let spend_breaker = (b.multiple > 0.0 || max_nanos.is_some()).then(|| SpendBreakerConfig {
        window: ms(b.window_ms),
        baseline: ms(b.baseline_ms),
        multiple: (b.multiple > 0.0).then_some(b.multiple),
        min_nanos,
        max_nanos,
        cooldown: (b.cooldown_ms > 0).then(|| ms(b.cooldown_ms)),
    });
    LimitsConfig {
        output_reserve: raw.output_reserve,
        max_output_tokens,
        lease_slices: raw.lease_slices,
        lease_idle: ms(raw.lease_idle_ms),
        sync_every: ms(raw.sync_ms),
        users,
        agents,
        models: by_model,
        upstream,
        spend_breaker,
    }
}

/// USD as integer nano-dollars, the unit every sum is kept in.
fn usd_nanos(v: f64) -> Option<u64> {
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| (v * 1e9).round() as u64)
}

pub(super) fn limits(path: &str, raw: &RawLimits, p: &mut Vec<String>) -> Limits {
    let mut usd = |field: &str, v: Option<f64>| {
        v.and_then(|v| {
            let n = usd_nanos(v);
            if n.is_none() {
                p.push(format!(
                    "{path}.{field}: must be a non-negative amount of USD"
                ));
            }
            n
        })
    };
    let out = Limits {
        rpm: raw.rpm,
        tpm: raw.tpm,
        usd_day_nanos: usd("budget_usd_day", raw.budget_usd_day),
        usd_month_nanos: usd("budget_usd_month", raw.budget_usd_month),
        usd_total_nanos: usd("budget_usd_total", raw.budget_usd_total),
        tokens_day: raw.budget_tokens_day,
        tokens_month: raw.budget_tokens_month,
        tokens_total: raw.budget_tokens_total,
    };
    for (field, v) in [
        ("rpm", raw.rpm),
        ("tpm", raw.tpm),
        ("budget_tokens_day", raw.budget_tokens_day),
        ("budget_tokens_month", raw.budget_tokens_month),
        ("budget_tokens_total", raw.budget_tokens_total),
    ] {
        if v == Some(0) {
            p.push(format!(
                "{path}.{field}: must be greater than 0 (leave it out for no limit)"
            ));
        }
    }
    out
}
