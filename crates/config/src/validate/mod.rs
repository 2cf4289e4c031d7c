//! Raw config → typed [`Config`], collecting every problem with its field path.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

mod agents;
mod cache;
#[cfg(test)]
mod cache_tests;
mod channels;
#[cfg(test)]
mod channels_tests;
mod guard;
#[cfg(test)]
mod guard_tests;
mod limits;
#[cfg(test)]
mod tests;

use limits::{limits, limits_section};

use crate::raw::{RawConfig, RawEntry, RawGroup, RawProvider};
use crate::{
    BreakerConfig, ChainEntry, Config, ConfigError, DatabaseConfig, GatewayKey, GroupSpec,
    MockSettings, ModelAlias, PriceList, ProviderConfig, ProviderKind, RoutingConfig, Secret,
    ServerConfig, Strategy, Target, Timeouts,
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
    // Chains are checked against every provider written, so one with a problem of its own
    // is not also reported as missing from each chain that names it.
    let declared: HashSet<String> = raw.providers.keys().cloned().collect();
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
            Ok(t) if !declared.contains(&t.provider) => {
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
    // Postgres binds at most 65,535 parameters a statement; a row takes 16.
    if db.ledger_batch > 4000 {
        p.push("database.ledger_batch: at most 4000 rows a batch".into());
    }
    let admin_token = raw.server.admin_token.clone().filter(|t| !t.is_empty());
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        p.push("server.admin_token: must be at least 16 characters".into());
    }
    let ledger_spill_file = match db.ledger_spill_file.as_str() {
        "" => match db.url.strip_prefix("sqlite://") {
            Some(path) if !path.starts_with(":memory:") => {
                let file = path.split('?').next().unwrap_or_default();
                std::path::PathBuf::from(format!("{file}.ledger-spill.jsonl"))
            }
            // One file per instance on a host: instances on one host listen on different
            // ports, and a restarted instance finds its own file again.
            _ => std::path::PathBuf::from(format!("data/ledger-spill-{}.jsonl", listen.port())),
        },
        path => std::path::PathBuf::from(path),
    };
    let s = &raw.server;
    for (field, value) in [
        ("header_read_timeout_ms", s.header_read_timeout_ms),
        ("idle_timeout_ms", s.idle_timeout_ms),
        ("body_read_timeout_ms", s.body_read_timeout_ms),
        ("write_timeout_ms", s.write_timeout_ms),
        ("max_connections", s.max_connections),
    ] {
        if value == 0 {
            p.push(format!("server.{field}: must be greater than 0"));
        }
    }
    let conn = conn_limits(s);
    let database = DatabaseConfig {
        ledger_spill_file,
        url: Secret::new(db.url),
        key_refresh: ms(db.key_refresh_ms),
        ledger_flush: ms(db.ledger_flush_ms),
        ledger_batch: usize::try_from(db.ledger_batch).unwrap_or(usize::MAX),
    };

    let limits = limits_section(raw.limits, &models, &providers, &mut p);
    let websocket = websocket(raw.websocket, &mut p);
    let http_fetch = agents::http_fetch(raw.tools.http_fetch, &mut p);
    let agents = agents::agents(raw.agents, &models, http_fetch.is_some(), &names, &mut p);
    let channels = channels::channels(raw.channels, &agents, &names, &mut p);
    let guard = guard::guard(raw.guard, &models, &agents, &mut p);
    let cache = cache::cache(raw.cache, &models, &mut p);
    let auth = auth_mode(&raw.server, &mut p);

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
            conn,
            auth,
            metrics: raw.server.metrics,
        },
        database,
        keys,
        providers,
        models,
        routing,
        prices,
        limits,
        websocket,
        agents,
        http_fetch,
        channels,
        guard,
        cache,
    })
}

fn auth_mode(s: &crate::raw::RawServer, p: &mut Vec<String>) -> crate::AuthMode {
    match s.auth.as_str() {
        "key" => {
            if !s.trusted_proxies.is_empty() {
                p.push(
                    "server.trusted_proxies: only used with server.auth = \"trusted_proxy\"".into(),
                );
            }
            crate::AuthMode::Key
        }
        "trusted_proxy" => {
            let mut proxies = Vec::new();
            for (i, cidr) in s.trusted_proxies.iter().enumerate() {
                let parsed = cidr
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match parsed {
                    Ok(net) => proxies.push(net),
                    Err(_) => p.push(format!(
                        "server.trusted_proxies[{i}]: `{cidr}` is not an address or CIDR like 10.0.0.0/8"
                    )),
                }
            }
            if s.trusted_proxies.is_empty() {
                p.push(
                    "server.trusted_proxies: trusted_proxy mode needs the proxies' addresses"
                        .into(),
                );
            }
            let header = s.user_header.to_ascii_lowercase();
            let valid = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                p.push(format!(
                    "server.user_header: `{}` is not a header name",
                    s.user_header
                ));
            }
            crate::AuthMode::TrustedProxy {
                proxies,
                user_header: header,
            }
        }
        other => {
            p.push(format!(
                "server.auth: `{other}` is not one of key, trusted_proxy"
            ));
            crate::AuthMode::Key
        }
    }
}

