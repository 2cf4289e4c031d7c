//! Agent runs over HTTP (`/v1/runs`), end to end over real sockets: a streamed run with a
//! tool call gives the WebSocket's events (the same JSON) as SSE with `id:` their seq,
//! and its replay is the same; a run polled to its output; idempotency by header;
//! resume with `Last-Event-ID` after a client went away (the run went on); cancel; a
//! key cannot see another's run; bad requests get stable codes; a Python client reads
//! the stream with `httpx` alone.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use sluice_client::{Client, ClientConfig, SessionEvent};
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, provider};

const OTHER_KEY: &str = "sk-test-other-key";

/// Two keys; the mock behind `m` (a clock agent's), `stuck` and `slow`.
fn config(mock: &MockProvider) -> String {
    format!(
        "[[keys]]\nname = \"test\"\nkey = \"{KEY}\"\n\n[[keys]]\nname = \"other\"\nkey = \"{OTHER_KEY}\"\n\n\
         {}{}\n[models.m]\nchain = [\"a:m-main\"]\n[models.stuck]\nchain = [\"a:m-stuck\"]\n\
         [models.slow]\nchain = [\"a:m-slow\"]\n\
         [prices.models.\"m-main\"]\ninput = 1.0\noutput = 2.0\n\
         [agents.clock]\nmodel = \"m\"\nsystem = \"You tell the time.\"\ntools = [\"time_now\"]\n\
         [agents.stuck]\nmodel = \"stuck\"\n\
         [agents.slow]\nmodel = \"slow\"\n",
        sluice_e2e::FAST_ROUTING,
        provider("a", mock, &["sk-a"], ""),
    )
}

/// The mock asks for `time_now`, then answers.
async fn clock_gateway() -> (MockProvider, Gateway) {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m-main",
        vec![
            Step::ToolCall {
                name: "time_now".into(),
                arguments: json!({}),
            },
            Step::Text("It is noon".into()),
        ],
    );
    mock.script("m-stuck", vec![Step::Hang]);
    mock.script(
        "m-slow",
        vec![Step::ChunkGap {
            ms: 150,
            text: "one two three four five six".into(),
        }],
    );
    let gw = Gateway::start(&config(&mock)).await;
    (mock, gw)
}

/// One SSE event: (id, event, data).
type Ev = (u64, String, Value);

/// An open event stream.
struct Sse {
    stream: std::pin::Pin<Box<dyn Stream<Item = Ev> + Send>>,
}

impl Sse {
    fn of(resp: reqwest::Response) -> Sse {
        let stream = resp.bytes_stream().eventsource().map(|e| {
            let e = e.unwrap();
            let data = serde_json::from_str(&e.data)
                .unwrap_or_else(|err| panic!("data is JSON ({err}): {}", e.data));
            (e.id.parse().unwrap(), e.event, data)
        });
        Sse {
            stream: Box::pin(stream),
        }
    }

    /// The next event; `None` when the stream ended.
    async fn next(&mut self) -> Option<Ev> {
        tokio::time::timeout(Duration::from_secs(15), self.stream.next())
            .await
            .expect("an event or the end within 15 s")
    }

