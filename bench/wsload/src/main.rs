//! Load for `GET /ws`, bounded in count and time, against 127.0.0.1 only:
//!
//! ```text
//! sluice-wsload idle      WS_URL KEY N HOLD_SECS     N idle sessions held HOLD_SECS (RSS is read by the caller)
//! sluice-wsload handshake WS_URL KEY N               N handshakes one after another: latency percentiles
//! sluice-wsload streams   WS_URL KEY N MODEL DELAY [RATE]   N chat.completions over N sessions
//! sluice-wsload sse       HTTP_URL KEY N MODEL DELAY [RATE] the same N streams as SSE, straight to a provider
//! sluice-wsload runs      WS_URL KEY N AGENT         N agent runs at once over N sessions (prints `live`
//!                                                    when all were accepted: the caller reads RSS then)
//! sluice-wsload seq       WS_URL KEY N AGENT|MODEL   N runs (`agent.run`) or, with a model `m:NAME`, N
//!                                                    chat.completions, one after another on one session:
//!                                                    time from the request to the end
//! sluice-wsload slack-api    PORT                    a mock of Slack's Web API (see `slack.rs`)
//! sluice-wsload slack-events URL SECRET N CONC [REPEAT]  N signed Slack deliveries, CONC in
//!                                                    flight: time to the webhook's ack
//! ```
//!
//! Streams start all at once, or RATE a second (a steady load: about RATE × the stream's
//! length run at once; the most that did is printed).
//!
//! For streams, each provider chunk k (k ≥ 1) should arrive k × DELAY ms after the first;
//! its lateness is how much later it arrives. A WebSocket delta may carry several provider
//! chunks merged (a reader behind the stream): they are told apart by the bench mock's
//! fixed word sequence, so each counts as arriving with its frame. TTFT is from the
//! request to the first content. The N WebSocket sessions are all connected before any
//! call starts; the SSE baseline shares one HTTP client (its connections are opened as
//! the calls start).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod slack;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize| -> anyhow::Result<u64> {
        arg(i)
            .parse()
            .with_context(|| format!("argument {i}: a number"))
    };
    match arg(0) {
        "idle" => idle(arg(1), arg(2), num(3)?, num(4)?).await,
        "handshake" => handshake(arg(1), arg(2), num(3)?).await,
        "streams" | "sse" => {
            let rate = if arg(6).is_empty() { 0 } else { num(6)? };
            let load = Load {
                n: num(3)?,
                model: arg(4),
                delay_ms: num(5)?,
                rate,
            };
            streams(arg(1), arg(2), &load, arg(0) == "sse").await
        }
        "runs" => runs(arg(1), arg(2), num(3)?, arg(4)).await,
        "seq" => seq(arg(1), arg(2), num(3)?, arg(4)).await,
        "slack-api" => slack::api(u16::try_from(num(1)?)?).await,
        "slack-events" => {
            let repeat = if arg(5).is_empty() { 1 } else { num(5)? };
            slack::events(arg(1), arg(2), num(3)?, num(4)?, repeat).await
        }
        _ => bail!("usage: see the doc comment in bench/wsload/src/main.rs"),
    }
}

async fn session(url: &str, key: &str) -> anyhow::Result<Socket> {
    let (mut s, _) = tokio_tungstenite::connect_async(url).await?;
    let connect =
        json!({"type": "connect", "min_protocol": 1, "max_protocol": 1, "auth": {"token": key}});
    s.send(Message::Text(connect.to_string().into())).await?;
    loop {
        match s.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"hello\"") => return Ok(s),
            Some(Ok(Message::Text(t))) => bail!("not a hello: {t}"),
            Some(Ok(_)) => continue,
            other => bail!("no hello: {other:?}"),
        }
    }
}

async fn idle(url: &str, key: &str, n: u64, hold: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut held = Vec::with_capacity(n as usize);
    let mut pending = futures_util::stream::iter(0..n)
        .map(|_| session(url, key))
        .buffer_unordered(100);
    while let Some(s) = pending.next().await {
        held.push(s?);
    }
    println!(
        "ready {} sessions in {:.1} s",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    // Held open and read (so pings are answered), for the caller to measure.
    let until = Instant::now() + Duration::from_secs(hold);
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                while Instant::now() < until {
                    let left = until.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, s.next()).await.is_err() {
                        break;
                    }
                }
                let _ = s.close(None).await;
            })
        })
        .collect();
    for r in readers {
        let _ = r.await;
    }
    println!("done");
    Ok(())
}

