//! Slack, for the chat channels' bench (docs/benchmarks.md, "Chat channels: webhook
//! acknowledgement"), against 127.0.0.1 only, bounded in count:
//!
//! ```text
//! sluice-wsload slack-api    PORT                        the Web API methods the gateway calls, on
//!                                                        127.0.0.1:PORT/api (`GET /stats`: counters)
//! sluice-wsload slack-events URL SECRET N CONC [REPEAT]  N signed `app_mention` deliveries, CONC in
//!                                                        flight, each sent REPEAT times: time to the ack
//! ```
//!
//! The mock answers `auth.test`, `chat.postMessage` and `chat.update` as Slack does
//! (HTTP 200, `{"ok": …}`) and counts them; per thread it counts the messages posted, so
//! an answer posted twice, or a placeholder never edited into its answer, shows in
//! `/stats`. It keeps no log of calls: nothing on its path but a counter and one small
//! map.
//!
//! The deliveries are what Slack posts to the Events API URL: an `event_callback` with
//! a unique `event_id` and message `ts`, spread over users and channels (each message is
//! a thread of its own, so one conversation), signed `v0` with the signing secret. The
//! REPEAT copies of a delivery go out next to each other, so they are in flight at once:
//! the later ones carry `X-Slack-Retry-Num` and `X-Slack-Retry-Reason: http_timeout`, as
//! Slack's retries do. A copy is timed from its request to its full response (the ack);
//! the timestamp and signature are made before the clock starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The bot's Slack user id (`auth.test`), as the gateway learns it at start.
const BOT_USER_ID: &str = "UBOT";
const BOT_ID: &str = "BBOT";
const TEAM: &str = "T1";
/// Slack's deadline for an Events API acknowledgement.
const SLACK_DEADLINE_MS: f64 = 3000.0;

#[derive(Default)]
struct Book {
    auth_test: AtomicU64,
    post_message: AtomicU64,
    update: AtomicU64,
    /// Calls answered `ok: false`.
    refused: AtomicU64,
    next_ts: AtomicU64,
    messages: Mutex<Messages>,
}

#[derive(Default)]
struct Messages {
    /// `ts` → the thread it was posted in, and whether it was edited since.
    posted: HashMap<String, (String, bool)>,
    /// `channel:thread_ts` → messages posted in it.
    threads: HashMap<String, u32>,
}

impl Book {
    fn stats(&self) -> Value {
        let m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let twice = m.threads.values().filter(|n| **n > 1).count();
        let unedited = m.posted.values().filter(|(_, edited)| !edited).count();
        json!({
            "auth_test": self.auth_test.load(Relaxed),
            "post_message": self.post_message.load(Relaxed),
            "update": self.update.load(Relaxed),
            "refused": self.refused.load(Relaxed),
            "threads": m.threads.len(),
            "threads_posted_twice": twice,
            "messages_never_edited": unedited,
        })
    }
}