fn websocket(w: crate::raw::RawWebSocket, p: &mut Vec<String>) -> crate::WebSocketConfig {
    let positive = [
        ("heartbeat_ms", w.heartbeat_ms),
        ("connect_timeout_ms", w.connect_timeout_ms),
        ("max_frame_bytes", w.max_frame_bytes),
        ("replay_events", w.replay_events),
        ("replay_bytes", w.replay_bytes),
        ("max_sessions_per_key", w.max_sessions_per_key),
        ("max_pending_requests", w.max_pending_requests),
    ];
    for (field, v) in positive {
        if v == 0 {
            p.push(format!("websocket.{field}: must be greater than 0"));
        }
    }
    if w.max_frame_bytes > 64 * 1024 * 1024 {
        p.push("websocket.max_frame_bytes: at most 64 MiB".into());
    }
    if w.replay_bytes < w.max_frame_bytes.min(1024 * 1024) {
        p.push(
            "websocket.replay_bytes: must hold at least one frame (max_frame_bytes, or 1 MiB)"
                .into(),
        );
    }
    for (i, o) in w.allowed_origins.iter().enumerate() {
        let plain = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && !o.contains(char::is_whitespace));
        if !plain {
            p.push(format!(
                "websocket.allowed_origins[{i}]: `{o}` is not an origin like https://app.example.com (or \"*\")"
            ));
        }
    }
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    crate::WebSocketConfig {
        heartbeat: ms(w.heartbeat_ms),
        connect_timeout: ms(w.connect_timeout_ms),
        max_frame_bytes: size(w.max_frame_bytes),
        replay_events: size(w.replay_events),
        replay_bytes: size(w.replay_bytes),
        resume_grace: ms(w.resume_grace_ms),
        max_sessions_per_key: size(w.max_sessions_per_key),
        max_pending_requests: size(w.max_pending_requests),
        allowed_origins: w.allowed_origins,
    }
}

fn conn_limits(s: &crate::raw::RawServer) -> crate::ConnLimits {
    crate::ConnLimits {
        header_read: ms(s.header_read_timeout_ms),
        idle: ms(s.idle_timeout_ms),
        body_read: ms(s.body_read_timeout_ms),
        write: ms(s.write_timeout_ms),
        max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
    }
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

fn prices(raw: crate::raw::RawPrices, dir: &std::path::Path, p: &mut Vec<String>) -> PriceList {
    let mut list = match raw.file {
        None => PriceList::shipped().unwrap_or_else(|problems| {
            p.extend(
                problems
                    .into_iter()
                    .map(|e| format!("prices: the shipped table is invalid: {e}")),
            );
            PriceList::default()
        }),
        Some(file) => {
            let path = dir.join(&file);
            match std::fs::read_to_string(&path)
                .map_err(|e| vec![e.to_string()])
                .and_then(|t| PriceList::parse(&t))
            {
                Ok(list) => PriceList {
                    file: Some(path),
                    ..list
                },
                Err(problems) => {
                    p.extend(
                        problems
                            .into_iter()
                            .map(|e| format!("prices.file: {}: {e}", path.display())),
                    );
                    PriceList::default()
                }
            }
        }
    };
    if let Err(problems) = list.extend(raw.models) {
        p.extend(problems.into_iter().map(|e| format!("prices.models: {e}")));
    }
    list
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
        ("stream_timeout_ms", rp.stream_timeout_ms),
    ] {
        if v == 0 {
            p.push(format!("{path}.{field}: must be greater than 0"));
        }
    }
    for (field, v, min) in [
        ("max_answer_bytes", rp.max_answer_bytes, 1024),
        ("max_stream_event_bytes", rp.max_stream_event_bytes, 1024),
    ] {
        if v < min {
            p.push(format!("{path}.{field}: must be at least {min}"));
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
            stream: ms(rp.stream_timeout_ms),
        },
        headers: rp.headers,
        api_version: rp.api_version,
        stream_usage: rp.stream_usage.unwrap_or(preset.stream_usage),
        default_max_tokens: rp.default_max_tokens,
        max_retries: rp.max_retries.unwrap_or(default_retries),
        max_answer_bytes: usize::try_from(rp.max_answer_bytes).unwrap_or(usize::MAX),
        max_stream_event_bytes: usize::try_from(rp.max_stream_event_bytes).unwrap_or(usize::MAX),
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
