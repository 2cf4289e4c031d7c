//! Raw config → typed [`Config`], collecting every problem with its field path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{RawConfig, RawEntry, RawGroup, RawLimits, RawLimitsSection, RawProvider};
use crate::{
    BreakerConfig, ChainEntry, Config, ConfigError, DatabaseConfig, GatewayKey, GroupSpec, Limits,
    LimitsConfig, MockSettings, ModelAlias, ProviderConfig, ProviderKind, RoutingConfig, Secret,
    ServerConfig, SpendBreakerConfig, Strategy, Target, Timeouts,
};

pub(crate) fn validate(raw: RawConfig, dir: &std::path::Path) -> Result<Config, ConfigError> {
    let mut p = Vec::new();
    let prices = prices(raw.prices, dir, &mut p);

    let listen = raw.server.listen.parse::<SocketAddr>().unwrap_or_else(|e| {
        p.push(format!(
            "server.listen: `{}` is not an address like 127.0.0.1:8080 ({e})",
            raw.server.listen
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    if raw.server.worker_threads > 1024 {
        p.push("server.worker_threads: at most 1024 (0 = one per CPU)".into());
    }
    if raw.server.max_body_bytes == 0 {
        p.push("server.max_body_bytes: must be greater than 0".into());
    }

    let mut keys = Vec::new();
    let mut names = HashSet::new();
    let mut secrets = HashSet::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        if k.name.trim().is_empty() {
            p.push(format!("keys[{i}].name: must not be empty"));
        } else if !names.insert(k.name.clone()) {
            p.push(format!("keys[{i}].name: `{}` is used twice", k.name));
        }
        if k.key.len() < 8 {
            p.push(format!(
                "keys[{i}].key: must be at least 8 characters (is the variable set?)"
            ));
        } else if !secrets.insert(k.key.clone()) {
            p.push(format!("keys[{i}].key: the same key is given twice"));
        }
        let limits = limits(&format!("keys[{i}].limits"), &k.limits, &mut p);
        if k.user.as_ref().is_some_and(|u| u.trim().is_empty()) {
            p.push(format!("keys[{i}].user: must not be empty"));
        }
        keys.push(GatewayKey {
            name: k.name,
            key: Secret::new(k.key),
            user: k.user,
            limits,
        });
    }

    let default_retries = raw.routing.max_retries;
    let mut providers = BTreeMap::new();
    for (id, rp) in raw.providers {
        if let Some(provider) = provider(&id, rp, default_retries, &mut p) {
            providers.insert(id, provider);
        }
    }

    let mut models = BTreeMap::new();
    for (name, m) in raw.models {
        let path = format!("models.{name}.chain");
        if name.contains(':') {
            p.push(format!(
                "models.{name}: an alias must not contain `:` (it would shadow provider:model)"
            ));
        }
        if m.chain.is_empty() {
            p.push(format!("{path}: must name at least one provider:model"));
        }
        let mut chain = Vec::new();
        let mut entries = Vec::new();
        let target = |at: &str, s: &str, p: &mut Vec<String>| match parse_target(s) {
            Ok(t) if !providers.contains_key(&t.provider) => {
                p.push(format!(
                    "{at}: provider `{}` is not defined under [providers]",
                    t.provider
                ));
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                p.push(format!("{at}: {e}"));
                None
            }
        };
        for (i, entry) in m.chain.iter().enumerate() {
            match entry {
                RawEntry::Target(s) => {
                    if let Some(t) = target(&format!("{path}[{i}]"), s, &mut p) {
                        chain.push(t.clone());
                        entries.push(ChainEntry::Single(t));
                    }
                }
                RawEntry::Group(g) => {
                    if let Some(spec) = group(&format!("{path}[{i}]"), g, &target, &mut p) {
                        chain.extend(spec.targets.iter().cloned());
                        entries.push(ChainEntry::Group(spec));
                    }
                }
            }
        }
        models.insert(
            name.clone(),
            ModelAlias {
                name,
                chain,
                entries,
            },
        );
    }

    let r = raw.routing;
    if r.backoff_base_ms > r.backoff_max_ms {
        p.push("routing.backoff_base_ms: must not exceed routing.backoff_max_ms".into());
    }
    if r.request_timeout_ms == 0 {
        p.push("routing.request_timeout_ms: must be greater than 0".into());
    }
    if r.breaker.failure_threshold == 0 {
        p.push("routing.breaker.failure_threshold: must be at least 1".into());
    }
    if r.breaker.half_open_probes == 0 {
        p.push("routing.breaker.half_open_probes: must be at least 1".into());
    }
    let routing = RoutingConfig {
        backoff_base: ms(r.backoff_base_ms),
        backoff_max: ms(r.backoff_max_ms),
        max_retry_after: ms(r.max_retry_after_ms),
        rate_limit_cooldown: ms(r.rate_limit_cooldown_ms),
        billing_cooldown: ms(r.billing_cooldown_ms),
        request_timeout: ms(r.request_timeout_ms),
        breaker: BreakerConfig {
            failure_threshold: r.breaker.failure_threshold,
            open_for: ms(r.breaker.open_ms),
            half_open_probes: r.breaker.half_open_probes,
        },
    };

    let db = raw.database;
    if !(db.url.starts_with("sqlite://")
        || db.url.starts_with("postgres://")
        || db.url.starts_with("postgresql://"))
    {
        p.push("database.url: must start with sqlite:// or postgres://".into());
    }
    if db.key_refresh_ms == 0 || db.ledger_flush_ms == 0 || db.ledger_batch == 0 {
        p.push(
            "database: key_refresh_ms, ledger_flush_ms and ledger_batch must be greater than 0"
                .into(),
        );
    }
    let admin_token = raw.server.admin_token.filter(|t| !t.is_empty());
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        p.push("server.admin_token: must be at least 16 characters".into());
    }
    let database = DatabaseConfig {
        url: Secret::new(db.url),
        key_refresh: ms(db.key_refresh_ms),
        ledger_flush: ms(db.ledger_flush_ms),
        ledger_batch: usize::try_from(db.ledger_batch).unwrap_or(usize::MAX),
    };

    let limits = limits_section(raw.limits, &models, &providers, &mut p);

    if !p.is_empty() {
        return Err(ConfigError { problems: p });
    }
    Ok(Config {
        server: ServerConfig {
            listen,
            allow_direct_models: raw.server.allow_direct_models,
            max_body_bytes: usize::try_from(raw.server.max_body_bytes).unwrap_or(usize::MAX),
            shutdown_grace: ms(raw.server.shutdown_grace_ms),
            admin_token: admin_token.map(Secret::new),
            worker_threads: match raw.server.worker_threads {
                0 => None,
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
        },
        database,
        keys,
        providers,
        models,
        routing,
        prices,
        limits,
    })
}

/// Parses a chain target at a field path, reporting its problem.
type ParseTarget<'a> = dyn Fn(&str, &str, &mut Vec<String>) -> Option<Target> + 'a;

fn group(
    at: &str,
    g: &RawGroup,
    target: &ParseTarget<'_>,
    p: &mut Vec<String>,
) -> Option<GroupSpec> {
    let before = p.len();
    if g.targets.len() < 2 {
        p.push(format!(
            "{at}.targets: a group needs at least two targets (write one as a plain entry)"
        ));
    }
    let mut targets: Vec<Target> = Vec::new();
    for (j, s) in g.targets.iter().enumerate() {
        if let Some(t) = target(&format!("{at}.targets[{j}]"), s, p) {
            if targets.contains(&t) {
                p.push(format!("{at}.targets[{j}]: `{t}` is in the group twice"));
            }
            targets.push(t);
        }
    }
    let weights = match (&g.weights, g.strategy) {
        (Some(w), Strategy::Weighted) => {
            if w.len() != g.targets.len() {
                p.push(format!(
                    "{at}.weights: {} weight(s) for {} target(s)",
                    w.len(),
                    g.targets.len()
                ));
            }
            if w.iter().all(|w| *w == 0) {
                p.push(format!("{at}.weights: at least one must be greater than 0"));
            }
            w.clone()
        }
        (Some(_), _) => {
            p.push(format!(
                "{at}.weights: only the `weighted` strategy takes weights"
            ));
            Vec::new()
        }
        (None, Strategy::Weighted) => {
            p.push(format!(
                "{at}.weights: `weighted` needs one weight per target"
            ));
            Vec::new()
        }
        (None, _) => vec![1; g.targets.len()],
    };
    (p.len() == before).then_some(GroupSpec {
        targets,
        weights,
        strategy: g.strategy,
        affinity: g.affinity,
    })
}

fn limits_section(
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

fn limits(path: &str, raw: &RawLimits, p: &mut Vec<String>) -> Limits {
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

fn prices(
    raw: crate::raw::RawPrices,
    dir: &std::path::Path,
    p: &mut Vec<String>,
) -> sluice_limits::PriceTable {
    let mut table = match raw.file {
        None => sluice_limits::PriceTable::shipped().unwrap_or_else(|e| {
            p.push(format!("prices: the shipped table is invalid: {e}"));
            sluice_limits::PriceTable::default()
        }),
        Some(file) => {
            let path = dir.join(&file);
            match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| sluice_limits::PriceTable::parse(&t).map_err(|e| e.to_string()))
            {
                Ok(t) => t,
                Err(e) => {
                    p.push(format!("prices.file: {}: {e}", path.display()));
                    sluice_limits::PriceTable::default()
                }
            }
        }
    };
    if let Err(e) = table.extend(raw.models) {
        p.push(format!("prices.models: {e}"));
    }
    table
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `provider:model`; the model part may itself contain `:` (e.g. `ollama:llama3:8b`).
pub(crate) fn parse_target(s: &str) -> Result<Target, String> {
    match s.split_once(':') {
        Some((provider, model)) if !provider.is_empty() && !model.is_empty() => Ok(Target {
            provider: provider.to_owned(),
            model: model.to_owned(),
        }),
        _ => Err(format!("`{s}` is not of the form provider:model")),
    }
}

fn provider(
    id: &str,
    rp: RawProvider,
    default_retries: u32,
    p: &mut Vec<String>,
) -> Option<ProviderConfig> {
    let path = format!("providers.{id}");
    let before = p.len();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        p.push(format!(
            "{path}: a provider id may hold only letters, digits, `_` and `-`"
        ));
    }
    let preset = rp.kind.preset();
    let base_url = match (rp.base_url.as_deref().map(str::trim), preset.base_url) {
        (Some(url), _) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        (_, Some(default)) => default.to_owned(),
        _ => {
            p.push(format!(
                "{path}.base_url: required for kind `{}`",
                rp.kind.name()
            ));
            String::new()
        }
    };
    if rp.kind != ProviderKind::Mock
        && !base_url.is_empty()
        && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
    {
        p.push(format!(
            "{path}.base_url: `{base_url}` must start with http:// or https://"
        ));
    }
    // Empty entries come from optional variables (`${KEY_2:-}`) and are dropped.
    let api_keys: Vec<Secret> = rp
        .api_keys
        .into_iter()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new)
        .collect();
    if preset.needs_key && api_keys.is_empty() {
        p.push(format!(
            "{path}.api_keys: kind `{}` needs at least one non-empty API key",
            rp.kind.name()
        ));
    }
    if rp.kind == ProviderKind::Azure && rp.api_version.is_none() {
        p.push(format!(
            "{path}.api_version: required for kind `azure` (e.g. \"2024-10-21\")"
        ));
    }
    for (field, v) in [
        ("timeout_ms", rp.timeout_ms),
        ("connect_timeout_ms", rp.connect_timeout_ms),
        ("first_byte_timeout_ms", rp.first_byte_timeout_ms),
        ("idle_timeout_ms", rp.idle_timeout_ms),
    ] {
        if v == 0 {
            p.push(format!("{path}.{field}: must be greater than 0"));
        }
    }
    for name in rp.headers.keys() {
        if http_token(name).is_err() {
            p.push(format!("{path}.headers.{name}: not a valid header name"));
        }
    }
    if p.len() > before {
        return None;
    }
    Some(ProviderConfig {
        id: id.to_owned(),
        kind: rp.kind,
        base_url,
        api_keys,
        timeouts: Timeouts {
            connect: ms(rp.connect_timeout_ms),
            first_byte: ms(rp.first_byte_timeout_ms),
            idle: ms(rp.idle_timeout_ms),
            total: ms(rp.timeout_ms),
        },
        headers: rp.headers,
        api_version: rp.api_version,
        stream_usage: rp.stream_usage.unwrap_or(preset.stream_usage),
        default_max_tokens: rp.default_max_tokens,
        max_retries: rp.max_retries.unwrap_or(default_retries),
        mock: MockSettings {
            latency: ms(rp.latency_ms),
            chunk_delay: ms(rp.chunk_delay_ms),
            words: rp.words,
        },
    })
}

/// RFC 9110 token characters, the set header names are made of.
fn http_token(name: &str) -> Result<(), ()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use crate::{ChainEntry, Config, Strategy};

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-test-1".into()),
            "DEV_KEY" => Some("dev-key-123456".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(text, &env).map_err(|e| e.problems)
    }

    #[test]
    fn issue_example_parses_with_presets_and_empty_keys_dropped() {
        let cfg = parse(
            r#"
            [server]
            listen = "127.0.0.1:8080"
            [[keys]]
            name = "dev"
            key = "${DEV_KEY}"
            [providers.openai]
            kind = "openai"
            api_keys = ["${OPENAI_API_KEY}", "${OPENAI_API_KEY_2:-}"]
            timeout_ms = 120000
            [providers.groq]
            kind = "groq"
            api_keys = ["g"]
            [models.smart]
            chain = ["openai:gpt-4o", "groq:llama-3.3-70b"]
            "#,
        )
        .unwrap();
        let openai = &cfg.providers["openai"];
        assert_eq!(
            openai.api_keys.len(),
            1,
            "the empty optional key is dropped"
        );
        assert_eq!(openai.base_url, "https://api.openai.com/v1");
        assert_eq!(
            cfg.providers["groq"].base_url,
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(cfg.models["smart"].chain[1].model, "llama-3.3-70b");
        assert_eq!(
            format!("{:?}", cfg.keys[0].key),
            "***",
            "secrets never print"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let problems = parse(
            r#"
            [server]
            listen = "nowhere"
            [providers.az]
            kind = "azure"
            api_keys = ["k"]
            [providers.oa]
            kind = "openai"
            [models.smart]
            chain = ["missing:gpt-4o", "no-colon"]
            [routing.breaker]
            failure_threshold = 0
            "#,
        )
        .unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "server.listen",
            "providers.az.base_url",
            "providers.az.api_version",
            "providers.oa.api_keys",
            "models.smart.chain[0]: provider `missing`",
            "models.smart.chain[1]",
            "routing.breaker.failure_threshold",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }

    #[test]
    fn chains_take_balanced_groups_beside_plain_entries() {
        let cfg = parse(
            r#"
            [providers.east]
            kind = "openai"
            api_keys = ["k"]
            [providers.west]
            kind = "openai"
            api_keys = ["k"]
            [models.smart]
            chain = [
              { targets = ["east:gpt-4o", "west:gpt-4o"], strategy = "weighted", weights = [1, 3], affinity = "prefix" },
              "east:gpt-4o-mini",
            ]
            [models.plain]
            chain = ["east:gpt-4o"]
            "#,
        )
        .unwrap();
        let smart = &cfg.models["smart"];
        assert_eq!(smart.chain.len(), 3, "flattened for pricing and limits");
        let ChainEntry::Group(g) = &smart.entries[0] else {
            panic!("a group")
        };
        assert_eq!(g.strategy, Strategy::Weighted);
        assert_eq!(g.weights, vec![1, 3]);
        assert_eq!(g.affinity, Some(crate::Affinity::Prefix));
        assert!(matches!(&smart.entries[1], ChainEntry::Single(t) if t.model == "gpt-4o-mini"));
        assert_eq!(cfg.models["plain"].entries.len(), 1);

        let problems = parse(
            r#"
            [providers.east]
            kind = "openai"
            api_keys = ["k"]
            [models.a]
            chain = [{ targets = ["east:x"] }]
            [models.b]
            chain = [{ targets = ["east:x", "nope:y"], strategy = "latency" }]
            [models.c]
            chain = [{ targets = ["east:x", "east:y"], strategy = "weighted", weights = [1] }]
            [models.d]
            chain = [{ targets = ["east:x", "east:y"], weights = [1, 2] }]
            [models.e]
            chain = [{ targets = ["east:x", "east:x"] }]
            "#,
        )
        .unwrap_err()
        .join("\n");
        for needle in [
            "models.a.chain[0].targets: a group needs at least two",
            "models.b.chain[0].targets[1]: provider `nope`",
            "models.c.chain[0].weights: 1 weight(s) for 2",
            "models.d.chain[0].weights: only the `weighted` strategy",
            "models.e.chain[0].targets[1]: `east:x` is in the group twice",
        ] {
            assert!(
                problems.contains(needle),
                "missing `{needle}` in:\n{problems}"
            );
        }
    }

    #[test]
    fn limits_parse_per_scope_and_their_problems_are_named() {
        let cfg = parse(
            r#"
            [[keys]]
            name = "ci"
            key = "sk-ci-0123456789"
            user = "alice"
            limits = { rpm = 60, budget_usd_day = 2.5 }
            [providers.oa]
            kind = "openai"
            api_keys = ["k"]
            [models.smart]
            chain = ["oa:gpt-4o"]
            [limits]
            max_output_tokens = 4096
            [limits.users.alice]
            budget_tokens_month = 1000000
            [limits.models.smart]
            tpm = 50000
            [limits.upstream."oa:gpt-4o"]
            rpm = 500
            [limits.spend_breaker]
            max_usd = 20
            cooldown_ms = 600000
            "#,
        )
        .unwrap();
        let key = &cfg.keys[0];
        assert_eq!(key.user.as_deref(), Some("alice"));
        assert_eq!(key.limits.rpm, Some(60));
        assert_eq!(key.limits.usd_day_nanos, Some(2_500_000_000));
        let l = &cfg.limits;
        assert_eq!(l.max_output_tokens, Some(4096));
        assert_eq!(l.output_reserve, 1024);
        assert_eq!(l.users["alice"].tokens_month, Some(1_000_000));
        assert_eq!(l.models["smart"].tpm, Some(50_000));
        let t = super::parse_target("oa:gpt-4o").unwrap();
        assert_eq!(l.upstream[&t].rpm, Some(500));
        let b = l.spend_breaker.unwrap();
        assert_eq!(b.max_nanos, Some(20_000_000_000));
        assert_eq!(b.multiple, None);
        assert_eq!(b.cooldown, Some(std::time::Duration::from_secs(600)));

        let problems = parse(
            r#"
            [[keys]]
            name = "ci"
            key = "sk-ci-0123456789"
            limits = { rpm = 0, budget_usd_day = -1 }
            [providers.oa]
            kind = "openai"
            api_keys = ["k"]
            [limits]
            output_reserve = 8192
            max_output_tokens = 4096
            [limits.models.nosuch]
            rpm = 1
            [limits.upstream."other:gpt-4o"]
            rpm = 1
            [limits.spend_breaker]
            multiple = 0.5
            "#,
        )
        .unwrap_err()
        .join("\n");
        for needle in [
            "keys[0].limits.rpm",
            "keys[0].limits.budget_usd_day",
            "limits.output_reserve",
            "limits.models.nosuch",
            "limits.upstream.\"other:gpt-4o\": provider `other`",
            "limits.spend_breaker.multiple",
        ] {
            assert!(
                problems.contains(needle),
                "missing `{needle}` in:\n{problems}"
            );
        }
    }

    #[test]
    fn prices_come_from_the_shipped_table_a_file_and_overrides() {
        let cfg = parse("[prices.models.\"my-model\"]\ninput = 1.0\noutput = 2.0\n").unwrap();
        let t = sluice_limits::Tokens {
            prompt: 1_000_000,
            ..Default::default()
        };
        assert_eq!(
            cfg.prices.cost_nanos("p", "my-model", t),
            Some(1_000_000_000)
        );
        assert!(
            cfg.prices.cost_nanos("openai", "gpt-4o", t).is_some(),
            "the shipped table is there too"
        );

        let problems = parse("[prices.models.x]\ninput = -1.0\noutput = 2.0\n").unwrap_err();
        assert!(
            problems[0].starts_with("prices.models") && problems[0].contains("`x`"),
            "{problems:?}"
        );
        let problems = parse("[prices]\nfile = \"/nonexistent/prices.toml\"\n").unwrap_err();
        assert!(problems[0].starts_with("prices.file"), "{problems:?}");

        let dir = std::env::temp_dir().join(format!("sluice-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("p.toml"),
            "[models.only]\ninput = 1.0\noutput = 1.0\n",
        )
        .unwrap();
        let cfg = crate::Config::parse_in("[prices]\nfile = \"p.toml\"\n", &env, &dir).unwrap();
        assert_eq!(
            cfg.prices.len(),
            1,
            "a file replaces the shipped table, relative to the config"
        );
    }

    #[test]
    fn unknown_fields_and_missing_variables_name_their_place() {
        let problems = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(
            problems[0].contains("server") && problems[0].contains("lisen"),
            "{problems:?}"
        );

        let problems =
            parse("[providers.a]\nkind = \"openai\"\napi_keys = [\"${NOPE}\"]\n").unwrap_err();
        assert!(
            problems[0].starts_with("providers.a.api_keys[0]"),
            "{problems:?}"
        );
        assert!(problems[0].contains("NOPE"), "{problems:?}");

        let problems = parse("[providers.a]\nkind = \"openia\"\n").unwrap_err();
        assert!(problems[0].contains("providers.a.kind"), "{problems:?}");
    }
}
