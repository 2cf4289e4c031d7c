//! Schedules end to end: an agent with a 6-field `*/1 * * * * *` schedule (every second)
//! runs as its `run_as` key through the completion service; when that key's budget refuses
//! a run, the schedule pauses and says why (admin API), fires no more, and an operator's
//! resume starts it again. A fire while the previous run is going is skipped, and two
//! instances on one store make one run per fire.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_e2e::{FAST_ROUTING, Gateway, MockProvider, Step, Wire, eventually, provider};
use sluice_store::spend::GroupBy;

const ADMIN: &str = "admin-token-0123456789";
const NIGHTLY: &str = "sk-nightly-0123456789";

/// A gateway whose agent `ticker` runs every second as the key `nightly` (with
/// `key_limits`), on the mock's `m-main` at $1,000 per million tokens either way (so a run
/// costs about a cent). `extra` is appended (a `[database]` to share one).
fn config(mock: &MockProvider, key_limits: &str, extra: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN}\"\n\
         [[keys]]\nname = \"nightly\"\nkey = \"{NIGHTLY}\"\n{key_limits}\n\
         {FAST_ROUTING}{}\
         [models.m]\nchain = [\"a:m-main\"]\n\
         [prices.models.\"m-main\"]\ninput = 1000.0\noutput = 1000.0\n\
         [agents.ticker]\nmodel = \"m\"\nmax_output_tokens = 20\n\
         schedule = \"*/1 * * * * *\"\nschedule_input = \"Write the report\"\nrun_as = \"nightly\"\n\
         {extra}",
        provider("a", mock, &["sk-a"], ""),
    )
}

async fn admin(gw: &Gateway, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = gw
        .client
        .request(method, gw.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The `ticker` schedule as `GET /admin/schedules` shows it.
async fn ticker(gw: &Gateway) -> Value {
    let (status, body) = admin(gw, reqwest::Method::GET, "/admin/schedules").await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["agent"] == "ticker")
        .cloned()
        .unwrap_or_else(|| panic!("ticker is listed: {body}"))
}

async fn runs(gw: &Gateway) -> i64 {
    gw.service.store().count_rows("runs").await.unwrap()
}

/// What the key `nightly` spent, in nano-dollars, by the ledger.
async fn spent(gw: &Gateway) -> i64 {
    gw.service.ledger().flush().await.unwrap();
    gw.service
        .store()
        .spend_report(GroupBy::Key, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.group == "config:nightly")
        .map(|l| l.cost_nanos)
        .sum()
}

#[tokio::test]
async fn a_schedule_pauses_when_its_keys_budget_refuses_and_resumes_when_told() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("The report.".into())]);
    // A run reserves about 3 cents (its prompt and 20 output tokens) and spends about 1:
    // a few runs fit in 6 cents, then the budget refuses.
    let gw = Gateway::start(&config(&mock, "limits = { budget_usd_total = 0.06 }", "")).await;

    let fresh = ticker(&gw).await;
    assert_eq!(
        (&fresh["schedule"], &fresh["run_as"], &fresh["paused"]),
        (
            &Value::from("*/1 * * * * *"),
            &Value::from("nightly"),
            &Value::Bool(false)
        )
    );
    assert!(fresh["next_fire_ms"].is_i64(), "{fresh}");

    let paused = eventually(30, async || ticker(&gw).await["paused"] == true).await;
    assert!(
        paused,
        "the schedule pauses once the budget refuses: {}",
        ticker(&gw).await
    );
    let s = ticker(&gw).await;
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("budget_exceeded: ") && reason.contains("(run "),
        "the reason names the refusal and the run: {reason}"
    );
    assert_eq!(
        (&s["paused_until_ms"], &s["next_fire_ms"]),
        (&Value::Null, &Value::Null),
        "a lifetime budget never refills: paused until an operator resumes it"
    );
    assert!(s["last_fire_ms"].is_i64(), "{s}");
    let answered = mock.calls_for("m-main");
    assert!(
        answered >= 1,
        "scheduled runs ran before the budget refused"
    );
    let made = runs(&gw).await;
    assert_eq!(
        made,
        i64::try_from(answered).unwrap() + 1,
        "every run but the one the budget refused called the model"
    );
    assert!(spent(&gw).await <= 60_000_000, "the budget held");

    // Paused: two more seconds of fires start nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(runs(&gw).await, made, "a paused schedule does not fire");
    assert_eq!(mock.calls_for("m-main"), answered);

    // An operator resumes it: it fires again, the budget refuses again, and it pauses again.
    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/schedules/ticker/resume").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resumed"], true, "{body}");
    assert_eq!(body["schedule"]["paused"], false, "{body}");
    assert_eq!(body["schedule"]["reason"], Value::Null, "{body}");
    assert!(body["schedule"]["next_fire_ms"].is_i64(), "{body}");
    let again = eventually(10, async || {
        runs(&gw).await > made && ticker(&gw).await["paused"] == true
    })
    .await;
    assert!(
        again,
        "a resumed schedule fires again: {}",
        ticker(&gw).await
    );
    assert_eq!(
        mock.calls_for("m-main"),
        answered,
        "the budget refused before any model call"
    );

    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/schedules/ghost/resume").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &Value::from("not_found")),
        "{body}"
    );
}

#[tokio::test]
async fn a_fire_while_the_previous_run_is_going_is_skipped() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    // Each run takes 2.5 s: the fires of the next two seconds find it going.
    mock.script(
        "m-main",
        vec![Step::Delay {
            ms: 2_500,
            then: Box::new(Step::Text("Slow report.".into())),
        }],
    );
    let gw = Gateway::start(&config(&mock, "", "")).await;
    assert!(
        eventually(5, async || runs(&gw).await >= 1).await,
        "the first fire"
    );
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        runs(&gw).await,
        1,
        "the fires while the first run is going start nothing"
    );
    assert!(
        eventually(10, async || runs(&gw).await >= 2).await,
        "once it ended, the next fire starts a run"
    );
    assert_eq!(ticker(&gw).await["paused"], false, "skipping is no pause");
}

#[tokio::test]
async fn two_instances_on_one_store_make_one_run_per_fire() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("The report.".into())]);
    let dir = tempfile::tempdir().unwrap();
    let shared = format!(
        "[database]\nurl = \"sqlite://{}/shared.db\"\n",
        dir.path().display()
    );
    let a = Gateway::start(&config(&mock, "", &shared)).await;
    let b = Gateway::start(&config(&mock, "", &shared)).await;
    assert!(
        eventually(5, async || runs(&a).await >= 1).await,
        "the first fire"
    );
    let first = Instant::now();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let made = runs(&a).await;
    // Fires since shortly before the first run was seen: one a second.
    let fires = i64::try_from(first.elapsed().as_secs()).unwrap() + 2;
    assert!(
        (2..=fires).contains(&made),
        "{made} runs for at most {fires} fires: each fire made one run, not one per instance"
    );
    b.stop().await;
    a.stop().await;
}
