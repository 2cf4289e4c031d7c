//! `sluice-client` against the real gateway over real sockets: connect, calls and their
//! errors, a streamed chat equal to the HTTP answer, and what the client does when its
//! connection breaks (a cut, a silent gateway, a restart onto the same store, a key
//! refused on reconnect), and the node role: tools served to the gateway's
//! `hub.nodes.invoke`. A [`Proxy`] between client and gateway does the breaking.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice_client::protocol::ToolSpec;
use sluice_client::protocol::methods::HistoryParams;
use sluice_client::{
    CallError, ChatEvent, ChatStream, Client, ClientConfig, ClientError, CloseReason, Events, Gap,
    NodeConfig, SessionEvent, ToolCall, ToolError,
};
use sluice_e2e::{Gateway, KEY, Proxy};

fn config(extra_ws: &str) -> String {
    sluice_e2e::ws_config(extra_ws)
}

fn ws_url(gw: &Gateway) -> String {
    format!("ws://{}/ws", gw.addr)
}

/// A client config that reconnects quickly, so the tests do not wait on backoff.
fn client_config(url: String) -> ClientConfig {
    let mut c = ClientConfig::new(url, KEY);
    c.name = "client-e2e".into();
    c.reconnect.first_delay = Duration::from_millis(20);
    c.reconnect.max_delay = Duration::from_millis(200);
    c.call_timeout = Duration::from_secs(10);
    c
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "tell me"}]})
}

/// A chat stream read to its end: (seqs, text, the last item).
async fn drain(mut stream: ChatStream) -> (Vec<u64>, String, ChatEvent) {
    let mut seqs = Vec::new();
    let mut text = String::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the next chat event in time")
    {
        let event = item.unwrap_or_else(|e| panic!("the stream broke: {e}"));
        seqs.push(event.seq());
        text.push_str(event.text());
        if matches!(event, ChatEvent::Completed { .. }) {
            return (seqs, text, event);
        }
    }
    panic!("the stream ended without its completion");
}

