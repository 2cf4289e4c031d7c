//! Chat channels end to end: the mock platforms (`sluice_mock::chat`) deliver webhooks
//! signed exactly as Slack, Telegram and WhatsApp sign them to the real gateway, whose agent
//! runs on the mock provider; the answers arrive at the mock platforms' APIs, where the
//! tests read them as a user would see them. Refusals, retries, platform failures and a
//! restart between the answer and its delivery are each shown to answer once or never.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Step, Wire, provider};
use sluice_mock::chat::{self, Failure, MockChat, Platform, SlackDelivery};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TG_SECRET: &str = "tg-secret_token";
const TG_TOKEN: &str = "123456:tg-test-token";
const WA_SECRET: &str = "wa-app-secret";
const WA_VERIFY: &str = "wa-verify-token";
const WA_PHONE: &str = "106540352242922";

/// The gateway with a Slack app, a Telegram bot `support` and a WhatsApp number, all on the
/// mock platforms, answering with agent `helpdesk` on the mock model; `extra` goes last.
fn config(mock: &MockProvider, chat: &MockChat, policy: &str, extra: &str) -> String {
    let base = chat.base_url();
    format!(
        "[server]\nshutdown_grace_ms = 300\n{}{}\n[models.m]\nchain = [\"a:m-main\"]\n\
         [prices.models.\"m-main\"]\ninput = 1.0\noutput = 2.0\n\
         [agents.helpdesk]\nmodel = \"m\"\nsystem = \"You help.\"\nmax_output_tokens = 64\n\
         [channels]\nscan_interval_ms = 100\n\
         [channels.slack]\nsigning_secret = \"{SIGNING_SECRET}\"\nbot_token = \"{}\"\n\
         agent = \"helpdesk\"\nrun_as = \"test\"\npolicy = \"{policy}\"\nallow_users = [\"U0ALLOWED\"]\n\
         edit_interval_ms = 250\napi_base = \"{base}/api\"\nmax_body_bytes = 65536\n\
         [channels.telegram.support]\ntoken = \"{TG_TOKEN}\"\nsecret_token = \"{TG_SECRET}\"\n\
         agent = \"helpdesk\"\nrun_as = \"test\"\npolicy = \"{policy}\"\nallow_users = [\"4242\"]\n\
         edit_interval_ms = 250\ngroup_edit_interval_ms = 250\napi_base = \"{base}\"\n\
         [channels.whatsapp]\napp_secret = \"{WA_SECRET}\"\nverify_token = \"{WA_VERIFY}\"\n\
         access_token = \"{}\"\nphone_number_id = \"{WA_PHONE}\"\n\
         agent = \"helpdesk\"\nrun_as = \"test\"\npolicy = \"{policy}\"\nallow_users = [\"16505551234\"]\n\
         api_base = \"{base}\"\n{extra}\n",
        sluice_e2e::FAST_ROUTING,
        provider("a", mock, &["sk-a"], ""),
        chat.slack_token(),
        chat.whatsapp_token(),
    )
}

async fn setup(steps: Vec<Step>, policy: &str, extra: &str) -> (Gateway, MockProvider, MockChat) {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", steps);
    let chat = MockChat::start().await;
    chat.add_telegram_bot(TG_TOKEN, "SupportBot", 777);
    let gw = Gateway::start(&config(&mock, &chat, policy, extra)).await;
    (gw, mock, chat)
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until every delivery row is done (sent, failed or uncertain).
async fn settled(gw: &Gateway) {
    let store = gw.service.store().clone();
    for _ in 0..200 {
        let open = store
            .list_deliveries(None, None, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|d| matches!(d.state.as_str(), "accepted" | "running" | "ready"))
            .count();
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries did not settle");
}

/// A SQLite file that outlives one gateway (for restarts): its directory, and the
/// `[database]` section naming it.
fn file_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "[database]\nurl = \"sqlite://{}/sluice.db\"\n",
        dir.path().display()
    );
    (dir, db)
}

fn slack_url(gw: &Gateway) -> String {
    gw.url("/channels/slack/events")
}

