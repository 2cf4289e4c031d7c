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
    assert_eq!(
        cfg.prices.models["my-model"],
        crate::ModelPrice {
            input: 1.0,
            output: 2.0,
            cached_input: None,
            cache_write: None,
        }
    );
    assert!(
        cfg.prices.models.contains_key("gpt-4o"),
        "the shipped table is there too"
    );
    assert_eq!(cfg.prices.file, None, "the shipped table names no file");

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
        cfg.prices.models.len(),
        1,
        "a file replaces the shipped table, relative to the config"
    );
    assert_eq!(cfg.prices.file, Some(dir.join("p.toml")));
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

#[test]
fn websocket_and_trusted_proxy_settings_are_checked_all_at_once() {
    let problems = parse(
        r#"
        [server]
        auth = "trusted_proxy"
        trusted_proxies = ["10.0.0.0/8", "not-a-cidr", "192.168.1.7"]
        user_header = "x forwarded"
        [websocket]
        heartbeat_ms = 0
        max_frame_bytes = 2048
        replay_bytes = 1024
        allowed_origins = ["https://app.example.com", "app.example.com", "*"]
        "#,
    )
    .unwrap_err();
    let expected = [
        "server.trusted_proxies[1]: `not-a-cidr`",
        "server.user_header:",
        "websocket.heartbeat_ms: must be greater than 0",
        "websocket.replay_bytes:",
        "websocket.allowed_origins[1]:",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "{e} among {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");

    let cfg =
        parse("[server]\nauth = \"trusted_proxy\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n")
            .unwrap();
    assert!(cfg.server.auth.trusts("10.1.2.3".parse().unwrap()));
    assert!(cfg.server.auth.trusts("::1".parse().unwrap()));
    assert!(
        cfg.server.auth.trusts("::ffff:10.9.9.9".parse().unwrap()),
        "an IPv4 peer seen on an IPv6 socket"
    );
    assert!(!cfg.server.auth.trusts("11.0.0.1".parse().unwrap()));
    assert!(
        parse("[server]\nauth = \"trusted_proxy\"\n")
            .unwrap_err()
            .iter()
            .any(|p| p.starts_with("server.trusted_proxies:")),
        "trusted_proxy mode needs proxies"
    );
    let ws = parse("").unwrap().websocket;
    assert!(
        !ws.origin_allowed("https://app.example.com"),
        "none by default"
    );
}

const AGENT_BASE: &str = r#"
    [providers.mock]
    kind = "mock"
    [models.fast]
    chain = ["mock:m"]
"#;

#[test]
fn agents_get_defaults_and_their_tools_are_parsed() {
    let cfg = parse(&format!(
        r#"{AGENT_BASE}
        [agents.writer]
        model = "fast"
        system = "Write briefly."
        tools = ["time_now", "node:laptop/shell", "node:*/search", "agent:helper"]
        max_cost_usd = 0.25
        [agents.helper]
        model = "fast"
        "#
    ))
    .unwrap();
    let w = &cfg.agents["writer"];
    assert_eq!(w.model, "fast");
    assert_eq!(w.system.as_deref(), Some("Write briefly."));
    use crate::ToolRef;
    assert_eq!(
        w.tools,
        vec![
            ToolRef::Builtin("time_now".into()),
            ToolRef::Node {
                node: "laptop".into(),
                tool: "shell".into()
            },
            ToolRef::AnyNode {
                tool: "search".into()
            },
            ToolRef::Agent("helper".into()),
        ]
    );
    assert_eq!(w.bounds.max_cost_nanos, 250_000_000);
    let h = &cfg.agents["helper"].bounds;
    assert_eq!(
        (
            h.max_steps,
            h.max_llm_calls,
            h.max_retries,
            h.max_concurrent_runs
        ),
        (8, 16, 2, 4),
        "defaults"
    );
    assert_eq!(h.max_cost_nanos, 1_000_000_000);
    assert_eq!(h.deadline, std::time::Duration::from_secs(300));
}

#[test]
fn no_agent_can_be_unbounded_and_every_problem_is_named() {
    let problems = parse(&format!(
        r#"{AGENT_BASE}
        [agents.a]
        model = "nope"
        tools = ["shell", "node:laptop", "agent:ghost", "agent:a", "time_now", "time_now"]
        max_steps = 0
        max_cost_usd = 0.0
        deadline_s = 100000
        tool_timeout_s = 0
        [agents.b]
        max_retries = 11
        max_output_tokens = 200000
        max_tokens = 1000
        "#
    ))
    .unwrap_err();
    for expected in [
        "agents.a.model: `nope` is not a [models] alias",
        "agents.a.tools[0]: `shell` is not a built-in tool",
        "agents.a.tools[1]: `node:laptop`: a node tool is node:NAME/TOOL",
        "agents.a.tools[2]: `agent:ghost`: no agent `ghost`",
        "agents.a.tools[3]: an agent cannot delegate to itself",
        "agents.a.tools[5]: `time_now` is listed twice",
        "agents.a.max_steps: 0 is not within 1..=100",
        "agents.a.max_cost_usd: 0 is not within (0, 1000]",
        "agents.a.deadline_s: 100000 is not within 1..=86400",
        "agents.a.tool_timeout_s: 0 is not within",
        "agents.b.model: required",
        "agents.b.max_retries: 11 is not within 0..=10",
        "agents.b.max_output_tokens: 200000 is not within 1..=1000",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
}

#[test]
fn delegation_must_not_loop() {
    let problems = parse(&format!(
        r#"{AGENT_BASE}
        [agents.a]
        model = "fast"
        tools = ["agent:b"]
        [agents.b]
        model = "fast"
        tools = ["agent:c"]
        [agents.c]
        model = "fast"
        tools = ["agent:a"]
        [agents.d]
        model = "fast"
        tools = ["agent:a"]
        "#
    ))
    .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p == "agents: delegation loops: a → b → c → a"),
        "{problems:#?}"
    );
}