/// Reads `events` until `want` matches an item (at most 10 s); the items before it.
async fn until(events: &mut Events, want: impl Fn(&SessionEvent) -> bool) -> Vec<SessionEvent> {
    let mut seen = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event in time; saw {seen:?}"))
            .unwrap_or_else(|| panic!("the client closed; saw {seen:?}"));
        if want(&item) {
            seen.push(item);
            return seen;
        }
        seen.push(item);
    }
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn connect_call_and_ping() {
    let gw = Gateway::start(&config("")).await;
    let client = Client::connect(client_config(ws_url(&gw))).await.unwrap();
    let hello = client.hello();
    assert_eq!((hello.protocol, hello.resumed), (1, false));
    assert!(!client.session_id().is_empty());
    assert!(
        hello.methods.iter().any(|m| m == "chat.completions"),
        "{:?}",
        hello.methods
    );
    client.ping().await.unwrap();
    assert_eq!(
        client.call("ping", json!({})).await.unwrap(),
        json!({"pong": true})
    );
    let usage = client.usage().await.unwrap();
    assert_eq!(
        (usage.session_id.as_str(), usage.calls),
        (client.session_id().as_str(), 0)
    );

    let unknown = client.call("no.such.method", json!({})).await.unwrap_err();
    assert_eq!(unknown.code(), Some("unknown_method"), "{unknown}");
    assert!(!unknown.retryable());
    let refused = client.chat(chat("no-such-model")).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some("model_not_found"),
        "a refusal answers the call: {refused}"
    );
    let bad = client
        .call("session.history", json!({"limit": "ten"}))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("invalid_params"));
    // A request over the gateway's frame limit is refused here, not sent (a 1009 would
    // close the connection for good).
    let big = client
        .call("ping", json!({"pad": "x".repeat(2 * 1024 * 1024)}))
        .await
        .unwrap_err();
    assert!(matches!(big, CallError::TooLarge { .. }), "{big}");
    client.ping().await.unwrap();

    client.close().await;
    assert_eq!(client.close_reason(), Some(CloseReason::ByClient));
    let after = client.ping().await.unwrap_err();
    assert!(
        matches!(after, CallError::Closed(CloseReason::ByClient)),
        "{after}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_streamed_chat_equals_the_http_answer() {
    let gw = Gateway::start(&config("")).await;
    let client = Client::connect(client_config(ws_url(&gw))).await.unwrap();
    let mut events = client.events();
    let stream = client.chat(chat("m")).await.unwrap();
    assert!(!stream.call_id().is_empty());
    let (seqs, text, last) = drain(stream).await;
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "a new session's events count 1, 2, 3…"
    );
    let ChatEvent::Completed {
        usage, served_by, ..
    } = last
    else {
        unreachable!("drain returns the completion")
    };
    assert_eq!(served_by, "mock:model-x");
    assert!(usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);
    let http = gw.chat(chat("m")).await;
    assert_eq!(text, http.text(), "the same answer as over HTTP");
    assert_eq!(client.last_seq(), *seqs.last().unwrap());

    // The same events reached the session's subscribers.
    let seen = until(
        &mut events,
        |e| matches!(e, SessionEvent::Event(ev) if ev.event == "chat.completed"),
    )
    .await;
    let event_seqs: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Event(ev) => Some(ev.seq),
            _ => None,
        })
        .collect();
    assert_eq!(event_seqs, seqs);

    // `answer` reads a stream to its end.
    let answer = client
        .chat(chat("m"))
        .await
        .unwrap()
        .answer()
        .await
        .unwrap();
    assert_eq!(answer.text, http.text());
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert_eq!(client.usage().await.unwrap().calls, 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_cut_connection_resumes_mid_stream_with_no_gap_and_no_duplicate() {
    let gw = Gateway::start(&config("")).await;
    let proxy = Proxy::start(gw.addr).await;
    let client = Client::connect(client_config(proxy.ws_url()))
        .await
        .unwrap();
    let session = client.session_id();
    let mut events = client.events();
    let mut stream = client.chat(chat("slow")).await.unwrap();
    let mut seqs = Vec::new();
    let mut text = String::new();
    while seqs.len() < 2 {
        let e = stream.next().await.unwrap().unwrap();
        seqs.push(e.seq());
        text.push_str(e.text());
    }
    proxy.cut();
    // The call keeps streaming into the session while the client is away; the stream
    // carries on after the resume.
    let (more, rest, last) = drain(stream).await;
    assert!(matches!(last, ChatEvent::Completed { .. }));
    seqs.extend(more);
    text.push_str(&rest);
    assert!(strictly_increasing(&seqs), "no duplicate: {seqs:?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap: {seqs:?}"
    );
    assert_eq!(
        text,
        gw.chat(chat("slow")).await.text(),
        "the whole answer arrived"
    );

    let seen = until(
        &mut events,
        |e| matches!(e, SessionEvent::Event(ev) if ev.event == "chat.completed"),
    )
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, SessionEvent::Disconnected { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            SessionEvent::Reconnected { session_id, resumed: true } if *session_id == session
        )),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, SessionEvent::Gap(_))),
        "{seen:?}"
    );
    let event_seqs: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Event(ev) => Some(ev.seq),
            _ => None,
        })
        .collect();
    assert_eq!(event_seqs, seqs, "subscribers get each event once too");
    assert_eq!(client.session_id(), session);
    assert_eq!(proxy.accepted(), 2, "one reconnect");
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_falls_behind_resumes_and_its_chat_is_told_what_it_lost() {
    // An 8 KiB window and a 3000-word answer produced at once: a reader that does not
    // keep up overflows it, is closed (4008), and resumes past a gap.
    let gw = Gateway::start(&format!(
        "{}[providers.long]\nkind = \"mock\"\nwords = 3000\n[models.long]\nchain = [\"long:model-x\"]\n",
        config("max_frame_bytes = 4096\nreplay_bytes = 8192")
    ))
    .await;
    let client = Client::connect(client_config(ws_url(&gw))).await.unwrap();
    let session = client.session_id();
    let mut events = client.events();
    let mut stream = client.chat(chat("long")).await.unwrap();
    // Not reading: the stream's buffer fills and the connection stops reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delivered = 0;
    let gap = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream goes on")
        {
            Some(Ok(ChatEvent::Delta { seq, .. })) => {
                assert!(seq > delivered, "in order, once");
                delivered = seq;
            }
            Some(Err(sluice_client::ChatError::Gap(gap))) => break gap,
            other => panic!("the answer cannot be whole: {other:?}"),
        }
    };
    assert_eq!(
        gap.last_seq, delivered,
        "the gap starts after the last delivered"
    );
    assert!(gap.oldest_seq > gap.last_seq + 1, "{gap:?}");
    assert!(
        stream.next().await.is_none(),
        "the stream ended with the gap"
    );

    let seen = until(&mut events, |e| matches!(e, SessionEvent::Gap(_))).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, SessionEvent::Disconnected { .. })),
        "{seen:?}"
    );
    assert!(seen.iter().any(|e| matches!(
        e,
        SessionEvent::Reconnected { session_id, resumed: true } if *session_id == session
    )));
    assert_eq!(seen.last(), Some(&SessionEvent::Gap(gap)));
    // The session goes on: the call's last events, replayed after the gap, reach the
    // subscribers, from oldest_seq on.
    let rest = until(
        &mut events,
        |e| matches!(e, SessionEvent::Event(ev) if ev.event == "chat.completed"),
    )
    .await;
    let SessionEvent::Event(first) = &rest[0] else {
        panic!("{rest:?}")
    };
    assert_eq!(first.seq, gap.oldest_seq);
    client.ping().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_gateway_counts_as_gone_and_the_call_in_flight_fails_retryably() {
    let gw = Gateway::start(&config("heartbeat_ms = 200")).await;
    let proxy = Proxy::start(gw.addr).await;
    let client = Client::connect(client_config(proxy.ws_url()))
        .await
        .unwrap();
    assert_eq!(client.hello().heartbeat_ms, 200);
    // Pings every 200 ms keep a reading client connected.
    tokio::time::sleep(Duration::from_millis(700)).await;
    client.ping().await.unwrap();
    assert_eq!(proxy.accepted(), 1, "answered pings keep the connection");

    let session = client.session_id();
    proxy.freeze();
    let started = std::time::Instant::now();
    let lost = client.ping().await.unwrap_err();
    assert!(
        matches!(lost, CallError::Disconnected) && lost.retryable(),
        "a call in flight when the connection dropped: {lost}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "dropped after about two heartbeats, not the call timeout: {:?}",
        started.elapsed()
    );
    // The client reconnected by itself and continues the session.
    client.ping().await.unwrap();
    assert_eq!(client.session_id(), session);
    assert!(client.hello().resumed);
    assert_eq!(proxy.accepted(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_restarting_gateway_is_followed_and_the_lost_events_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}[database]\nurl = \"sqlite://{}/s.db\"\n",
        config(""),
        dir.path().display()
    );
    let gw = Gateway::start(&cfg).await;
    let proxy = Proxy::start(gw.addr).await;
    let client = Client::connect(client_config(proxy.ws_url()))
        .await
        .unwrap();
    let session = client.session_id();
    let answer = client
        .chat(chat("m"))
        .await
        .unwrap()
        .answer()
        .await
        .unwrap();
    // The turn is stored off the call's path: wait for it, so the next gateway has it.
    let stored = sluice_e2e::eventually(5, async || {
        client
            .history(HistoryParams::default())
            .await
            .is_ok_and(|h| h.messages.len() == 2)
    })
    .await;
    assert!(stored, "the turn and its answer are in the history");
    let last = client.last_seq();

    let mut events = client.events();
    gw.stop().await;
    let seen = until(&mut events, |e| {
        matches!(e, SessionEvent::Disconnected { .. })
    })
    .await;
    let SessionEvent::Disconnected { reason } = seen.last().unwrap() else {
        unreachable!()
    };
    assert!(
        reason.contains("1012"),
        "the gateway said restart: {reason}"
    );
    // The successor, on the same database, somewhere else: the client keeps trying
    // until it is there.
    let next = Gateway::start(&cfg).await;
    proxy.set_upstream(next.addr);
    let seen = until(&mut events, |e| matches!(e, SessionEvent::Gap(_))).await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            SessionEvent::Reconnected { session_id, resumed: true } if *session_id == session
        )),
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&SessionEvent::Gap(Gap {
            last_seq: last,
            oldest_seq: last + 1
        })),
        "a restart loses the window, and the client says so"
    );
    assert_eq!(
        client.hello().replay_gap.map(|g| g.oldest_seq),
        Some(last + 1)
    );

    let history = client.history(HistoryParams::default()).await.unwrap();
    assert_eq!(history.messages[1].message["content"], answer.text.as_str());
    let (seqs, _, _) = drain(client.chat(chat("m")).await.unwrap()).await;
    assert_eq!(seqs[0], last + 1, "new events carry on after the last one");
    next.stop().await;
}

