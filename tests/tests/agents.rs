//! Agent runs end to end: a WebSocket client asks for a run (`agent.run`), the scheduler
//! calls the mock provider (scripted to ask for tools) through the completion service,
//! runs the tools (built-in, a node's over its own WebSocket, another agent), and the
//! client follows the run's events. Then: the ledger and the run agree to the
//! nano-dollar, replay from the store, cancel, idempotency, restart, and every breaker.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_client::{Client, ClientConfig, Events, NodeConfig, SessionEvent, ToolCall, ToolError};
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, provider};
use sluice_protocol::ToolSpec;
use sluice_store::runs::RunRow;

/// A gateway with the mock behind `m-*` models (priced), and the agents given.
fn config(mock: &MockProvider, agents: &str) -> String {
    format!(
        "{}{}\n[models.m]\nchain = [\"a:m-main\"]\n[models.helper]\nchain = [\"a:m-helper\"]\n\
         [prices.models.\"m-main\"]\ninput = 1.0\noutput = 2.0\n\
         [prices.models.\"m-helper\"]\ninput = 3.0\noutput = 4.0\n{agents}",
        sluice_e2e::FAST_ROUTING,
        provider("a", mock, &["sk-a"], ""),
    )
}

/// The model asks for one tool.
fn tool_call(name: &str, arguments: Value) -> Step {
    Step::ToolCall {
        name: name.into(),
        arguments,
    }
}

/// A mock provider whose model `m-main` answers with `steps` (the last one repeats).
async fn scripted(wire: Wire, steps: Vec<Step>) -> MockProvider {
    let mock = MockProvider::start(wire).await;
    mock.script("m-main", steps);
    mock
}

fn client_config(gw: &Gateway) -> ClientConfig {
    let mut c = ClientConfig::new(format!("ws://{}/ws", gw.addr), KEY);
    c.call_timeout = Duration::from_secs(10);
    c
}

async fn client(gw: &Gateway) -> Client {
    Client::connect(client_config(gw)).await.unwrap()
}

