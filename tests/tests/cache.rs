//! The response cache end to end (docs/cache.md): a repeated request is answered from
//! memory at zero cost with the saving in the ledger; keys never share unless the operator
//! says so; a changed parameter misses; `Cache-Control` bypasses; a stream is stored and
//! replayed as a stream; errors and cut streams are never stored; TTL and eviction; the
//! semantic cache on the real model; WebSocket results say what the cache did.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::ws::{next, send, session};
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, ask, provider};

const OTHER_KEY: &str = "sk-other-0123456789";

/// Keys `test` and `other`; alias `m` on the mock (priced), `g` the same model with a
/// global scope; `cache` is the `[cache]` section.
fn config(mock: &MockProvider, cache: &str) -> String {
    format!(
        "[[keys]]\nname = \"test\"\nkey = \"{KEY}\"\n\
         [[keys]]\nname = \"other\"\nkey = \"{OTHER_KEY}\"\n\
         {}{}\n[models.m]\nchain = [\"a:m-main\"]\n[models.g]\nchain = [\"a:m-main\"]\n\
         [prices.models.\"m-main\"]\ninput = 1.0\noutput = 2.0\n{cache}\n",
        sluice_e2e::FAST_ROUTING,
        provider("a", mock, &["sk-a"], ""),
    )
}

const EXACT: &str = "[cache]\nmode = \"exact\"\n[cache.models.g]\nscope = \"global\"\n";

/// `n` answers, "answer 0" to "answer {n-1}", one per provider call.
fn answers(n: usize) -> Vec<Step> {
    (0..n).map(|i| Step::Text(format!("answer {i}"))).collect()
}

async fn setup(steps: Vec<Step>, cache: &str) -> (Gateway, MockProvider) {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", steps);
    let gw = Gateway::start(&config(&mock, cache)).await;
    (gw, mock)
}

async fn rows(gw: &Gateway) -> Vec<sluice_store::ledger::SpendRow> {
    gw.service.ledger().flush().await.unwrap();
    let mut rows = gw.service.store().recent_spend(100).await.unwrap();
    rows.reverse();
    rows
}