fn mention(text: &str, ts: &str, event: &str) -> Value {
    chat::slack_app_mention(
        "T01",
        "C01",
        "U0ALLOWED",
        &format!("<@UBOT> {text}"),
        ts,
        None,
        event,
    )
}

#[tokio::test]
async fn a_signed_mention_runs_the_agent_and_the_answer_arrives_in_its_thread() {
    let (gw, mock, chat) = setup(
        vec![Step::Text("The river is fine.".into())],
        "allowlist",
        "",
    )
    .await;
    let resp = chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        mention("how is the river?", "1700000000.000100", "Ev01"),
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-webhook"], "accepted");
    until("the answer in the thread", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "The river is fine.")
    })
    .await;
    settled(&gw).await;
    let msgs = chat.slack_messages("C01");
    assert_eq!(
        msgs.len(),
        1,
        "one bot message, edited into the answer: {msgs:?}"
    );
    assert_eq!(
        msgs[0].thread.as_deref(),
        Some("1700000000.000100"),
        "in the mention's thread"
    );
    assert_eq!(mock.calls_for("m-main"), 1);
    // The model saw the text without the mention.
    let sent = mock.requests();
    let last = sent[0].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"], "how is the river?");
    // The ledger names the channel, the platform user and the session.
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].channel.as_deref(), Some("slack"));
    assert_eq!(rows[0].channel_user.as_deref(), Some("slack:T01:U0ALLOWED"));
    assert!(rows[0].session_id.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn a_direct_message_is_answered_and_bot_messages_are_ignored() {
    let (gw, mock, chat) = setup(vec![Step::Text("Hello there.".into())], "allowlist", "").await;
    let dm = chat::slack_dm(
        "T01",
        "D01",
        "U0ALLOWED",
        "hi",
        "1700000001.000100",
        None,
        "Ev02",
    );
    let r = chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        dm,
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.headers()["x-sluice-webhook"], "accepted");
    // A bot's message (this app's own reply included) and an edit are never answered.
    let mut own = chat::slack_dm(
        "T01",
        "D01",
        "UBOT",
        "Hello there.",
        "1700000001.000200",
        None,
        "Ev03",
    );
    own["event"]["bot_id"] = json!("BBOT");
    let mut edit = chat::slack_dm(
        "T01",
        "D01",
        "U0ALLOWED",
        "hi!",
        "1700000001.000300",
        None,
        "Ev04",
    );
    edit["event"]["subtype"] = json!("message_changed");
    for body in [own, edit] {
        let r = chat::slack_event(
            &slack_url(&gw),
            SIGNING_SECRET,
            body,
            SlackDelivery::default(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-sluice-webhook"], "ignored");
    }
    // Someone not on the allowlist: silently ignored, nothing stored.
    let other = chat::slack_dm(
        "T01",
        "D02",
        "U0STRANGER",
        "hi",
        "1700000001.000400",
        None,
        "Ev05",
    );
    let r = chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        other,
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.headers()["x-sluice-webhook"], "not_allowed");
    until("the DM answer", || {
        chat.slack_messages("D01")
            .iter()
            .any(|m| m.text == "Hello there.")
    })
    .await;
    settled(&gw).await;
    assert_eq!(mock.calls_for("m-main"), 1);
    assert!(chat.slack_messages("D02").is_empty());
    assert_eq!(
        gw.service
            .store()
            .count_rows("channel_deliveries")
            .await
            .unwrap(),
        1
    );
    gw.stop().await;
}

#[tokio::test]
async fn url_verification_is_answered_only_when_signed() {
    let (gw, _mock, _chat) = setup(vec![Step::Text("x".into())], "open", "").await;
    let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
    let r = chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        &body,
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["challenge"], body["challenge"]);
    let forged = SlackDelivery {
        forge: true,
        ..SlackDelivery::default()
    };
    let r = chat::slack_event(&slack_url(&gw), SIGNING_SECRET, &body, forged)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.stop().await;
}