#[tokio::test]
async fn bad_credentials_fail_at_once_and_are_not_retried() {
    let gw = Gateway::start(&config("")).await;
    let proxy = Proxy::start(gw.addr).await;
    let mut wrong = client_config(proxy.ws_url());
    wrong.token = "sk-wrong".into();
    let started = std::time::Instant::now();
    let err = Client::connect(wrong).await.unwrap_err();
    let ClientError::Unauthorized { code } = &err else {
        panic!("a clear refusal: {err}");
    };
    assert_eq!(code, "invalid_api_key");
    assert!(!err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(proxy.accepted(), 1, "connect does not retry");

    // A key refused on reconnect (here: the next gateway does not know it) stops the
    // client after that one attempt.
    let client = Client::connect(client_config(proxy.ws_url()))
        .await
        .unwrap();
    let other = Gateway::start(&format!(
        "[[keys]]\nname = \"other\"\nkey = \"sk-another-key-entirely\"\n{}",
        config("")
    ))
    .await;
    proxy.set_upstream(other.addr);
    proxy.cut();
    let reason = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the client gives up");
    let CloseReason::GaveUp { attempts, error } = &reason else {
        panic!("{reason}");
    };
    assert_eq!(*attempts, 1, "{reason}");
    assert!(error.contains("invalid_api_key"), "{reason}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.accepted(), 3, "no retry loop");
    let after = client.ping().await.unwrap_err();
    assert!(matches!(after, CallError::Closed(_)), "{after}");
    other.stop().await;
    gw.stop().await;
}

/// The key every test config's key is known by in the gateway (`config:<name>`).
const KEY_REF: &str = "config:test";

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("the {name} tool"),
        parameters: json!({"type": "object"}),
    }
}

