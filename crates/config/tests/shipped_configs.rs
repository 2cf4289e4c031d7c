//! Every config file shipped in `config/` loads and validates.

use std::path::Path;

use sluice_config::{Config, ProviderKind};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn reference_config_loads_with_its_variables_set() {
    // Every `${VAR}` without a default must be given; `${VAR:-…}` ones may be missing.
    let env = |name: &str| {
        (name.ends_with("_KEY") && !name.ends_with("_2")).then(|| format!("test-{name}"))
    };
    let cfg = Config::parse(&read("sluice.toml"), &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert!(cfg.server.metrics, "GET /metrics is served");
    {
        use sluice_config::cache::{CacheMode, CacheScope};
        assert_eq!(cfg.cache.policy("smart").mode, CacheMode::Off);
        let fast = cfg.cache.policy("fast");
        assert_eq!(fast.mode, CacheMode::Semantic);
        assert_eq!((fast.scope, fast.ttl.as_secs()), (CacheScope::Key, 600));
        assert_eq!(cfg.cache.policy("gpt4o").mode, CacheMode::Exact);
        assert_eq!(cfg.cache.max_entries, 10_000);
    }
    assert_eq!(
        cfg.providers["openai"].api_keys.len(),
        1,
        "the unset optional key is dropped"
    );
    assert_eq!(
        cfg.providers["azure"].base_url,
        "https://example.openai.azure.com"
    );
    assert_eq!(cfg.models["smart"].chain.len(), 3);
    assert_eq!(cfg.models["local"].chain[0].model, "llama3.1:8b");
    assert_eq!(cfg.routing.breaker.failure_threshold, 5);
    let researcher = &cfg.agents["researcher"];
    assert_eq!(researcher.tools.len(), 4);
    let fetch = cfg.http_fetch.as_ref().expect("[tools.http_fetch]");
    assert_eq!(fetch.allow_hosts, ["api.github.com", "*.wikipedia.org"]);
    assert_eq!(researcher.bounds.max_cost_nanos, 1_000_000_000);
    assert_eq!(cfg.agents["summarizer"].bounds.max_steps, 2);
    use sluice_config::guard::{GuardAction, OutputAction};
    let g = &cfg.guard;
    assert_eq!(g.policy("fast", None, None).action, GuardAction::Flag);
    let p = g.policy("smart", Some("researcher"), Some("dev"));
    assert_eq!(
        (p.action, p.threshold, p.pii, p.canary),
        (
            GuardAction::Block,
            Some(0.7),
            OutputAction::Redact,
            OutputAction::Block
        )
    );
    assert_eq!(g.deny.len(), 1);
}

#[test]
fn the_reference_configs_commented_schedule_is_valid_once_uncommented() {
    let text = read("sluice.toml");
    let start = text
        .find("# [agents.nightly-report]")
        .expect("the reference config shows a scheduled agent");
    let block: Vec<&str> = text[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    let env = |name: &str| {
        (name.ends_with("_KEY") && !name.ends_with("_2")).then(|| format!("test-{name}"))
    };
    let cfg = Config::parse(&format!("{text}\n{}\n", block.join("\n")), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = cfg.agents["nightly-report"]
        .schedule
        .as_ref()
        .expect("the example has a schedule");
    assert_eq!((s.text.as_str(), s.run_as.as_str()), ("0 6 * * 1-5", "dev"));
}

#[test]
fn reference_config_names_its_missing_variables() {
    let err = Config::parse(&read("sluice.toml"), &|_| None).unwrap_err();
    let all = err.problems.join("\n");
    assert!(
        all.contains("keys[0].key") && all.contains("SLUICE_DEV_KEY"),
        "{all}"
    );
    assert!(all.contains("OPENAI_API_KEY"), "{all}");
}

#[test]
fn demo_config_loads_without_any_variable() {
    let cfg = Config::parse(&read("demo.toml"), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.providers.values().all(|p| p.kind == ProviderKind::Mock));
    assert!(cfg.models.contains_key("demo"));
}

#[test]
fn reference_config_documents_every_kind() {
    let text = read("sluice.toml");
    for kind in ProviderKind::ALL {
        assert!(
            text.contains(&format!("#   {}", kind.name())),
            "kind `{}` is not documented",
            kind.name()
        );
    }
    assert!(ProviderKind::ALL.len() >= 15);
}

#[test]
fn the_reference_configs_commented_channels_are_valid_once_uncommented() {
    let text = read("sluice.toml");
    let start = text
        .find("# [channels]\n")
        .expect("the reference config shows the chat channels");
    let block: Vec<&str> = text[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    let env = |name: &str| {
        let secret = ["SLACK_", "TELEGRAM_", "WHATSAPP_"]
            .iter()
            .any(|p| name.starts_with(p));
        (secret || (name.ends_with("_KEY") && !name.ends_with("_2")))
            .then(|| format!("test-{name}"))
    };
    let cfg = Config::parse(&format!("{text}\n{}\n", block.join("\n")), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let ch = &cfg.channels;
    assert_eq!(
        ch.slack.as_ref().map(|s| s.signing_secret.expose()),
        Some("test-SLACK_SIGNING_SECRET")
    );
    assert_eq!(ch.telegram["support"].binding.run_as, "dev");
    assert_eq!(
        ch.whatsapp.as_ref().map(|w| w.phone_number_id.as_str()),
        Some("106540352242922")
    );
}
