//! The completion service called directly, with no HTTP, beside the same calls over HTTP
//! on one gateway: a whole and a streamed completion each leave the same ledger row, settle
//! the same budget and count the same in the spend breaker's window, whichever way they
//! came in. A stream dropped half-way settles to what it used; a run's own budget holds
//! and its rows carry its id.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice_e2e::{Gateway, KEY};
use sluice_limits::run::{RunBudget, RunMeters};
use sluice_llm::ChatRequest;
use sluice_service::{CallMeta, Principal, Reply, RunScope};
use sluice_store::ledger::SpendRow;

/// $1000 per 1M tokens in and out: every token costs exactly 1,000,000 nano-dollars.
const NANOS_PER_TOKEN: i64 = 1_000_000;

fn config() -> String {
    format!(
        r#"
[[keys]]
name = "a"
key = "{KEY}"
limits = {{ budget_tokens_day = 1000000 }}
[providers.mock]
kind = "mock"
words = 12
[models.m]
chain = ["mock:model-x"]
[prices.models.model-x]
input = 1000.0
output = 1000.0
[providers.slow]
kind = "mock"
words = 12
chunk_delay_ms = 300
[providers.late]
kind = "mock"
words = 12
latency_ms = 30000
[models.slow]
chain = ["slow:model-x"]
[models.late]
chain = ["late:model-x"]
[limits.spend_breaker]
window_ms = 3600000
baseline_ms = 7200000
max_usd = 1000.0
"#
    )
}

fn ask(stream: bool) -> Value {
    ask_model("m", stream)
}

fn ask_model(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 10,
        "stream": stream,
        "messages": [{"role": "user", "content": "say something"}],
    })
}

/// What one call left behind: its ledger row, and how far it moved the key's day budget
/// and the spend breaker's window.
#[derive(Debug, PartialEq)]
struct Trace {
    row: SpendRow,
    budget_used: u64,
    window_spend: u64,
}

/// The row with what differs between any two calls (ids, times) blanked.
fn comparable(mut row: SpendRow) -> SpendRow {
    row.request_id = String::new();
    row.latency_ms = 0;
    row.created_at_ms = 0;
    row
}

/// The key's day-token bucket as the store has it once every lease is given back.
async fn budget_used(gw: &Gateway) -> u64 {
    gw.service.sync_limits(std::time::Duration::ZERO).await;
    let name = format!(
        "key:config:a/tokens/{}",
        sluice_limits::spec::Period::Day
            .window(sluice_service::ids::now_ms())
            .id()
    );
    gw.service
        .store()
        .bucket(&name)
        .await
        .unwrap()
        .map_or(0, |(used, _)| used)
}

/// Runs `call` (which returns the request id of the call it made) and returns what it
/// left behind, as deltas from before it.
async fn traced(gw: &Gateway, call: impl AsyncFnOnce() -> String) -> Trace {
    let budget_before = budget_used(gw).await;
    let window_before = window(gw);
    let rows_before = rows(gw).await.len();
    let request_id = call().await;
    let rows = rows(gw).await;
    assert_eq!(rows.len(), rows_before + 1, "one provider call, one row");
    let row = rows
        .into_iter()
        .find(|r| r.request_id == request_id)
        .expect("the call's row");
    Trace {
        row: comparable(row),
        budget_used: budget_used(gw).await - budget_before,
        window_spend: window(gw) - window_before,
    }
}

/// A streamed chat call through the service, started.
async fn stream_of(
    gw: &Gateway,
    who: &std::sync::Arc<Principal>,
    meta: CallMeta,
    req: ChatRequest,
) -> sluice_service::MeteredStream {
    let answer = gw
        .service
        .chat(who, meta, req)
        .await
        .expect("the stream starts");
    let Reply::Stream(stream) = answer.value else {
        panic!("a stream was asked for");
    };
    stream
}

/// A fresh call's metadata, and its request id.
fn fresh() -> (CallMeta, String) {
    let meta = CallMeta::fresh();
    let id = meta.request_id.clone();
    (meta, id)
}

fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers["x-sluice-request-id"].to_str().unwrap().to_owned()
}

fn window(gw: &Gateway) -> u64 {
    gw.service
        .spend_breaker()
        .window_spend("config:a", sluice_service::ids::now_ms())
}

