//! The chat mock's APIs over real sockets: Slack, Telegram and WhatsApp answers, tokens,
//! limits, scripted failures, hangs and latency.

mod common;

use common::{client, json, post};
use serde_json::{Value, json};
use sluice_mock::chat::{Failure, MockChat, Platform};
use std::time::{Duration, Instant};

const SLACK_AUTH: (&str, &str) = ("authorization", "Bearer xoxb-test");
const WA_AUTH: (&str, &str) = ("authorization", "Bearer wa-test");
const BOT: &str = "123:ABC";

async fn slack(chat: &MockChat, method: &str, body: &Value) -> (u16, Option<String>, Value) {
    let url = format!("{}/api/{method}", chat.base_url());
    json(post(&url, &[SLACK_AUTH], body).await).await
}

async fn telegram(chat: &MockChat, method: &str, body: &Value) -> (u16, Value) {
    let url = format!("{}/bot{BOT}/{method}", chat.base_url());
    let (status, _, body) = json(post(&url, &[], body).await).await;
    (status, body)
}

async fn whatsapp(chat: &MockChat, auth: (&str, &str), body: &Value) -> (u16, Value) {
    let url = format!("{}/v21.0/1234567890/messages", chat.base_url());
    let (status, _, body) = json(post(&url, &[auth], body).await).await;
    (status, body)
}

fn texts(edits: &[(String, Instant)]) -> Vec<&str> {
    edits.iter().map(|(text, _)| text.as_str()).collect()
}

#[tokio::test]
async fn a_slack_post_then_update_is_one_message_with_two_texts() {
    let chat = MockChat::start().await;
    let post_body = json!({"channel": "C1", "text": "…", "thread_ts": "1700000000.000001"});
    let (status, _, posted) = slack(&chat, "chat.postMessage", &post_body).await;
    assert_eq!(status, 200);
    assert_eq!(posted["ok"], true);
    assert_eq!(posted["channel"], "C1");
    let ts = posted["ts"].as_str().expect("a ts").to_owned();
    assert_eq!(posted["message"]["ts"], ts);
    assert_eq!(posted["message"]["bot_id"], "BBOT");
    assert_eq!(posted["message"]["user"], "UBOT");

    let update = json!({"channel": "C1", "ts": ts, "text": "the answer"});
    let (_, _, updated) = slack(&chat, "chat.update", &update).await;
    assert_eq!(updated["ok"], true);
    assert_eq!(
        (updated["ts"].as_str(), updated["text"].as_str()),
        (Some(ts.as_str()), Some("the answer"))
    );

    let messages = chat.slack_messages("C1");
    assert_eq!(
        messages.len(),
        1,
        "an update edits in place, it posts nothing"
    );
    assert_eq!(messages[0].text, "the answer");
    assert_eq!(messages[0].thread.as_deref(), Some("1700000000.000001"));
    assert_eq!(texts(&messages[0].edits), ["…", "the answer"]);
    assert_eq!(chat.calls(Platform::Slack, "chat.update"), 1);

    let (_, _, second) = slack(&chat, "chat.postMessage", &post_body).await;
    assert_ne!(second["ts"], ts, "every message has its own ts");
}

#[tokio::test]
async fn slack_refuses_bad_tokens_and_unknown_messages_with_http_200() {
    let chat = MockChat::start().await;
    let url = format!("{}/api/chat.postMessage", chat.base_url());
    let body = json!({"channel": "C1", "text": "hi"});
    let (status, _, answer) =
        json(post(&url, &[("authorization", "Bearer xoxb-wrong")], &body).await).await;
    assert_eq!(
        (status, answer),
        (200, json!({"ok": false, "error": "invalid_auth"}))
    );
    let (_, _, answer) = json(post(&url, &[], &body).await).await;
    assert_eq!(answer["error"], "not_authed");

    chat.set_slack_token("xoxb-other");
    assert_eq!(chat.slack_token(), "xoxb-other");
    let (_, _, answer) = slack(&chat, "chat.postMessage", &body).await;
    assert_eq!(
        answer["error"], "invalid_auth",
        "the old token no longer works"
    );
    chat.set_slack_token("xoxb-test");

    let update = json!({"channel": "C1", "ts": "1.000001", "text": "x"});
    let (status, _, answer) = slack(&chat, "chat.update", &update).await;
    assert_eq!(
        (status, answer),
        (200, json!({"ok": false, "error": "message_not_found"}))
    );
    assert!(chat.slack_messages("C1").is_empty(), "nothing was posted");

    let (_, _, me) = slack(&chat, "auth.test", &json!({})).await;
    assert_eq!(
        me,
        json!({"ok": true, "url": "https://mock.slack.com/", "team": "Mock", "user": "sluicebot",
               "team_id": "T0MOCK", "user_id": "UBOT", "bot_id": "BBOT", "is_enterprise_install": false})
    );
    let statuses: Vec<_> = chat.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "Slack errors are HTTP 200: {statuses:?}"
    );
}

