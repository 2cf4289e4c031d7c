//! Client connections that are slow, idle, endless or too many, over raw sockets: each is
//! cut by its bound, while a request that is merely waiting for its answer is not.

use std::time::Duration;

use serde_json::Value;
use sluice_e2e::{Gateway, KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(server: &str, provider: &str) -> String {
    format!(
        "[server]\n{server}\n[providers.mock]\nkind = \"mock\"\n{provider}\n[models.m]\nchain = [\"mock:m1\"]\n"
    )
}

fn chat_request(stream: bool) -> String {
    let body = format!(
        r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until the server closes the connection (or `limit` passes: `None`).
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(out)
}

/// Reads one HTTP response with a Content-Length body.
async fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head[9..12].parse().expect("status");
                return (status, body.to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_at_the_header_timeout() {
    let gw = Gateway::start(&config("header_read_timeout_ms = 500", "")).await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\n")
        .await
        .expect("write");
    // One more header line every 100 ms, forever: a slowloris.
    let mut sent = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if conn.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
        sent += 1;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), conn.read(&mut probe)).await
        {
            break;
        }
    }
    assert!(
        sent < 100,
        "the gateway should cut a connection whose headers never end"
    );

    // A connection that sends nothing at all is cut the same way.
    let mut silent = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(20))
            .await
            .is_some(),
        "a silent connection is closed"
    );
    // Real clients are served meanwhile.
    let mut ok = TcpStream::connect(gw.addr).await.expect("connect");
    ok.write_all(chat_request(false).as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut ok).await.0, 200);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_but_a_request_waiting_for_its_answer_is_not() {
    // The answer takes a second; the idle timeout is 300 ms.
    let gw = Gateway::start(&config(
        // The header timeout is far longer than the test waits: only the idle timer can
        // close the connection in time.
        "idle_timeout_ms = 300\nheader_read_timeout_ms = 600000",
        "latency_ms = 1000",
    ))
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    conn.write_all(chat_request(false).as_bytes())
        .await
        .expect("write");
    let (status, body) = read_response(&mut conn).await;
    assert_eq!(status, 200, "a request in progress is not idle: {body}");
    let rest = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    assert_eq!(
        rest,
        Some(Vec::new()),
        "the kept-alive connection is closed once idle, with nothing more sent"
    );
}

#[tokio::test]
async fn a_request_body_that_never_ends_gets_408() {
    let gw = Gateway::start(&config("body_read_timeout_ms = 300", "")).await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"mod\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let (status, body) = read_response(&mut conn).await;
    assert_eq!(status, 408, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(json["error"]["code"], "request_body_timeout", "{json}");
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_503_and_served_again_when_one_closes() {
    let gw = Gateway::start(&config("max_connections = 2", "")).await;
    let held_one = TcpStream::connect(gw.addr).await.expect("connect");
    let _held_two = TcpStream::connect(gw.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(gw.addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .await
        .expect("write");
    let (status, body) = read_response(&mut third).await;
    assert_eq!(status, 503, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(json["error"]["code"], "too_many_connections");

    drop(held_one);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
            .await
            .expect("write");
        if read_response(&mut conn).await.0 == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "a closed connection frees its place");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_is_dropped_and_its_call_recorded() {
    // About 9 MB of events, more than the socket buffers hold.
    let gw = Gateway::start(&config("write_timeout_ms = 500", "words = 60000")).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut conn = socket.connect(gw.addr).await.expect("connect");
    conn.write_all(chat_request(true).as_bytes())
        .await
        .expect("write");
    let mut head = [0u8; 512];
    let n = conn.read(&mut head).await.expect("read");
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "the stream starts"
    );
    // ... and the client reads no more, holding the connection open.
    let mut row = None;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = gw.service.ledger().flush().await;
        let rows = gw.service.store().recent_spend(10).await.expect("rows");
        if let Some(r) = rows.into_iter().find(|r| r.status == "client_closed") {
            row = Some(r);
            break;
        }
    }
    let row = row.expect("the stalled client was dropped and its call recorded");
    assert!(
        row.estimated && row.completion_tokens > 0,
        "the call is counted by what was streamed: {row:?}"
    );
    drop(conn);
}
