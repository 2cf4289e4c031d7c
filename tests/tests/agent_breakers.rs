//! What stops a runaway agent, end to end: every run bound and breaker ends the run with
//! `breaker_tripped` naming it; the agent's own breaker refuses new runs after failures
//! and is shown and reset by the admin API; runs in flight at a stop or a crash end as
//! `interrupted` with what the ledger says they spent; and the weekend: a client
//! resubmitting a failing task a thousand times against a small budget.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_client::{Client, ClientConfig, Events, SessionEvent};
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, provider};
use sluice_store::ledger::SpendRow;
use sluice_store::runs::{RunCounters, RunEventRow, RunRow, status};

const ADMIN: &str = "admin-token-for-tests";

/// A gateway with the mock behind model `m` (priced), the agents given, and `extra`
/// config (a `[server]` table is added with a short grace and the admin token).
fn config(mock: &MockProvider, agents: &str, extra: &str) -> String {
    // Fast backoffs, in the `[routing]` table `extra` may have too.
    let (routing, extra) = match extra.split_once("[routing]\n") {
        Some((before, after)) => (
            format!("{}{after}", sluice_e2e::FAST_ROUTING),
            before.to_owned(),
        ),
        None => (sluice_e2e::FAST_ROUTING.to_owned(), extra.to_owned()),
    };
    format!(
        "[server]\nshutdown_grace_ms = 300\nadmin_token = \"{ADMIN}\"\n{}\n[models.m]\nchain = [\"a:m-main\"]\n\
         [prices.models.\"m-main\"]\ninput = 1.0\noutput = 2.0\n{agents}\n{extra}\n{routing}",
        provider("a", mock, &["sk-a"], ""),
    )
}

async fn client(gw: &Gateway) -> Client {
    let mut c = ClientConfig::new(format!("ws://{}/ws", gw.addr), KEY);
    c.call_timeout = Duration::from_secs(10);
    Client::connect(c).await.unwrap()
}

/// Runs `agent` to its end; its last event's data.
async fn run(c: &Client, events: &mut Events, agent: &str) -> Value {
    let res = c
        .call("agent.run", json!({"agent": agent, "input": "go"}))
        .await
        .unwrap();
    let id = res["run_id"].as_str().unwrap().to_owned();
    until_end(events, &id).await
}

async fn until_end(events: &mut Events, id: &str) -> Value {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("the run ends in time")
            .unwrap();
        let SessionEvent::Event(e) = item else {
            continue;
        };
        if (e.event == "run.completed" || e.event == "run.failed") && e.data["run_id"] == id {
            return e.data;
        }
    }
}

fn tool_call(args: Value) -> Step {
    Step::ToolCall {
        name: "time_now".into(),
        arguments: args,
    }
}

