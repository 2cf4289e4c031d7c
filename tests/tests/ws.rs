//! `GET /ws`, protocol 1, over real sockets against the real gateway: the handshake and
//! every close code it can give, bad input that leaves the socket open, a streamed
//! `chat.completions` through the completion service, resume with and without a gap and
//! across a reconnect in the middle of a stream, take-over, heartbeats, origins, the
//! session cap, history after a restart, and the shutdown close code.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_e2e::ws::{Socket, connect, next, open, send, session};
use sluice_e2e::{Gateway, KEY};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn config(extra_ws: &str) -> String {
    sluice_e2e::ws_config(extra_ws)
}

/// Reads until the gateway closes; returns the close code and reason.
async fn closed(s: &mut Socket) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("the close in time");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
        }
    }
}

async fn call(s: &mut Socket, id: &str, method: &str, params: Value) -> Value {
    send(
        s,
        json!({"type": "req", "id": id, "method": method, "params": params}),
    )
    .await;
    loop {
        let f = next(s).await;
        if f["type"] == "res" && f["id"] == id {
            return f;
        }
    }
}

/// The gateway asks node `n1` of key `test` to run `echo`, in a task of its own (the
/// test answers as the node meanwhile).
fn ask_node(
    gw: &Gateway,
    args: Value,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<Value, sluice_protocol::ErrorBody>> {
    let hub = gw.state.hub.clone();
    tokio::spawn(async move {
        hub.nodes
            .invoke("config:test", "n1", "echo", args, timeout)
            .await
    })
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "tell me"}]})
}

/// Events until the call's `chat.completed` (or `chat.failed`): (seqs, text, last event).
async fn until_done(s: &mut Socket) -> (Vec<u64>, String, Value) {
    let mut seqs = Vec::new();
    let mut text = String::new();
    loop {
        let f = next(s).await;
        if f["type"] != "event" {
            continue;
        }
        seqs.push(f["seq"].as_u64().unwrap());
        match f["event"].as_str().unwrap() {
            "chat.delta" => {
                text.push_str(
                    f["data"]["chunk"]["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or(""),
                );
            }
            _ => return (seqs, text, f),
        }
    }
}

#[tokio::test]
async fn a_streamed_chat_over_the_socket_goes_through_the_service() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    assert_eq!(
        (hello["protocol"].as_u64(), hello["resumed"].as_bool()),
        (Some(1), Some(false))
    );
    let methods: Vec<&str> = hello["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(methods.contains(&"chat.completions") && methods.contains(&"session.history"));
    let pong = call(&mut s, "p1", "ping", json!({})).await;
    assert_eq!(pong["result"]["pong"], true);

    let started = call(&mut s, "c1", "chat.completions", chat("m")).await;
    assert_eq!(started["ok"], true, "{started}");
    let call_id = started["result"]["call_id"].as_str().unwrap().to_owned();
    let (seqs, text, last) = until_done(&mut s).await;
    assert_eq!(last["event"], "chat.completed", "{last}");
    assert_eq!(last["data"]["call_id"], call_id.as_str());
    assert_eq!(last["data"]["req_id"], "c1");
    assert_eq!(last["data"]["served_by"], "mock:model-x");
    assert!(last["data"]["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq counts 1, 2, 3…"
    );
    // The same text the HTTP API gives for the same request.
    let http = gw.chat(chat("m")).await;
    assert_eq!(text, http.text());

    // The ledger has the call, under the session's key, with its call id.
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.request_id == call_id)
        .expect("the call's row");
    assert_eq!(
        (row.status.as_str(), row.key_id.as_deref()),
        ("ok", Some("config:test"))
    );

    let usage = call(&mut s, "u1", "usage.get", json!({})).await;
    assert_eq!(usage["result"]["calls"], 1);
    assert_eq!(
        usage["result"]["completion_tokens"].as_i64(),
        Some(row.completion_tokens)
    );
    // Refusals carry the service's codes.
    let refused = call(&mut s, "c2", "chat.completions", chat("no-such-model")).await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["error"]["code"].as_str()),
        (Some(false), Some("model_not_found"))
    );
    assert_eq!(refused["error"]["retryable"], false);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_socket_stays_open() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, _) = session(&gw, json!({})).await;
    s.send(Message::Text("{not json".into())).await.unwrap();
    let bad = call(&mut s, "x1", "no.such.method", json!({})).await;
    assert_eq!(bad["error"]["code"], "unknown_method");
    let bad = call(&mut s, "x2", "session.history", json!({"limit": "ten"})).await;
    assert_eq!(bad["error"]["code"], "invalid_params");
    let bad = call(&mut s, "x3", "chat.completions", json!({"model": "m"})).await;
    assert_eq!(
        bad["error"]["code"], "invalid_params",
        "messages is missing: {bad}"
    );
    send(&mut s, json!({"type": "req", "id": "x4", "method": 7})).await;
    let bad = next(&mut s).await;
    assert_eq!(
        (bad["id"].as_str(), bad["error"]["code"].as_str()),
        (Some("x4"), Some("invalid_frame"))
    );
    let long = "i".repeat(200);
    send(&mut s, json!({"type": "req", "id": long, "method": "ping"})).await;
    let bad = next(&mut s).await;
    assert_eq!(bad["error"]["code"], "invalid_request_id");
    let ok = call(&mut s, "p", "ping", json!({})).await;
    assert_eq!(ok["ok"], true, "still open after all that");
    gw.stop().await;
}