async fn handshake(url: &str, key: &str, n: u64) -> anyhow::Result<()> {
    let mut took = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = session(url, key).await?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = s.close(None).await;
    }
    println!(
        "handshake (TCP + upgrade + connect/hello) ms: {}",
        summary(&mut took)
    );
    Ok(())
}

struct Load<'a> {
    n: u64,
    model: &'a str,
    delay_ms: u64,
    /// Streams started a second; 0: all at once.
    rate: u64,
}

/// Per stream: TTFT, and the lateness of each later chunk.
async fn streams(url: &str, key: &str, load: &Load<'_>, sse: bool) -> anyhow::Result<()> {
    let Load {
        n,
        model,
        delay_ms,
        rate,
    } = *load;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let http = reqwest::Client::new();
    let mut sockets = Vec::new();
    if !sse {
        let mut opening = futures_util::stream::iter(0..n)
            .map(|_| session(url, key))
            .buffer_unordered(100);
        while let Some(s) = opening.next().await {
            sockets.push(s?);
        }
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (url, key, model) = (url.to_owned(), key.to_owned(), model.to_owned());
            let http = http.clone();
            let socket = sockets.pop();
            let at = (rate > 0).then(|| start + Duration::from_secs_f64(i as f64 / rate as f64));
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at.into()).await;
                }
                use std::sync::atomic::Ordering::Relaxed;
                most.fetch_max(running.fetch_add(1, Relaxed) + 1, Relaxed);
                let r = match socket {
                    Some(s) => one_ws(s, &model).await,
                    None => one_sse(&http, &url, &key, &model).await,
                };
                running.fetch_sub(1, Relaxed);
                r
            })
        })
        .collect();
    let (mut ttft, mut late) = (Vec::new(), Vec::new());
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok((first, arrivals)) => {
                ttft.push(first);
                let base = arrivals.first().copied().unwrap_or(0.0);
                for (k, a) in arrivals.iter().enumerate().skip(1) {
                    late.push(a - base - k as f64 * delay_ms as f64);
                }
            }
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("stream failed: {e:#}");
                }
            }
        }
    }
    println!(
        "{} streams ({} failed, at most {} at once) in {:.1} s\nTTFT ms: {}\nchunk lateness ms: {}",
        n,
        failed,
        most.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        summary(&mut ttft),
        summary(&mut late)
    );
    Ok(())
}

fn ask(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// (TTFT ms, arrival ms of each content chunk from the request).
async fn one_ws(mut s: Socket, model: &str) -> anyhow::Result<(f64, Vec<f64>)> {
    let t0 = Instant::now();
    let mut words = Words::default();
    let req = json!({"type": "req", "id": "c", "method": "chat.completions", "params": ask(model)});
    s.send(Message::Text(req.to_string().into())).await?;
    let mut arrivals = Vec::new();
    while let Some(msg) = s.next().await {
        let Message::Text(t) = msg? else { continue };
        let f: Value = serde_json::from_str(t.as_str())?;
        match f["event"].as_str() {
            Some("chat.delta") => {
                let text = f["data"]["chunk"]["choices"][0]["delta"]["content"].as_str();
                let at = t0.elapsed().as_secs_f64() * 1000.0;
                for _ in 0..words.count(text.unwrap_or("")) {
                    arrivals.push(at);
                }
            }
            Some("chat.completed") => break,
            Some(other) => bail!("{other}: {f}"),
            None if f["ok"] == false => bail!("refused: {f}"),
            None => {}
        }
    }
    let _ = s.close(None).await;
    Ok((arrivals.first().copied().unwrap_or(f64::NAN), arrivals))
}

async fn one_sse(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    model: &str,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let t0 = Instant::now();
    let resp = client
        .post(format!("{url}/chat/completions"))
        .bearer_auth(key)
        .json(&ask(model))
        .send()
        .await?;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(bytes) = body.next().await {
        buf.extend_from_slice(&bytes?);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&event);
            let Some(data) = line.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data)?;
            let text = v["choices"][0]["delta"]["content"].as_str();
            if text.is_some_and(|t| !t.is_empty()) {
                arrivals.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    Ok((arrivals.first().copied().unwrap_or(f64::NAN), arrivals))
}

/// The bench mock's answer, word by word (`../shared/bench/mock-upstream`): its chunk k
/// carries `WORDS[k % 16]`.
const WORDS: [&str; 16] = [
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ",", " and",
    " then", " it", " rests", " again", ".",
];

/// Counts the provider chunks in a (possibly merged) delta's text.
#[derive(Default)]
struct Words {
    next: usize,
}

impl Words {
    fn count(&mut self, mut text: &str) -> usize {
        let mut n = 0;
        while let Some(rest) = text.strip_prefix(WORDS[self.next % WORDS.len()]) {
            text = rest;
            self.next += 1;
            n += 1;
        }
        n
    }
}

/// Sends a request frame and reads until the event that ends it; (ms to the first
/// delta, ms to the end).
async fn until_end(s: &mut Socket, req: Value, done: &str) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    s.send(Message::Text(req.to_string().into())).await?;
    let mut first = f64::NAN;
    while let Some(msg) = s.next().await {
        let Message::Text(t) = msg? else { continue };
        let f: Value = serde_json::from_str(t.as_str())?;
        let at = t0.elapsed().as_secs_f64() * 1000.0;
        match f["event"].as_str() {
            Some("run.delta" | "chat.delta") if first.is_nan() => first = at,
            Some(e) if e == done => return Ok((first, at)),
            Some("run.failed" | "chat.failed") => bail!("failed: {f}"),
            _ if f["ok"] == false => bail!("refused: {f}"),
            _ => {}
        }
    }
    bail!("the socket closed")
}