/// A node named `builder`: `echo` answers its arguments, `fail` fails, `sleep` sleeps
/// `ms` and says so, `hang` tells `started` and never answers.
fn node_config(url: String, started: tokio::sync::mpsc::Sender<()>) -> ClientConfig {
    let mut c = client_config(url);
    let tools = ["echo", "fail", "sleep", "hang"].map(tool).to_vec();
    c.node = Some(NodeConfig::new("builder", tools, move |call: ToolCall| {
        let started = started.clone();
        async move {
            match call.tool.as_str() {
                "echo" => Ok(json!({"echoed": call.arguments})),
                "fail" => Err(ToolError::failed("the disk is full")),
                "sleep" => {
                    let ms = call.arguments["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!(format!("slept {ms} ms")))
                }
                _ => {
                    let _ = started.send(()).await;
                    std::future::pending().await
                }
            }
        }
    }));
    c
}

async fn registered(gw: &Gateway) -> bool {
    sluice_e2e::eventually(5, async || {
        gw.state
            .hub
            .nodes
            .list(KEY_REF)
            .iter()
            .any(|(name, _)| name == "builder")
    })
    .await
}

#[tokio::test]
async fn a_node_serves_its_tools_to_the_gateway() {
    let gw = Gateway::start(&config("")).await;
    let (started, _) = tokio::sync::mpsc::channel(1);
    let node = Client::connect(node_config(ws_url(&gw), started))
        .await
        .unwrap();
    assert!(registered(&gw).await, "the node is listed under its key");
    let listed = gw.state.hub.nodes.list(KEY_REF);
    assert_eq!(listed[0].1.len(), 4, "with the tools it declared");
    assert_eq!(listed[0].1[0].description, "the echo tool");
    let nodes = &gw.state.hub.nodes;
    let second = Duration::from_secs(1);

    let out = nodes
        .invoke(KEY_REF, "builder", "echo", json!({"q": [1, 2]}), second)
        .await
        .unwrap();
    assert_eq!(out, json!({"echoed": {"q": [1, 2]}}));
    let failed = nodes
        .invoke(KEY_REF, "builder", "fail", json!({}), second)
        .await
        .unwrap_err();
    assert_eq!(
        (failed.code.as_str(), failed.message.as_str()),
        ("internal_error", "the disk is full"),
        "the handler's error is the answer"
    );
    let late = nodes
        .invoke(
            KEY_REF,
            "builder",
            "sleep",
            json!({"ms": 2000}),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert_eq!(late.code, "tool_timeout");

    // Invocations run at once, not one after another.
    let started = std::time::Instant::now();
    let calls = (0..5).map(|_| {
        nodes.invoke(
            KEY_REF,
            "builder",
            "sleep",
            json!({"ms": 300}),
            Duration::from_secs(5),
        )
    });
    for out in futures_util::future::join_all(calls).await {
        assert_eq!(out.unwrap(), json!("slept 300 ms"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "five 300 ms tools took {:?}",
        started.elapsed()
    );

    // The node is also a client of its session.
    node.ping().await.unwrap();
    node.close().await;
    assert!(
        sluice_e2e::eventually(5, async || nodes.list(KEY_REF).is_empty()).await,
        "a closed node is no longer listed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_node_whose_connection_dies_fails_its_invocation_and_comes_back() {
    let gw = Gateway::start(&config("")).await;
    let proxy = Proxy::start(gw.addr).await;
    let (started, mut running) = tokio::sync::mpsc::channel(1);
    let node = Client::connect(node_config(proxy.ws_url(), started))
        .await
        .unwrap();
    assert!(registered(&gw).await);
    let state = gw.state.clone();
    let waiting = tokio::spawn(async move {
        state
            .hub
            .nodes
            .invoke(
                KEY_REF,
                "builder",
                "hang",
                json!({}),
                Duration::from_secs(10),
            )
            .await
    });
    running.recv().await.expect("the tool started");
    let t0 = std::time::Instant::now();
    proxy.cut();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.code, "node_unavailable", "{err:?}");
    assert!(err.retryable);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "failed when the node went, not at the timeout: {:?}",
        t0.elapsed()
    );
    // The node reconnects by itself and serves again.
    let back = sluice_e2e::eventually(5, async || {
        gw.state
            .hub
            .nodes
            .invoke(
                KEY_REF,
                "builder",
                "echo",
                json!({"n": 1}),
                Duration::from_secs(1),
            )
            .await
            .is_ok()
    })
    .await;
    assert!(back, "the reconnected node serves its tools again");
    assert_eq!(proxy.accepted(), 2);
    drop(node);
    gw.stop().await;
}