#[tokio::test]
async fn the_handshake_closes_with_a_documented_code() {
    let gw = Gateway::start(&config("connect_timeout_ms = 300")).await;
    let cases = [
        (
            connect(json!({"auth": {"token": "sk-wrong"}})),
            4001,
            "invalid_api_key",
        ),
        (connect(json!({"auth": null})), 4001, "missing_api_key"),
        (
            connect(json!({"min_protocol": 2, "max_protocol": 3})),
            4002,
            "",
        ),
        (
            json!({"type": "req", "id": "1", "method": "ping"}),
            4000,
            "",
        ),
        (json!({"type": "connect", "bogus": 1}), 4000, ""),
    ];
    for (first, code, reason) in cases {
        let mut s = open(&gw).await;
        send(&mut s, first.clone()).await;
        let (got, why) = closed(&mut s).await;
        assert_eq!(got, code, "{first}: {why}");
        assert!(why.contains(reason), "{first}: {why}");
    }
    let mut silent = open(&gw).await;
    assert_eq!(
        closed(&mut silent).await.0,
        4003,
        "no connect within the deadline"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let gw = Gateway::start(&config("max_frame_bytes = 4096\nreplay_bytes = 1048576")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    assert_eq!(hello["limits"]["max_frame_bytes"], 4096);
    let big =
        json!({"type": "req", "id": "b", "method": "ping", "params": {"pad": "x".repeat(8000)}});
    let _ = s.send(Message::Text(big.to_string().into())).await;
    assert_eq!(closed(&mut s).await.0, 1009);
    gw.stop().await;
}

#[tokio::test]
async fn a_reconnect_in_the_middle_of_a_stream_resumes_with_no_gap_and_no_duplicate() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    let session_id = hello["session_id"].as_str().unwrap().to_owned();
    let started = call(&mut s, "c1", "chat.completions", chat("slow")).await;
    assert_eq!(started["ok"], true);
    // Read two events, then the connection dies.
    let mut seen = Vec::new();
    let mut text = String::new();
    while seen.len() < 2 {
        let f = next(&mut s).await;
        if f["type"] == "event" {
            seen.push(f["seq"].as_u64().unwrap());
            text.push_str(
                f["data"]["chunk"]["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or(""),
            );
        }
    }
    drop(s);
    // The call keeps streaming into the session meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut s, hello) = session(
        &gw,
        json!({"resume": {"session_id": session_id, "last_seq": seen[1]}}),
    )
    .await;
    assert_eq!(hello["resumed"], true);
    assert_eq!(hello["session_id"], session_id.as_str());
    assert!(hello.get("replay_gap").is_none(), "{hello}");
    let (more, rest, last) = until_done(&mut s).await;
    assert_eq!(last["event"], "chat.completed");
    seen.extend(more);
    assert_eq!(
        seen,
        (1..=seen.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    text.push_str(&rest);
    let http = gw.chat(chat("slow")).await;
    assert_eq!(text, http.text(), "the whole answer arrived");
    gw.stop().await;
}

#[tokio::test]
async fn a_resume_past_the_window_is_told_what_it_lost() {
    let gw = Gateway::start(&config("replay_events = 3")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    let session_id = hello["session_id"].as_str().unwrap().to_owned();
    // Three whole calls: at least six events (a delta and a completion each).
    for i in 0..3 {
        let id = format!("c{i}");
        assert_eq!(
            call(&mut s, &id, "chat.completions", chat("m")).await["ok"],
            true
        );
        until_done(&mut s).await;
    }
    drop(s);
    let (mut s, hello) = session(
        &gw,
        json!({"resume": {"session_id": session_id, "last_seq": 0}}),
    )
    .await;
    let last = hello["last_seq"].as_u64().unwrap();
    let oldest = hello["replay_gap"]["oldest_seq"].as_u64().expect("a gap");
    assert_eq!(oldest, last - 2, "the window keeps the last three");
    let replayed: Vec<u64> = [next(&mut s).await, next(&mut s).await, next(&mut s).await]
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, [oldest, oldest + 1, oldest + 2]);
    gw.stop().await;
}

#[tokio::test]
async fn a_second_connection_resuming_the_session_takes_it_over() {
    let gw = Gateway::start(&config("")).await;
    let (mut first, hello) = session(&gw, json!({})).await;
    let id = hello["session_id"].as_str().unwrap().to_owned();
    let (mut second, hello2) =
        session(&gw, json!({"resume": {"session_id": id, "last_seq": 0}})).await;
    assert_eq!(hello2["resumed"], true);
    assert_eq!(closed(&mut first).await.0, 4010);
    assert_eq!(call(&mut second, "p", "ping", json!({})).await["ok"], true);
    // Another key cannot resume it: it gets a session of its own.
    gw.stop().await;
}

#[tokio::test]
async fn sessions_per_key_are_capped() {
    let gw = Gateway::start(&config("max_sessions_per_key = 1")).await;
    let (_one, _) = session(&gw, json!({})).await;
    let mut two = open(&gw).await;
    send(&mut two, connect(json!({}))).await;
    assert_eq!(closed(&mut two).await.0, 4004);
    gw.stop().await;
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_closed_after_two_heartbeats() {
    let gw = Gateway::start(&config("heartbeat_ms = 200")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    assert_eq!(hello["heartbeat_ms"], 200);
    // Reading nothing means answering no ping (the client answers as it reads): closed
    // after two silent heartbeats (~0.4-0.6 s).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(closed(&mut s).await.0, 4009);
    // One that reads stays.
    let (mut alive, _) = session(&gw, json!({})).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1000);
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(50), alive.next()).await;
    }
    assert_eq!(call(&mut alive, "p", "ping", json!({})).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn browser_origins_must_be_listed() {
    let gw = Gateway::start(&config("allowed_origins = [\"https://app.example.com\"]")).await;
    let url = format!("ws://{}/ws", gw.addr);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example.com".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(req).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = refused else {
        panic!("an HTTP refusal: {refused}");
    };
    assert_eq!(resp.status(), 403);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    let (mut s, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(&mut s, connect(json!({}))).await;
    assert_eq!(next(&mut s).await["type"], "hello");
    gw.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart_and_the_session_resumes_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "[database]\nurl = \"sqlite://{}/s.db\"\n",
        dir.path().display()
    );
    let cfg = format!("{}{db}", config(""));
    let gw = Gateway::start(&cfg).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    let id = hello["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&mut s, "c1", "chat.completions", chat("m")).await["ok"],
        true
    );
    let (seqs, answer, _) = until_done(&mut s).await;
    // The turn is stored off the call's path: wait for it.
    let stored = sluice_e2e::eventually(5, async || {
        let h = call(&mut s, "h", "session.history", json!({})).await;
        h["result"]["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2)
    })
    .await;
    assert!(stored, "the turn and its answer are in the history");
    drop(s);
    gw.stop().await;

    let gw = Gateway::start(&cfg).await;
    let last = *seqs.last().unwrap();
    let (mut s, hello) =
        session(&gw, json!({"resume": {"session_id": id, "last_seq": last}})).await;
    assert_eq!(hello["resumed"], true, "{hello}");
    assert_eq!(
        hello["replay_gap"]["oldest_seq"].as_u64(),
        Some(last + 1),
        "a restart loses the window, and says so"
    );
    let h = call(&mut s, "h", "session.history", json!({})).await;
    let messages = h["result"]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["message"]["role"], "user");
    assert_eq!(messages[0]["message"]["content"], "tell me");
    assert_eq!(messages[1]["message"]["content"], answer.as_str());
    // New events carry on after the client's last seq.
    assert_eq!(
        call(&mut s, "c2", "chat.completions", chat("m")).await["ok"],
        true
    );
    let (more, _, _) = until_done(&mut s).await;
    assert_eq!(more[0], last + 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_stopping_gateway_tells_clients_to_reconnect() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, _) = session(&gw, json!({})).await;
    let stop = tokio::spawn(gw.stop());
    let (code, _) = closed(&mut s).await;
    assert_eq!(
        code,
        u16::from(CloseCode::Restart),
        "1012: reconnect and resume"
    );
    stop.await.unwrap();
}

#[tokio::test]
async fn the_gateway_invokes_a_nodes_tool_and_a_dropped_node_fails_its_calls() {
    let gw = Gateway::start(&config("")).await;
    let tool =
        json!({"name": "echo", "description": "says it back", "parameters": {"type": "object"}});
    let (mut node, _) = session(
        &gw,
        json!({"role": "node", "node": {"name": "n1", "tools": [tool]}}),
    )
    .await;
    let listed = gw.state.hub.nodes.list("config:test");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1[0].name.as_str()),
        ("n1", "echo")
    );
    assert!(
        gw.state.hub.nodes.list("config:other").is_empty(),
        "a key's own nodes only"
    );

    let asked = ask_node(&gw, json!({"say": "hi"}), Duration::from_secs(5));
    let req = next(&mut node).await;
    assert_eq!(
        (req["type"].as_str(), req["method"].as_str()),
        (Some("req"), Some("tool.invoke"))
    );
    assert_eq!(req["params"]["tool"], "echo");
    assert_eq!(req["params"]["arguments"]["say"], "hi");
    assert_eq!(req["params"]["timeout_ms"], 5000);
    send(
        &mut node,
        json!({"type": "res", "id": req["id"], "ok": true, "result": {"output": {"said": "hi"}}}),
    )
    .await;
    assert_eq!(asked.await.unwrap().unwrap(), json!({"said": "hi"}));

    // A node's error answer is passed on as it is.
    let asked = ask_node(&gw, json!({}), Duration::from_secs(5));
    let req = next(&mut node).await;
    send(&mut node, json!({"type": "res", "id": req["id"], "ok": false, "error": {"code": "bad_input", "message": "no", "retryable": false}})).await;
    assert_eq!(asked.await.unwrap().unwrap_err().code, "bad_input");

    // No answer in time: tool_timeout.
    let slow = ask_node(&gw, json!({}), Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(slow.code, "tool_timeout");
    let _ = next(&mut node).await;

    // The node drops with a call in flight: it fails at once, not at the timeout.
    let asked = ask_node(&gw, json!({}), Duration::from_secs(30));
    let _ = next(&mut node).await;
    drop(node);
    let failed = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .expect("fails fast");
    assert_eq!(failed.unwrap().unwrap_err().code, "node_unavailable");
    assert!(
        sluice_e2e::eventually(5, async || gw
            .state
            .hub
            .nodes
            .list("config:test")
            .is_empty())
        .await,
        "the node is gone"
    );
    let missing = ask_node(&gw, json!({}), Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(missing.code, "node_unavailable");
    gw.stop().await;
}

#[tokio::test]
async fn a_trusted_proxys_identity_header_is_believed_only_from_the_proxy() {
    let cfg = config("").replace(
        "[providers.mock]",
        "[server]\nauth = \"trusted_proxy\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nuser_header = \"X-Forwarded-User\"\n[limits.users.alice]\nrpm = 1000\n[providers.mock]",
    );
    let gw = Gateway::start(&cfg).await;
    let body = chat("m");
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    // From the proxy, with no key: the header names the user.
    let resp = from("127.0.0.1")
        .post(gw.url("/v1/chat/completions"))
        .header("x-forwarded-user", "alice@example.com")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A value that names no one is refused, not believed.
    let resp = from("127.0.0.1")
        .post(gw.url("/v1/chat/completions"))
        .header("x-forwarded-user", "al\tice")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // From anywhere else, the header is refused, even with a valid key beside it.
    let resp = from("127.0.0.2")
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-forwarded-user", "alice@example.com")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "untrusted_identity_header");
    // Keys keep working without the header.
    let resp = from("127.0.0.2")
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(10).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.key_id.as_deref() == Some("proxy:alice@example.com")
                && r.user_id.as_deref() == Some("alice@example.com")),
        "the proxied user's call is in the ledger under its name: {rows:?}"
    );

    // The same on the socket: the upgrade carries the header, connect no token.
    let ws = |ip: &'static str| {
        let addr = gw.addr;
        async move {
            let tcp = tokio::net::TcpSocket::new_v4().unwrap();
            tcp.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            let stream = tcp.connect(addr).await.unwrap();
            let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
            req.headers_mut()
                .insert("x-forwarded-user", "alice@example.com".parse().unwrap());
            tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
        }
    };
    let (mut s, _) = ws("127.0.0.1").await.unwrap();
    send(
        &mut s,
        json!({"type": "connect", "min_protocol": 1, "max_protocol": 1}),
    )
    .await;
    assert_eq!(next(&mut s).await["type"], "hello");
    let refused = ws("127.0.0.2").await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(resp) = refused else {
        panic!("an HTTP refusal: {refused}");
    };
    assert_eq!(resp.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn sockets_count_against_max_connections_for_their_whole_life() {
    let cfg = config("").replace(
        "[providers.mock]",
        "[server]\nmax_connections = 2\n[providers.mock]",
    );
    let gw = Gateway::start(&cfg).await;
    let (one, _) = session(&gw, json!({})).await;
    let (_two, _) = session(&gw, json!({})).await;
    // A raw request: the status line of what the gateway answers on a new connection.
    let status = async || {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let mut buf = vec![0u8; 64];
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        status().await.starts_with("HTTP/1.1 503"),
        "two sockets hold both places"
    );
    drop(one);
    let freed =
        sluice_e2e::eventually(5, async || status().await.starts_with("HTTP/1.1 200")).await;
    assert!(freed, "a closed socket gives its place back");
    gw.stop().await;
}

#[tokio::test]
async fn a_reader_that_cannot_keep_up_is_closed_4008_and_resumes_knowing_what_it_lost() {
    // An 8 KiB window, and an answer of ~20 KiB produced faster than any socket takes it:
    // deltas merge up to a quarter of the window, then the window overflows.
    let cfg = config("max_frame_bytes = 4096\nreplay_bytes = 8192").replace(
        "[models.m]",
        "[providers.long]\nkind = \"mock\"\nwords = 3000\n[models.long]\nchain = [\"long:model-x\"]\n[models.m]",
    );
    let gw = Gateway::start(&cfg).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    let id = hello["session_id"].as_str().unwrap().to_owned();
    send(
        &mut s,
        json!({"type": "req", "id": "a", "method": "chat.completions", "params": chat("long")}),
    )
    .await;
    let mut seen = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(Message::Text(t))) => {
                let f: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(seq) = f["seq"].as_u64() {
                    seen = seq;
                }
            }
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => break 0,
            Some(Ok(_)) => {}
        }
    };
    assert_eq!(code, 4008);
    let (_resumed, hello) =
        session(&gw, json!({"resume": {"session_id": id, "last_seq": seen}})).await;
    assert_eq!(hello["resumed"], true);
    let oldest = hello["replay_gap"]["oldest_seq"].as_u64().expect("a gap");
    assert!(oldest > seen + 1, "{hello}");
    let (events, bytes) = {
        let s = gw
            .state
            .hub
            .resumable(&id, &gw.service.authenticate(KEY).unwrap())
            .unwrap();
        s.window_use()
    };
    assert!(
        bytes <= 8192,
        "the session holds its window and no more ({events} events, {bytes} bytes)"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_python_websockets_client_streams_and_resumes() {
    let gw = Gateway::start(&config("")).await;
    let stdout = sluice_e2e::run_python(
        "ws_e2e.py",
        &[
            ("SLUICE_WS_URL", format!("ws://{}/ws", gw.addr)),
            ("SLUICE_KEY", KEY.to_owned()),
        ],
    )
    .await;
    assert!(stdout.contains("resumed without a gap"), "{stdout}");
    assert!(stdout.trim_end().ends_with("errors and ping"), "{stdout}");
    gw.stop().await;
}

#[tokio::test]
async fn a_key_revoked_while_its_socket_is_open_is_refused_at_its_next_call() {
    let gw = Gateway::start(&config("")).await;
    let spec = sluice_store::keys::KeySpec {
        name: "socket".into(),
        ..Default::default()
    };
    let (secret, key) = spec.issue(sluice_service::ids::now_ms());
    gw.service.store().insert_key(&key).await.unwrap();
    gw.service.keys().refresh(gw.service.store()).await.unwrap();
    let mut s = open(&gw).await;
    send(&mut s, connect(json!({"auth": {"token": secret}}))).await;
    assert_eq!(next(&mut s).await["type"], "hello");
    assert_eq!(
        call(&mut s, "c1", "chat.completions", chat("m")).await["ok"],
        true
    );
    until_done(&mut s).await;
    gw.service
        .store()
        .revoke_key(&key.id, sluice_service::ids::now_ms())
        .await
        .unwrap();
    gw.service.keys().refresh(gw.service.store()).await.unwrap();
    let refused = call(&mut s, "c2", "chat.completions", chat("m")).await;
    assert_eq!(refused["error"]["code"], "key_revoked", "{refused}");
    gw.stop().await;
}

#[tokio::test]
async fn a_stop_lets_socket_calls_finish_within_the_grace() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, _) = session(&gw, json!({})).await;
    let started = call(&mut s, "c1", "chat.completions", chat("slow")).await;
    let call_id = started["result"]["call_id"].as_str().unwrap().to_owned();
    let _ = next(&mut s).await;
    let service = gw.service.clone();
    let stop = tokio::spawn(gw.stop());
    // The client is told to reconnect at once…
    assert_eq!(closed(&mut s).await.0, 1012);
    // …and the call runs on to its end within the grace, with its row.
    stop.await.unwrap();
    let rows = service.store().recent_spend(10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.request_id == call_id)
        .expect("the call's row");
    assert_eq!(row.status, "ok", "the call finished, not cut: {row:?}");
}