#[test]
fn http_fetch_needs_an_allowlist_and_its_caps_are_bounded() {
    let problems = parse(&format!(
        r#"{AGENT_BASE}
        [agents.a]
        model = "fast"
        tools = ["http_fetch"]
        loop_repeat = 1
        breaker_open_s = 0
        "#
    ))
    .unwrap_err();
    for expected in [
        "agents.a.tools[0]: http_fetch needs [tools.http_fetch]",
        "agents.a.loop_repeat: 1 is not within 2..=20",
        "agents.a.breaker_open_s: 0 is not within 1..=3600",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
    let problems = parse(&format!(
        r#"{AGENT_BASE}
        [tools.http_fetch]
        allow_networks = ["10.0.0.0/33"]
        max_bytes = 0
        max_redirects = 11
        "#
    ))
    .unwrap_err();
    for expected in [
        "tools.http_fetch.allow_networks[0]: `10.0.0.0/33` is not a network",
        "tools.http_fetch.max_bytes: 0 is not within",
        "tools.http_fetch.max_redirects: 11 is not within 0..=10",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
    let problems = parse(&format!("{AGENT_BASE}\n[tools.http_fetch]\n")).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("tools.http_fetch.allow_hosts: empty")),
        "{problems:#?}"
    );
}

const NIGHTLY_KEY: &str = r#"
    [[keys]]
    name = "nightly"
    key = "nightly-key-0123"
"#;

#[test]
fn schedules_take_five_fields_six_with_seconds_or_an_alias() {
    let cfg = parse(&format!(
        r#"{NIGHTLY_KEY}{AGENT_BASE}
        [agents.report]
        model = "fast"
        schedule = "0 9 * * 1-5"
        schedule_input = "Write the daily report"
        run_as = "nightly"
        [agents.ticker]
        model = "fast"
        schedule = "*/10 * * * * *"
        schedule_input = "tick"
        run_as = "nightly"
        [agents.daily]
        model = "fast"
        schedule = "@daily"
        schedule_input = "once a day"
        run_as = "nightly"
        [agents.plain]
        model = "fast"
        "#
    ))
    .unwrap();
    let s = cfg.agents["report"].schedule.as_ref().unwrap();
    assert_eq!(
        (s.text.as_str(), s.input.as_str(), s.run_as.as_str()),
        ("0 9 * * 1-5", "Write the daily report", "nightly")
    );
    assert_eq!(
        s.cron,
        crate::parse_cron("0 0 9 * * 1-5").unwrap(),
        "seconds are 0"
    );
    assert!(cfg.agents["ticker"].schedule.is_some());
    assert_eq!(
        cfg.agents["daily"].schedule.as_ref().unwrap().cron,
        crate::parse_cron("0 0 * * *").unwrap()
    );
    assert_eq!(cfg.agents["plain"].schedule, None);
}

#[test]
fn a_schedule_needs_a_pattern_an_input_and_a_key_and_each_problem_is_named() {
    let problems = parse(&format!(
        r#"{NIGHTLY_KEY}{AGENT_BASE}
        [agents.bad_cron]
        model = "fast"
        schedule = "0 9 * *"
        schedule_input = "x"
        run_as = "nightly"
        [agents.with_year]
        model = "fast"
        schedule = "0 0 9 * * * 2030"
        schedule_input = "x"
        run_as = "nightly"
        [agents.out_of_range]
        model = "fast"
        schedule = "0 25 * * *"
        schedule_input = "x"
        run_as = "nightly"
        [agents.alone]
        model = "fast"
        schedule = "@hourly"
        [agents.ghost_key]
        model = "fast"
        schedule = "@hourly"
        schedule_input = "  "
        run_as = "ghost"
        [agents.no_schedule]
        model = "fast"
        schedule_input = "x"
        run_as = "nightly"
        "#
    ))
    .unwrap_err();
    for expected in [
        "agents.bad_cron.schedule: `0 9 * *` is not a cron pattern",
        "agents.with_year.schedule: `0 0 9 * * * 2030` is not a cron pattern",
        "agents.out_of_range.schedule: `0 25 * * *` is not a cron pattern",
        "agents.alone.schedule_input: required with `schedule`",
        "agents.alone.run_as: required with `schedule`",
        "agents.ghost_key.schedule_input: required with `schedule`",
        "agents.ghost_key.run_as: `ghost` is not the name of a [[keys]] entry",
        "agents.no_schedule.schedule_input: only with `schedule`",
        "agents.no_schedule.run_as: only with `schedule`",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 9, "nothing else is reported: {problems:#?}");
}