#[tokio::test]
async fn scripted_failures_come_first_and_in_order() {
    let chat = MockChat::start().await;
    let failures = vec![
        Failure::RateLimited { retry_after_s: 2 },
        Failure::ServerError(500),
    ];
    chat.fail(Platform::Slack, "chat.postMessage", failures);
    let body = json!({"channel": "C1", "text": "hi"});
    let (status, retry_after, answer) = slack(&chat, "chat.postMessage", &body).await;
    assert_eq!((status, retry_after.as_deref()), (429, Some("2")));
    assert_eq!(answer, json!({"ok": false, "error": "ratelimited"}));
    let url = format!("{}/api/chat.postMessage", chat.base_url());
    let response = post(&url, &[SLACK_AUTH], &body).await;
    assert_eq!(response.status(), 500);
    let (status, _, answer) = slack(&chat, "chat.postMessage", &body).await;
    assert_eq!(
        (status, &answer["ok"]),
        (200, &json!(true)),
        "then normal again"
    );
    assert_eq!(
        chat.slack_messages("C1").len(),
        1,
        "only the third call posted"
    );
    let statuses: Vec<_> = chat.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(429), Some(500), Some(200)]);

    chat.fail(
        Platform::Telegram,
        "sendMessage",
        vec![Failure::RateLimited { retry_after_s: 7 }],
    );
    chat.add_telegram_bot(BOT, "jobs_bot", 123);
    let (status, answer) =
        telegram(&chat, "sendMessage", &json!({"chat_id": 5, "text": "x"})).await;
    assert_eq!(status, 429);
    assert_eq!(
        answer,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}})
    );

    chat.fail(
        Platform::WhatsApp,
        "messages",
        vec![
            Failure::RateLimited { retry_after_s: 1 },
            Failure::ApiError("131047 Re-engagement message".into()),
        ],
    );
    let send = json!({"messaging_product": "whatsapp", "to": "15550001", "type": "text", "text": {"body": "x"}});
    let (status, answer) = whatsapp(&chat, WA_AUTH, &send).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!(130_429)),
        "Meta lists 130429 as HTTP 400"
    );
    let (status, answer) = whatsapp(&chat, WA_AUTH, &send).await;
    assert_eq!((status, &answer["error"]["code"]), (400, &json!(131_047)));
    assert_eq!(
        answer["error"]["message"],
        "(#131047) Re-engagement message"
    );
    assert!(chat.whatsapp_messages("15550001").is_empty());
}

#[tokio::test]
async fn telegram_answers_like_the_bot_api() {
    let chat = MockChat::start().await;
    let url = format!("{}/bot999:NOPE/getMe", chat.base_url());
    let (status, _, answer) = json(post(&url, &[], &json!({})).await).await;
    assert_eq!(
        (status, answer),
        (
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        )
    );

    chat.add_telegram_bot(BOT, "jobs_bot", 123);
    let (status, me) = telegram(&chat, "getMe", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(me["result"]["id"], 123);
    assert_eq!(me["result"]["username"], "jobs_bot");
    assert_eq!(me["result"]["can_join_groups"], true);

    let send = json!({"chat_id": -100_123, "text": "…", "reply_parameters": {"message_id": 41}});
    let (status, sent) = telegram(&chat, "sendMessage", &send).await;
    assert_eq!(status, 200);
    let message = &sent["result"];
    assert_eq!(
        message["from"],
        json!({"id": 123, "is_bot": true, "first_name": "jobs_bot", "username": "jobs_bot"})
    );
    assert_eq!(
        (message["chat"]["id"].as_i64(), message["text"].as_str()),
        (Some(-100_123), Some("…"))
    );
    let id = message["message_id"].as_i64().expect("a message id");

    let edit = json!({"chat_id": -100_123, "message_id": id, "text": "answer"});
    let (status, edited) = telegram(&chat, "editMessageText", &edit).await;
    assert_eq!((status, &edited["result"]["text"]), (200, &json!("answer")));
    let (status, again) = telegram(&chat, "editMessageText", &edit).await;
    assert_eq!(status, 400);
    assert!(
        again["description"]
            .as_str()
            .expect("a description")
            .starts_with("Bad Request: message is not modified")
    );

    // 4097 UTF-16 units in 2049 characters: Telegram's limit is not a char count.
    let long = "🙂".repeat(2048) + "x";
    let (status, answer) =
        telegram(&chat, "sendMessage", &json!({"chat_id": 5, "text": long})).await;
    assert_eq!(
        (status, &answer["description"]),
        (400, &json!("Bad Request: message is too long"))
    );
    let fits = "🙂".repeat(2048);
    let (status, _) = telegram(&chat, "sendMessage", &json!({"chat_id": 5, "text": fits})).await;
    assert_eq!(status, 200, "4096 UTF-16 units fit");
    let (_, answer) = telegram(&chat, "sendMessage", &json!({"chat_id": 5, "text": ""})).await;
    assert_eq!(answer["description"], "Bad Request: message text is empty");
    let missing = json!({"chat_id": 5, "message_id": 999_999, "text": "x"});
    let (_, answer) = telegram(&chat, "editMessageText", &missing).await;
    assert_eq!(
        answer["description"],
        "Bad Request: message to edit not found"
    );

    let messages = chat.telegram_messages(-100_123);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].thread.as_deref(),
        Some("41"),
        "the reply target"
    );
    assert_eq!(
        texts(&messages[0].edits),
        ["…", "answer"],
        "the refused edit left no trace"
    );
    assert_eq!(chat.telegram_messages(5).len(), 1);
}