#[tokio::test]
async fn absurd_resume_seqs_are_bounded_not_a_panic() {
    let gw = Gateway::start(&config("")).await;
    let (mut s, hello) = session(&gw, json!({})).await;
    let id = hello["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&mut s, "c", "chat.completions", chat("m")).await["ok"],
        true
    );
    let (seqs, _, _) = until_done(&mut s).await;
    drop(s);
    // Ahead of the session: nothing is replayed, and numbering carries on from the
    // session's own last seq.
    let (mut s, hello) = session(
        &gw,
        json!({"resume": {"session_id": id, "last_seq": u64::MAX}}),
    )
    .await;
    assert_eq!(hello["resumed"], true);
    assert_eq!(hello["last_seq"].as_u64(), seqs.last().copied());
    assert_eq!(
        call(&mut s, "c2", "chat.completions", chat("m")).await["ok"],
        true
    );
    let (more, _, _) = until_done(&mut s).await;
    assert_eq!(more[0], seqs.last().unwrap() + 1);
    // An unknown session with an absurd seq: a new session.
    let (_, hello) = session(
        &gw,
        json!({"resume": {"session_id": "no-such", "last_seq": u64::MAX}}),
    )
    .await;
    assert_eq!(hello["resumed"], false);
    gw.stop().await;
}