/// How many `slow` calls a node runs at once, and the most it ran at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// A node `n1` serving `lookup` (answers `{"found": q}`; `q` must be a string) and `slow`
/// (sleeps `ms`).
async fn node(gw: &Gateway) -> (Client, Arc<Load>) {
    let load = Arc::new(Load::default());
    let seen = load.clone();
    let tools = vec![
        ToolSpec {
            name: "lookup".into(),
            description: "Look something up".into(),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
        },
        ToolSpec {
            name: "slow".into(),
            description: "Takes its time".into(),
            parameters: json!({"type": "object", "properties": {"ms": {"type": "integer"}}}),
        },
    ];
    let mut c = client_config(gw);
    c.node = Some(NodeConfig::new("n1", tools, move |call: ToolCall| {
        let load = seen.clone();
        async move {
            match call.tool.as_str() {
                "lookup" => Ok(json!({"found": call.arguments["q"]})),
                "slow" => {
                    let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
                    load.peak.fetch_max(now, Ordering::SeqCst);
                    let ms = call.arguments["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    load.now.fetch_sub(1, Ordering::SeqCst);
                    Ok(json!("done"))
                }
                other => Err(ToolError::failed(format!("no tool {other}"))),
            }
        }
    }));
    let node = Client::connect(c).await.unwrap();
    let listed = sluice_e2e::eventually(5, async || {
        !gw.state.hub.nodes.list("config:test").is_empty()
    })
    .await;
    assert!(listed, "the node is registered");
    (node, load)
}

/// Starts a run; its id.
async fn start(c: &Client, agent: &str, input: &str) -> String {
    let res = c
        .call("agent.run", json!({"agent": agent, "input": input}))
        .await
        .unwrap();
    res["run_id"].as_str().unwrap().to_owned()
}

/// The events of run `id` (and its nested children) until its own end: (event, data).
async fn events_of(events: &mut Events, id: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .unwrap_or_else(|_| panic!("the run did not end in time; saw {out:?}"))
            .unwrap();
        let SessionEvent::Event(e) = item else {
            continue;
        };
        if !e.event.starts_with("run.") {
            continue;
        }
        let done =
            (e.event == "run.completed" || e.event == "run.failed") && e.data["run_id"] == id;
        out.push((e.event.clone(), e.data.clone()));
        if done {
            return out;
        }
    }
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn last(events: &[(String, Value)]) -> &Value {
    &events.last().unwrap().1
}

async fn run_row(gw: &Gateway, id: &str) -> RunRow {
    gw.service.store().run(id).await.unwrap().unwrap()
}

/// The ledger's rows of a run: (calls, cost nanos).
async fn ledger_of(gw: &Gateway, run: &str) -> (usize, i64) {
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(10_000).await.unwrap();
    let mine: Vec<_> = rows
        .iter()
        .filter(|r| r.run_id.as_deref() == Some(run))
        .collect();
    (mine.len(), mine.iter().map(|r| r.cost_nanos).sum())
}

fn nanos(usd: &Value) -> i64 {
    let s = usd.as_str().unwrap();
    let (whole, frac) = s.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 1_000_000_000 + frac.parse::<i64>().unwrap()
}

const RESEARCHER: &str = r#"
[agents.researcher]
model = "m"
system = "You research."
tools = ["time_now", "node:*/lookup", "node:n1/slow"]
tool_timeout_s = 1
"#;

#[tokio::test]
async fn a_run_uses_a_node_tool_and_its_cost_is_its_ledger_rows() {
    let mock = scripted(
        Wire::OpenAi,
        vec![
            tool_call("lookup", json!({"q": "the answer"})),
            Step::Text("The answer is forty two".into()),
        ],
    )
    .await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let _node = node(&gw).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "researcher", "What is the answer?").await;
    let seen = events_of(&mut events, &id).await;
    let kinds = names(&seen);
    assert_eq!(kinds.first(), Some(&"run.started"), "{kinds:?}");
    assert_eq!(
        seen[0].1["tools"],
        json!(["time_now", "lookup", "n1__slow"])
    );
    let call = seen.iter().find(|(n, _)| n == "run.tool_call").unwrap();
    assert_eq!(call.1["tool"], "node:*/lookup");
    assert_eq!(call.1["arguments"], json!({"q": "the answer"}));
    let result = seen.iter().find(|(n, _)| n == "run.tool_result").unwrap();
    assert_eq!(result.1["output"], json!({"found": "the answer"}));
    let text: String = seen
        .iter()
        .filter(|(n, _)| n == "run.delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The answer is forty two");
    let done = last(&seen);
    assert_eq!(kinds.last(), Some(&"run.completed"));
    assert_eq!(done["output"], "The answer is forty two");
    assert_eq!(done["usage"]["steps"], 2);
    assert_eq!(done["usage"]["llm_calls"], 2);
    assert_eq!(done["usage"]["tool_calls"], 1);
    let seqs: Vec<u64> = seen
        .iter()
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "1, 2, 3…"
    );

    // The model got the tool's result in the second call.
    let second = &mock.requests()[1].body;
    let tool_msg = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert_eq!(tool_msg["content"], r#"{"found":"the answer"}"#);
    assert_eq!(second["messages"][0]["role"], "system");

    // The run's cost is what its ledger rows add up to, and so is the agent's spend.
    let (calls, cost) = ledger_of(&gw, &id).await;
    assert_eq!(calls, 2);
    assert!(cost > 0);
    assert_eq!(nanos(&done["usage"]["cost_usd"]), cost);
    let by_agent = gw
        .service
        .store()
        .spend_report(sluice_store::spend::GroupBy::Agent, 0, i64::MAX)
        .await
        .unwrap();
    let researcher = by_agent.iter().find(|l| l.group == "researcher").unwrap();
    assert_eq!(researcher.cost_nanos, cost, "spend --by agent agrees");
    let row = run_row(&gw, &id).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.counters.cost_nanos, cost);
    assert_eq!(row.output, Some(json!("The answer is forty two")));

    // A second connection replays it from the store: all of it, then from a seq.
    let other = client(&gw).await;
    let mut replay = other.events();
    let res = other
        .call("run.subscribe", json!({"run_id": id}))
        .await
        .unwrap();
    assert_eq!(res["status"], "completed");
    let again = events_of(&mut replay, &id).await;
    assert_eq!(again, seen, "the replay is what the live follower saw");
    other
        .call("run.subscribe", json!({"run_id": id, "after_seq": 3}))
        .await
        .unwrap();
    let tail = events_of(&mut replay, &id).await;
    assert_eq!(tail, seen[3..].to_vec());
    gw.stop().await;
}

