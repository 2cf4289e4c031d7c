//! Balanced groups in chains, against mock providers on 127.0.0.1: weights, least-busy,
//! latency, headroom, health, failover inside a group, prefix affinity, the status view.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Step, Wire, ask, provider};

const ADMIN: &str = "admin-token-0123456789";

/// Provider `a` on `mock` (no retries: a failure moves on at once), and `models`.
fn config(mock: &MockProvider, models: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN}\"\n{}{models}\n[routing]\nbackoff_base_ms = 5\nbackoff_max_ms = 20\n[routing.breaker]\nfailure_threshold = 2\nopen_ms = 60000\n",
        provider("a", mock, &["sk-a"], "max_retries = 0")
    )
}

/// Sends `n` requests, `at_once` at a time; returns the model each was answered by.
async fn run(gw: &Gateway, body: &Value, n: usize, at_once: usize) -> Vec<String> {
    let mut served = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(at_once) {
        let replies =
            futures_util::future::join_all(chunk.iter().map(|_| gw.chat(body.clone()))).await;
        for r in replies {
            assert_eq!(r.status, 200, "{}", r.json);
            served.push(r.header("x-sluice-model").to_owned());
        }
    }
    served
}

fn count(served: &[String], model: &str) -> usize {
    served.iter().filter(|m| *m == model).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_1_2_3_split_3000_requests_in_proportion() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:m1", "a:m2", "a:m3"], strategy = "weighted", weights = [1, 2, 3] }]"#,
    ))
    .await;
    let served = run(&gw, &ask("g", "hi"), 3000, 30).await;
    for (model, share) in [("m1", 1.0 / 6.0), ("m2", 2.0 / 6.0), ("m3", 3.0 / 6.0)] {
        let got = count(&served, model) as f64 / 3000.0;
        // Five standard deviations of a binomial share (0.034 for m1, 0.046 for m3): a
        // flake once in millions of runs, while a broken weighting (uniform thirds) is
        // off by 0.17. A fixed 0.03 failed about once in a thousand.
        let tolerance = 5.0 * (share * (1.0 - share) / 3000.0f64).sqrt();
        assert!(
            (got - share).abs() < tolerance,
            "{model}: {got:.3} against {share:.3} ± {tolerance:.3}"
        );
        assert_eq!(mock.calls_for(model), count(&served, model));
    }

    // The status view shows each target with its weight, in-flight calls and latency.
    let status: Value = gw
        .client
        .get(gw.url("/admin/groups"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = &status["data"][0];
    assert_eq!(group["model"], "g");
    assert_eq!(group["strategy"], "weighted");
    let targets = group["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[2]["target"], "a:m3");
    assert_eq!(targets[2]["weight"], 3);
    assert_eq!(targets[2]["in_flight"], 0);
    assert_eq!(targets[2]["breaker"], "closed");
    assert!(targets[2]["ttft_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(targets[2]["headroom"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_busy_sends_new_requests_away_from_a_target_holding_slow_calls() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    // Calls to `slow` take 2 s; `fast` answers at once.
    mock.script(
        "slow",
        vec![Step::Delay {
            ms: 2_000,
            then: Box::new(Step::Text("slow".into())),
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:slow", "a:fast"], strategy = "least_busy" }]"#,
    ))
    .await;
    let gw = std::sync::Arc::new(gw);
    let mut calls = Vec::new();
    for _ in 0..20 {
        let gw = gw.clone();
        calls.push(tokio::spawn(async move { gw.chat(ask("g", "hi")).await }));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // One or two may reach `slow` while it is idle; once it holds a call, nothing more does.
    let slow = mock.calls_for("slow");
    assert!((1..=2).contains(&slow), "slow got {slow} of 20");
    assert_eq!(mock.calls_for("fast"), 20 - slow);
    for c in calls {
        assert_eq!(c.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn latency_moves_traffic_off_a_slow_target_and_back_when_it_recovers() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let slow = Step::Delay {
        ms: 200,
        then: Box::new(Step::Text("late".into())),
    };
    mock.script("m1", vec![slow]);
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:m1", "a:m2"], strategy = "latency" }]"#,
    ))
    .await;
    let served = run(&gw, &ask("g", "hi"), 100, 1).await;
    let to_slow = count(&served, "m1");
    assert!(to_slow <= 15, "the slow target got {to_slow} of 100");

    // m1 recovers: exploration measures it again, and it gets its share back. Exploration
    // sends m1 one pick in 40; about 12 fast samples bring its average back into the band,
    // so 1400 picks give it ~35 chances (fewer than 12 has odds below one in a million).
    mock.script("m1", vec![]);
    let served = run(&gw, &ask("g", "hi"), 1500, 1).await;
    let back = count(&served[1400..], "m1");
    // Back in the band it shares the traffic (about half, less when test-machine noise
    // pushes it out for a while); left out, it would get only exploration's one in 40.
    assert!(
        back >= 15,
        "the recovered target got {back} of the last 100"
    );
}

#[tokio::test]
async fn headroom_avoids_a_target_whose_answers_report_few_tokens_left() {
    let low = MockProvider::start(Wire::OpenAi).await;
    let high = MockProvider::start(Wire::OpenAi).await;
    low.answer_headers(&[
        ("x-ratelimit-limit-tokens", "100000"),
        ("x-ratelimit-remaining-tokens", "120"),
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "499"),
    ]);
    high.answer_headers(&[
        ("x-ratelimit-limit-tokens", "100000"),
        ("x-ratelimit-remaining-tokens", "91000"),
    ]);
    let text = format!(
        "{}{}[models.g]\nchain = [{{ targets = [\"low:m\", \"high:m\"], strategy = \"headroom\" }}]\n",
        provider("low", &low, &["sk-a"], ""),
        provider("high", &high, &["sk-a"], "")
    );
    let gw = Gateway::start(&text).await;
    let served: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..50 {
            let r = gw.chat(ask("g", "hi")).await;
            assert_eq!(r.status, 200);
            out.push(r.header("x-sluice-provider").to_owned());
        }
        out
    };
    let to_low = count(&served, "low");
    assert!(
        to_low <= 1,
        "the target near its TPM cap got {to_low} of 50"
    );
}

#[tokio::test]
async fn headroom_also_reads_the_gateways_own_upstream_limits() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:m1", "a:m2"], strategy = "headroom" }]
[limits.upstream."a:m1"]
rpm = 4"#,
    ))
    .await;
    // Neither provider reports headroom. m1's own limit of 4 a minute is a quarter used
    // after its first call, so m2 (unlimited) is preferred from then on.
    let served = run(&gw, &ask("g", "hi"), 20, 1).await;
    assert!(count(&served, "m1") <= 1, "{served:?}");
}

#[tokio::test]
async fn a_failure_fails_over_inside_the_group_and_an_open_breaker_gets_nothing() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m1", vec![Step::ServerError(500)]);
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:m1", "a:m2"], strategy = "round_robin" }, "a:m3"]"#,
    ))
    .await;
    let served = run(&gw, &ask("g", "hi"), 30, 1).await;
    assert_eq!(
        count(&served, "m2"),
        30,
        "m2 answered everything: {served:?}"
    );
    assert_eq!(mock.calls_for("m3"), 0, "the chain never left the group");
    assert_eq!(
        mock.calls_for("m1"),
        2,
        "m1 failed twice, its breaker opened, and it got nothing more"
    );
    // A 400 is not shopped around the group.
    mock.script("m2", vec![Step::BadRequest("no".into())]);
    mock.script("m1", vec![Step::BadRequest("no".into())]);
    let r = gw.chat(ask("g", "hi")).await;
    assert_eq!(r.status, 400);
    assert_eq!(mock.calls_for("m1"), 2, "m1's breaker is still open");
    assert_eq!(mock.calls_for("m3"), 0);
}