#[tokio::test]
async fn a_session_holds_a_bounded_number_of_streaming_calls() {
    let gw = Gateway::start(&config("max_pending_requests = 2")).await;
    let (mut s, _) = session(&gw, json!({})).await;
    for id in ["a", "b"] {
        assert_eq!(
            call(&mut s, id, "chat.completions", chat("slow")).await["ok"],
            true
        );
    }
    let third = call(&mut s, "c", "chat.completions", chat("slow")).await;
    assert_eq!(
        third["error"]["code"], "too_many_pending_requests",
        "{third}"
    );
    assert_eq!(third["error"]["retryable"], true);
    // Once both have ended, there is room again.
    let mut done = 0;
    while done < 2 {
        let f = next(&mut s).await;
        if f["event"] == "chat.completed" {
            done += 1;
        }
    }
    assert_eq!(
        call(&mut s, "d", "chat.completions", chat("m")).await["ok"],
        true
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_that_breaks_half_way_ends_with_chat_failed_and_its_row_says_why() {
    let mock = sluice_e2e::MockProvider::start(sluice_e2e::Wire::OpenAi).await;
    mock.script("model-cut", vec![sluice_e2e::Step::CutAfter(3)]);
    let cfg = format!(
        "{}[models.cut]\nchain = [\"up:model-cut\"]\n{}",
        sluice_e2e::provider("up", &mock, &["sk-up"], ""),
        config("")
    );
    let gw = Gateway::start(&cfg).await;
    let (mut s, _) = session(&gw, json!({})).await;
    let started = call(&mut s, "c1", "chat.completions", chat("cut")).await;
    let call_id = started["result"]["call_id"].as_str().unwrap().to_owned();
    let (_, text, last) = until_done(&mut s).await;
    assert!(!text.is_empty(), "the first chunks arrived");
    assert_eq!(last["event"], "chat.failed", "{last}");
    assert_eq!(last["data"]["call_id"], call_id.as_str());
    assert_eq!(last["data"]["error"]["code"], "upstream_stream_cut");
    assert_eq!(last["data"]["error"]["retryable"], true);
    gw.service.ledger().flush().await.unwrap();
    let rows = gw.service.store().recent_spend(10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.request_id == call_id)
        .expect("a row");
    assert_eq!(row.status, "upstream_stream_cut");
    // The session goes on.
    assert_eq!(call(&mut s, "p", "ping", json!({})).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_closed_4008() {
    // Small answers, sent as fast as the client asks and never read: once the socket's
    // buffers are full the connection's outbox fills, and the gateway closes rather than
    // queue without bound.
    let gw = Gateway::start(&config("")).await;
    let (s, _) = session(&gw, json!({})).await;
    let (mut tx, mut rx) = s.split();
    let flood = tokio::spawn(async move {
        for i in 0..200_000 {
            let ping = json!({"type": "req", "id": format!("p{i}"), "method": "ping"});
            if tx
                .feed(Message::Text(ping.to_string().into()))
                .await
                .is_err()
            {
                return i;
            }
            if i % 256 == 0 && tx.flush().await.is_err() {
                return i;
            }
        }
        200_000
    });
    // Not reading for a while, then draining to the close frame.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), rx.next())
            .await
            .expect("the close in time")
        {
            Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
            None => panic!("closed without a close frame"),
        }
    };
    flood.abort();
    assert_eq!(code.0, 4008, "{code:?}");
    assert!(code.1.contains("answers are not being read"), "{code:?}");
    gw.stop().await;
}

#[tokio::test]
async fn requests_waiting_for_their_answer_are_bounded_per_connection() {
    // Two calls whose provider never answers stay pending; a third request, of any
    // method, is refused until one of them is answered.
    let mock = sluice_e2e::MockProvider::start(sluice_e2e::Wire::OpenAi).await;
    mock.script("model-hang", vec![sluice_e2e::Step::Hang]);
    // The hanging calls are cut at the stop, after a short grace.
    let cfg = format!(
        "[server]\nshutdown_grace_ms = 200\n{}[models.hang]\nchain = [\"up:model-hang\"]\n{}",
        sluice_e2e::provider("up", &mock, &["sk-up"], ""),
        config("max_pending_requests = 2")
    );
    let gw = Gateway::start(&cfg).await;
    let (mut s, _) = session(&gw, json!({})).await;
    for id in ["a", "b"] {
        send(
            &mut s,
            json!({"type": "req", "id": id, "method": "chat.completions", "params": chat("hang")}),
        )
        .await;
    }
    let ok = sluice_e2e::eventually(5, async || mock.requests().len() == 2).await;
    assert!(ok, "both calls reached the provider");
    let third = call(&mut s, "c", "ping", json!({})).await;
    assert_eq!(third["ok"], false, "{third}");
    assert_eq!(third["error"]["code"], "too_many_pending_requests");
    assert_eq!(third["error"]["retryable"], true);
    assert!(
        third["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unanswered"),
        "{third}"
    );
    // An id already in flight is refused as such, not run twice.
    let dup = call(&mut s, "a", "ping", json!({})).await;
    assert_eq!(dup["error"]["code"], "invalid_request_id", "{dup}");
    gw.stop().await;
}

#[tokio::test]
async fn history_answers_fit_in_a_frame_and_page_backwards() {
    let gw = Gateway::start(&config("max_frame_bytes = 4096")).await;
    let (mut s, _) = session(&gw, json!({})).await;
    for i in 0..3 {
        let long = format!("turn {i}: {}", "words of a long question ".repeat(80)); // ~2 KB
        let params = json!({"model": "m", "messages": [{"role": "user", "content": long}]});
        let started = call(&mut s, &format!("c{i}"), "chat.completions", params).await;
        assert_eq!(started["ok"], true, "{started}");
        until_done(&mut s).await;
    }
    let stored = sluice_e2e::eventually(5, async || {
        let mut all = 0;
        let mut before = Value::Null;
        loop {
            let h = call(
                &mut s,
                "h",
                "session.history",
                json!({"before_seq": before}),
            )
            .await;
            let page = h["result"]["messages"].as_array().unwrap().clone();
            all += page.len();
            if h["result"]["more"] != true || page.is_empty() {
                return all == 6;
            }
            before = page[0]["seq"].clone();
        }
    })
    .await;
    assert!(stored, "three turns and their answers are stored");

    // The newest page: whole messages, oldest first, within the frame size.
    send(
        &mut s,
        json!({"type": "req", "id": "h1", "method": "session.history"}),
    )
    .await;
    let raw = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg
            && t.as_str().contains("\"h1\"")
        {
            break t.as_str().to_owned();
        }
    };
    assert!(raw.len() <= 4096, "{} bytes", raw.len());
    let h: Value = serde_json::from_str(&raw).unwrap();
    let page = h["result"]["messages"].as_array().unwrap();
    assert!(page.len() < 6, "not all fit");
    assert_eq!(h["result"]["more"], true);
    assert_eq!(page.last().unwrap()["message"]["role"], "assistant");
    let seqs: Vec<u64> = page.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");

    // Paging back from the first seq collects every message once, in order.
    let mut seen = seqs.clone();
    let mut before = seqs[0];
    loop {
        let h = call(
            &mut s,
            "h2",
            "session.history",
            json!({"before_seq": before, "limit": 2}),
        )
        .await;
        let older: Vec<u64> = h["result"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert!(older.len() <= 2);
        seen.splice(0..0, older.iter().copied());
        if h["result"]["more"] == false {
            break;
        }
        before = older[0];
    }
    assert_eq!(seen, (1..=6).collect::<Vec<u64>>());
    gw.stop().await;
}