/// One agent `a` with these settings, and the breaker that ended its run.
async fn tripped(script: Vec<Step>, settings: &str, extra: &str) -> (Value, MockProvider) {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", script);
    let agents = format!("[agents.a]\nmodel = \"m\"\ntools = [\"time_now\"]\n{settings}\n");
    let gw = Gateway::start(&config(&mock, &agents, extra)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let end = run(&c, &mut events, "a").await;
    gw.stop().await;
    (end, mock)
}

fn assert_breaker(end: &Value, name: &str) {
    assert_eq!(end["error"]["code"], "breaker_tripped", "{end}");
    assert_eq!(end["breaker"]["name"], name, "{end}");
    assert!(!end["breaker"]["reason"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn max_steps_trips() {
    let script = vec![tool_call(json!({}))];
    let (end, mock) = tripped(script, "max_steps = 2", "").await;
    assert_breaker(&end, "max_steps");
    assert_eq!(mock.calls_for("m-main"), 2);
    assert_eq!(end["usage"]["steps"], 3, "the third turn was refused");
}

#[tokio::test]
async fn max_llm_calls_trips_counting_retries() {
    let script = vec![Step::ServerError(500), Step::Text("late".into())];
    let (end, _) = tripped(
        script,
        "max_llm_calls = 1\nmax_retries = 3",
        "[routing]\nmax_retries = 0",
    )
    .await;
    assert_breaker(&end, "max_llm_calls");
}

#[tokio::test]
async fn max_retries_trips_on_a_model_that_keeps_failing() {
    let script = vec![Step::ServerError(500)];
    let (end, mock) = tripped(
        script,
        "max_retries = 1\nloop_failing_requests = 10",
        "[routing]\nmax_retries = 0\n[routing.breaker]\nfailure_threshold = 100",
    )
    .await;
    assert_breaker(&end, "max_retries");
    assert_eq!(mock.calls_for("m-main"), 2, "one call and one retry");
}

#[tokio::test]
async fn the_same_failing_request_trips_loop_detection() {
    let script = vec![Step::ServerError(500)];
    let (end, mock) = tripped(
        script,
        "max_retries = 5\nloop_failing_requests = 2",
        "[routing]\nmax_retries = 0\n[routing.breaker]\nfailure_threshold = 100",
    )
    .await;
    assert_breaker(&end, "loop_failing_request");
    assert_eq!(mock.calls_for("m-main"), 2);
}

#[tokio::test]
async fn an_open_provider_breaker_ends_the_run() {
    let script = vec![Step::ServerError(500)];
    let (end, mock) = tripped(
        script,
        "max_retries = 2\nloop_failing_requests = 10",
        "[routing]\nmax_retries = 0\n[routing.breaker]\nfailure_threshold = 2\nopen_ms = 60000",
    )
    .await;
    assert_breaker(&end, "provider");
    assert_eq!(
        mock.calls_for("m-main"),
        2,
        "the open breaker sent nothing more"
    );
}

#[tokio::test]
async fn an_open_provider_breaker_is_shown_and_reset_by_an_operator() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::ServerError(500)]);
    let agents = "[agents.a]\nmodel = \"m\"\nmax_retries = 2\nloop_failing_requests = 10\n";
    let extra =
        "[routing]\nmax_retries = 0\n[routing.breaker]\nfailure_threshold = 2\nopen_ms = 600000";
    let gw = Gateway::start(&config(&mock, agents, extra)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    assert_breaker(&run(&c, &mut events, "a").await, "provider");
    let admin = |method: reqwest::Method, path: &str| {
        gw.client
            .request(method, gw.url(path))
            .bearer_auth(ADMIN)
            .send()
    };
    let shown: Value = admin(reqwest::Method::GET, "/admin/breakers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["providers"],
        json!([{"target": "a:m-main", "state": "open"}]),
        "{shown}"
    );
    let reset = admin(
        reqwest::Method::POST,
        "/admin/providers/a:m-main/breaker/reset",
    )
    .await
    .unwrap();
    assert_eq!(reset.status(), 200);
    let again = admin(
        reqwest::Method::POST,
        "/admin/providers/a:m-main/breaker/reset",
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 404, "closed now");
    // Traffic flows again: the model is asked (and fails) once more.
    mock.script("m-main", vec![Step::Text("back".into())]);
    assert_eq!(run(&c, &mut events, "a").await["output"], "back");
    gw.stop().await;
}

#[tokio::test]
async fn max_tokens_trips() {
    let script = vec![
        tool_call(json!({})),
        tool_call(json!({"x": 1})),
        Step::Text("done".into()),
    ];
    let (end, mock) = tripped(
        script,
        "max_tokens = 150\nmax_output_tokens = 40\ncontext_tokens = 1000",
        "",
    )
    .await;
    assert_breaker(&end, "max_tokens");
    assert!(mock.calls_for("m-main") < 3);
    let used = end["usage"]["prompt_tokens"].as_u64().unwrap()
        + end["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used <= 150, "the run used {used} of its 150 tokens");
}

#[tokio::test]
async fn max_cost_trips_before_the_provider_is_asked() {
    // One call may cost up to 4096 output tokens at $2/M: more than the run's $0.001.
    let (end, mock) = tripped(vec![Step::Text("x".into())], "max_cost_usd = 0.001", "").await;
    assert_breaker(&end, "max_cost_usd");
    assert_eq!(mock.calls_for("m-main"), 0);
    assert_eq!(end["usage"]["cost_usd"], "0.000000000");
}

#[tokio::test]
async fn the_deadline_trips_a_hanging_model_call() {
    let (end, _) = tripped(vec![Step::Hang], "deadline_s = 1\ntool_timeout_s = 1", "").await;
    assert_breaker(&end, "deadline");
}

#[tokio::test]
async fn the_same_tool_call_over_and_over_trips_loop_detection() {
    let script = vec![tool_call(json!({}))];
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", script);
    let agents = "[agents.a]\nmodel = \"m\"\ntools = [\"time_now\"]\nmax_steps = 20\n";
    let gw = Gateway::start(&config(&mock, agents, "")).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let res = c
        .call("agent.run", json!({"agent": "a", "input": "go"}))
        .await
        .unwrap();
    let id = res["run_id"].as_str().unwrap().to_owned();
    let mut results = Vec::new();
    let end = loop {
        let SessionEvent::Event(e) = events.recv().await.unwrap() else {
            continue;
        };
        if e.event == "run.tool_result" {
            results.push(e.data.clone());
        }
        if e.event == "run.failed" && e.data["run_id"] == id.as_str() {
            break e.data;
        }
    };
    assert_breaker(&end, "loop_tool_call");
    // Run twice, then the model is told it repeats itself (with the earlier result), then
    // the run stops: five calls, two of them run.
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[0]["error"].is_null() && results[1]["error"].is_null());
    assert_eq!(results[2]["error"]["code"], "repeated_call");
    assert!(results[2]["output"]["error"]["earlier_result"].is_string());
    assert_eq!(mock.calls_for("m-main"), 5);
    gw.stop().await;
}

#[tokio::test]
async fn the_keys_spend_velocity_breaker_ends_the_run() {
    let script = vec![tool_call(json!({})), Step::Text("done".into())];
    let (end, mock) = tripped(
        script,
        "",
        "[limits.spend_breaker]\nwindow_ms = 60000\nmax_usd = 0.00000001\n",
    )
    .await;
    assert_breaker(&end, "spend_velocity");
    assert_eq!(mock.calls_for("m-main"), 1);
}

#[tokio::test]
async fn an_agent_whose_runs_keep_failing_is_refused_until_reset() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![tool_call(json!({}))]);
    let agents = "[agents.a]\nmodel = \"m\"\ntools = [\"time_now\"]\nmax_steps = 1\nbreaker_failures = 2\nbreaker_open_s = 3600\n";
    let gw = Gateway::start(&config(&mock, agents, "")).await;
    let c = client(&gw).await;
    let mut events = c.events();
    for _ in 0..2 {
        assert_breaker(&run(&c, &mut events, "a").await, "max_steps");
    }
    let refused = c
        .call("agent.run", json!({"agent": "a", "input": "go"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("agent_breaker_open"));
    assert!(refused.retry_after().unwrap() > Duration::from_secs(3000));
    let calls = mock.calls_for("m-main");
    let admin = |method: reqwest::Method, path: &str| {
        gw.client
            .request(method, gw.url(path))
            .bearer_auth(ADMIN)
            .send()
    };
    let shown: Value = admin(reqwest::Method::GET, "/admin/breakers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agents = shown["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{shown}");
    assert_eq!(agents[0]["agent"], "a");
    assert_eq!(agents[0]["state"], "open");
    assert!(agents[0]["reason"].as_str().unwrap().contains("max_steps"));
    let reset = admin(reqwest::Method::POST, "/admin/agents/a/breaker/reset")
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let again = admin(reqwest::Method::POST, "/admin/agents/a/breaker/reset")
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "not open any more");
    assert_eq!(
        mock.calls_for("m-main"),
        calls,
        "nothing ran while it was open"
    );
    assert_breaker(&run(&c, &mut events, "a").await, "max_steps");
    gw.stop().await;
}

#[tokio::test]
async fn a_run_in_flight_at_a_stop_is_interrupted_and_replayable_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "[database]\nurl = \"sqlite://{}/s.db\"\n",
        dir.path().display()
    );
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Hang]);
    let agents = "[agents.a]\nmodel = \"m\"\n";
    let gw = Gateway::start(&config(&mock, agents, &db)).await;
    let c = client(&gw).await;
    let res = c
        .call("agent.run", json!({"agent": "a", "input": "go"}))
        .await
        .unwrap();
    let id = res["run_id"].as_str().unwrap().to_owned();
    assert!(sluice_e2e::eventually(5, async || mock.calls_for("m-main") == 1).await);
    gw.stop().await;

    // A run the store says is running, of a process that died (not stopped): its
    // ledger rows were written, its end was not.
    let store = sluice_store::Store::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let crashed = RunRow {
        id: "crashed-run".into(),
        key_id: "config:test".into(),
        user_id: None,
        agent: "a".into(),
        parent_run_id: None,
        root_run_id: "crashed-run".into(),
        depth: 0,
        session_id: None,
        origin: "ws".into(),
        idempotency_key: None,
        request_hash: None,
        status: status::QUEUED.into(),
        input: json!("go"),
        output: None,
        error_code: None,
        error_message: None,
        breaker: None,
        counters: RunCounters::default(),
        last_seq: 0,
        created_at_ms: 1,
        finished_at_ms: None,
        updated_at_ms: 1,
    };
    store.insert_run(&crashed).await.unwrap();
    store.start_run("crashed-run", 2).await.unwrap();
    store
        .append_run_events(&[RunEventRow {
            run_id: "crashed-run".into(),
            seq: 1,
            event: "run.started".into(),
            data: json!({"run_id": "crashed-run", "seq": 1}),
            created_at_ms: 2,
        }])
        .await
        .unwrap();
    store
        .insert_spend(&[SpendRow {
            request_id: "req-crashed".into(),
            call_seq: 0,
            key_id: Some("config:test".into()),
            user_id: None,
            agent_id: Some("a".into()),
            run_id: Some("crashed-run".into()),
            provider: "a".into(),
            model: "m-main".into(),
            prompt_tokens: 100,
            completion_tokens: 50,
            cached_tokens: 0,
            cost_nanos: 12_345,
            saved_nanos: 0,
            estimated: false,
            status: "ok".into(),
            latency_ms: 5,
            channel: None,
            channel_user: None,
            session_id: None,
            created_at_ms: 3,
        }])
        .await
        .unwrap();
    store.close().await;

    let gw = Gateway::start(&config(&mock, agents, &db)).await;
    let stopped = gw.service.store().run(&id).await.unwrap().unwrap();
    assert_eq!(stopped.status, "interrupted", "{stopped:?}");
    let crashed = gw
        .service
        .store()
        .run("crashed-run")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(crashed.status, "interrupted");
    assert_eq!(
        crashed.counters.cost_nanos, 12_345,
        "what the ledger says it spent"
    );
    assert_eq!(crashed.counters.prompt_tokens, 100);
    let c = client(&gw).await;
    for (run, cost) in [(id.as_str(), None), ("crashed-run", Some("0.000012345"))] {
        let mut events = c.events();
        c.call("run.subscribe", json!({"run_id": run}))
            .await
            .unwrap();
        let end = until_end(&mut events, run).await;
        assert_eq!(end["error"]["code"], "interrupted", "{end}");
        if let Some(cost) = cost {
            assert_eq!(end["usage"]["cost_usd"], cost);
        }
    }
    gw.stop().await;
}

