//! The chat mock as the platforms' sender: signed deliveries and the payload builders, checked
//! against a small receiver that keeps what it was sent.

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use common::post as post_json;
use serde_json::{Value, json};
use sluice_mock::chat::{
    MockChat, SlackDelivery, sign, slack_app_mention, slack_dm, slack_event, telegram_text,
    telegram_update, whatsapp_event, whatsapp_status, whatsapp_text,
};
use std::sync::{Arc, Mutex};

type Inbox = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on a fresh port answering 200 to every POST to `/hook`.
async fn receiver() -> (String, Inbox) {
    let inbox = Inbox::default();
    let kept = Arc::clone(&inbox);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| async move {
            kept.lock().expect("inbox lock").push((headers, body));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("serve the receiver")
    });
    (url, inbox)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers[name].to_str().expect("an ASCII header")
}

#[tokio::test]
async fn slack_events_are_signed_as_slack_signs_them() {
    let (url, inbox) = receiver().await;
    let event = slack_app_mention(
        "T1",
        "C1",
        "U1",
        "<@UBOT> hi",
        "1700000000.000100",
        None,
        "Ev1",
    );
    let response = slack_event(&url, "secret", &event, SlackDelivery::default())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let retry = SlackDelivery {
        retry_num: Some(2),
        ts_offset_s: -600,
        forge: false,
    };
    slack_event(&url, "secret", &event, retry).await.unwrap();
    let forged = SlackDelivery {
        forge: true,
        ..SlackDelivery::default()
    };
    slack_event(&url, "secret", "{not json", forged)
        .await
        .unwrap();

    let inbox = inbox.lock().unwrap();
    let (headers, body) = &inbox[0];
    let ts = header(headers, "x-slack-request-timestamp");
    assert_eq!(
        header(headers, "x-slack-signature"),
        sign::slack_v0("secret", ts, body)
    );
    assert_eq!(header(headers, "content-type"), "application/json");
    assert!(
        headers.get("x-slack-retry-num").is_none(),
        "a first delivery is no retry"
    );
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), event);

    let (headers, _) = &inbox[1];
    assert_eq!(header(headers, "x-slack-retry-num"), "2");
    assert_eq!(header(headers, "x-slack-retry-reason"), "http_timeout");
    let stale: i64 = header(headers, "x-slack-request-timestamp")
        .parse()
        .unwrap();
    let fresh: i64 = ts.parse().unwrap();
    assert!(
        (fresh - stale - 600).abs() <= 2,
        "the offset moves the timestamp back"
    );

    let (headers, body) = &inbox[2];
    assert_eq!(body, "{not json", "raw bodies go as they are");
    let ts = header(headers, "x-slack-request-timestamp");
    assert_ne!(
        header(headers, "x-slack-signature"),
        sign::slack_v0("secret", ts, body)
    );
}

#[test]
fn slack_payloads_follow_the_events_api() {
    let mention = slack_app_mention(
        "T1",
        "C1",
        "U1",
        "<@UBOT> hi",
        "1700000000.000100",
        Some("1700000000.000001"),
        "Ev1",
    );
    assert_eq!(mention["type"], "event_callback");
    assert_eq!(
        (mention["event_id"].as_str(), mention["event_time"].as_u64()),
        (Some("Ev1"), Some(1_700_000_000))
    );
    assert_eq!(mention["event"]["type"], "app_mention");
    assert_eq!(mention["event"]["thread_ts"], "1700000000.000001");
    assert_eq!(mention["authorizations"][0]["user_id"], "UBOT");
    let dm = slack_dm("T1", "D1", "U1", "hello", "1700000000.000200", None, "Ev2");
    assert_eq!(
        (
            dm["event"]["type"].as_str(),
            dm["event"]["channel_type"].as_str()
        ),
        (Some("message"), Some("im"))
    );
    assert!(dm["event"].get("thread_ts").is_none());
}

