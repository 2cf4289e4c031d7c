//! The real `sluice` binary: `check-config`, `--help`, and `serve` with graceful shutdown.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, config_dir, run, serve, serve_config, sigterm, temp_db};
use futures_util::StreamExt;

#[test]
fn check_config_accepts_the_demo_and_summarises_it() {
    let demo = config_dir().join("demo.toml");
    let (code, out, _) = run(&["check-config", "--config", demo.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    assert!(out.contains("ok:") && out.contains("provider"), "{out}");
}

#[test]
fn check_config_accepts_the_reference_with_its_variables() {
    let reference = config_dir().join("sluice.toml");
    let vars = [
        "SLUICE_DEV_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GROQ_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
    ];
    let envs: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "test-value-123")).collect();
    let (code, out, err) = run(
        &["check-config", "--config", reference.to_str().unwrap()],
        &envs,
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_config_accepts_the_bench_configs() {
    for name in [
        "sluice.toml",
        "sluice-limits.toml",
        "sluice-group.toml",
        "sluice-cache.toml",
        "sluice-burst.toml",
    ] {
        let path = config_dir().join("../bench").join(name);
        let (code, out, err) = run(
            &["check-config", "--config", path.to_str().unwrap()],
            &[("MOCK_PORT", "18080")],
        );
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"here\"\n[providers.a]\nkind = \"openai\"\napi_keys = [\"${SLUICE_TEST_UNSET_VAR}\"]\n[providers.b]\nkind = \"azure\"\napi_keys = [\"k\"]\n[models.x]\nchain = [\"zzz:m\"]\n",
    )
    .unwrap();
    // The unset variable is reported first (interpolation happens before validation).
    let (code, _, err) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("providers.a.api_keys[0]") && err.contains("SLUICE_TEST_UNSET_VAR"),
        "{err}"
    );

    let (code, _, err) = run(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("SLUICE_TEST_UNSET_VAR", "sk-x")],
    );
    assert_eq!(code, 2);
    for needle in [
        "server.listen",
        "providers.b.base_url",
        "providers.b.api_version",
        "models.x.chain[0]",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }

    let (code, _, err) = run(
        &["check-config", "--config", "/nonexistent/sluice.toml"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn help_explains_each_command() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("serve") && out.contains("check-config"),
        "{out}"
    );
    assert!(
        out.contains("SIGTERM") && out.contains("exit 2"),
        "each command is explained: {out}"
    );
    let (code, out, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--config") && out.contains("config/sluice.toml"),
        "{out}"
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits() {
    let (mut child, addr) = serve(&[]);
    let client = reqwest::Client::new();
    // The demo's `mock` provider streams 16 words 30 ms apart: about half a second.
    let resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("sk-sluice-demo")
        .json(&serde_json::json!({"model": "demo", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    sigterm(&child);
    let mut rest = Vec::from(first.as_ref());
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("the stream is not cut by the shutdown"));
    }
    let text = String::from_utf8(rest).unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the in-flight stream finished: {text}"
    );

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit after the drain: {status:?}");
    let refused = client.get(format!("http://{addr}/healthz")).send().await;
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn grace_period_bounds_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 200\n[[keys]]\nname = \"t\"\nkey = \"sk-test-1234\"\n[providers.slow]\nkind = \"mock\"\nchunk_delay_ms = 1000\nwords = 60\n[models.slow]\nchain = [\"slow:s\"]\n[database]\nurl = \"sqlite://{}/s.db\"\n", dir.path().display()),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", path.to_str().unwrap()]);
    let (mut child, addr, _log) = common::serve_command(cmd);
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("sk-test-1234")
        .json(&serde_json::json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    sigterm(&child);
    // A 60-second stream cannot finish; the process must still exit after the grace period,
    // and the stream must end with an error event, not look finished.
    let mut rest = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        rest.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\"code\":\"shutting_down\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let (code, _, err) = run(&["serve", "--config", "/nonexistent.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}

fn demo() -> String {
    config_dir().join("demo.toml").to_str().unwrap().to_owned()
}

#[test]
fn migrate_then_keys_lifecycle_through_the_cli() {
    let db = temp_db();
    let env = [("SLUICE_DATABASE_URL", db.as_str())];
    let (code, out, err) = run(&["migrate", "--config", &demo()], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrations applied"), "{out}");

    let (code, out, err) = run(
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--user",
            "bob",
            "--models",
            "demo,fast",
            "--expires",
            "30d",
            "--config",
            &demo(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.split("store it now): ").nth(1))
        .expect("the secret is printed")
        .trim()
        .to_owned();
    assert!(secret.starts_with("sk-sluice-"), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    assert!(id.starts_with("key_"), "{out}");

    let (_, out, _) = run(&["keys", "list", "--config", &demo()], &env);
    assert!(
        out.contains(&id) && out.contains("active") && out.contains("bob"),
        "{out}"
    );
    assert!(!out.contains(&secret), "list never prints secrets");
    let (code, out, _) = run(&["keys", "show", &id, "--config", &demo()], &env);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["allowed_models"], serde_json::json!(["demo", "fast"]));
    assert!(
        shown.get("key_hash").is_none(),
        "the hash is not shown either"
    );

    let (code, out, _) = run(&["keys", "revoke", &id, "--config", &demo()], &env);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"), "{out}");
    let (_, out, _) = run(&["keys", "list", "--config", &demo()], &env);
    assert!(out.contains("revoked"), "{out}");
    let (code, _, err) = run(&["keys", "revoke", "key_nope", "--config", &demo()], &env);
    assert_eq!(code, 1, "{err}");

    let (code, _, err) = run(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--expires",
            "soon",
            "--config",
            &demo(),
        ],
        &env,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--expires"), "{err}");
    let (code, _, err) = run(
        &["keys", "create", "--name", " ", "--config", &demo()],
        &env,
    );
    assert_eq!(code, 2);
    assert!(err.contains("name"), "{err}");
    let (code, _, err) = run(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--rpm=-5",
            "--config",
            &demo(),
        ],
        &env,
    );
    assert_eq!(code, 2);
    assert!(err.contains("limits.rpm"), "{err}");
    let (code, out, _) = run(
        &[
            "keys",
            "create",
            "--name",
            "lim",
            "--rpm",
            "60",
            "--tpm",
            "90000",
            "--config",
            &demo(),
        ],
        &env,
    );
    assert_eq!(code, 0);
    let lim_id = out.split_whitespace().nth(2).unwrap().to_owned();
    let (_, out, _) = run(&["keys", "show", &lim_id, "--config", &demo()], &env);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            shown["limits"]["rpm"].as_i64(),
            shown["limits"]["tpm"].as_i64()
        ),
        (Some(60), Some(90000))
    );
    let (code, _, err) = run(&["spend", "--by", "colour", "--config", &demo()], &env);
    assert_eq!(code, 2);
    assert!(err.contains("--by"), "{err}");
}

#[tokio::test]
async fn stored_keys_work_and_a_revocation_reaches_a_running_gateway() {
    let db = temp_db();
    let env = [("SLUICE_DATABASE_URL", db.as_str())];
    let (_, out, err) = run(
        &["keys", "create", "--name", "live", "--config", &demo()],
        &env,
    );
    let secret = out
        .lines()
        .find_map(|l| l.split("store it now): ").nth(1))
        .unwrap_or_else(|| panic!("{err}"))
        .trim()
        .to_owned();
    let id = out.split_whitespace().nth(2).unwrap().to_owned();

    let (mut child, addr) = serve(&env);
    let client = reqwest::Client::new();
    let ask = || {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(
        ask().await.unwrap().status(),
        200,
        "a key made by the CLI works"
    );

    let (code, _, _) = run(&["keys", "revoke", &id, "--config", &demo()], &env);
    assert_eq!(code, 0);
    // The gateway reloads changed keys every second (key_refresh_ms); give it a few.
    let mut refused = None;
    let mut answered = 1;
    for _ in 0..50 {
        let resp = ask().await.unwrap();
        if resp.status() == 401 {
            refused = Some(resp.json::<serde_json::Value>().await.unwrap());
            break;
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = refused.expect("the revoked key is refused within the refresh interval");
    assert_eq!(body["error"]["code"], "key_revoked");
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    // The ledger was flushed on the clean stop: every answered call is in the report.
    let (code, out, err) = run(
        &["spend", "--by", "key", "--since", "1h", "--config", &demo()],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    let calls = answered.to_string();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(calls.as_str()),
        "{answered} calls: {line}"
    );
}

/// Two `sluice serve` processes on one PostgreSQL: 200 concurrent requests against a
/// budget of a few requests' worth, spread over both, spend no more than the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_processes_on_one_postgres_hold_one_budget() {
    let Some((db_url, name)) = common::postgres_database("sluice_cli").await else {
        return;
    };

    // Each call reserves 8 + 10 tokens ($0.018) and uses 1 + 10 ($0.011).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "${SLUICE_LISTEN}"
[[keys]]
name = "team"
key = "sk-two-processes"
limits = { budget_usd_total = 0.1 }
[providers.mock]
kind = "mock"
[models.m]
chain = ["mock:model-x"]
[prices.models.model-x]
input = 1000.0
output = 1000.0
[database]
url = "${SLUICE_DATABASE_URL}"
"#,
    )
    .unwrap();
    let env = [("SLUICE_DATABASE_URL", db_url.as_str())];
    let (one, addr_one) = serve_config(&config, &env);
    let (two, addr_two) = serve_config(&config, &env);
    let client = reqwest::Client::new();
    let calls = (0..200).map(|i| {
        let addr = if i % 2 == 0 { &addr_one } else { &addr_two };
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("sk-two-processes")
            .json(&serde_json::json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut ok = 0;
    for a in answers {
        let a = a.unwrap();
        match a.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: serde_json::Value = a.json().await.unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=9).contains(&ok), "{ok} answered");
    for child in [&one, &two] {
        sigterm(child);
    }
    for child in [one, two] {
        let status = tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.success());
    }
    let store = sluice_store::Store::open(&db_url).await.unwrap();
    let report = store
        .spend_report(sluice_store::spend::GroupBy::Key, 0, i64::MAX)
        .await
        .unwrap();
    let spent: i64 = report.iter().map(|l| l.cost_nanos).sum();
    assert_eq!(spent, ok * 11_000_000, "priced from the mock's usage");
    assert!(
        spent <= 100_000_000,
        "spent {spent} nano-dollars of a $0.10 budget"
    );
    store.close().await;
    common::postgres_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

#[test]
fn the_cli_lists_and_resets_spend_breakers() {
    let db = temp_db();
    let env = [("SLUICE_DATABASE_URL", db.as_str())];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = sluice_store::Store::open(&db).await.unwrap();
        store
            .trip_key(&sluice_store::breakers::Trip {
                key_id: "config:demo".into(),
                tripped_at_ms: 1,
                until_ms: None,
                reason: "spent $12.0000 in the last 60 s, over the ceiling of $10.0000".into(),
            })
            .await
            .unwrap();
        store.close().await;
    });
    let (code, out, err) = run(&["keys", "breakers", "--config", &demo()], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("config:demo") && out.contains("ceiling"),
        "{out}"
    );
    let (code, out, _) = run(
        &["keys", "reset-breaker", "config:demo", "--config", &demo()],
        &env,
    );
    assert_eq!(code, 0);
    assert!(out.contains("reset"), "{out}");
    let (code, _, err) = run(
        &["keys", "reset-breaker", "config:demo", "--config", &demo()],
        &env,
    );
    assert_eq!(code, 1, "nothing left to reset: {err}");
    let (_, out, _) = run(&["keys", "breakers", "--config", &demo()], &env);
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn the_cli_lists_schedules_and_resumes_a_paused_one() {
    let db = temp_db();
    let env = [("SLUICE_DATABASE_URL", db.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let text = std::fs::read_to_string(demo()).unwrap()
        + "\n[agents.nightly]\nmodel = \"fast\"\nschedule = \"0 6 * * 1-5\"\n\
           schedule_input = \"Write the report\"\nrun_as = \"demo\"\n";
    std::fs::write(&path, text).unwrap();
    let cfg = path.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = sluice_store::Store::open(&db).await.unwrap();
        store
            .pause_schedule(
                "nightly",
                "budget_exceeded: key `config:demo` reached its budget (run r1)",
                None,
                1,
            )
            .await
            .unwrap();
        store.close().await;
    });
    let (code, out, err) = run(&["schedules", "list", "--config", cfg], &env);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("nightly"))
        .unwrap_or_else(|| panic!("{out}"));
    for part in ["0 6 * * 1-5", "demo", "paused", "budget_exceeded"] {
        assert!(line.contains(part), "`{part}` in {line}");
    }
    let (code, out, _) = run(&["schedules", "resume", "nightly", "--config", cfg], &env);
    assert_eq!(code, 0);
    assert!(out.contains("resumed"), "{out}");
    let (_, out, _) = run(&["schedules", "list", "--config", cfg], &env);
    let line = out.lines().find(|l| l.starts_with("nightly")).unwrap();
    assert!(
        line.contains("active") && line.contains("T06:00:00Z"),
        "{line}"
    );
    let (code, out, _) = run(&["schedules", "resume", "nightly", "--config", cfg], &env);
    assert_eq!(code, 0, "resuming twice is no error");
    assert!(out.contains("was not paused"), "{out}");
    let (code, _, err) = run(&["schedules", "resume", "ghost", "--config", cfg], &env);
    assert_eq!(code, 1);
    assert!(err.contains("no schedule"), "{err}");
}

#[tokio::test]
async fn serve_runs_on_a_single_threaded_runtime_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("one.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"${SLUICE_LISTEN}\"\nworker_threads = 1\n[[keys]]\nname = \"k\"\nkey = \"sk-one-thread\"\n[providers.mock]\nkind = \"mock\"\n[models.m]\nchain = [\"mock:x\"]\n[database]\nurl = \"${SLUICE_DATABASE_URL}\"\n",
    )
    .unwrap();
    let (child, addr) = serve_config(&config, &[]);
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("sk-one-thread")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success());
}

/// Every client and upstream connection needs a descriptor: `serve` raises its soft
/// open-file limit to the hard limit at start (the usual soft default, 1024, would refuse
/// connections long before `server.max_connections`).
#[tokio::test]
async fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=256:8192", BIN, "serve", "--config"])
        .arg(config_dir().join("demo.toml"))
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATABASE_URL", temp_db());
    let (child, addr, _log) = common::serve_command(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(
        open_files,
        ["8192", "8192"],
        "soft raised to hard: {limits}"
    );
    let ok = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    sigterm(&child);
    assert!(
        common::wait_exit(child, Duration::from_secs(60))
            .await
            .success()
    );
}

#[test]
fn check_config_names_every_unset_variable_with_every_other_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unset.toml");
    std::fs::write(
        &path,
        r#"[server]
listen = "here"

[[keys]]
name = "dev"
key = "${SLUICE_TEST_UNSET_KEY}"

[providers.a]
kind = "openai"
api_keys = ["${SLUICE_TEST_UNSET_OPENAI}"]

[providers.b]
kind = "azure"
base_url = "https://${SLUICE_TEST_UNSET_HOST}.openai.azure.com:${SLUICE_TEST_UNSET_PORT}"
api_keys = ["k"]

[models.x]
chain = ["a:gpt-4o", "zzz:m"]
"#,
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    for (field, problem) in [
        ("keys[0].key", "SLUICE_TEST_UNSET_KEY"),
        ("providers.a.api_keys[0]", "SLUICE_TEST_UNSET_OPENAI"),
        ("providers.b.base_url", "SLUICE_TEST_UNSET_HOST"),
        ("providers.b.base_url", "SLUICE_TEST_UNSET_PORT"),
        // The rest of the file is checked in the same run.
        ("server.listen", "is not an address"),
        ("providers.b.api_version", "required"),
        ("models.x.chain[1]", "`zzz` is not defined"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with(&format!("{field}: ")) && l.contains(problem)),
            "`{field}: …{problem}…` missing in:\n{err}"
        );
    }
    // What only follows from an unset variable is not reported a second time.
    assert!(
        !err.contains("at least 8 characters") && !err.contains("needs at least one"),
        "{err}"
    );
    assert!(
        !err.contains("models.x.chain[0]"),
        "provider `a` exists, whatever its own problems:\n{err}"
    );
}

#[tokio::test]
async fn a_demo_request_is_priced_in_the_ledger() {
    let db = temp_db();
    let env = [("SLUICE_DATABASE_URL", db.as_str())];
    let (mut child, addr) = serve(&env);
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("sk-sluice-demo")
        .json(
            &serde_json::json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let (code, out, err) = run(
        &[
            "spend",
            "--by",
            "model",
            "--since",
            "1h",
            "--config",
            &demo(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("demo-1"))
        .unwrap_or_else(|| panic!("no row for the demo model:\n{out}"));
    let cost = line.split_whitespace().last().unwrap();
    let usd: f64 = cost.trim_start_matches('$').parse().unwrap();
    assert!(
        usd > 0.0,
        "the demo's mock models have a price, so a request costs something: {line}"
    );
}
