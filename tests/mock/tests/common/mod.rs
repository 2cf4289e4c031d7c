//! Helpers shared by the mock's own tests: a plain HTTP client over real sockets.

#![allow(dead_code, reason = "each test file uses a different subset")]

use serde_json::Value;
use std::time::{Duration, Instant};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build a reqwest client")
}

/// POSTs `body` with `headers` and returns the response (not checked for status).
pub async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    let mut request = client().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the mock should answer")
}

/// The status, the `retry-after` header and the body as JSON.
pub async fn json(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ascii header").to_owned());
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

/// Everything the body carried before it ended, and whether it ended in an error (a dropped
/// connection) rather than cleanly.
pub async fn read_all(mut response: reqwest::Response) -> (String, bool) {
    let mut raw = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            Ok(None) => return (String::from_utf8(raw).expect("UTF-8 body"), false),
            Err(_) => return (String::from_utf8(raw).expect("UTF-8 body"), true),
        }
    }
}

/// Reads the body, noting when each chunk arrived (relative to `start`).
pub async fn read_timed(
    mut response: reqwest::Response,
    start: Instant,
) -> Vec<(Duration, String)> {
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("a clean body") {
        let text = String::from_utf8(chunk.to_vec()).expect("UTF-8 body");
        chunks.push((start.elapsed(), text));
    }
    chunks
}

/// The JSON payloads of `data:` lines, skipping `[DONE]`.
pub fn data_lines(raw: &str, separator: &str) -> Vec<Value> {
    raw.split(separator)
        .filter(|frame| !frame.is_empty())
        .filter_map(|frame| {
            let data = frame
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .expect("every frame has a data line");
            (data != "[DONE]").then(|| serde_json::from_str(data).expect("data is JSON"))
        })
        .collect()
}