/// Every way a webhook can be wrong, on each platform: refused with its status and code,
/// and nothing is stored or run.
#[tokio::test]
async fn every_bad_request_is_refused_and_nothing_runs_or_is_stored() {
    let (gw, mock, _chat) = setup(vec![Step::Text("x".into())], "open", "").await;
    let slack = slack_url(&gw);
    let tg = gw.url("/channels/telegram/support");
    let wa = gw.url("/channels/whatsapp");
    let event = mention("hi", "1700000002.000100", "Ev10");
    let client = reqwest::Client::new();
    let mut cases: Vec<(&str, reqwest::Response, u16, &str)> = Vec::new();
    let forged = SlackDelivery {
        forge: true,
        ..SlackDelivery::default()
    };
    let stale = SlackDelivery {
        ts_offset_s: -600,
        ..SlackDelivery::default()
    };
    cases.push((
        "slack forged",
        chat::slack_event(&slack, SIGNING_SECRET, &event, forged)
            .await
            .unwrap(),
        401,
        "bad_signature",
    ));
    cases.push((
        "slack stale",
        chat::slack_event(&slack, SIGNING_SECRET, &event, stale)
            .await
            .unwrap(),
        401,
        "stale_timestamp",
    ));
    cases.push((
        "slack unsigned",
        client
            .post(&slack)
            .body(event.to_string())
            .send()
            .await
            .unwrap(),
        401,
        "missing_signature",
    ));
    cases.push((
        "slack malformed",
        chat::slack_event(
            &slack,
            SIGNING_SECRET,
            "{not json",
            SlackDelivery::default(),
        )
        .await
        .unwrap(),
        400,
        "invalid_json",
    ));
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000));
    cases.push((
        "slack oversized",
        chat::slack_event(
            &slack,
            SIGNING_SECRET,
            big.as_str(),
            SlackDelivery::default(),
        )
        .await
        .unwrap(),
        413,
        "body_too_large",
    ));
    let update = chat::telegram_text(1, 4242, "private", 4242, "hi", &[]);
    cases.push((
        "telegram wrong secret",
        chat::telegram_update(&tg, Some("wrong"), &update)
            .await
            .unwrap(),
        401,
        "bad_signature",
    ));
    cases.push((
        "telegram no secret",
        chat::telegram_update(&tg, None, &update).await.unwrap(),
        401,
        "missing_signature",
    ));
    cases.push((
        "telegram unknown bot",
        chat::telegram_update(
            &gw.url("/channels/telegram/nobot"),
            Some(TG_SECRET),
            &update,
        )
        .await
        .unwrap(),
        404,
        "channel_not_found",
    ));
    cases.push((
        "telegram malformed",
        chat::telegram_update(&tg, Some(TG_SECRET), "[1,")
            .await
            .unwrap(),
        400,
        "invalid_json",
    ));
    let wa_msg = chat::whatsapp_text(WA_PHONE, "16505551234", "wamid.A1", "hi");
    cases.push((
        "whatsapp forged",
        chat::whatsapp_event(&wa, "not-the-secret", &wa_msg)
            .await
            .unwrap(),
        401,
        "bad_signature",
    ));
    cases.push((
        "whatsapp malformed",
        chat::whatsapp_event(&wa, WA_SECRET, "{").await.unwrap(),
        400,
        "invalid_json",
    ));
    for (what, resp, status, code) in cases {
        assert_eq!(resp.status().as_u16(), status, "{what}");
        assert_eq!(resp.headers()["x-sluice-webhook"], code, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = gw.service.store();
    for table in ["webhook_seen", "channel_deliveries", "runs", "spend"] {
        assert_eq!(store.count_rows(table).await.unwrap(), 0, "{table}");
    }
    assert_eq!(mock.calls_for("m-main"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_retried_delivery_runs_the_agent_once() {
    let (gw, mock, chat) = setup(vec![Step::Text("Once.".into())], "open", "").await;
    let event = mention("once?", "1700000003.000100", "Ev20");
    // The first delivery and Slack's three retries, all at once.
    let sends = (0..4).map(|n| {
        let url = slack_url(&gw);
        let event = event.clone();
        async move {
            let d = SlackDelivery {
                retry_num: (n > 0).then_some(n),
                ..SlackDelivery::default()
            };
            chat::slack_event(&url, SIGNING_SECRET, &event, d)
                .await
                .unwrap()
        }
    });
    let codes: Vec<String> = futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.headers()["x-sluice-webhook"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| *c == "accepted").count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "duplicate").count(),
        3,
        "{codes:?}"
    );
    // Telegram resends an update; WhatsApp repeats a message inside one batch.
    let update = chat::telegram_text(91, 4242, "private", 4242, "once?", &[]);
    let tg = gw.url("/channels/telegram/support");
    for _ in 0..2 {
        assert_eq!(
            chat::telegram_update(&tg, Some(TG_SECRET), &update)
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let mut wa = chat::whatsapp_text(WA_PHONE, "16505551234", "wamid.R1", "once?");
    let msg = wa["entry"][0]["changes"][0]["value"]["messages"][0].clone();
    wa["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .unwrap()
        .push(msg);
    let wa_url = gw.url("/channels/whatsapp");
    for _ in 0..2 {
        assert_eq!(
            chat::whatsapp_event(&wa_url, WA_SECRET, &wa)
                .await
                .unwrap()
                .status(),
            200
        );
    }
    until("three answers", || {
        chat.slack_messages("C01").iter().any(|m| m.text == "Once.")
            && chat
                .telegram_messages(4242)
                .iter()
                .any(|m| m.text == "Once.")
            && chat
                .whatsapp_messages("16505551234")
                .iter()
                .any(|m| m.text == "Once.")
    })
    .await;
    settled(&gw).await;
    assert_eq!(mock.calls_for("m-main"), 3, "one run per message");
    assert_eq!(chat.slack_messages("C01").len(), 1);
    assert_eq!(chat.telegram_messages(4242).len(), 1);
    assert_eq!(chat.whatsapp_messages("16505551234").len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_platform_answering_429_then_500_still_gets_the_reply_once() {
    let (gw, _mock, chat) = setup(vec![Step::Text("Delivered anyway.".into())], "open", "").await;
    chat.fail(
        Platform::Slack,
        "chat.update",
        vec![
            Failure::RateLimited { retry_after_s: 1 },
            Failure::ServerError(500),
        ],
    );
    chat.fail(
        Platform::Telegram,
        "editMessageText",
        vec![
            Failure::RateLimited { retry_after_s: 1 },
            Failure::ServerError(500),
        ],
    );
    chat.fail(
        Platform::WhatsApp,
        "messages",
        vec![
            Failure::RateLimited { retry_after_s: 1 },
            Failure::ServerError(500),
        ],
    );
    chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        mention("go", "1700000004.000100", "Ev30"),
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    chat::telegram_update(
        &gw.url("/channels/telegram/support"),
        Some(TG_SECRET),
        chat::telegram_text(5, 4242, "private", 4242, "go", &[]),
    )
    .await
    .unwrap();
    chat::whatsapp_event(
        &gw.url("/channels/whatsapp"),
        WA_SECRET,
        chat::whatsapp_text(WA_PHONE, "16505551234", "wamid.F1", "go"),
    )
    .await
    .unwrap();
    until("all three delivered", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "Delivered anyway.")
            && chat
                .telegram_messages(4242)
                .iter()
                .any(|m| m.text == "Delivered anyway.")
            && chat
                .whatsapp_messages("16505551234")
                .iter()
                .any(|m| m.text == "Delivered anyway.")
    })
    .await;
    settled(&gw).await;
    assert_eq!(chat.slack_messages("C01").len(), 1);
    assert_eq!(chat.telegram_messages(4242).len(), 1);
    assert_eq!(chat.whatsapp_messages("16505551234").len(), 1);
    // The 429's Retry-After was honoured: the next try came no sooner than a second later.
    for (platform, method) in [
        (Platform::Slack, "chat.update"),
        (Platform::WhatsApp, "messages"),
    ] {
        let times: Vec<_> = chat
            .requests()
            .into_iter()
            .filter(|r| r.platform == platform && r.method == method)
            .map(|r| r.at)
            .collect();
        assert!(times.len() >= 3, "{method}: {}", times.len());
        assert!(
            times[1].duration_since(times[0]) >= Duration::from_millis(950),
            "{method} retried too soon"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn telegram_private_messages_and_group_mentions_are_answered_and_long_answers_split() {
    let long = "word ".repeat(1_000); // 5,000 characters: two Telegram messages
    let (gw, _mock, chat) = setup(
        vec![
            Step::Text("Private answer.".into()),
            Step::Text(long.clone()),
        ],
        "open",
        "",
    )
    .await;
    let tg = gw.url("/channels/telegram/support");
    let private = chat::telegram_text(10, 4242, "private", 4242, "hello", &[]);
    assert_eq!(
        chat::telegram_update(&tg, Some(TG_SECRET), &private)
            .await
            .unwrap()
            .headers()["x-sluice-webhook"],
        "accepted"
    );
    until("the private answer", || {
        chat.telegram_messages(4242)
            .iter()
            .any(|m| m.text == "Private answer.")
    })
    .await;
    // In a group: a message that does not mention the bot is not for it; one that does is,
    // found by UTF-16 offsets (the emoji before it is two units).
    let plain = chat::telegram_text(11, -100500, "supergroup", 4242, "just chatting", &[]);
    assert_eq!(
        chat::telegram_update(&tg, Some(TG_SECRET), &plain)
            .await
            .unwrap()
            .headers()["x-sluice-webhook"],
        "ignored"
    );
    let mentioned = chat::telegram_text(
        12,
        -100500,
        "supergroup",
        4242,
        "🙂 @SupportBot write a lot",
        &[("mention", 3, 11)],
    );
    assert_eq!(
        chat::telegram_update(&tg, Some(TG_SECRET), &mentioned)
            .await
            .unwrap()
            .headers()["x-sluice-webhook"],
        "accepted"
    );
    settled(&gw).await;
    let group = chat.telegram_messages(-100500);
    assert_eq!(
        group.len(),
        2,
        "5,000 characters in two messages: {:?}",
        group.iter().map(|m| m.text.len()).collect::<Vec<_>>()
    );
    assert!(group.iter().all(|m| m.text.encode_utf16().count() <= 4096));
    let joined: String = group
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        joined.split_whitespace().count(),
        1_000,
        "no word lost or repeated"
    );
    gw.stop().await;
}

/// The answer is in the store, the final edit keeps failing, the gateway stops; the next
/// start on the same database delivers it, once, without running the agent again.
#[tokio::test]
async fn a_restart_between_answer_and_delivery_delivers_it_once() {
    let (_dir, db) = file_db();
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("Survives restarts.".into())]);
    let chat = MockChat::start().await;
    chat.add_telegram_bot(TG_TOKEN, "SupportBot", 777);
    chat.fail(
        Platform::Slack,
        "chat.update",
        vec![Failure::ServerError(500); 1000],
    );
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        mention("persist", "1700000005.000100", "Ev40"),
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    until("a failed final edit", || {
        chat.calls(Platform::Slack, "chat.update") >= 1
    })
    .await;
    let row = gw
        .service
        .store()
        .list_deliveries(None, None, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(row.state, "ready", "the answer is stored before it is sent");
    assert_eq!(row.text.as_deref(), Some("Survives restarts."));
    gw.stop().await;
    assert!(
        chat.slack_messages("C01")
            .iter()
            .all(|m| m.text != "Survives restarts.")
    );

    chat.clear_failures();
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    until("the answer after the restart", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "Survives restarts.")
    })
    .await;
    settled(&gw).await;
    assert_eq!(
        chat.slack_messages("C01").len(),
        1,
        "the placeholder was edited, not posted again"
    );
    assert_eq!(mock.calls_for("m-main"), 1, "the agent ran once");
    gw.stop().await;
}

/// The placeholder's POST reached Slack but its answer never came back, and the gateway
/// stopped: after the restart there is at most one orphan placeholder, and one answer.
#[tokio::test]
async fn a_placeholder_lost_in_flight_never_becomes_a_second_answer() {
    let (_dir, db) = file_db();
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script("m-main", vec![Step::Text("Only once.".into())]);
    let chat = MockChat::start().await;
    chat.add_telegram_bot(TG_TOKEN, "SupportBot", 777);
    chat.fail(
        Platform::Slack,
        "chat.postMessage",
        vec![Failure::ApplyThenHang],
    );
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    chat::slack_event(
        &slack_url(&gw),
        SIGNING_SECRET,
        mention("once", "1700000006.000100", "Ev50"),
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    until("the placeholder posted", || {
        chat.calls(Platform::Slack, "chat.postMessage") >= 1
    })
    .await;
    gw.stop().await;
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    until("the answer", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "Only once.")
    })
    .await;
    settled(&gw).await;
    let msgs = chat.slack_messages("C01");
    assert_eq!(
        msgs.iter().filter(|m| m.text == "Only once.").count(),
        1,
        "{msgs:?}"
    );
    assert!(msgs.len() <= 2, "at most one orphan placeholder: {msgs:?}");
    assert_eq!(mock.calls_for("m-main"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_whatsapp_subscription_is_verified_only_with_the_verify_token() {
    let (gw, _mock, _chat) = setup(vec![Step::Text("x".into())], "open", "").await;
    let client = reqwest::Client::new();
    let ok = client
        .get(gw.url(&format!("/channels/whatsapp?hub.mode=subscribe&hub.verify_token={WA_VERIFY}&hub.challenge=1158201444")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.text().await.unwrap(),
        "1158201444",
        "the challenge, as the body"
    );
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        &format!("hub.mode=unsubscribe&hub.verify_token={WA_VERIFY}&hub.challenge=1"),
        "hub.challenge=1",
    ] {
        let r = client
            .get(gw.url(&format!("/channels/whatsapp?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{query}");
        assert_eq!(r.headers()["x-sluice-webhook"], "verification_failed");
    }
    gw.stop().await;
}

fn dm(user: &str, channel: &str, text: &str, ts: &str, event: &str) -> Value {
    chat::slack_dm("T01", channel, user, text, ts, None, event)
}

async fn send_slack(gw: &Gateway, body: Value) -> String {
    let r = chat::slack_event(
        &slack_url(gw),
        SIGNING_SECRET,
        body,
        SlackDelivery::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-sluice-webhook"].to_str().unwrap().to_owned()
}

/// One noisy member of a workspace runs into their own token budget (`user_limits`): they
/// are told, the refused run never reaches the provider, and a teammate on the same key
/// is still answered.
#[tokio::test]
async fn a_noisy_member_runs_into_their_own_budget_and_the_team_is_still_answered() {
    let answers = (0..10)
        .map(|i| Step::Text(format!("Answer {i}.")))
        .collect();
    let (gw, mock, chat) = setup(
        answers,
        "open",
        "[channels.slack.user_limits]\nbudget_tokens_total = 120\n",
    )
    .await;
    let notice = "You've reached your usage limit. Please try again later.";
    let mut answered = 0;
    let mut refused = false;
    for i in 0..8 {
        let code = send_slack(
            &gw,
            dm(
                "U0NOISY",
                "D0N",
                &format!("question {i}, please answer it"),
                &format!("1700000100.{i:06}"),
                &format!("EvN{i}"),
            ),
        )
        .await;
        assert_eq!(code, "accepted");
        until("the noisy member's reply", || {
            chat.slack_messages("D0N").len() > i && chat.slack_messages("D0N")[i].text != "…"
        })
        .await;
        settled(&gw).await;
        let last = chat.slack_messages("D0N")[i].text.clone();
        if last == notice {
            refused = true;
            break;
        }
        assert!(last.starts_with("Answer "), "{last}");
        answered += 1;
    }
    assert!(refused, "the member's budget never ran out");
    assert!(answered >= 1, "the budget fits one call");
    assert_eq!(
        mock.calls_for("m-main"),
        answered,
        "the refused run never reached the provider"
    );
    // A teammate, on the same `run_as` key, has a budget of their own.
    send_slack(
        &gw,
        dm("U0QUIET", "D0Q", "my turn", "1700000200.000100", "EvQ1"),
    )
    .await;
    until("the teammate's answer", || {
        chat.slack_messages("D0Q")
            .iter()
            .any(|m| m.text.starts_with("Answer "))
    })
    .await;
    settled(&gw).await;
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(50).await.unwrap();
    let noisy: i64 = rows
        .iter()
        .filter(|r| r.channel_user.as_deref() == Some("slack:T01:U0NOISY"))
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert!(noisy > 0 && noisy <= 120, "the member spent {noisy} tokens");
    assert_eq!(
        rows.iter()
            .filter(|r| r.channel_user.as_deref() == Some("slack:T01:U0QUIET"))
            .count(),
        1
    );
    gw.stop().await;
}

/// A streamed answer shows up in the placeholder as it is written, edit by edit, and no two
/// edits come closer together than `edit_interval_ms` (250 here; the model writes a word
/// every 40 ms, so an unthrottled stream would edit every 40 ms).
#[tokio::test]
async fn progressive_edits_come_no_faster_than_the_throttle() {
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let answer = words.join(" ");
    let (gw, _mock, chat) = setup(
        vec![Step::ChunkGap {
            ms: 40,
            text: answer.clone(),
        }],
        "open",
        "",
    )
    .await;
    send_slack(&gw, mention("stream it", "1700000300.000100", "EvS1")).await;
    until("the whole answer", || {
        chat.slack_messages("C01").iter().any(|m| m.text == answer)
    })
    .await;
    settled(&gw).await;
    let msgs = chat.slack_messages("C01");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let edits = &msgs[0].edits;
    assert_eq!(edits[0].0, "…", "the placeholder comes first");
    let partial: Vec<&str> = edits[1..edits.len() - 1]
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(
        !partial.is_empty(),
        "the answer was shown while it streamed: {edits:?}"
    );
    for t in &partial {
        assert!(
            answer.starts_with(t) && t.len() < answer.len(),
            "a progress edit shows a prefix of the answer: {t}"
        );
    }
    // Arrival times at the mock: allow 40 ms of scheduling jitter on a busy machine.
    for pair in edits.windows(2) {
        let gap = pair[1].1.duration_since(pair[0].1);
        assert!(
            gap >= Duration::from_millis(210),
            "two edits {gap:?} apart: {:?} then {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    gw.stop().await;
}

/// A mention inside a thread continues that thread's session (the model sees the earlier
/// turns); a mention outside it starts a fresh one.
#[tokio::test]
async fn a_thread_continues_its_session_and_another_thread_starts_fresh() {
    let (gw, mock, chat) = setup(
        vec![
            Step::Text("First answer.".into()),
            Step::Text("Second answer.".into()),
            Step::Text("Third answer.".into()),
        ],
        "open",
        "",
    )
    .await;
    let top = "1700000400.000100";
    send_slack(&gw, mention("first question", top, "EvT1")).await;
    until("the first answer", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "First answer.")
    })
    .await;
    settled(&gw).await;
    let in_thread = chat::slack_app_mention(
        "T01",
        "C01",
        "U0ALLOWED",
        "<@UBOT> and a follow-up",
        "1700000400.000200",
        Some(top),
        "EvT2",
    );
    send_slack(&gw, in_thread).await;
    until("the second answer", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "Second answer.")
    })
    .await;
    settled(&gw).await;
    send_slack(&gw, mention("a new topic", "1700000400.000300", "EvT3")).await;
    until("the third answer", || {
        chat.slack_messages("C01")
            .iter()
            .any(|m| m.text == "Third answer.")
    })
    .await;
    settled(&gw).await;

    let contents = |i: usize| -> Vec<String> {
        mock.requests()[i].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(contents(0), ["first question"]);
    assert_eq!(
        contents(1),
        ["first question", "First answer.", "and a follow-up"],
        "the thread's earlier turns"
    );
    assert_eq!(contents(2), ["a new topic"], "a fresh session");
    let msgs = chat.slack_messages("C01");
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].thread.as_deref(), Some(top));
    assert_eq!(
        msgs[1].thread.as_deref(),
        Some(top),
        "answered in the thread"
    );
    assert_eq!(msgs[2].thread.as_deref(), Some("1700000400.000300"));
    gw.service.ledger().flush().await.unwrap();
    let mut rows = gw.service.store().recent_spend(10).await.unwrap();
    rows.sort_by_key(|r| r.created_at_ms);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].session_id, rows[1].session_id);
    assert_ne!(rows[0].session_id, rows[2].session_id);
    gw.stop().await;
}

/// A WhatsApp send whose POST reached Meta but got no answer (the gateway stopped in the
/// middle) is `uncertain` and never sent again blindly: its status webhook settles it. A
/// `sent` status makes it sent; a `failed` one sends it again, once.
#[tokio::test]
async fn an_uncertain_whatsapp_send_is_settled_by_its_status() {
    let (_dir, db) = file_db();
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "m-main",
        vec![
            Step::Text("One answer.".into()),
            Step::Text("Another answer.".into()),
        ],
    );
    let chat = MockChat::start().await;
    chat.add_telegram_bot(TG_TOKEN, "SupportBot", 777);
    chat.fail(
        Platform::WhatsApp,
        "messages",
        vec![Failure::ApplyThenHang, Failure::ApplyThenHang],
    );
    let (ana, ben) = ("16505550001", "16505550002");
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    let wa = gw.url("/channels/whatsapp");
    for (from, wamid) in [(ana, "wamid.IN1"), (ben, "wamid.IN2")] {
        let r = chat::whatsapp_event(
            &wa,
            WA_SECRET,
            chat::whatsapp_text(WA_PHONE, from, wamid, "hello"),
        )
        .await
        .unwrap();
        assert_eq!(r.headers()["x-sluice-webhook"], "accepted");
    }
    until("both answers posted (with no response)", || {
        chat.calls(Platform::WhatsApp, "messages") >= 2
    })
    .await;
    gw.stop().await;
    let gw = Gateway::start(&config(&mock, &chat, "open", &db)).await;
    let wa = gw.url("/channels/whatsapp");
    let store = gw.service.store().clone();
    let states = || async {
        let mut rows = store.list_deliveries(None, None, 10).await.unwrap();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.iter().map(|r| r.state.clone()).collect::<Vec<_>>()
    };
    for _ in 0..200 {
        if states().await == ["uncertain", "uncertain"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states().await, ["uncertain", "uncertain"]);
    assert_eq!(chat.whatsapp_messages(ana).len(), 1);
    assert_eq!(chat.whatsapp_messages(ben).len(), 1);

    // Ana's arrived (`delivered`); Ben's did not (`failed`).
    for (to, status) in [(ana, "delivered"), (ben, "failed")] {
        let m = chat.whatsapp_messages(to).remove(0);
        let r = chat::whatsapp_event(
            &wa,
            WA_SECRET,
            chat::whatsapp_status(
                WA_PHONE,
                to,
                &m.id,
                status,
                m.biz_opaque_callback_data.as_deref(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    until("Ben's answer sent again", || {
        chat.whatsapp_messages(ben).len() == 2
    })
    .await;
    settled(&gw).await;
    assert_eq!(states().await, ["sent", "sent"]);
    assert_eq!(chat.whatsapp_messages(ana).len(), 1, "never sent twice");
    let bens = chat.whatsapp_messages(ben);
    assert_eq!(bens[1].text, bens[0].text, "the same answer, sent again");
    assert_eq!(mock.calls_for("m-main"), 2, "each agent ran once");
    gw.stop().await;
}