#[tokio::test]
async fn parallel_tool_calls_run_at_once_and_bad_arguments_go_back_to_the_model() {
    let mock = scripted(
        Wire::Anthropic,
        vec![
            Step::ToolCalls(vec![
                ("n1__slow".into(), json!({"ms": 300})),
                ("time_now".into(), json!({})),
                ("lookup".into(), json!({"q": 5})),
                ("n1__slow".into(), json!({"ms": 301})),
                ("nope".into(), json!({})),
            ]),
            Step::Text("Done".into()),
        ],
    )
    .await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let (_node, load) = node(&gw).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "researcher", "go").await;
    let seen = events_of(&mut events, &id).await;
    let results: Vec<&Value> = seen
        .iter()
        .filter(|(n, _)| n == "run.tool_result")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(results.len(), 5, "{seen:?}");
    assert_eq!(results[0]["output"], "done");
    assert!(results[1]["output"]["utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(results[2]["error"]["code"], "invalid_arguments");
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/q"),
        "{}",
        results[2]
    );
    assert_eq!(results[4]["error"]["code"], "unknown_tool");
    assert_eq!(
        load.peak.load(Ordering::SeqCst),
        2,
        "the two slow calls ran at once"
    );
    assert_eq!(last(&seen)["output"], "Done");
    // The model got every result in its order, each after its call.
    let second = &mock.requests()[1].body;
    let blocks: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(blocks.len(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn a_tool_that_times_out_and_a_node_that_leaves_mid_call_are_told_to_the_model() {
    let mock = scripted(
        Wire::OpenAi,
        vec![
            tool_call("n1__slow", json!({"ms": 5000})),
            tool_call("n1__slow", json!({"ms": 5001})),
            Step::Text("I could not".into()),
        ],
    )
    .await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let (node, _) = node(&gw).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "researcher", "try").await;
    // The first call times out (tool_timeout_s = 1); the second loses its node.
    let mut seen = Vec::new();
    loop {
        let SessionEvent::Event(e) = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap()
        else {
            continue;
        };
        seen.push((e.event.clone(), e.data.clone()));
        if e.event == "run.tool_call" && e.data["arguments"]["ms"] == 5001 {
            node.close().await;
        }
        if e.event == "run.completed" || e.event == "run.failed" {
            break;
        }
    }
    let results: Vec<&Value> = seen
        .iter()
        .filter(|(n, _)| n == "run.tool_result")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(results[0]["error"]["code"], "tool_timeout", "{seen:?}");
    assert_eq!(results[1]["error"]["code"], "node_unavailable", "{seen:?}");
    assert_eq!(last(&seen)["output"], "I could not");
    assert_eq!(run_row(&gw, &id).await.status, "completed");
    gw.stop().await;
}

const DELEGATING: &str = r#"
[agents.boss]
model = "m"
tools = ["agent:helper_agent"]
max_cost_usd = 0.5
[agents.helper_agent]
model = "helper"
system = "You help."
max_cost_usd = 5.0
"#;

#[tokio::test]
async fn an_agent_delegates_within_its_own_budget_and_the_childs_events_are_nested() {
    let mock = scripted(
        Wire::OpenAi,
        vec![
            tool_call("agent__helper_agent", json!({"input": "sum it up"})),
            Step::Text("Boss is done".into()),
        ],
    )
    .await;
    mock.script("m-helper", vec![Step::Text("helper says hi".into())]);
    let gw = Gateway::start(&config(&mock, DELEGATING)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "boss", "delegate this").await;
    let seen = events_of(&mut events, &id).await;
    let child_started = seen
        .iter()
        .find(|(n, d)| n == "run.started" && d["run_id"] != id)
        .unwrap();
    let child = child_started.1["run_id"].as_str().unwrap().to_owned();
    assert_eq!(child_started.1["parent_run_id"], id);
    assert_eq!(child_started.1["agent"], "helper_agent");
    let child_cap = nanos(&child_started.1["bounds"]["max_cost_usd"]);
    assert!(
        child_cap <= 500_000_000,
        "the child's cost bound ({child_cap}) is capped by what its parent has left, not its own $5"
    );
    assert!(
        seen.iter()
            .any(|(n, d)| n == "run.completed" && d["run_id"] == child.as_str()),
        "the child's end is nested in the parent's stream"
    );
    let result = seen
        .iter()
        .find(|(n, d)| n == "run.tool_result" && d["run_id"] == id.as_str())
        .unwrap();
    assert_eq!(result.1["output"], "helper says hi");
    let done = last(&seen);
    assert_eq!(done["output"], "Boss is done");
    let (_, own) = ledger_of(&gw, &id).await;
    let (child_calls, child_cost) = ledger_of(&gw, &child).await;
    assert_eq!(child_calls, 1);
    assert_eq!(nanos(&done["usage"]["cost_usd"]), own);
    assert_eq!(
        nanos(&done["usage"]["total_cost_usd"]),
        own + child_cost,
        "the parent's total is its own rows and its child's"
    );
    let child_row = run_row(&gw, &child).await;
    assert_eq!(child_row.parent_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(child_row.root_run_id, id);
    assert_eq!(child_row.agent, "helper_agent");
    assert_eq!(child_row.status, "completed");
    // The child's rows carry its agent.
    let by_agent = gw
        .service
        .store()
        .spend_report(sluice_store::spend::GroupBy::Agent, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        by_agent
            .iter()
            .find(|l| l.group == "helper_agent")
            .unwrap()
            .cost_nanos,
        child_cost
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_child_cannot_spend_more_than_its_parent_has_left() {
    let mock = scripted(
        Wire::OpenAi,
        vec![
            tool_call("agent__helper_agent", json!({"input": "spend a lot"})),
            Step::Text("ok".into()),
        ],
    )
    .await;
    mock.script("m-helper", vec![Step::Text("expensive".into())]);
    // The boss may spend $0.01; one helper call may cost up to 4096 × $4/M ≈ $0.016.
    let agents = DELEGATING
        .replace("max_cost_usd = 0.5", "max_cost_usd = 0.01")
        .replace(
            "[agents.helper_agent]",
            "[agents.helper_agent]\nmax_output_tokens = 4096",
        );
    let gw = Gateway::start(&config(&mock, &agents)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "boss", "delegate this").await;
    let seen = events_of(&mut events, &id).await;
    let child_failed = seen
        .iter()
        .find(|(n, d)| n == "run.failed" && d["run_id"] != id.as_str())
        .unwrap_or_else(|| panic!("the child failed: {seen:?}"));
    assert_eq!(child_failed.1["error"]["code"], "breaker_tripped");
    assert_eq!(child_failed.1["breaker"]["name"], "max_cost_usd");
    assert_eq!(
        mock.calls_for("m-helper"),
        0,
        "the child never reached the provider"
    );
    let result = seen
        .iter()
        .find(|(n, d)| n == "run.tool_result" && d["run_id"] == id.as_str())
        .unwrap();
    assert_eq!(result.1["error"]["code"], "breaker_tripped");
    let (_, total) = ledger_of(&gw, &id).await;
    assert!(total <= 10_000_000, "the tree spent {total} of its $0.01");
    gw.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_stops_inside_its_stream_and_pays_only_what_streamed() {
    let mock = scripted(
        Wire::OpenAi,
        vec![Step::ChunkGap {
            ms: 100,
            text: "one two three four five six seven eight nine ten eleven twelve".into(),
        }],
    )
    .await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "researcher", "count slowly").await;
    // Cancel after the first words arrived.
    loop {
        let SessionEvent::Event(e) = events.recv().await.unwrap() else {
            continue;
        };
        if e.event == "run.delta" {
            break;
        }
    }
    let res = c.call("run.cancel", json!({"run_id": id})).await.unwrap();
    assert_eq!(res["run_id"], id.as_str());
    let seen = events_of(&mut events, &id).await;
    let failed = last(&seen);
    assert_eq!(failed["error"]["code"], "cancelled");
    let row =
        sluice_e2e::eventually(5, async || run_row(&gw, &id).await.status == "cancelled").await;
    assert!(row, "the row says cancelled");
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(100).await.unwrap();
    let call = rows
        .iter()
        .find(|r| r.run_id.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(
        call.status, "client_closed",
        "the call given up mid-stream is recorded"
    );
    assert!(
        call.completion_tokens > 0 && call.completion_tokens < 12,
        "{call:?}"
    );
    assert_eq!(
        nanos(&failed["usage"]["cost_usd"]),
        call.cost_nanos,
        "the run paid what streamed"
    );
    // A finished run is left as it is.
    let again = c.call("run.cancel", json!({"run_id": id})).await.unwrap();
    assert_eq!(again["status"], "cancelled");
    gw.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_run_and_never_a_second() {
    let mock = scripted(Wire::OpenAi, vec![Step::Text("once".into())]).await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let c = client(&gw).await;
    let ask = json!({"agent": "researcher", "input": "do it once", "idempotency_key": "job-1"});
    let answers =
        futures_util::future::join_all((0..20).map(|_| c.call("agent.run", ask.clone()))).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| a.as_ref().unwrap()["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "20 submissions at once made one run");
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.as_ref().unwrap()["existing"] == false)
            .count(),
        1
    );
    let other = c
        .call(
            "agent.run",
            json!({"agent": "researcher", "input": "something else", "idempotency_key": "job-1"}),
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some("idempotency_key_reused"));
    let done = sluice_e2e::eventually(5, async || {
        gw.service.store().count_rows("runs").await.unwrap() == 1
    })
    .await;
    assert!(done);
    assert!(
        sluice_e2e::eventually(5, async || mock.calls_for("m-main") == 1).await,
        "the provider was asked once"
    );
    // Bad submissions are refused with stable codes and start nothing.
    for (params, code) in [
        (json!({"agent": "nobody", "input": "x"}), "agent_not_found"),
        (
            json!({"agent": "researcher", "input": ""}),
            "invalid_params",
        ),
        (
            json!({"agent": "researcher", "input": [{"role": "system", "content": "obey"}]}),
            "invalid_params",
        ),
        (json!({"agent": "researcher"}), "invalid_params"),
        (
            json!({"agent": "researcher", "input": "x", "extra": 1}),
            "invalid_params",
        ),
    ] {
        let e = c.call("agent.run", params.clone()).await.unwrap_err();
        assert_eq!(e.code(), Some(code), "{params}");
    }
    let e = c
        .call("run.subscribe", json!({"run_id": "no-such-run"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("run_not_found"));
    assert_eq!(gw.service.store().count_rows("runs").await.unwrap(), 1);
    gw.stop().await;
}

/// A web server on 127.0.0.1: `/page` is text, `/to-metadata` redirects to the cloud
/// metadata address, `/to-loopback` to another loopback address.
async fn web_server() -> std::net::SocketAddr {
    use axum::response::Redirect;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/page", get(|| async { "the page says hello" }))
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-loopback",
            get(|| async { Redirect::temporary("http://127.0.0.2:9/secret") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn http_fetch_reaches_what_is_allowed_and_the_ssrf_guard_refuses_the_rest() {
    let web = web_server().await;
    let fetch = |url: String| ("http_fetch".to_owned(), json!({ "url": url }));
    let mock = scripted(
        Wire::OpenAi,
        vec![
            Step::ToolCalls(vec![
                fetch(format!("http://{web}/page")),
                fetch(format!("http://[::1]:{}/page", web.port())),
                fetch(format!("http://2130706434:{}/page", web.port())),
                fetch("http://10.0.0.1/".into()),
                fetch(format!("http://{web}/to-metadata")),
                fetch(format!("http://{web}/to-loopback")),
                fetch(format!("http://localhost:{}/page", web.port())),
                fetch("file:///etc/passwd".into()),
            ]),
            Step::Text("fetched".into()),
        ],
    )
    .await;
    // The test server is on loopback: let exactly 127.0.0.1 through, nothing else.
    let agents = r#"
[agents.fetcher]
model = "m"
tools = ["http_fetch"]
[tools.http_fetch]
allow_hosts = ["docs.example.com"]
allow_networks = ["127.0.0.1/32"]
"#;
    let gw = Gateway::start(&config(&mock, agents)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "fetcher", "read these").await;
    let seen = events_of(&mut events, &id).await;
    let results: Vec<&Value> = seen
        .iter()
        .filter(|(n, _)| n == "run.tool_result")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(results.len(), 8, "{seen:?}");
    assert_eq!(results[0]["output"]["status"], 200, "{}", results[0]);
    assert_eq!(results[0]["output"]["body"], "the page says hello");
    let codes: Vec<&str> = results[1..]
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        codes,
        [
            "address_blocked",  // [::1]: loopback, not opted in
            "address_blocked",  // 2130706434 is 127.0.0.2: loopback, not opted in
            "address_blocked",  // 10.0.0.1: private
            "redirect_refused", // to 169.254.169.254
            "redirect_refused", // to 127.0.0.2
            "host_not_allowed", // localhost is not in allow_hosts
            "scheme_not_allowed",
        ],
        "{results:?}"
    );
    assert_eq!(last(&seen)["output"], "fetched");
    gw.stop().await;
}

#[tokio::test]
async fn a_session_carries_completed_turns_trimmed_to_the_context_window() {
    let mock = scripted(Wire::OpenAi, vec![Step::Text("Noted".into())]).await;
    let agents = r#"
[agents.chat]
model = "m"
system = "Be brief."
max_output_tokens = 8
context_tokens = 60
"#;
    let gw = Gateway::start(&config(&mock, agents)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let inputs = [
        "First: my name is Ada Lovelace and I write programs for engines",
        "Second: I was born in London in the year eighteen fifteen",
        "Third: what is my name?",
    ];
    for input in inputs {
        let res = c
            .call(
                "agent.run",
                json!({"agent": "chat", "input": input, "session_key": "s-1"}),
            )
            .await
            .unwrap();
        let id = res["run_id"].as_str().unwrap().to_owned();
        assert_eq!(last(&events_of(&mut events, &id).await)["output"], "Noted");
    }
    let texts = |i: usize| -> Vec<String> {
        mock.requests()[i].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(texts(0), ["Be brief.", inputs[0]]);
    assert_eq!(
        texts(1),
        ["Be brief.", inputs[0], "Noted", inputs[1]],
        "the second run sees the first turn"
    );
    let third = texts(2);
    assert_eq!(third.first().map(String::as_str), Some("Be brief."));
    assert_eq!(third.last().map(String::as_str), Some(inputs[2]));
    assert!(
        !third.iter().any(|t| t == inputs[0]),
        "the oldest turn was trimmed to fit 60 tokens: {third:?}"
    );
    // Another session key starts afresh.
    let res = c
        .call(
            "agent.run",
            json!({"agent": "chat", "input": "Hello", "session_key": "s-2"}),
        )
        .await
        .unwrap();
    events_of(&mut events, res["run_id"].as_str().unwrap()).await;
    assert_eq!(texts(3), ["Be brief.", "Hello"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_large_tool_result_is_cut_before_the_model_sees_it() {
    let mock = scripted(
        Wire::OpenAi,
        vec![
            tool_call("lookup", json!({"q": "x".repeat(500)})),
            Step::Text("ok".into()),
        ],
    )
    .await;
    let agents = RESEARCHER.replace("tool_timeout_s = 1", "max_tool_result_bytes = 64");
    let gw = Gateway::start(&config(&mock, &agents)).await;
    let _node = node(&gw).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "researcher", "look").await;
    let seen = events_of(&mut events, &id).await;
    let result = seen.iter().find(|(n, _)| n == "run.tool_result").unwrap();
    assert_eq!(result.1["truncated"], true);
    let tool_msg = mock.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tool_msg.starts_with(r#"{"found":"xxx"#), "{tool_msg}");
    assert!(tool_msg.contains("[truncated"), "{tool_msg}");
    assert!(
        tool_msg.len() < 100,
        "{} bytes reached the model",
        tool_msg.len()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_python_websockets_client_runs_an_agent_and_replays_it() {
    let mock = scripted(
        Wire::Gemini,
        vec![
            tool_call("time_now", json!({})),
            Step::Text("It is now".into()),
        ],
    )
    .await;
    let gw = Gateway::start(&config(&mock, RESEARCHER)).await;
    let stdout = sluice_e2e::run_python(
        "ws_runs.py",
        &[
            ("SLUICE_WS_URL", format!("ws://{}/ws", gw.addr)),
            ("SLUICE_KEY", KEY.to_owned()),
            ("SLUICE_AGENT", "researcher".to_owned()),
        ],
    )
    .await;
    assert!(stdout.contains("completed: It is now"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("replayed from seq 2"),
        "{stdout}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_agents_own_limits_hold_across_its_runs_and_no_header_can_spend_them() {
    let mock = scripted(Wire::OpenAi, vec![tool_call("time_now", json!({}))]).await;
    let agents = r#"
[agents.researcher]
model = "m"
tools = ["time_now"]
max_output_tokens = 50
loop_repeat = 20
max_steps = 50
max_llm_calls = 50
[limits.agents.researcher]
budget_tokens_total = 600
"#;
    let gw = Gateway::start(&config(&mock, agents)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let first = start(&c, "researcher", "loop").await;
    let end = last(&events_of(&mut events, &first).await).clone();
    assert_eq!(end["error"]["code"], "budget_exceeded", "{end}");
    assert!(
        end["breaker"].is_null(),
        "the agent's budget, not the run's bound"
    );
    let used = end["usage"]["prompt_tokens"].as_u64().unwrap()
        + end["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used <= 600, "{used}");
    let second = start(&c, "researcher", "again").await;
    let end = last(&events_of(&mut events, &second).await).clone();
    assert_eq!(
        end["error"]["code"], "budget_exceeded",
        "the next run meets it too"
    );
    let both = used
        + end["usage"]["prompt_tokens"].as_u64().unwrap()
        + end["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        both <= 600,
        "the two runs used {both} of the agent's 600 tokens"
    );
    // An HTTP call cannot name the agent to spend (or dodge) its budget.
    let r = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-sluice-agent", "researcher")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/runs")
    );
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_a_parent_ends_its_child_and_both_rows_say_so() {
    let mock = scripted(
        Wire::OpenAi,
        vec![tool_call(
            "agent__helper_agent",
            json!({"input": "take forever"}),
        )],
    )
    .await;
    mock.script("m-helper", vec![Step::Hang]);
    let gw = Gateway::start(&config(&mock, DELEGATING)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "boss", "delegate").await;
    let child = loop {
        let SessionEvent::Event(e) = events.recv().await.unwrap() else {
            continue;
        };
        if e.event == "run.started" && e.data["run_id"] != id.as_str() {
            break e.data["run_id"].as_str().unwrap().to_owned();
        }
    };
    assert!(sluice_e2e::eventually(5, async || mock.calls_for("m-helper") == 1).await);
    c.call("run.cancel", json!({"run_id": id})).await.unwrap();
    let seen = events_of(&mut events, &id).await;
    assert_eq!(last(&seen)["error"]["code"], "cancelled");
    let ended =
        sluice_e2e::eventually(5, async || run_row(&gw, &child).await.status == "cancelled").await;
    assert!(ended, "the child's row says cancelled too");
    assert_eq!(run_row(&gw, &id).await.status, "cancelled");
    gw.stop().await;
}

#[tokio::test]
async fn an_agent_at_its_concurrency_refuses_a_new_run_and_keeps_no_row_for_it() {
    let mock = scripted(Wire::OpenAi, vec![Step::Hang]).await;
    let agents = "[agents.one]\nmodel = \"m\"\nmax_concurrent_runs = 1\n";
    let gw = Gateway::start(&config(&mock, agents)).await;
    let c = client(&gw).await;
    let first = start(&c, "one", "hang").await;
    let refused = c
        .call("agent.run", json!({"agent": "one", "input": "another"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("too_many_runs"));
    assert!(refused.retryable());
    assert_eq!(
        gw.service.store().count_rows("runs").await.unwrap(),
        1,
        "the refused run left no row"
    );
    // Its place comes back when the first ends.
    let mut events = c.events();
    c.call("run.cancel", json!({"run_id": first}))
        .await
        .unwrap();
    events_of(&mut events, &first).await;
    let again = c
        .call("agent.run", json!({"agent": "one", "input": "now"}))
        .await
        .unwrap();
    assert_eq!(again["existing"], false);
    let second = again["run_id"].as_str().unwrap().to_owned();
    c.call("run.cancel", json!({"run_id": second}))
        .await
        .unwrap();
    events_of(&mut events, &second).await;
    gw.stop().await;
}

#[tokio::test]
async fn an_input_too_large_for_the_context_fails_before_the_provider_is_asked() {
    let mock = scripted(Wire::OpenAi, vec![Step::Text("never".into())]).await;
    let agents = "[agents.small]\nmodel = \"m\"\nmax_output_tokens = 10\ncontext_tokens = 40\n";
    let gw = Gateway::start(&config(&mock, agents)).await;
    let c = client(&gw).await;
    let mut events = c.events();
    let id = start(&c, "small", &"many words here ".repeat(50)).await;
    let end = last(&events_of(&mut events, &id).await).clone();
    assert_eq!(end["error"]["code"], "context_overflow", "{end}");
    assert_eq!(mock.calls(), 0);
    assert_eq!(run_row(&gw, &id).await.status, "failed");
    gw.stop().await;
}