/// The weekend: a task fails (the model keeps asking for a tool and gets nowhere, and
/// its provider fails now and then); a client resubmits it in a loop, a thousand times,
/// each with a new idempotency key, against a key with a small budget.
#[tokio::test]
async fn the_weekend_a_thousand_resubmissions_of_a_failing_task_stay_under_budget() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m-main",
        vec![Step::ServerError(503), tool_call(json!({"document": 17}))],
    );
    let budget_nanos: i64 = 50_000_000; // $0.05
    let keys = format!(
        "[[keys]]\nname = \"test\"\nkey = \"{KEY}\"\nlimits = {{ budget_usd_total = 0.05 }}\n"
    );
    let agents = "[agents.a]\nmodel = \"m\"\ntools = [\"time_now\"]\nmax_retries = 2\n";
    let gw = Gateway::start(&format!(
        "{keys}{}",
        config(&mock, agents, "[routing]\nmax_retries = 0")
    ))
    .await;
    let c = client(&gw).await;
    let mut events = c.events();
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut first_breaker_refusal = None;
    for attempt in 0..1000 {
        let res = c
            .call(
                "agent.run",
                json!({"agent": "a", "input": "process document 17", "idempotency_key": format!("try-{attempt}")}),
            )
            .await;
        let outcome = match res {
            Ok(r) => {
                let end = until_end(&mut events, r["run_id"].as_str().unwrap()).await;
                match end["breaker"]["name"].as_str() {
                    Some(b) => format!("ran: {b}"),
                    None => format!("ran: {}", end["error"]["code"]),
                }
            }
            Err(e) => {
                let code = e.code().unwrap_or("?").to_owned();
                if code == "agent_breaker_open" && first_breaker_refusal.is_none() {
                    first_breaker_refusal = Some(attempt);
                }
                format!("refused: {code}")
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    gw.service.ledger().flush().await.unwrap();
    let spent: i64 = gw
        .service
        .store()
        .recent_spend(100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.cost_nanos)
        .sum();
    let provider_calls = mock.calls_for("m-main");
    println!(
        "weekend: {provider_calls} provider calls, ${} spent of $0.05, agent breaker open from submission {first_breaker_refusal:?}; outcomes {outcomes:?}",
        spent as f64 / 1e9
    );
    assert!(spent <= budget_nanos, "spent {spent} of {budget_nanos}");
    let opened = first_breaker_refusal.expect("the agent's breaker opened");
    assert!(opened < 10, "it opened at submission {opened}");
    assert!(
        provider_calls < 40,
        "{provider_calls} provider calls for 1000 submissions"
    );
    assert!(outcomes["refused: agent_breaker_open"] > 990);
    gw.stop().await;
}