/// The mock Web API until SIGINT or SIGTERM; prints its counters then.
pub async fn api(port: u16) -> anyhow::Result<()> {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route("/stats", get(stats))
        .route("/api/{method}", post(method))
        .with_state(book.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await?;
    println!("{}", book.stats());
    Ok(())
}

async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn stats(State(book): State<Arc<Book>>) -> axum::Json<Value> {
    axum::Json(book.stats())
}

async fn method(
    State(book): State<Arc<Book>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let answer = answer(&book, &method, &headers, &body);
    if answer["ok"] != true {
        book.refused.fetch_add(1, Relaxed);
    }
    axum::Json(answer)
}

fn error(code: &str) -> Value {
    json!({"ok": false, "error": code})
}

fn answer(book: &Book, method: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_none_or(str::is_empty) {
        return error("not_authed");
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error("invalid_json");
    };
    let text = req["text"].as_str().unwrap_or_default();
    let channel = req["channel"].as_str().unwrap_or_default();
    match method {
        "auth.test" => {
            book.auth_test.fetch_add(1, Relaxed);
            json!({
                "ok": true, "url": "https://bench.slack.com/", "team": "Bench", "user": "sluicebot",
                "team_id": TEAM, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                "is_enterprise_install": false,
            })
        }
        "chat.postMessage" => {
            book.post_message.fetch_add(1, Relaxed);
            if channel.is_empty() {
                return error("channel_not_found");
            }
            if text.is_empty() {
                return error("no_text");
            }
            let n = book.next_ts.fetch_add(1, Relaxed);
            let ts = format!("{}.{n:06}", unix_ms() / 1000);
            let thread = req["thread_ts"].as_str().unwrap_or(&ts);
            let thread = format!("{channel}:{thread}");
            {
                let mut m = book.messages.lock().unwrap_or_else(|p| p.into_inner());
                *m.threads.entry(thread.clone()).or_default() += 1;
                m.posted.insert(ts.clone(), (thread, false));
            }
            let mut message = json!({"type": "message", "text": text, "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts});
            if let Some(t) = req.get("thread_ts") {
                message["thread_ts"] = t.clone();
            }
            json!({"ok": true, "channel": channel, "ts": ts, "message": message})
        }
        "chat.update" => {
            book.update.fetch_add(1, Relaxed);
            let ts = req["ts"].as_str().unwrap_or_default();
            if text.is_empty() {
                return error("no_text");
            }
            {
                let mut m = book.messages.lock().unwrap_or_else(|p| p.into_inner());
                match m.posted.get_mut(ts) {
                    Some((thread, edited)) if thread.starts_with(&format!("{channel}:")) => {
                        *edited = true;
                    }
                    _ => return error("message_not_found"),
                }
            }
            json!({"ok": true, "channel": channel, "ts": ts, "text": text})
        }
        _ => error("unknown_method"),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One delivery's shape: which event, by whom, where.
struct Delivery {
    event_id: String,
    body: String,
}

/// Delivery `i` of a run tagged `tag` (the run's start, so runs against one store never
/// share an event id or a message).
fn delivery(tag: &str, start_s: u64, i: u64, users: u64, channels: u64) -> Delivery {
    let user = format!("U{:05}", i % users);
    let channel = format!("C{tag}{:03}", i % channels);
    let ts = format!("{start_s}.{i:06}");
    let event_id = format!("Ev{tag}{i:07}");
    let body = json!({
        "token": "bench-verification-token",
        "team_id": TEAM,
        "api_app_id": "ABENCH",
        "event": {
            "type": "app_mention",
            "user": user,
            "text": format!("<@{BOT_USER_ID}> hello from the bench, message {i}"),
            "ts": ts,
            "team": TEAM,
            "channel": channel,
            "event_ts": ts,
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": start_s,
        "authorizations": [{"enterprise_id": null, "team_id": TEAM, "user_id": BOT_USER_ID, "is_bot": true, "is_enterprise_install": false}],
        "is_ext_shared_channel": false,
        "event_context": format!("4-bench-{tag}"),
    });
    Delivery {
        event_id,
        body: body.to_string(),
    }
}

/// `X-Slack-Signature` for `body` sent at `timestamp`: `v0=` + hex HMAC-SHA256 of
/// `v0:{timestamp}:{body}` keyed with the signing secret.
fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

/// What one request was answered, and when.
struct Ack {
    delivery: u64,
    copy: u64,
    ms: f64,
    /// `STATUS code` (`x-sluice-webhook`), or `error: …` with no answer.
    outcome: String,
}

pub async fn events(url: &str, secret: &str, n: u64, conc: u64, repeat: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        n > 0 && conc > 0 && repeat > 0,
        "N, CONC and REPEAT: at least 1"
    );
    let start_ms = unix_ms();
    let start_s = start_ms / 1000;
    let tag = base36(start_ms);
    let (users, channels) = (n.min(500), n.min(50));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(conc).unwrap_or(usize::MAX))
        .timeout(Duration::from_secs(30))
        .build()?;
    let deliveries: Vec<Delivery> = (0..n)
        .map(|i| delivery(&tag, start_s, i, users, channels))
        .collect();
    let started = Instant::now();
    let acks: Vec<Ack> =
        futures_util::stream::iter((0..n).flat_map(|i| (0..repeat).map(move |r| (i, r))))
            .map(|(i, copy)| {
                let (http, d) = (&http, &deliveries[usize::try_from(i).unwrap_or(usize::MAX)]);
                async move {
                    let timestamp = (unix_ms() / 1000).to_string();
                    let mut req = http
                        .post(url)
                        .header("content-type", "application/json")
                        .header("x-slack-request-timestamp", &timestamp)
                        .header("x-slack-signature", sign(secret, &timestamp, &d.body))
                        .body(d.body.clone());
                    if copy > 0 {
                        req = req
                            .header("x-slack-retry-num", copy.to_string())
                            .header("x-slack-retry-reason", "http_timeout");
                    }
                    let t0 = Instant::now();
                    let outcome = match req.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let code = resp
                                .headers()
                                .get("x-sluice-webhook")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned();
                            match resp.bytes().await {
                                Ok(_) => format!("{status} {code}"),
                                Err(e) => format!("error: body: {e}"),
                            }
                        }
                        Err(e) => format!("error: {}", e.without_url()),
                    };
                    Ack {
                        delivery: i,
                        copy,
                        ms: t0.elapsed().as_secs_f64() * 1000.0,
                        outcome,
                    }
                }
            })
            .buffer_unordered(usize::try_from(conc).unwrap_or(usize::MAX))
            .collect()
            .await;
    let wall = started.elapsed().as_secs_f64();
    report(&deliveries, &acks, n, conc, repeat, wall);
    Ok(())
}

fn report(deliveries: &[Delivery], acks: &[Ack], n: u64, conc: u64, repeat: u64, wall: f64) {
    let mut outcomes: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut accepted = vec![0u32; deliveries.len()];
    for a in acks {
        let kind = if a.copy == 0 { "original" } else { "retry" };
        *outcomes.entry((kind, a.outcome.as_str())).or_default() += 1;
        if a.outcome == "200 accepted" {
            accepted[usize::try_from(a.delivery).unwrap_or(usize::MAX)] += 1;
        }
    }
    let over = acks.iter().filter(|a| a.ms > SLACK_DEADLINE_MS).count();
    let mut ms: Vec<f64> = acks.iter().map(|a| a.ms).collect();
    println!(
        "{} requests ({n} deliveries x {repeat}, {conc} in flight) in {wall:.2} s, {:.0} a second",
        acks.len(),
        acks.len() as f64 / wall
    );
    for ((kind, outcome), count) in &outcomes {
        println!("  {kind} -> {outcome}: {count}");
    }
    let once = accepted.iter().filter(|c| **c == 1).count();
    let more = accepted.iter().filter(|c| **c > 1).count();
    println!(
        "deliveries accepted once: {once}, more than once: {more}, never: {}",
        accepted.len() - once - more
    );
    println!("ack ms: {}", crate::summary(&mut ms));
    let mut by_outcome: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for a in acks {
        by_outcome.entry(a.outcome.as_str()).or_default().push(a.ms);
    }
    if by_outcome.len() > 1 {
        for (outcome, ms) in &mut by_outcome {
            println!("  {outcome} ms: {}", crate::summary(ms));
        }
    }
    println!("over 3000 ms: {over}");
    if let Some(first) = deliveries.first() {
        println!("event ids {}..", first.event_id);
    }
}

/// Upper-case base 36, as Slack's ids are written.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).unwrap_or(0)]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own worked example ("Verifying requests from Slack").
    #[test]
    fn signs_as_slack_documents() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn deliveries_differ_in_event_and_message() {
        let (a, b) = (delivery("X", 1, 0, 500, 50), delivery("X", 1, 1, 500, 50));
        assert_ne!(a.event_id, b.event_id);
        let (a, b): (Value, Value) = (
            serde_json::from_str(&a.body).unwrap(),
            serde_json::from_str(&b.body).unwrap(),
        );
        assert_ne!(
            a["event"]["ts"], b["event"]["ts"],
            "each is a message of its own"
        );
    }
}