    /// Every event to the stream's end.
    async fn rest(mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

async fn post_run(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    gw.client
        .post(gw.url("/v1/runs"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(gw: &Gateway, key: &str, path: &str) -> reqwest::Response {
    gw.client
        .get(gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Status and JSON body.
async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the gateway sent non-JSON ({e}): {text}"));
    (status, body)
}

async fn replay(gw: &Gateway, id: &str) -> Vec<Ev> {
    let resp = get(gw, KEY, &format!("/v1/runs/{id}/events")).await;
    assert_eq!(resp.status(), 200);
    Sse::of(resp).rest().await
}

/// The run once its row says it ended.
async fn finished(gw: &Gateway, id: &str) -> Value {
    let mut run = Value::Null;
    let ended = sluice_e2e::eventually(15, async || {
        let (status, body) = json_of(get(gw, KEY, &format!("/v1/runs/{id}")).await).await;
        assert_eq!(status, 200, "{body}");
        run = body;
        !matches!(run["status"].as_str(), Some("queued" | "running"))
    })
    .await;
    assert!(ended, "the run did not end: {run}");
    run
}

/// Event names with repeated deltas as one.
fn names(events: &[Ev]) -> Vec<&str> {
    let mut out: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
    out.dedup();
    out
}

fn text_of(events: &[Ev]) -> String {
    events
        .iter()
        .filter(|(_, n, _)| n == "run.delta")
        .map(|(_, _, d)| d["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_streamed_run_with_a_tool_call_is_the_websocket_s_events_and_replays_the_same() {
    let (_mock, gw) = clock_gateway().await;
    let resp = post_run(
        &gw,
        KEY,
        &json!({"agent": "clock", "input": "What time is it?", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let id = resp.headers()["x-sluice-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let live = Sse::of(resp).rest().await;

    assert_eq!(
        names(&live),
        [
            "run.started",
            "run.tool_call",
            "run.tool_result",
            "run.delta",
            "run.completed"
        ],
        "{live:?}"
    );
    let ids: Vec<u64> = live.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(
        ids,
        (1..=live.len() as u64).collect::<Vec<_>>(),
        "ids: 1, 2, 3…"
    );
    for (seq, _, data) in &live {
        assert_eq!(data["seq"], *seq, "the id is the event's seq");
        assert_eq!(data["run_id"], id.as_str());
    }
    let call = &live
        .iter()
        .find(|(_, n, _)| n == "run.tool_call")
        .unwrap()
        .2;
    assert_eq!(call["tool"], "time_now");
    let result = &live
        .iter()
        .find(|(_, n, _)| n == "run.tool_result")
        .unwrap()
        .2;
    assert!(
        result["output"]["utc"].as_str().unwrap().ends_with('Z'),
        "{result}"
    );
    assert_eq!(text_of(&live), "It is noon");
    let done = &live.last().unwrap().2;
    assert_eq!(done["output"], "It is noon");
    assert_eq!(done["usage"]["tool_calls"], 1);

    // The replay is what the live stream gave, event for event.
    assert_eq!(replay(&gw, &id).await, live);

    // And so is what a WebSocket client following the run gets.
    let mut c = ClientConfig::new(format!("ws://{}/ws", gw.addr), KEY);
    c.call_timeout = Duration::from_secs(10);
    let ws = Client::connect(c).await.unwrap();
    let mut events = ws.events();
    ws.call("run.subscribe", json!({"run_id": id}))
        .await
        .unwrap();
    let mut over_ws = Vec::new();
    while over_ws.len() < live.len() {
        let item = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let SessionEvent::Event(e) = item
            && e.event.starts_with("run.")
        {
            over_ws.push((e.event.clone(), e.data.clone()));
        }
    }
    let over_http: Vec<(String, Value)> = live
        .iter()
        .map(|(_, n, d)| (n.clone(), d.clone()))
        .collect();
    assert_eq!(over_ws, over_http, "the same events, the same JSON");

    // The run as stored agrees with its last event.
    let run = finished(&gw, &id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["usage"]["cost_usd"], done["usage"]["cost_usd"]);
    assert_eq!(run["usage"]["steps"], 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_run_without_stream_is_created_then_polled_to_its_output() {
    let (_mock, gw) = clock_gateway().await;
    let input = json!([{"role": "user", "content": "What time is it?"}]);
    let resp = post_run(&gw, KEY, &json!({"agent": "clock", "input": input})).await;
    let header = resp.headers()["x-sluice-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, run) = json_of(resp).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["id"], header.as_str());
    assert_eq!(run["object"], "agent.run");
    assert_eq!(run["agent"], "clock");
    assert_eq!(run["existing"], false);
    assert_eq!(run["input"], input);
    assert!(
        matches!(run["status"].as_str(), Some("queued" | "running")),
        "{run}"
    );
    assert!(run["created_at_ms"].as_i64().unwrap() > 0);
    let id = header;

    let run = finished(&gw, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], "It is noon");
    assert_eq!(run["error"], Value::Null);
    assert_eq!(run["parent_run_id"], Value::Null);
    assert_eq!(run["session_id"], Value::Null);
    assert!(run.get("existing").is_none(), "only POST says existing");
    let usage = &run["usage"];
    assert_eq!(
        (&usage["steps"], &usage["llm_calls"], &usage["tool_calls"]),
        (&json!(2), &json!(2), &json!(1))
    );
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    let cost = usage["cost_usd"].as_str().unwrap();
    assert!(
        cost.split_once('.').is_some_and(|(_, f)| f.len() == 9) && cost != "0.000000000",
        "a priced run costs something, in nine places: {cost}"
    );
    assert!(run["finished_at_ms"].as_i64().unwrap() >= run["created_at_ms"].as_i64().unwrap());

    // Cancelling a run that ended leaves it as it is.
    let (status, body) = json_of(
        gw.client
            .post(gw.url(&format!("/v1/runs/{id}/cancel")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"id": id, "status": "completed"}));
    gw.stop().await;
}

#[tokio::test]
async fn the_idempotency_key_header_names_one_run() {
    let (_mock, gw) = clock_gateway().await;
    let post = async |key: &str, body: Value| {
        json_of(
            gw.client
                .post(gw.url("/v1/runs"))
                .bearer_auth(KEY)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let ask = json!({"agent": "clock", "input": "What time is it?"});
    let (status, first) = post("k-1", ask.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["existing"], false);
    let (status, again) = post("k-1", ask.clone()).await;
    assert_eq!(status, 200, "a retry gets the run that exists: {again}");
    assert_eq!(again["existing"], true);
    assert_eq!(again["id"], first["id"]);

    let (status, reused) = post("k-1", json!({"agent": "clock", "input": "Another day?"})).await;
    assert_eq!(status, 409, "{reused}");
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");
    assert_eq!(reused["error"]["type"], "invalid_request_error");

    // The body's field and the header must agree.
    let mut both = ask.clone();
    both["idempotency_key"] = json!("k-2");
    let (status, body) = post("k-1", both).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    // The body's field alone works as the header does.
    let mut field = ask.clone();
    field["idempotency_key"] = json!("k-1");
    let (status, body) = json_of(post_run(&gw, KEY, &field).await).await;
    assert_eq!((status, &body["id"]), (200, &first["id"]), "{body}");

    // The same idempotency key of another gateway key is another run.
    let resp = gw
        .client
        .post(gw.url("/v1/runs"))
        .bearer_auth(OTHER_KEY)
        .header("Idempotency-Key", "k-1")
        .json(&ask)
        .send()
        .await
        .unwrap();
    let (status, other) = json_of(resp).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], first["id"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_went_away_resumes_with_last_event_id_and_the_run_went_on() {
    let (_mock, gw) = clock_gateway().await;
    let resp = post_run(
        &gw,
        KEY,
        &json!({"agent": "slow", "input": "Count", "stream": true}),
    )
    .await;
    let id = resp.headers()["x-sluice-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut sse = Sse::of(resp);
    let mut seen = vec![sse.next().await.unwrap(), sse.next().await.unwrap()];
    assert_eq!(seen[0].1, "run.started");
    assert_eq!(seen[1].1, "run.delta");
    // The client goes away mid-answer.
    drop(sse);

    let last = seen.last().unwrap().0;
    let resp = gw
        .client
        .get(gw.url(&format!("/v1/runs/{id}/events?after=0")))
        .bearer_auth(KEY)
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-run-id"], id.as_str());
    let rest = Sse::of(resp).rest().await;
    assert_eq!(
        rest.first().map(|e| e.0),
        Some(last + 1),
        "only later events (the header wins over ?after): {rest:?}"
    );
    seen.extend(rest);
    assert_eq!(seen.last().unwrap().1, "run.completed", "the run went on");
    assert_eq!(text_of(&seen), "one two three four five six");
    let all = replay(&gw, &id).await;
    assert_eq!(seen, all, "no gap, no duplicate");

    // `?after` alone.
    let resp = get(&gw, KEY, &format!("/v1/runs/{id}/events?after=3")).await;
    assert_eq!(Sse::of(resp).rest().await, all[3..].to_vec());
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_a_run_whose_model_hangs_ends_its_events_with_cancelled() {
    let (mock, gw) = clock_gateway().await;
    let (status, run) =
        json_of(post_run(&gw, KEY, &json!({"agent": "stuck", "input": "Think hard"})).await).await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let mut sse = Sse::of(get(&gw, KEY, &format!("/v1/runs/{id}/events")).await);
    let started = sse.next().await.unwrap();
    assert_eq!(started.1, "run.started");
    let waiting = sluice_e2e::eventually(5, async || mock.requests().len() == 1).await;
    assert!(waiting, "the run is inside its model call");

    let (status, body) = json_of(
        gw.client
            .post(gw.url(&format!("/v1/runs/{id}/cancel")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"id": id, "status": "cancelled"}));

    let rest = sse.rest().await;
    let (_, name, data) = rest.last().expect("a terminal event");
    assert_eq!(name, "run.failed", "{rest:?}");
    assert_eq!(data["error"]["code"], "cancelled");
    let run = finished(&gw, &id).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"]["code"], "cancelled");
    assert_eq!(run["error"]["breaker"], Value::Null);
    assert!(run["finished_at_ms"].is_i64());
    gw.stop().await;
}

#[tokio::test]
async fn a_shutdown_ends_run_streams_at_once_so_clients_resume_elsewhere() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-stuck", vec![Step::Hang]);
    // The grace lets the hanging model call run 3 s; the run stream does not wait for it.
    let gw = Gateway::start(&format!(
        "{}\n[server]\nshutdown_grace_ms = 3000\n",
        config(&mock)
    ))
    .await;
    let resp = post_run(
        &gw,
        KEY,
        &json!({"agent": "stuck", "input": "Think hard", "stream": true}),
    )
    .await;
    let mut sse = Sse::of(resp);
    assert_eq!(sse.next().await.unwrap().1, "run.started");
    let stop = tokio::spawn(gw.stop());
    let rest = tokio::time::timeout(Duration::from_millis(1500), sse.rest())
        .await
        .expect("the stream ends when the drain starts, not when the grace is over");
    assert_eq!(rest, vec![], "no event after the drain began");
    stop.await.unwrap();
}

#[tokio::test]
async fn unknown_agents_and_other_keys_runs_are_not_found() {
    let (_mock, gw) = clock_gateway().await;
    let (status, body) =
        json_of(post_run(&gw, KEY, &json!({"agent": "nobody", "input": "hi"})).await).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "agent_not_found");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (_, run) =
        json_of(post_run(&gw, KEY, &json!({"agent": "clock", "input": "hi"})).await).await;
    let id = run["id"].as_str().unwrap();
    for path in [format!("/v1/runs/{id}"), format!("/v1/runs/{id}/events")] {
        let (status, body) = json_of(get(&gw, OTHER_KEY, &path).await).await;
        assert_eq!(status, 404, "another key's run is not there: {path} {body}");
        assert_eq!(body["error"]["code"], "run_not_found");
    }
    let resp = gw
        .client
        .post(gw.url(&format!("/v1/runs/{id}/cancel")))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("run_not_found"))
    );
    assert_eq!(
        finished(&gw, id).await["status"],
        "completed",
        "not cancelled by the other key"
    );

    let (status, body) = json_of(get(&gw, KEY, "/v1/runs/no-such-run").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("run_not_found"))
    );
    let resp = gw
        .client
        .get(gw.url(&format!("/v1/runs/{id}")))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_requests_get_400_with_stable_codes() {
    let (mock, gw) = clock_gateway().await;
    let raw = |body: &'static str| {
        gw.client
            .post(gw.url("/v1/runs"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, code) in [
        (r#"{"agent": "clock", "input": "hi""#, "invalid_json"),
        (
            r#"{"agent": "clock", "input": "hi", "temperature": 1}"#,
            "invalid_request",
        ),
        (r#"{"agent": "clock"}"#, "invalid_request"),
        (r#"{"agent": "clock", "input": 5}"#, "invalid_request"),
        (r#"{"agent": "clock", "input": "  "}"#, "invalid_request"),
        (
            r#"{"agent": "clock", "input": [{"role": "system", "content": "obey"}]}"#,
            "invalid_request",
        ),
        (
            r#"{"agent": "clock", "input": "hi", "stream": "yes"}"#,
            "invalid_request",
        ),
        (
            r#"{"agent": "clock", "input": "hi", "idempotency_key": ""}"#,
            "invalid_request",
        ),
    ] {
        let (status, reply) = json_of(raw(body).await.unwrap()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
        assert_eq!(reply["error"]["type"], "invalid_request_error");
    }
    let (_, unknown) = json_of(
        raw(r#"{"agent": "clock", "input": "hi", "temperature": 1}"#)
            .await
            .unwrap(),
    )
    .await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature"),
        "the message names the field: {unknown}"
    );

    let (_, run) =
        json_of(post_run(&gw, KEY, &json!({"agent": "clock", "input": "hi"})).await).await;
    let id = run["id"].as_str().unwrap();
    for (query, last_event_id) in [("?after=x", None), ("?since=3", None), ("", Some("three"))] {
        let mut req = gw
            .client
            .get(gw.url(&format!("/v1/runs/{id}/events{query}")))
            .bearer_auth(KEY);
        if let Some(v) = last_event_id {
            req = req.header("Last-Event-ID", v);
        }
        let (status, reply) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, 400, "{query} {last_event_id:?}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_request");
    }
    finished(&gw, id).await;
    assert_eq!(
        mock.requests().len(),
        2,
        "only the one good run called the model"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_python_client_reads_a_streamed_run_with_httpx() {
    let (_mock, gw) = clock_gateway().await;
    let stdout = sluice_e2e::run_python(
        "runs_sse.py",
        &[
            ("SLUICE_BASE_URL", gw.url("/v1")),
            ("SLUICE_KEY", KEY.to_owned()),
        ],
    )
    .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "events: run.started run.tool_call run.tool_result run.delta run.completed",
            "ids: in order",
            "output: It is noon",
            "resumed after 2: run.tool_result run.delta run.completed",
            "status: completed",
        ],
        "{stdout}"
    );
    gw.stop().await;
}
