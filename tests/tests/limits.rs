//! Limits and budgets through the real gateway against the built-in mock provider (which
//! reports usage and honours `max_tokens`): budgets under 200 concurrent requests, two
//! instances on one Postgres, a restart, user/model/agent scopes, upstream-model limits,
//! the per-request output cap and the spend-velocity breaker.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sluice_e2e::{Gateway, TestDatabase, eventually};
use sluice_store::spend::GroupBy;

const ADMIN: &str = "admin-token-0123456789";
const KEY_A: &str = "sk-limits-key-a";
const KEY_B: &str = "sk-limits-key-b";
/// $1000 per 1M tokens in and out: every token costs exactly 1,000,000 nano-dollars.
const NANOS_PER_TOKEN: i64 = 1_000_000;

/// Two config keys of user alice with `key_limits`, the mock provider priced per token,
/// and `extra` (more `[limits]` tables, a `[database]`).
fn config(key_limits: &str, extra: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[[keys]]
name = "a"
key = "{KEY_A}"
user = "alice"
limits = {{ {key_limits} }}
[[keys]]
name = "b"
key = "{KEY_B}"
user = "alice"
[providers.mock]
kind = "mock"
words = 12
[providers.spare]
kind = "mock"
words = 12
[models.m]
chain = ["mock:model-x"]
[models.two]
chain = ["mock:model-x", "spare:model-y"]
[prices.models.model-x]
input = 1000.0
output = 1000.0
[prices.models.model-y]
input = 1000.0
output = 1000.0
{extra}
"#
    )
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send(gw: &Gateway, key: &str, body: &Value, agent: Option<&str>) -> Answer {
    let mut req = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    if let Some(a) = agent {
        req = req.header("x-sluice-agent", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

/// "hi" to `model` with `max_tokens`: the gateway reserves 8 prompt tokens (by
/// tokenizer) + `max_tokens`; the mock uses 1 prompt token + `max_tokens` (≤ 12 words).
fn ask(model: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

async fn spent_by(gw: &Gateway, key: &str) -> i64 {
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let lines = gw
        .service
        .store()
        .spend_report(GroupBy::Key, 0, i64::MAX)
        .await
        .unwrap();
    lines
        .iter()
        .filter(|l| l.group == key)
        .map(|l| l.cost_nanos)
        .sum()
}

/// Fires `n` identical requests at once, alternating between the gateways.
async fn burst(gws: &[&Gateway], key: &str, body: &Value, n: usize) -> Vec<Answer> {
    let calls = (0..n).map(|i| send(gws[i % gws.len()], key, body, None));
    futures_util::future::join_all(calls).await
}

fn tally(answers: &[Answer], codes: &[&str]) -> (usize, usize) {
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let refused = answers
        .iter()
        .filter(|a| a.status == 429 && codes.contains(&a.code()))
        .count();
    assert_eq!(
        ok + refused,
        answers.len(),
        "every request is answered or refused for the budget: {:?}",
        answers
            .iter()
            .filter(|a| a.status != 200 && !codes.contains(&a.code()))
            .map(|a| (a.status, a.json.clone()))
            .collect::<Vec<_>>()
    );
    (ok, refused)
}

// Each request reserves 8 + 10 = 18 tokens ($0.018) and uses 1 + 10 = 11 ($0.011). A
// budget of $0.10 admits at least 5 (reserved in full) and at most 9 (settled).
const BUDGET: &str = "budget_usd_total = 0.1";
const BUDGET_NANOS: i64 = 100_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_holds_under_200_concurrent_requests() {
    let gw = Gateway::start(&config(BUDGET, "")).await;
    let answers = burst(&[&gw], KEY_A, &ask("m", 10), 200).await;
    let (ok, refused) = tally(&answers, &["budget_exceeded"]);
    assert!((5..=9).contains(&ok), "{ok} answered");
    assert_eq!(ok + refused, 200);
    let refusal = answers.iter().find(|a| a.status == 429).unwrap();
    assert_eq!(refusal.headers["x-should-retry"], "false");
    assert!(
        refusal.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lifetime budget of $0.10"),
        "{}",
        refusal.json
    );
    let spent = spent_by(&gw, "config:a").await;
    assert_eq!(spent, ok as i64 * 11 * NANOS_PER_TOKEN, "priced from usage");
    assert!(spent <= BUDGET_NANOS, "spent {spent} of {BUDGET_NANOS}");
    // The other key of the same user has no budget of its own.
    assert_eq!(send(&gw, KEY_B, &ask("m", 10), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_hold_one_budget_and_one_rate_limit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let extra = format!(
        "[limits.users.alice]\nrpm = 6\n[database]\nurl = \"{}\"\nkey_refresh_ms = 100\nledger_flush_ms = 50\n",
        db.url
    );
    let one = Gateway::start(&config(BUDGET, &extra)).await;
    let two = Gateway::start(&config(BUDGET, &extra)).await;
    let answers = burst(&[&one, &two], KEY_A, &ask("m", 10), 200).await;
    let (ok, _) = tally(&answers, &["budget_exceeded", "rate_limit_exceeded"]);
    assert!((5..=6).contains(&ok), "{ok} answered");
    one.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let spent = spent_by(&two, "config:a").await;
    assert!(spent <= BUDGET_NANOS, "spent {spent} of {BUDGET_NANOS}");
    assert_eq!(spent, ok as i64 * 11 * NANOS_PER_TOKEN);

    // Alice's 6 requests a minute hold for the pair: key b gets what key a left.
    let rest = burst(&[&one, &two], KEY_B, &ask("m", 10), 20).await;
    let answered = rest.iter().filter(|a| a.status == 200).count();
    assert_eq!(
        answered,
        6 - ok,
        "6 per minute for alice across both instances"
    );
    let limited = rest.iter().find(|a| a.status == 429).unwrap();
    assert_eq!(limited.code(), "rate_limit_exceeded");
    assert!(limited.headers.contains_key("retry-after"));
    one.stop().await;
    two.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn budgets_and_rate_limits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[database]\nurl = \"sqlite://{}/sluice.db\"\n",
        dir.path().display()
    );
    let cfg = config("budget_tokens_day = 40, rpm = 100", &extra);
    let gw = Gateway::start(&cfg).await;
    // 18 reserved, 11 used each: 3 fit in 40 tokens (33), the 4th does not (33 + 18).
    for _ in 0..3 {
        assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    }
    let refused = send(&gw, KEY_A, &ask("m", 10), None).await;
    assert_eq!(refused.code(), "budget_exceeded");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= 86_400, "a day's budget is back at UTC midnight");
    gw.stop().await;

    let again = Gateway::start(&cfg).await;
    let after = send(&again, KEY_A, &ask("m", 10), None).await;
    assert_eq!(
        after.code(),
        "budget_exceeded",
        "the restart forgot nothing"
    );
    let name = format!(
        "key:config:a/tokens/{}",
        sluice_limits::spec::Period::Day
            .window(sluice_service::ids::now_ms())
            .id()
    );
    again.stop().await;
    let store = sluice_store::Store::open(&format!("sqlite://{}/sluice.db", dir.path().display()))
        .await
        .unwrap();
    let (used, _) = store.bucket(&name).await.unwrap().unwrap();
    assert_eq!(
        used, 33,
        "3 calls of 11 tokens; the unused leases went back on stop"
    );
}

#[tokio::test]
async fn user_model_and_agent_scopes_each_hold() {
    let extra = r#"
[limits.users.alice]
rpm = 100
budget_tokens_total = 1000
[limits.models.two]
rpm = 2
[limits.agents.nightly]
budget_tokens_day = 30
"#;
    let gw = Gateway::start(&config("rpm = 100", extra)).await;
    // The model alias `two` takes 2 a minute, from any key.
    assert_eq!(send(&gw, KEY_A, &ask("two", 1), None).await.status, 200);
    assert_eq!(send(&gw, KEY_B, &ask("two", 1), None).await.status, 200);
    let third = send(&gw, KEY_A, &ask("two", 1), None).await;
    assert_eq!(third.code(), "rate_limit_exceeded");
    assert!(
        third.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model `two`"),
        "{}",
        third.json
    );
    assert_eq!(send(&gw, KEY_A, &ask("m", 1), None).await.status, 200);

    // The agent's 30 tokens a day: one request of 18 reserved (11 used) fits, then 11 +
    // 18 = 29 fits, then no more.
    let nightly = Some("nightly");
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), nightly).await.status, 200);
    assert_eq!(send(&gw, KEY_B, &ask("m", 10), nightly).await.status, 200);
    let over = send(&gw, KEY_A, &ask("m", 10), nightly).await;
    assert_eq!(over.code(), "budget_exceeded");
    assert!(
        over.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent `nightly`")
    );
    // Without the agent header the keys go on; a bad agent name is refused.
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    let bad = send(&gw, KEY_A, &ask("m", 10), Some("no spaces")).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let by_agent = gw
        .service
        .store()
        .spend_report(GroupBy::Agent, 0, i64::MAX)
        .await
        .unwrap();
    assert!(
        by_agent
            .iter()
            .any(|l| l.group == "nightly" && l.calls == 2),
        "{by_agent:?}"
    );
}

#[tokio::test]
async fn an_upstream_model_at_its_limit_is_skipped_then_refused() {
    let extra = "[limits.upstream.\"mock:model-x\"]\nrpm = 1\n";
    let gw = Gateway::start(&config("rpm = 100", extra)).await;
    let first = send(&gw, KEY_A, &ask("two", 1), None).await;
    assert_eq!(first.headers["x-sluice-provider"], "mock");
    let second = send(&gw, KEY_A, &ask("two", 1), None).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.headers["x-sluice-provider"], "spare",
        "model-x is at its own limit: the chain moves on without calling it"
    );
    let only = send(&gw, KEY_A, &ask("m", 1), None).await;
    assert_eq!((only.status, only.code()), (429, "rate_limit_exceeded"));
    assert_eq!(only.headers["retry-after"], "60");
}