#[tokio::test]
async fn telegram_updates_carry_the_secret_token() {
    let (url, inbox) = receiver().await;
    // "🙂 @jobs_bot": the emoji is two UTF-16 units, so the mention starts at 3.
    let update = telegram_text(
        10,
        -1005,
        "supergroup",
        77,
        "🙂 @jobs_bot hi",
        &[("mention", 3, 9)],
    );
    assert_eq!(
        update["message"]["entities"],
        json!([{"offset": 3, "length": 9, "type": "mention"}])
    );
    assert_eq!(
        update["message"]["chat"],
        json!({"id": -1005, "type": "supergroup", "title": "Mock Group"})
    );
    assert_eq!(update["message"]["from"]["id"], 77);
    telegram_update(&url, Some("s3cret"), &update)
        .await
        .unwrap();
    telegram_update(&url, None, &update).await.unwrap();
    let inbox = inbox.lock().unwrap();
    assert_eq!(
        header(&inbox[0].0, "x-telegram-bot-api-secret-token"),
        "s3cret"
    );
    assert!(inbox[1].0.get("x-telegram-bot-api-secret-token").is_none());
}

#[tokio::test]
async fn whatsapp_statuses_report_each_accepted_message_once() {
    let chat = MockChat::start().await;
    let (url, inbox) = receiver().await;
    let send_url = format!("{}/v21.0/PN1/messages", chat.base_url());
    for (n, data) in [(1, Some("sluice:1:0")), (2, None)] {
        let mut body = json!({"messaging_product": "whatsapp", "to": "15550001", "type": "text", "text": {"body": format!("part {n}")}});
        if let Some(data) = data {
            body["biz_opaque_callback_data"] = json!(data);
        }
        let response = post_json(&send_url, &[("authorization", "Bearer wa-test")], &body).await;
        assert_eq!(response.status(), 200);
    }
    let sent = chat.whatsapp_messages("15550001");
    let response = chat
        .whatsapp_statuses(&url, "app-secret", "PN1")
        .await
        .unwrap();
    assert_eq!(response.expect("two messages to report").status(), 200);
    assert!(
        chat.whatsapp_statuses(&url, "app-secret", "PN1")
            .await
            .unwrap()
            .is_none(),
        "each is reported once"
    );

    let inbox = inbox.lock().unwrap();
    assert_eq!(inbox.len(), 1, "one webhook for both");
    let (headers, body) = &inbox[0];
    assert_eq!(
        header(headers, "x-hub-signature-256"),
        sign::hub_sha256("app-secret", body)
    );
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["object"], "whatsapp_business_account");
    let value = &payload["entry"][0]["changes"][0]["value"];
    assert_eq!(value["metadata"]["phone_number_id"], "PN1");
    let statuses = value["statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        (statuses[0]["id"].as_str(), statuses[0]["status"].as_str()),
        (Some(sent[0].id.as_str()), Some("sent"))
    );
    assert_eq!(statuses[0]["recipient_id"], "15550001");
    assert_eq!(statuses[0]["biz_opaque_callback_data"], "sluice:1:0");
    assert!(statuses[1].get("biz_opaque_callback_data").is_none());
}

#[tokio::test]
async fn whatsapp_events_are_signed_with_the_app_secret() {
    let (url, inbox) = receiver().await;
    let text = whatsapp_text("PN1", "15550001", "wamid.IN1", "hi");
    let message = &text["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(
        (message["from"].as_str(), message["id"].as_str()),
        (Some("15550001"), Some("wamid.IN1"))
    );
    assert_eq!(message["text"]["body"], "hi");
    assert_eq!(text["entry"][0]["changes"][0]["field"], "messages");
    whatsapp_event(&url, "app-secret", &text).await.unwrap();
    let failed = whatsapp_status("PN1", "15550001", "wamid.OUT", "failed", Some("sluice:2:0"));
    assert_eq!(
        failed["entry"][0]["changes"][0]["value"]["statuses"][0]["status"],
        "failed"
    );
    let inbox = inbox.lock().unwrap();
    let (headers, body) = &inbox[0];
    assert_eq!(
        header(headers, "x-hub-signature-256"),
        sign::hub_sha256("app-secret", body)
    );
}