fn run_req(agent: &str) -> Value {
    json!({"type": "req", "id": "r", "method": "agent.run", "params": {"agent": agent, "input": "hi"}})
}

async fn runs(url: &str, key: &str, n: u64, agent: &str) -> anyhow::Result<()> {
    let mut sockets = Vec::new();
    let mut opening = futures_util::stream::iter(0..n)
        .map(|_| session(url, key))
        .buffer_unordered(100);
    while let Some(s) = opening.next().await {
        sockets.push(s?);
    }
    let accepted = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut s| {
            let (agent, accepted) = (agent.to_owned(), accepted.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                s.send(Message::Text(run_req(&agent).to_string().into()))
                    .await?;
                let mut first = f64::NAN;
                while let Some(msg) = s.next().await {
                    let Message::Text(t) = msg? else { continue };
                    let f: Value = serde_json::from_str(t.as_str())?;
                    let at = t0.elapsed().as_secs_f64() * 1000.0;
                    if f["type"] == "res" {
                        if f["ok"] == false {
                            bail!("refused: {f}");
                        }
                        accepted.add_permits(1);
                    }
                    match f["event"].as_str() {
                        Some("run.delta") if first.is_nan() => first = at,
                        Some("run.completed") => return Ok((first, at)),
                        Some("run.failed") => bail!("failed: {f}"),
                        _ => {}
                    }
                }
                bail!("the socket closed")
            })
        })
        .collect();
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), accepted.acquire_many(n32))
        .await
        .is_ok()
    {
        println!(
            "live {n} runs accepted in {:.2} s",
            start.elapsed().as_secs_f64()
        );
    }
    let (mut ttft, mut total, mut failed) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        match t.await? {
            Ok((first, end)) => {
                ttft.push(first);
                total.push(end);
            }
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("run failed: {e:#}");
                }
            }
        }
    }
    println!(
        "{n} runs ({failed} failed) in {:.1} s\nfirst delta ms: {}\nrun ms: {}",
        start.elapsed().as_secs_f64(),
        summary(&mut ttft),
        summary(&mut total)
    );
    Ok(())
}

async fn seq(url: &str, key: &str, n: u64, what: &str) -> anyhow::Result<()> {
    let mut s = session(url, key).await?;
    let (mut first, mut total) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (req, done) = match what.strip_prefix("m:") {
            Some(model) => (
                json!({"type": "req", "id": format!("c{i}"), "method": "chat.completions", "params": ask(model)}),
                "chat.completed",
            ),
            None => (run_req(what), "run.completed"),
        };
        let (f, t) = until_end(&mut s, req, done).await?;
        first.push(f);
        total.push(t);
    }
    println!(
        "{n} one after another ({what})\nfirst delta ms: {}\nto the end ms: {}",
        summary(&mut first),
        summary(&mut total)
    );
    Ok(())
}

fn summary(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        v.len()
    )
}