/// A chat call as `key`, with extra headers; the response as it came.
async fn send_as(
    gw: &Gateway,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A successful chat call as `key`: the body, with `cache` set to the cache header.
async fn chat_as(gw: &Gateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> Value {
    let r = send_as(gw, key, body, headers).await;
    assert_eq!(r.status(), 200);
    let cache = r
        .headers()
        .get("x-sluice-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut v: Value = r.json().await.unwrap();
    v["cache"] = json!(cache);
    v
}

fn text(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap()
}

#[tokio::test]
async fn a_repeated_request_is_answered_from_the_cache_at_zero_cost_with_the_saving_noted() {
    let (gw, mock) = setup(vec![Step::Text("Paris is the capital.".into())], EXACT).await;
    let q = ask("m", "What is the capital of France?");
    let first = gw.chat(q.clone()).await;
    assert_eq!(
        (first.status, first.header("x-sluice-cache")),
        (200, "miss")
    );
    let second = gw.chat(q).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-sluice-cache"), "hit");
    assert_eq!(second.text(), "Paris is the capital.");
    assert_ne!(
        second.json["id"], first.json["id"],
        "each answer has its own id"
    );
    assert_eq!(second.json["usage"], first.json["usage"]);
    assert_eq!(
        second.header("x-sluice-model"),
        first.header("x-sluice-model")
    );
    assert_eq!(mock.calls(), 1, "the provider was asked once");
    let rows = rows(&gw).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (paid, hit) = (&rows[0], &rows[1]);
    assert!(paid.cost_nanos > 0 && paid.status == "ok");
    assert_eq!(
        (hit.provider.as_str(), hit.status.as_str(), hit.cost_nanos),
        ("cache", "cache_hit", 0)
    );
    assert_eq!(
        hit.saved_nanos, paid.cost_nanos,
        "the saving is the first answer's cost"
    );
    assert_eq!(hit.model, "a:m-main");
    assert_eq!((hit.prompt_tokens, hit.completion_tokens), (0, 0));
    // The spend report totals the saving.
    let report = gw
        .service
        .store()
        .spend_report(sluice_store::spend::GroupBy::Provider, 0, i64::MAX)
        .await
        .unwrap();
    let cache = report.iter().find(|l| l.group == "cache").unwrap();
    assert_eq!((cache.calls, cache.cost_nanos), (1, 0));
    assert_eq!(cache.saved_nanos, paid.cost_nanos);
    gw.stop().await;
}

#[tokio::test]
async fn keys_never_share_answers_unless_the_scope_is_global_and_parameters_count() {
    let (gw, mock) = setup(answers(6), EXACT).await;
    let q = ask("m", "hello");
    assert_eq!(chat_as(&gw, KEY, &q, &[]).await["cache"], "miss");
    let other = chat_as(&gw, OTHER_KEY, &q, &[]).await;
    assert_eq!(
        (other["cache"].as_str(), text(&other)),
        (Some("miss"), "answer 1"),
        "another key never gets the first key's answer"
    );
    // A parameter that changes the answer is another request.
    let mut warm = q.clone();
    warm["temperature"] = json!(1.5);
    assert_eq!(chat_as(&gw, KEY, &warm, &[]).await["cache"], "miss");
    let mut tools = q.clone();
    tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    assert_eq!(chat_as(&gw, KEY, &tools, &[]).await["cache"], "miss");
    // The same request, whatever `user` and `stream_options` say, is the same request.
    let mut same = q.clone();
    same["user"] = json!("end-user-7");
    let hit = chat_as(&gw, KEY, &same, &[]).await;
    assert_eq!(
        (hit["cache"].as_str(), text(&hit)),
        (Some("hit"), "answer 0")
    );
    // Alias g's scope is global: the other key gets the first key's answer.
    let g = ask("g", "hello");
    assert_eq!(chat_as(&gw, KEY, &g, &[]).await["cache"], "miss");
    let shared = chat_as(&gw, OTHER_KEY, &g, &[]).await;
    assert_eq!(shared["cache"], "hit");
    assert_eq!(text(&shared), "answer 4");
    assert_eq!(mock.calls(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn a_hit_that_today_s_output_filter_blocks_is_refused_and_still_in_the_ledger() {
    // Key `test` lets secrets through; key `other` blocks them. Alias g is shared.
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let guard = "[guard]\nsecrets = \"off\"\n[guard.keys.other]\nsecrets = \"block\"\n";
    let (gw, mock) = setup(
        vec![Step::Text(format!("The key is {secret}."))],
        &format!("{EXACT}{guard}"),
    )
    .await;
    let g = ask("g", "which key?");
    let first = chat_as(&gw, KEY, &g, &[]).await;
    assert_eq!(text(&first), format!("The key is {secret}."));
    let r = send_as(&gw, OTHER_KEY, &g, &[]).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("output_blocked"), "{body}");
    assert!(!body.contains(secret), "{body}");
    assert_eq!(mock.calls(), 1, "the hit never reached the provider");
    let rows = rows(&gw).await;
    let statuses: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.provider.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(statuses, [("a", "ok"), ("cache", "cache_hit")]);
    assert_eq!(rows[1].cost_nanos, 0);
    gw.stop().await;
}

/// Waits until `n` cacheable misses are on their way upstream.
async fn in_flight(gw: &Gateway, n: usize) {
    let cache = gw.service.cache();
    assert!(
        sluice_e2e::eventually(10, async || cache.in_flight() == n).await,
        "{} in flight, not {n}",
        cache.in_flight()
    );
}

/// `step`, `ms` after the request reached the provider.
fn after(ms: u64, step: Step) -> Step {
    Step::Delay {
        ms,
        then: Box::new(step),
    }
}

#[tokio::test]
async fn identical_requests_at_once_go_upstream_once() {
    let slow = after(500, Step::Text("answer 0".into()));
    let (gw, mock) = setup(vec![slow, Step::Text("answer 1".into())], EXACT).await;
    let q = ask("m", "hello");
    let leader = chat_as(&gw, KEY, &q, &[]);
    // Three identical requests while the first is upstream: two whole, one streamed.
    let followers = async {
        in_flight(&gw, 1).await;
        tokio::join!(
            chat_as(&gw, KEY, &q, &[]),
            chat_as(&gw, KEY, &q, &[]),
            gw.chat_stream(q.clone())
        )
    };
    let (first, (a, b, streamed)) = tokio::join!(leader, followers);
    assert_eq!(
        (first["cache"].as_str(), text(&first)),
        (Some("miss"), "answer 0")
    );
    for f in [&a, &b] {
        assert_eq!((f["cache"].as_str(), text(f)), (Some("hit"), "answer 0"));
    }
    assert_eq!(streamed.header("x-sluice-cache"), "hit");
    assert_eq!(streamed.text(), "answer 0");
    assert_eq!(mock.calls(), 1, "one provider call for four requests");
    let rows = rows(&gw).await;
    // The rows of calls that end together come in either order.
    let mut statuses: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.provider.as_str(), r.status.as_str()))
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [
            ("a", "ok"),
            ("cache", "cache_hit"),
            ("cache", "cache_hit"),
            ("cache", "cache_hit")
        ]
    );
    assert_eq!(gw.service.cache().in_flight(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_follower_waits_at_most_coalesce_s_and_another_key_never_waits() {
    let slow = after(3_000, Step::Text("answer 0".into()));
    let (gw, mock) = setup(
        vec![
            slow,
            Step::Text("answer 1".into()),
            Step::Text("answer 2".into()),
        ],
        "[cache]\nmode = \"exact\"\ncoalesce_s = 1\n",
    )
    .await;
    let q = ask("m", "hello");
    let leader = chat_as(&gw, KEY, &q, &[]);
    let others = async {
        in_flight(&gw, 1).await;
        // Another key is another scope: upstream at once. The same key waits a second
        // for the leader (three seconds out), then goes upstream itself.
        tokio::join!(chat_as(&gw, KEY, &q, &[]), chat_as(&gw, OTHER_KEY, &q, &[]))
    };
    let (first, (same, other)) = tokio::join!(leader, others);
    assert_eq!(text(&first), "answer 0");
    // Both went upstream on their own while the leader was still out (in either order).
    for r in [&other, &same] {
        assert_eq!(r["cache"], "miss");
        assert_ne!(text(r), "answer 0");
    }
    assert_ne!(text(&other), text(&same));
    assert_eq!(mock.calls(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_follower_of_a_failed_call_goes_upstream_and_coalesce_s_0_never_waits() {
    let (gw, mock) = setup(
        vec![
            after(500, Step::BadRequest("no".into())),
            Step::Text("answer 1".into()),
            after(500, Step::Text("answer 2".into())),
            Step::Text("answer 3".into()),
        ],
        "[cache]\nmode = \"exact\"\n[cache.models.g]\ncoalesce_s = 0\n",
    )
    .await;
    // The first call fails: its follower waited for nothing and goes upstream itself.
    let q = ask("m", "hello");
    let failed = send_as(&gw, KEY, &q, &[]);
    let follower = async {
        in_flight(&gw, 1).await;
        chat_as(&gw, KEY, &q, &[]).await
    };
    let (failed, follower) = tokio::join!(failed, follower);
    assert_eq!(failed.status(), 400);
    assert_eq!(
        (follower["cache"].as_str(), text(&follower)),
        (Some("miss"), "answer 1")
    );
    assert_eq!(mock.calls(), 2);
    // Alias g never waits: the second call is answered before the first.
    let g = ask("g", "hello");
    let first = chat_as(&gw, KEY, &g, &[]);
    let second = async {
        // Sent once the first is at the provider (nothing is in flight for g to wait on).
        assert!(sluice_e2e::eventually(10, async || mock.calls() == 3).await);
        assert_eq!(gw.service.cache().in_flight(), 0);
        chat_as(&gw, KEY, &g, &[]).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(text(&first), "answer 2");
    assert_eq!(
        (second["cache"].as_str(), text(&second)),
        (Some("miss"), "answer 3")
    );
    assert_eq!(mock.calls(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn cache_control_bypasses_and_no_store_keeps_the_answer_out() {
    let (gw, mock) = setup(answers(4), EXACT).await;
    let q = ask("m", "hello");
    chat_as(&gw, KEY, &q, &[]).await;
    let fresh = chat_as(&gw, KEY, &q, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        (fresh["cache"].as_str(), text(&fresh)),
        (Some("bypass"), "answer 1")
    );
    // no-cache stored its answer: the next plain call gets it.
    let next = chat_as(&gw, KEY, &q, &[]).await;
    assert_eq!(
        (next["cache"].as_str(), text(&next)),
        (Some("hit"), "answer 1")
    );
    let q2 = ask("m", "another question");
    let private = chat_as(&gw, KEY, &q2, &[("cache-control", "private, no-store")]).await;
    assert_eq!(private["cache"], "bypass");
    let after = chat_as(&gw, KEY, &q2, &[("x-sluice-cache", "bypass")]).await;
    assert_eq!(
        (after["cache"].as_str(), text(&after)),
        (Some("bypass"), "answer 3")
    );
    assert_eq!(mock.calls(), 4);
    // An alias that does not cache says nothing.
    let (plain, _mock) = setup(vec![Step::Text("x".into())], "").await;
    assert_eq!(
        plain.chat(ask("m", "hi")).await.header("x-sluice-cache"),
        ""
    );
    plain.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_is_stored_and_a_hit_replays_as_a_stream() {
    let answer = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty.";
    let (gw, mock) = setup(vec![Step::Text(answer.into())], EXACT).await;
    let q = ask("m", "count to twenty");
    let first = gw.chat_stream(q.clone()).await;
    assert_eq!(first.header("x-sluice-cache"), "miss");
    assert_eq!(first.text(), answer);
    let mut with_usage = q.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let replay = gw.chat_stream(with_usage).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("x-sluice-cache"), "hit");
    assert!(
        replay
            .header("content-type")
            .starts_with("text/event-stream"),
        "a proper SSE stream"
    );
    assert!(replay.done && replay.error().is_none());
    assert_eq!(replay.text(), answer);
    assert_eq!(replay.finish_reason(), Some("stop"));
    assert_eq!(replay.events[0]["choices"][0]["delta"]["role"], "assistant");
    let pieces = replay
        .events
        .iter()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces > 1, "replayed in pieces, not one blob");
    let usage = replay.usage().unwrap();
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    // A stream's answer serves a whole request too, and the other way round.
    let whole = gw.chat(q).await;
    assert_eq!(
        (whole.header("x-sluice-cache"), whole.text()),
        ("hit", answer)
    );
    assert_eq!(mock.calls(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn errors_and_cut_streams_are_never_stored() {
    let (gw, mock) = setup(
        vec![
            // The first call's attempts (its retries included) all fail.
            Step::ServerError(500),
            Step::ServerError(500),
            Step::ServerError(500),
            Step::Text("fine".into()),
            Step::CutAfter(2),
            Step::Text("whole now".into()),
        ],
        EXACT,
    )
    .await;
    let q = ask("m", "first");
    let failed = gw.chat(q.clone()).await;
    assert!(failed.status >= 500, "{}", failed.json);
    let ok = gw.chat(q).await;
    assert_eq!((ok.header("x-sluice-cache"), ok.text()), ("miss", "fine"));
    let q2 = ask("m", "one two three four five");
    let cut = gw.chat_stream(q2.clone()).await;
    assert!(cut.error().is_some(), "the stream broke");
    let again = gw.chat_stream(q2).await;
    assert_eq!(
        again.header("x-sluice-cache"),
        "miss",
        "a cut stream was not stored"
    );
    assert_eq!(again.text(), "whole now");
    assert_eq!(mock.calls(), 6);
    gw.stop().await;
}

#[tokio::test]
async fn answers_expire_after_their_ttl_and_the_least_recently_used_is_evicted() {
    let (gw, mock) = setup(
        answers(8),
        "[cache]\nmode = \"exact\"\nmax_entries = 2\n[cache.models.g]\nttl_s = 1\n",
    )
    .await;
    let g = ask("g", "short-lived");
    gw.chat(g.clone()).await;
    assert_eq!(gw.chat(g.clone()).await.header("x-sluice-cache"), "hit");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        gw.chat(g).await.header("x-sluice-cache"),
        "miss",
        "expired after ttl_s"
    );
    // Two entries at most: a, b, (a used), c evicts b.
    let (a, b, c) = (ask("m", "a"), ask("m", "b"), ask("m", "c"));
    gw.chat(a.clone()).await;
    gw.chat(b.clone()).await;
    assert_eq!(gw.chat(a.clone()).await.header("x-sluice-cache"), "hit");
    gw.chat(c).await;
    assert_eq!(
        gw.chat(a).await.header("x-sluice-cache"),
        "hit",
        "used lately"
    );
    assert_eq!(gw.chat(b).await.header("x-sluice-cache"), "miss", "evicted");
    assert_eq!(mock.calls(), 6);
    gw.stop().await;
}

#[tokio::test]
async fn websocket_results_say_what_the_cache_did_and_a_hit_streams() {
    let (gw, mock) = setup(vec![Step::Text("Hello there.".into()); 2], EXACT).await;
    let (mut s, _) = session(&gw, json!({})).await;
    let mut results = Vec::new();
    for (id, params) in [
        ("c1", ask("m", "hi")),
        ("c2", ask("m", "hi")),
        ("c3", {
            let mut p = ask("m", "hi");
            p["cache"] = json!("bypass");
            p
        }),
        ("c4", {
            let mut p = ask("m", "hi");
            p["cache"] = json!("sometimes");
            p
        }),
    ] {
        send(
            &mut s,
            json!({"type": "req", "id": id, "method": "chat.completions", "params": params}),
        )
        .await;
        let mut text = String::new();
        let res = loop {
            let f = next(&mut s).await;
            if f["type"] == "res" && f["ok"] == false {
                break f;
            }
            match f["event"].as_str() {
                Some("chat.delta") => text.push_str(
                    f["data"]["chunk"]["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or(""),
                ),
                Some("chat.completed") => break f,
                _ if f["type"] == "res" => results.push(f["result"]["cache"].clone()),
                _ => {}
            }
        };
        if id != "c4" {
            assert_eq!(text, "Hello there.", "{id}");
        } else {
            assert_eq!(res["error"]["code"], "invalid_params", "{res}");
        }
    }
    assert_eq!(results, vec![json!("miss"), json!("hit"), json!("bypass")]);
    assert_eq!(mock.calls(), 2);
    gw.stop().await;
}

/// The model's directory, when its files are here (`scripts/fetch-model`); CI sets
/// `SLUICE_REQUIRE_MODEL=1` so that a missing model fails instead of skipping.
fn model_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SLUICE_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/potion-base-8M")
        });
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("SLUICE_REQUIRE_MODEL").as_deref() != Ok("1"),
        "SLUICE_REQUIRE_MODEL=1 but no model at {}",
        dir.display()
    );
    eprintln!(
        "skipped: no model at {} (scripts/fetch-model)",
        dir.display()
    );
    None
}

#[tokio::test]
async fn the_semantic_cache_serves_a_near_repeat_and_refuses_a_near_miss() {
    let Some(dir) = model_dir() else { return };
    let cache = format!(
        "[cache]\nmode = \"exact\"\nmodel_dir = \"{}\"\n[cache.models.m]\nmode = \"semantic\"\n",
        dir.display()
    );
    let (gw, mock) = setup(answers(8), &cache).await;
    let with_history = |q: &str| {
        json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a travel assistant."},
            {"role": "user", "content": q},
        ]})
    };
    let first = gw
        .chat(with_history("What is the capital city of France?"))
        .await;
    assert_eq!(first.header("x-sluice-cache"), "miss");
    let near = gw
        .chat(with_history("what's the capital city of france"))
        .await;
    assert_eq!(
        (near.header("x-sluice-cache"), near.text()),
        ("semantic-hit", "answer 0")
    );
    // Another country, and the same words about money in another order, are misses.
    let other = gw
        .chat(with_history("What is the capital city of Germany?"))
        .await;
    assert_eq!(other.header("x-sluice-cache"), "miss");
    gw.chat(with_history("Convert 100 USD to EUR")).await;
    let swapped = gw.chat(with_history("Convert 100 EUR to USD")).await;
    assert_eq!(swapped.header("x-sluice-cache"), "miss");
    // Everything but the last turn must match: another system prompt misses.
    let mut other_system = with_history("what's the capital city of france");
    other_system["messages"][0]["content"] = json!("You are a pirate.");
    assert_eq!(gw.chat(other_system).await.header("x-sluice-cache"), "miss");
    // Alias g caches exactly only.
    gw.chat(ask("g", "What is the capital city of France?"))
        .await;
    let g = gw.chat(ask("g", "what's the capital city of france")).await;
    assert_eq!(g.header("x-sluice-cache"), "miss");
    let rows = rows(&gw).await;
    assert!(rows.iter().any(|r| r.status == "cache_semantic_hit"));
    assert_eq!(
        mock.calls(),
        7,
        "every call but the near repeat reached the provider"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_agent_run_s_steps_use_the_cache_of_their_alias() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("Done once.".into()); 2]);
    let gw = Gateway::start(&format!(
        "{}\n[agents.helper]\nmodel = \"m\"\nsystem = \"You help.\"\n",
        config(&mock, EXACT)
    ))
    .await;
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let resp = gw
            .client
            .post(gw.url("/v1/runs"))
            .bearer_auth(KEY)
            .json(&json!({"agent": "helper", "input": "Summarise the plan."}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut run = Value::Null;
        let ended = sluice_e2e::eventually(15, async || {
            run = gw
                .client
                .get(gw.url(&format!("/v1/runs/{id}")))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            !matches!(run["status"].as_str(), Some("queued" | "running"))
        })
        .await;
        assert!(ended && run["status"] == "completed", "{run}");
        outputs.push(run["output"].clone());
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(mock.calls(), 1, "the second run's step was a hit");
    let rows = rows(&gw).await;
    let last = rows.last().unwrap();
    assert_eq!(
        (last.provider.as_str(), last.status.as_str()),
        ("cache", "cache_hit")
    );
    assert_eq!(last.agent_id.as_deref(), Some("helper"));
    assert!(last.run_id.is_some(), "the hit is the run's step");
    gw.stop().await;
}

#[tokio::test]
async fn the_openai_python_sdk_reads_hits_whole_and_streamed() {
    let (gw, mock) = setup(
        vec![
            Step::Text("Paris is the capital of France.".into()),
            Step::Text("Still Paris.".into()),
        ],
        EXACT,
    )
    .await;
    let stdout = sluice_e2e::run_python(
        "sdk_cache.py",
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
            "first miss Paris is the capital of France.",
            "second hit",
            "stream hit stop",
            "bypass bypass Still Paris.",
        ],
        "{stdout}"
    );
    assert_eq!(mock.calls(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn operators_see_and_empty_the_cache_through_the_admin_api() {
    const ADMIN: &str = "admin-token-0123456789";
    let (gw, mock) = setup(
        vec![Step::Text("one".into()), Step::Text("two".into())],
        &format!("{EXACT}[server]\nadmin_token = \"{ADMIN}\"\n"),
    )
    .await;
    let admin = |method: reqwest::Method| {
        gw.client
            .request(method, gw.url("/admin/cache"))
            .bearer_auth(ADMIN)
    };
    gw.chat(ask("m", "hello")).await;
    let state: Value = admin(reqwest::Method::GET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["entries"], 1, "{state}");
    assert!(state["bytes"].as_u64().unwrap() > 0);
    assert_eq!(state["semantic"], false, "no alias asks for it");
    let plain = gw
        .client
        .delete(gw.url("/admin/cache"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 401, "a gateway key is not the admin token");
    let cleared: Value = admin(reqwest::Method::DELETE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["removed"], 1);
    let again = gw.chat(ask("m", "hello")).await;
    assert_eq!(
        (again.header("x-sluice-cache"), again.text()),
        ("miss", "two")
    );
    assert_eq!(mock.calls(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn without_the_model_a_semantic_alias_gets_exact_lookups() {
    const ADMIN: &str = "admin-token-0123456789";
    let (gw, mock) = setup(
        answers(3),
        &format!(
            "[cache]\nmode = \"semantic\"\nmodel_dir = \"/nonexistent/potion\"\n\
             [server]\nadmin_token = \"{ADMIN}\"\n"
        ),
    )
    .await;
    let state: Value = gw
        .client
        .get(gw.url("/admin/cache"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["semantic"], false, "{state}");
    let q = ask("m", "What is the capital city of France?");
    assert_eq!(gw.chat(q.clone()).await.header("x-sluice-cache"), "miss");
    assert_eq!(gw.chat(q).await.header("x-sluice-cache"), "hit");
    let near = gw.chat(ask("m", "what's the capital city of france")).await;
    assert_eq!(
        near.header("x-sluice-cache"),
        "miss",
        "no near-repeats without the model"
    );
    assert_eq!(mock.calls(), 2);
    gw.stop().await;
}