#[tokio::test]
async fn telegram_webhooks_are_recorded() {
    let chat = MockChat::start().await;
    chat.add_telegram_bot(BOT, "jobs_bot", 123);
    let (_, info) = telegram(&chat, "getWebhookInfo", &json!({})).await;
    assert_eq!(
        info["result"],
        json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})
    );
    let set = json!({"url": "http://127.0.0.1:9/tg", "secret_token": "s3cret", "allowed_updates": ["message"], "drop_pending_updates": true});
    let (_, answer) = telegram(&chat, "setWebhook", &set).await;
    assert_eq!(
        answer,
        json!({"ok": true, "result": true, "description": "Webhook was set"})
    );
    let (_, info) = telegram(&chat, "getWebhookInfo", &json!({})).await;
    assert_eq!(
        info["result"],
        json!({"url": "http://127.0.0.1:9/tg", "has_custom_certificate": false, "pending_update_count": 0,
               "max_connections": 40, "allowed_updates": ["message"]})
    );
    assert_eq!(chat.set_webhooks()[BOT], [set]);
    let (_, answer) = telegram(&chat, "deleteWebhook", &json!({})).await;
    assert_eq!(answer["description"], "Webhook was deleted");
    let (_, info) = telegram(&chat, "getWebhookInfo", &json!({})).await;
    assert_eq!(info["result"]["url"], "");
}

#[tokio::test]
async fn whatsapp_accepts_text_and_refuses_bad_tokens_and_long_bodies() {
    let chat = MockChat::start().await;
    let send = json!({
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+1 555 0001",
        "type": "text", "text": {"body": "hello", "preview_url": false},
        "context": {"message_id": "wamid.IN"}, "biz_opaque_callback_data": "sluice:7:0"
    });
    let (status, answer) = whatsapp(&chat, WA_AUTH, &send).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["contacts"],
        json!([{"input": "+1 555 0001", "wa_id": "15550001"}])
    );
    let wamid = answer["messages"][0]["id"].as_str().expect("a wamid");
    assert!(wamid.starts_with("wamid."));
    let messages = chat.whatsapp_messages("15550001");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0].id.as_str(), messages[0].thread.as_deref()),
        (wamid, Some("wamid.IN"))
    );
    assert_eq!(
        messages[0].biz_opaque_callback_data.as_deref(),
        Some("sluice:7:0")
    );

    let (status, answer) = whatsapp(&chat, ("authorization", "Bearer nope"), &send).await;
    assert_eq!((status, &answer["error"]["code"]), (401, &json!(190)));
    assert_eq!(answer["error"]["type"], "OAuthException");
    let mut long = send.clone();
    long["text"]["body"] = json!("x".repeat(4097));
    let (status, answer) = whatsapp(&chat, WA_AUTH, &long).await;
    assert_eq!((status, &answer["error"]["code"]), (400, &json!(100)));
    assert_eq!(
        chat.whatsapp_messages("15550001").len(),
        1,
        "refused sends are not messages"
    );
}

#[tokio::test]
async fn hangs_never_answer_and_apply_then_hang_still_does_the_work() {
    let chat = MockChat::start().await;
    chat.fail(
        Platform::Slack,
        "chat.postMessage",
        vec![Failure::Hang, Failure::ApplyThenHang],
    );
    let url = format!("{}/api/chat.postMessage", chat.base_url());
    let body = json!({"channel": "C1", "text": "hi"});
    for _ in 0..2 {
        let sent = client()
            .post(&url)
            .header(SLACK_AUTH.0, SLACK_AUTH.1)
            .json(&body)
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(
            sent.is_err_and(|e| e.is_timeout()),
            "a hang must not answer"
        );
    }
    let messages = chat.slack_messages("C1");
    assert_eq!(messages.len(), 1, "only ApplyThenHang posted");
    let statuses: Vec<_> = chat.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [None, None]);
    chat.shutdown();
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let chat = MockChat::start().await;
    chat.set_latency(Duration::from_millis(200));
    let start = Instant::now();
    let (status, _, _) = slack(&chat, "auth.test", &json!({})).await;
    assert_eq!(status, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "answered after {:?}",
        start.elapsed()
    );
}