#[tokio::test]
async fn prefix_affinity_keeps_a_conversation_on_one_target_and_moves_it_once() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = Gateway::start(&config(
        &mock,
        r#"[models.g]
chain = [{ targets = ["a:m1", "a:m2", "a:m3"], strategy = "round_robin", affinity = "prefix" }]"#,
    ))
    .await;
    let mut messages = vec![
        json!({"role": "system", "content": "You are a careful assistant."}),
        json!({"role": "user", "content": "Let us plan a trip."}),
    ];
    let turn = async |messages: &mut Vec<Value>| {
        let r = gw
            .chat(json!({"model": "g", "messages": messages.clone()}))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        messages.push(json!({"role": "assistant", "content": r.text()}));
        messages.push(json!({"role": "user", "content": "And then?"}));
        r.header("x-sluice-model").to_owned()
    };
    let first = turn(&mut messages).await;
    for _ in 1..50 {
        assert_eq!(
            turn(&mut messages).await,
            first,
            "one conversation, one target"
        );
    }
    // Another conversation is balanced as usual (round robin moves on).
    let others: Vec<String> = run(&gw, &ask("g", "unrelated"), 6, 1).await;
    assert!(others.iter().any(|m| *m != first));

    // Its target dies: the conversation moves once, and stays where it landed.
    mock.script(&first, vec![Step::ServerError(503)]);
    let moved = turn(&mut messages).await;
    assert_ne!(moved, first);
    for _ in 0..20 {
        assert_eq!(turn(&mut messages).await, moved);
    }
}
