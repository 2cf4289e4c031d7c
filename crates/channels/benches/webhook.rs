//! A Slack webhook's own work before the store: the v0 signature checked on the raw body,
//! then the envelope parsed (docs/benchmarks.md, "Chat channels: webhook acknowledgement").
//! Run: `cargo bench -p sluice-channels --bench webhook`.

#![allow(
    clippy::unwrap_used,
    reason = "a bench whose setup fails is a broken bench"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sluice_channels::verify;
use sluice_channels::wire::SlackEnvelope;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TIMESTAMP: &str = "1764460800";

/// An `app_mention` delivery as Slack sends it (~0.6 KB).
fn body() -> String {
    serde_json::json!({
        "token": "bench-verification-token",
        "team_id": "T1",
        "api_app_id": "ABENCH",
        "event": {
            "type": "app_mention",
            "user": "U00042",
            "text": "<@UBOT> hello from the bench, message 42",
            "ts": "1764460800.000042",
            "team": "T1",
            "channel": "C042",
            "event_ts": "1764460800.000042",
        },
        "type": "event_callback",
        "event_id": "Ev0000042",
        "event_time": 1_764_460_800,
        "authorizations": [{"enterprise_id": null, "team_id": "T1", "user_id": "UBOT", "is_bot": true, "is_enterprise_install": false}],
        "is_ext_shared_channel": false,
        "event_context": "4-bench",
    })
    .to_string()
}

fn signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{TIMESTAMP}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

fn slack(c: &mut Criterion) {
    let body = body();
    let sig = signature(&body);
    let now = TIMESTAMP.parse::<i64>().unwrap() + 1;
    let check = || {
        verify::slack(
            SECRET.as_bytes(),
            Some(TIMESTAMP),
            Some(black_box(sig.as_str())),
            black_box(body.as_bytes()),
            now,
        )
    };
    assert_eq!(check(), Ok(()), "the bench's delivery must verify");
    c.bench_function("slack webhook: verify the v0 signature", |b| {
        b.iter(check);
    });
    c.bench_function("slack webhook: parse the envelope", |b| {
        b.iter(|| serde_json::from_slice::<SlackEnvelope>(black_box(body.as_bytes())).unwrap());
    });
    c.bench_function("slack webhook: verify + parse", |b| {
        b.iter(|| {
            check().unwrap();
            serde_json::from_slice::<SlackEnvelope>(black_box(body.as_bytes())).unwrap()
        });
    });
}

criterion_group!(benches, slack);
criterion_main!(benches);
