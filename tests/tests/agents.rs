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
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m-main",
        vec![
            Step::ToolCall {
                name: "lookup".into(),
                arguments: json!({"q": "the answer"}),
            },
            Step::Text("The answer is forty two".into()),
        ],
    );
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
    let mock = MockProvider::start(Wire::Anthropic).await;
    mock.script(
        "m-main",
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
    );
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