#[tokio::test]
async fn the_output_cap_is_sent_upstream_and_enforced() {
    let gw = Gateway::start(&config(
        "rpm = 100",
        "[limits]\nmax_output_tokens = 5\noutput_reserve = 5\n",
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let capped = send(&gw, KEY_A, &body, None).await;
    assert_eq!(capped.status, 200);
    assert_eq!(capped.json["usage"]["completion_tokens"], 5);
    assert_eq!(capped.json["choices"][0]["finish_reason"], "length");
    let over = send(&gw, KEY_A, &ask("m", 6), None).await;
    assert_eq!((over.status, over.code()), (400, "max_tokens_too_large"));
}

/// Found in review: with a cap set, a request without max_tokens reserved the whole cap
/// (16,384 tokens with the reference config) instead of `output_reserve`, so a budget
/// admitted far fewer requests than it could.
#[tokio::test]
async fn a_request_without_max_tokens_reserves_output_reserve_not_the_cap() {
    let gw = Gateway::start(&config(
        "budget_tokens_total = 100",
        "[limits]\nmax_output_tokens = 1000\noutput_reserve = 20\n",
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    // Each call reserves about 8 + 20 tokens and uses 1 + 12: several fit in 100.
    let mut answered = 0;
    for _ in 0..10 {
        let r = send(&gw, KEY_A, &body, None).await;
        if r.status != 200 {
            assert_eq!(r.code(), "budget_exceeded", "{:?}", r.json);
            break;
        }
        assert_eq!(
            r.json["usage"]["completion_tokens"], 12,
            "the cap went upstream, not a reserve-sized limit"
        );
        answered += 1;
    }
    assert!(
        answered >= 5,
        "only {answered} of a 100-token budget's requests were admitted"
    );
    assert!(spent_by(&gw, "config:a").await > 0);
}

#[tokio::test]
async fn the_spend_breaker_trips_and_an_operator_resets_it() {
    // Each call costs $0.011; more than $0.03 in a minute trips the key.
    let extra = "[limits.spend_breaker]\nmax_usd = 0.03\n";
    let gw = Gateway::start(&config("rpm = 100", extra)).await;
    for _ in 0..3 {
        assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    }
    // The third call took the window to $0.033: the fourth is stopped.
    let stopped = send(&gw, KEY_A, &ask("m", 10), None).await;
    assert_eq!(
        (stopped.status, stopped.code()),
        (403, "spend_breaker_open")
    );
    assert_eq!(stopped.headers["x-should-retry"], "false");
    assert!(
        !stopped.headers.contains_key("retry-after"),
        "no cool-down set"
    );
    assert_eq!(
        send(&gw, KEY_B, &ask("m", 10), None).await.status,
        200,
        "other keys go on"
    );

    let admin = |method: reqwest::Method, path: &str| {
        gw.client
            .request(method, gw.url(path))
            .bearer_auth(ADMIN)
            .send()
    };
    let listed: Value = admin(reqwest::Method::GET, "/admin/spend-breakers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["key_id"], "config:a");
    assert!(
        listed["data"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ceiling")
    );
    // The trip reaches the store (written off the request path), for every instance and
    // across restarts.
    assert!(
        eventually(5, async || gw
            .service
            .store()
            .open_trips(0)
            .await
            .unwrap()
            .len()
            == 1)
        .await
    );
    let reset = admin(
        reqwest::Method::POST,
        "/admin/spend-breakers/config:a/reset",
    )
    .await
    .unwrap();
    assert_eq!(reset.status(), 200);
    assert!(gw.service.store().open_trips(0).await.unwrap().is_empty());
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    // A trip whose write was still on its way when the reset came does not bring the
    // breaker back at the next refresh.
    let late = sluice_store::breakers::Trip {
        key_id: "config:a".into(),
        tripped_at_ms: sluice_service::ids::now_ms() - 1_000,
        until_ms: None,
        reason: "late write".into(),
    };
    gw.service.store().trip_key(&late).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    assert!(gw.service.store().open_trips(0).await.unwrap().is_empty());
    let again = admin(
        reqwest::Method::POST,
        "/admin/spend-breakers/config:a/reset",
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 404, "nothing left to reset");
}

#[tokio::test]
async fn a_tripped_key_opens_again_after_the_cool_down() {
    let extra = "[limits.spend_breaker]\nmax_usd = 0.015\ncooldown_ms = 1500\n[database]\nkey_refresh_ms = 100\n";
    let dir = tempfile::tempdir().unwrap();
    let extra = extra.replace(
        "[database]\n",
        &format!(
            "[database]\nurl = \"sqlite://{}/s.db\"\n",
            dir.path().display()
        ),
    );
    let gw = Gateway::start(&config("rpm = 100", &extra)).await;
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    let stopped = send(&gw, KEY_A, &ask("m", 10), None).await;
    assert_eq!(stopped.code(), "spend_breaker_open");
    let retry: u64 = stopped.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(
        eventually(5, async || send(&gw, KEY_A, &ask("m", 1), None)
            .await
            .status
            == 200)
        .await,
        "the key is let through once the cool-down passes"
    );
}

/// A gateway whose key A trips its spend breaker ($0.015 a minute) with a 1 s cool-down,
/// and keys refreshed every `refresh_ms`.
async fn breaker_gateway(dir: &tempfile::TempDir, refresh_ms: u64) -> Gateway {
    let extra = format!(
        "[limits.spend_breaker]\nmax_usd = 0.015\ncooldown_ms = 1000\n[database]\nkey_refresh_ms = {refresh_ms}\nurl = \"sqlite://{}/s.db\"\n",
        dir.path().display()
    );
    Gateway::start(&config("rpm = 1000", &extra)).await
}

/// Calls key A makes (answered 200) until its spend breaker stops it, at most `limit`.
async fn answered_until_stopped(gw: &Gateway, limit: usize) -> usize {
    let mut answered = 0;
    loop {
        let r = send(gw, KEY_A, &ask("m", 10), None).await;
        if r.status != 200 {
            assert_eq!(r.code(), "spend_breaker_open");
            return answered;
        }
        answered += 1;
        assert!(
            answered <= limit,
            "{answered} calls answered, at most {limit} expected"
        );
    }
}

/// Found in a weekend replay: after each cool-down the key spent unwatched until the next
/// key refresh (the expired trip stayed in memory, so nothing tripped again). With a
/// refresh far away, the key must still be stopped as fast as the first time.
#[tokio::test]
async fn after_a_cool_down_the_breaker_watches_from_the_first_call() {
    let dir = tempfile::tempdir().unwrap();
    let gw = breaker_gateway(&dir, 600_000).await;
    let first = answered_until_stopped(&gw, 20).await;
    assert!(
        eventually(5, async || send(&gw, KEY_A, &ask("m", 10), None)
            .await
            .status
            == 200)
        .await,
        "the cool-down passes"
    );
    // The call that found the key open again was the first of the new window.
    let again = 1 + answered_until_stopped(&gw, first - 1).await;
    assert!(
        again <= first,
        "{again} calls after the cool-down, {first} before the trip"
    );
}

/// The same with refreshes running (every 100 ms): whichever of a refresh and the next
/// call sees the end of the cool-down first, the key gets the same allowance as before
/// its trip (no instant re-trip on spend it was already stopped for), and the new trip is
/// stored over the expired row, so every instance sees it and it outlives this one's
/// memory of it.
#[tokio::test]
async fn a_trip_after_a_cool_down_is_stored_and_allows_what_the_first_did() {
    let dir = tempfile::tempdir().unwrap();
    let gw = breaker_gateway(&dir, 100).await;
    let first = answered_until_stopped(&gw, 20).await;
    let first_trip = gw.service.spend_breaker().open();
    let until = first_trip[0].until_ms.expect("a cool-down");
    // Past the cool-down, and past a refresh that drops the expired trip.
    while sluice_service::ids::now_ms() < until + 400 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let again = answered_until_stopped(&gw, first).await;
    assert_eq!(
        again, first,
        "the window started afresh at the end of the cool-down"
    );
    assert!(
        eventually(5, async || gw
            .service
            .store()
            .open_trips(sluice_service::ids::now_ms())
            .await
            .unwrap()
            .iter()
            .any(|t| t.tripped_at_ms > until))
        .await,
        "the second trip is in the store"
    );
}

#[tokio::test]
async fn streams_are_reserved_and_settled_from_their_usage() {
    let gw = Gateway::start(&config("budget_tokens_total = 40", "")).await;
    // 18 reserved, 11 used each: three streams fit in 40 tokens only if each settles to
    // its usage at its end (unsettled, the third would find 4 left of the 18 it needs).
    for _ in 0..3 {
        let mut body = ask("m", 10);
        body["stream"] = json!(true);
        let resp = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("[DONE]"), "{text}");
    }
    let mut body = ask("m", 10);
    body["stream"] = json!(true);
    let refused = send(&gw, KEY_A, &body, None).await;
    assert_eq!(refused.code(), "budget_exceeded");
    assert_eq!(spent_by(&gw, "config:a").await, 33 * NANOS_PER_TOKEN);
}

#[tokio::test]
async fn a_lease_the_store_cannot_give_is_a_clear_503_and_held_allowances_go_on() {
    let gw = Gateway::start(&config("budget_tokens_day = 100000", "")).await;
    // The first request leases a slice (5000 tokens); later ones are served from it.
    assert_eq!(send(&gw, KEY_A, &ask("m", 10), None).await.status, 200);
    gw.service.store().close().await;
    assert_eq!(
        send(&gw, KEY_A, &ask("m", 10), None).await.status,
        200,
        "the allowance already leased needs no store"
    );
    // A request larger than what is held needs a lease, and the store is gone.
    let big = send(&gw, KEY_A, &ask("m", 20_000), None).await;
    assert_eq!((big.status, big.code()), (503, "limits_unavailable"));
    assert_eq!(big.headers["retry-after"], "1");
    // The database's own words stay in the log.
    let text = big.json.to_string().to_lowercase();
    for internal in ["pool", "database", "sqlite", "sqlx", "closed"] {
        assert!(
            !text.contains(internal),
            "`{internal}` reached the client: {text}"
        );
    }
}

#[tokio::test]
async fn embeddings_are_reserved_and_settled_like_chat() {
    // "one two three four" is 4 tokens by tokenizer ("\"one two three four\"": 6 with the
    // quotes) and 4 by the mock's count: a budget of 20 admits 3 or 4, never more.
    let gw = Gateway::start(&config("budget_tokens_total = 20", "")).await;
    let body = json!({"model": "m", "input": "one two three four"});
    let mut answered = 0;
    let mut refused = None;
    for _ in 0..10 {
        let resp = gw
            .client
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(KEY_A)
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            answered += 1;
        } else {
            refused = Some(resp.json::<Value>().await.unwrap());
            break;
        }
    }
    assert!((3..=5).contains(&answered), "{answered} answered");
    assert_eq!(refused.unwrap()["error"]["code"], "budget_exceeded");
}

#[tokio::test]
async fn a_stream_the_client_abandons_settles_its_reservation_to_what_it_used() {
    let extra = "[providers.slow]\nkind = \"mock\"\nwords = 12\nchunk_delay_ms = 200\n[models.slow]\nchain = [\"slow:model-x\"]\n";
    let gw = Gateway::start(&config("budget_tokens_total = 1000", extra)).await;
    let mut body = ask("slow", 10);
    body["stream"] = json!(true);
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    drop(stream); // the client goes away mid-answer
    // The call is recorded, and the budget is charged what the ledger says it used: not
    // the 18 reserved, nor nothing.
    assert!(
        eventually(5, async || {
            gw.service
                .ledger()
                .flush()
                .await
                .expect("ledger rows written");
            gw.service.store().count_spend().await.unwrap() == 1
        })
        .await
    );
    let line = gw
        .service
        .store()
        .spend_report(GroupBy::Key, 0, i64::MAX)
        .await
        .unwrap()
        .remove(0);
    let used = u64::try_from(line.prompt_tokens + line.completion_tokens).unwrap();
    assert!(used > 0 && used < 18, "{used}");
    gw.service.sync_limits(std::time::Duration::ZERO).await;
    let (in_bucket, _) = gw
        .service
        .store()
        .bucket("key:config:a/tokens/total")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_bucket, used);
}

#[tokio::test]
async fn a_call_that_times_out_gives_its_reservation_back() {
    use sluice_e2e::{MockProvider, Step, Wire, provider};
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("stuck", vec![Step::Hang]);
    let extra = format!(
        "{}[models.stuck]\nchain = [\"up:stuck\"]\n",
        provider("up", &mock, &["sk-up"], "max_retries = 0\ntimeout_ms = 300")
    );
    // 18 tokens reserved per request: a budget of 20 holds one at a time.
    let gw = Gateway::start(&config("budget_tokens_total = 20", &extra)).await;
    let stuck = send(&gw, KEY_A, &ask("stuck", 10), None).await;
    assert_eq!((stuck.status, stuck.code()), (504, "upstream_timeout"));
    let next = send(&gw, KEY_A, &ask("m", 10), None).await;
    assert_eq!(
        next.status, 200,
        "the timed-out call's 18 tokens came back: {}",
        next.json
    );
}