/// Every ledger row, newest first.
async fn rows(gw: &Gateway) -> Vec<SpendRow> {
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    gw.service.store().recent_spend(1000).await.unwrap()
}

fn principal(gw: &Gateway) -> std::sync::Arc<Principal> {
    gw.service.authenticate(KEY).expect("the key authenticates")
}

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn a_direct_call_leaves_exactly_what_the_same_call_over_http_leaves() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);

    // Whole answers.
    let mut http_text = String::new();
    let over_http = traced(&gw, async || {
        let resp = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&ask(false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = request_id(resp.headers());
        let body: Value = resp.json().await.unwrap();
        http_text = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        id
    })
    .await;
    let mut direct_text = String::new();
    let direct = traced(&gw, async || {
        let (meta, id) = fresh();
        let answer = gw
            .service
            .chat(&who, meta, request(ask(false)))
            .await
            .expect("the direct call is answered");
        let Reply::Whole { response, .. } = answer.value else {
            panic!("a whole answer was asked for");
        };
        direct_text = response.choices[0].message.text_content();
        id
    })
    .await;
    assert_eq!(direct_text, http_text, "the same answer");
    assert_eq!(direct, over_http, "the same row, budget and window");
    assert_eq!(over_http.row.status, "ok");
    assert!(!over_http.row.estimated, "the provider reported usage");
    let tokens = over_http.row.prompt_tokens + over_http.row.completion_tokens;
    assert_eq!(over_http.row.cost_nanos, tokens * NANOS_PER_TOKEN);
    assert_eq!(
        over_http.budget_used, tokens as u64,
        "settled to the real use"
    );
    assert_eq!(over_http.window_spend, over_http.row.cost_nanos as u64);

    // Streams read to their end.
    let over_http_stream = traced(&gw, async || {
        let reply = gw.chat_stream(ask(true)).await;
        assert_eq!(reply.status, 200);
        assert!(reply.done, "the stream ends with [DONE]");
        assert_eq!(reply.text(), http_text);
        reply.header("x-sluice-request-id").to_owned()
    })
    .await;
    let direct_stream = traced(&gw, async || {
        let (meta, id) = fresh();
        let mut stream = stream_of(&gw, &who, meta, request(ask(true))).await;
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("the stream does not break");
            for c in &chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
            }
        }
        assert_eq!(text, http_text);
        id
    })
    .await;
    assert_eq!(
        direct_stream, over_http_stream,
        "the same row, budget and window"
    );
    assert_eq!(direct_stream.row.status, "ok");
    assert_eq!(
        (
            direct_stream.row.prompt_tokens,
            direct_stream.row.completion_tokens
        ),
        (over_http.row.prompt_tokens, over_http.row.completion_tokens),
        "a stream's usage is the whole answer's"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_dropped_half_way_settles_to_what_it_used() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let whole = traced(&gw, async || {
        let (meta, id) = fresh();
        let answer = gw
            .service
            .chat(&who, meta, request(ask(false)))
            .await
            .unwrap();
        assert!(matches!(answer.value, Reply::Whole { .. }));
        id
    })
    .await;
    let dropped = traced(&gw, async || {
        let (meta, id) = fresh();
        let mut stream = stream_of(&gw, &who, meta, request(ask(true))).await;
        let mut words = 0;
        while words < 3 {
            let chunk = stream.next().await.expect("more chunks").unwrap();
            words += chunk
                .choices
                .iter()
                .filter(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
                .count();
        }
        // A client that goes away, a run that is cancelled: the stream is dropped.
        drop(stream);
        id
    })
    .await;
    let row = &dropped.row;
    assert_eq!(row.status, "client_closed");
    assert!(
        row.estimated,
        "the provider's usage never arrived: Sluice counted"
    );
    assert!(
        row.completion_tokens > 0 && row.completion_tokens < whole.row.completion_tokens,
        "counted what was streamed ({}), not the whole answer ({})",
        row.completion_tokens,
        whole.row.completion_tokens
    );
    let tokens = row.prompt_tokens + row.completion_tokens;
    assert_eq!(row.cost_nanos, tokens * NANOS_PER_TOKEN, "priced");
    assert_eq!(
        dropped.budget_used, tokens as u64,
        "the reservation settled to the counted use, the rest given back"
    );
    assert_eq!(dropped.window_spend, row.cost_nanos as u64);
    gw.stop().await;
}

#[tokio::test]
async fn a_run_is_held_to_its_own_budget_and_its_rows_carry_its_id() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let caps = RunMeters {
        tokens: 40,
        cost_nanos: u64::MAX,
        llm_calls: 100,
    };
    let run = RunScope::new(RunBudget::new("run-42", caps)).unwrap();
    assert_eq!(
        RunScope::new(RunBudget::new("a/b", caps))
            .unwrap_err()
            .code(),
        "invalid_request",
        "a run id goes into bucket names: plain names only"
    );
    let mut answered = 0;
    let refusal = loop {
        let meta = CallMeta::fresh().with_run(run.clone());
        match gw.service.chat(&who, meta, request(ask(false))).await {
            Ok(_) => answered += 1,
            Err(e) => break e,
        }
        assert!(answered < 10, "the run's budget never stopped it");
    };
    let info = refusal.info();
    assert_eq!(info.code, "budget_exceeded", "{}", info.message);
    assert!(info.message.contains("run `run-42`"), "{}", info.message);
    assert!(!info.retryable);
    let rows = rows(&gw).await;
    assert_eq!(rows.len(), answered);
    assert!(rows.iter().all(|r| r.run_id.as_deref() == Some("run-42")));
    let used: i64 = rows
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert!(used <= 40, "the run used {used} of its 40 tokens");
    assert_eq!(
        run.budget.own_spent().tokens,
        used as u64,
        "the run's budget settled with its rows' amounts"
    );
    // Another run, and calls without one, are not held by it.
    let other = CallMeta::fresh().with_run(RunScope::new(RunBudget::new("run-43", caps)).unwrap());
    assert!(
        gw.service
            .chat(&who, other, request(ask(false)))
            .await
            .is_ok()
    );
    assert!(
        gw.service
            .chat(&who, CallMeta::fresh(), request(ask(false)))
            .await
            .is_ok()
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_service_refuses_like_http_with_the_same_codes() {
    let gw = Gateway::start(&config()).await;
    assert_eq!(
        gw.service.authenticate("sk-wrong").unwrap_err().code(),
        "invalid_api_key"
    );
    let who = principal(&gw);
    let unknown = gw
        .service
        .chat(
            &who,
            CallMeta::fresh(),
            request(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})),
        )
        .await
        .unwrap_err();
    let over_http = gw
        .chat(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!((over_http.status, over_http.code()), (404, unknown.code()));
    assert_eq!(
        over_http.json["error"]["message"].as_str(),
        Some(unknown.info().message.as_str())
    );
    let empty = gw
        .service
        .chat(
            &who,
            CallMeta::fresh(),
            request(json!({"model": "m", "messages": []})),
        )
        .await
        .unwrap_err();
    assert_eq!(empty.code(), "invalid_request");
    assert!(
        CallMeta::fresh().with_agent("no spaces").is_err(),
        "agent names are plain names"
    );
    assert!(
        rows(&gw).await.is_empty(),
        "nothing refused reached the ledger"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_call_dropped_before_its_first_byte_is_recorded_with_its_prompt() {
    // Loaded, the tokenizer counts the estimate at once: the call is with the provider
    // well within the wait below.
    tokio::task::spawn_blocking(sluice_service::warm_tokenizers)
        .await
        .unwrap();
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let before = budget_used(&gw).await;
    let given_up = traced(&gw, async || {
        let (meta, id) = fresh();
        let call = gw
            .service
            .chat(&who, meta, request(ask_model("late", false)));
        // The caller goes away while the provider has not answered yet.
        let waited = tokio::time::timeout(std::time::Duration::from_secs(2), call).await;
        assert!(waited.is_err(), "the provider is still thinking");
        id
    })
    .await;
    let row = &given_up.row;
    assert_eq!(
        (row.status.as_str(), row.provider.as_str()),
        ("client_closed", "late")
    );
    assert!(row.estimated && row.prompt_tokens > 0 && row.completion_tokens == 0);
    assert_eq!(row.cost_nanos, row.prompt_tokens * NANOS_PER_TOKEN);
    // A slice the limiter prefetched meanwhile shows in the shared counter until the
    // next sync gives its idle part back: what was used settles to the prompt alone.
    let settled = sluice_e2e::eventually(5, async || {
        budget_used(&gw).await - before == row.prompt_tokens as u64
    })
    .await;
    assert!(
        settled,
        "the prompt is settled, the output reservation given back (first read: {})",
        given_up.budget_used
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_cut_ends_open_streams_and_waiting_calls_with_one_row_each() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let (meta, stream_id) = fresh();
    let mut stream = stream_of(&gw, &who, meta, request(ask_model("slow", true))).await;
    let first = stream.next().await.expect("a first chunk").unwrap();
    assert!(!first.choices.is_empty());
    let (meta, waiting_id) = fresh();
    let service = gw.service.clone();
    let waiting = tokio::spawn(async move {
        service
            .chat(&who, meta, request(ask_model("late", false)))
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gw.service.cut();
    let err = loop {
        match stream
            .next()
            .await
            .expect("the cut ends the stream with an error")
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    let info = err.info();
    assert_eq!(info.code, "shutting_down");
    assert!(info.message.contains("incomplete"), "{}", info.message);
    assert!(stream.next().await.is_none(), "nothing after the error");
    drop(stream);
    let refused = waiting.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), "shutting_down");
    let rows = rows(&gw).await;
    assert_eq!(rows.len(), 2, "one row each, none twice: {rows:?}");
    for id in [&stream_id, &waiting_id] {
        let row = rows.iter().find(|r| &r.request_id == id).expect("a row");
        assert_eq!(row.status, "shutting_down");
        assert!(row.prompt_tokens > 0);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_stop_refuses_new_calls_and_waits_for_open_streams_to_settle() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let (meta, id) = fresh();
    let mut stream = stream_of(&gw, &who, meta, request(ask_model("slow", true))).await;
    stream.next().await.expect("a first chunk").unwrap();
    let service = gw.service.clone();
    let stop = tokio::spawn(async move {
        service
            .stop(tokio::time::Instant::now() + std::time::Duration::from_secs(10))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!stop.is_finished(), "the stop waits for the open stream");
    let refused = gw
        .service
        .chat(&who, CallMeta::fresh(), request(ask(false)))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        "shutting_down",
        "no new calls once stopping"
    );
    // The stop cut the stream; whoever holds it sees the error, then drops it.
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            assert_eq!(e.code(), "shutting_down");
        }
    }
    drop(stream);
    let report = stop.await.unwrap();
    assert_eq!(
        (report.written, report.spilled, report.lost),
        (1, 0, 0),
        "the stream's row was written before the ledger stopped"
    );
    let rows = gw.service.store().recent_spend(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].request_id.as_str(), rows[0].status.as_str()),
        (id.as_str(), "shutting_down")
    );
}

#[tokio::test]
async fn a_stream_settles_at_the_prices_of_the_config_it_started_on() {
    let gw = Gateway::start(&config()).await;
    let who = principal(&gw);
    let (meta, before_id) = fresh();
    let mut stream = stream_of(&gw, &who, meta, request(ask_model("slow", true))).await;
    stream.next().await.expect("a first chunk").unwrap();
    // A new config, the price doubled, swapped in while the stream runs.
    let dearer = config()
        .replace("input = 1000.0", "input = 2000.0")
        .replace("output = 1000.0", "output = 2000.0");
    let cfg = sluice_config::Config::parse(&dearer, &|_| None).unwrap();
    gw.service
        .replace_snapshot(gw.service.build_snapshot(&cfg).unwrap());
    while let Some(item) = stream.next().await {
        item.unwrap();
    }
    drop(stream);
    let (meta, after_id) = fresh();
    let answer = gw
        .service
        .chat(&who, meta, request(ask_model("slow", false)))
        .await
        .unwrap();
    assert!(matches!(answer.value, Reply::Whole { .. }));
    let rows = rows(&gw).await;
    let row = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().clone();
    let (before, after) = (row(&before_id), row(&after_id));
    assert_eq!(
        before.cost_nanos,
        (before.prompt_tokens + before.completion_tokens) * NANOS_PER_TOKEN,
        "the old price: the one the call started on"
    );
    assert_eq!(
        after.cost_nanos,
        (after.prompt_tokens + after.completion_tokens) * 2 * NANOS_PER_TOKEN,
        "calls after the swap pay the new price"
    );
    gw.stop().await;
}
