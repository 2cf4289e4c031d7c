//! `sluice channels …` against a running gateway's store and the mock platforms: a pairing
//! code reaches an unknown user, the CLI approves it, the user is told and then answered;
//! `telegram set-webhook` registers the URL, the secret and the update types.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

mod common;

use std::time::Duration;

use common::run;
use sluice_e2e::{Gateway, MockProvider, Step, Wire, provider};
use sluice_mock::chat::{self, MockChat, SlackDelivery};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn config(mock: &MockProvider, chat: &MockChat, db: &str) -> String {
    let base = chat.base_url();
    format!(
        "[[keys]]\nname = \"slack\"\nkey = \"sk-slack-unused-0123456789\"\n\
         {}\n[models.m]\nchain = [\"a:m-main\"]\n[agents.helpdesk]\nmodel = \"m\"\n\
         [database]\nurl = \"{db}\"\n\
         [channels]\nscan_interval_ms = 100\n\
         [channels.slack]\nsigning_secret = \"{SECRET}\"\nbot_token = \"{}\"\nagent = \"helpdesk\"\n\
         run_as = \"slack\"\napi_base = \"{base}/api\"\n\
         [channels.telegram.support]\ntoken = \"123:tok\"\nsecret_token = \"tg_secret\"\nagent = \"helpdesk\"\n\
         run_as = \"slack\"\nusername = \"SupportBot\"\napi_base = \"{base}\"\n\
         webhook_url = \"https://gw.example.com/channels/telegram/support\"\n",
        provider("a", mock, &["sk-a"], ""),
        chat.slack_token(),
    )
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_unknown_user_gets_one_code_and_the_cli_approval_lets_them_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/sluice.db", dir.path().display());
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("Welcome aboard.".into())]);
    let chat = MockChat::start().await;
    chat.add_telegram_bot("123:tok", "SupportBot", 777);
    let text = config(&mock, &chat, &db);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = path.to_str().unwrap().to_owned();
    let gw = Gateway::start(&text).await;
    let url = gw.url("/channels/slack/events");
    let dm = |ts: &str, ev: &str| chat::slack_dm("T01", "D01", "U0NEW", "hello?", ts, None, ev);

    // The first DM gets a code; the agent does not run.
    let r = chat::slack_event(&url, SECRET, dm("1.1", "Ev1"), SlackDelivery::default())
        .await
        .unwrap();
    assert_eq!(r.headers()["x-sluice-webhook"], "pairing");
    until("the code", || {
        chat.slack_messages("D01")
            .iter()
            .any(|m| m.text.contains("sluice channels pairing approve"))
    })
    .await;
    let notice = chat.slack_messages("D01")[0].text.clone();
    let code = notice.split("approve ").nth(1).unwrap().trim().to_owned();
    assert_eq!(code.len(), 8, "{notice}");
    // Asking again while the request is pending sends no second code.
    let r = chat::slack_event(&url, SECRET, dm("1.2", "Ev2"), SlackDelivery::default())
        .await
        .unwrap();
    assert_eq!(r.headers()["x-sluice-webhook"], "not_allowed");
    assert_eq!(mock.calls_for("m-main"), 0);

    let (status, out, err) = cli(vec![
        "channels".into(),
        "pairing".into(),
        "list".into(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("U0NEW") && l.contains(&code) && l.contains("pending")),
        "{out}"
    );
    // Any case, with a dash: the operator's typing.
    let typed = format!("{}-{}", &code[..4].to_lowercase(), &code[4..]);
    let (status, out, err) = cli(vec![
        "channels".into(),
        "pairing".into(),
        "approve".into(),
        typed,
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 0, "{out}{err}");
    until("the approval notice", || {
        chat.slack_messages("D01")
            .iter()
            .any(|m| m.text.contains("approved"))
    })
    .await;
    let (status, _, _) = cli(vec![
        "channels".into(),
        "pairing".into(),
        "approve".into(),
        code.clone(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 1, "a code works once");

    let r = chat::slack_event(&url, SECRET, dm("1.3", "Ev3"), SlackDelivery::default())
        .await
        .unwrap();
    assert_eq!(r.headers()["x-sluice-webhook"], "accepted");
    until("the answer", || {
        chat.slack_messages("D01")
            .iter()
            .any(|m| m.text == "Welcome aboard.")
    })
    .await;
    assert_eq!(mock.calls_for("m-main"), 1);

    // Revoked: ignored again, without a new code (the request is not pending).
    let (status, _, err) = cli(vec![
        "channels".into(),
        "pairing".into(),
        "revoke".into(),
        "slack".into(),
        "slack".into(),
        "U0NEW".into(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 0, "{err}");
    let (status, out, _) = cli(vec![
        "channels".into(),
        "deliveries".into(),
        "list".into(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains(" sent ")).count(),
        3,
        "code, approval, answer: {out}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn set_webhook_registers_the_url_the_secret_and_the_update_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/sluice.db", dir.path().display());
    let mock = MockProvider::start(Wire::OpenAi).await;
    let chat = MockChat::start().await;
    chat.add_telegram_bot("123:tok", "SupportBot", 777);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config(&mock, &chat, &db)).unwrap();
    let cfg = path.to_str().unwrap().to_owned();
    let (status, out, err) = cli(vec![
        "channels".into(),
        "telegram".into(),
        "set-webhook".into(),
        "--drop-pending-updates".into(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains("url=https://gw.example.com/channels/telegram/support"),
        "{out}"
    );
    let set = chat.set_webhooks();
    let calls = &set["123:tok"];
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["url"],
        "https://gw.example.com/channels/telegram/support"
    );
    assert_eq!(calls[0]["secret_token"], "tg_secret");
    assert_eq!(calls[0]["allowed_updates"], serde_json::json!(["message"]));
    assert_eq!(calls[0]["drop_pending_updates"], true);
    let (status, _, err) = cli(vec![
        "channels".into(),
        "telegram".into(),
        "set-webhook".into(),
        "nobot".into(),
        "--config".into(),
        cfg,
    ])
    .await;
    assert_eq!(status, 1);
    assert!(err.contains("no [channels.telegram.nobot]"), "{err}");
}
