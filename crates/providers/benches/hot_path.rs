//! The per-request and per-chunk work Sluice adds on the hot path: parsing the client's
//! request, encoding it for each wire format, decoding and re-encoding stream chunks, and
//! the lock-free key pick and breaker permit. Run: `cargo bench -p sluice-providers`.

#![allow(
    clippy::unwrap_used,
    reason = "a bench input that fails to parse is a broken bench"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_config::{BreakerConfig, Secret};
use sluice_llm::{ChatChunk, ChatRequest, ResponseMeta, StreamDecoder, anthropic, gemini, openai};
use sluice_providers::auth::AuthProfiles;
use sluice_providers::breaker::{Breaker, Verdict};

const SMALL: &str = r#"{"model":"mock","max_tokens":64,"messages":[{"role":"user","content":"Write one short sentence."}]}"#;

fn conversation() -> String {
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a helpful assistant. ".repeat(20)}),
    ];
    for i in 0..10 {
        messages.push(serde_json::json!({"role": "user", "content": format!("Question {i}: what is the weather like in city number {i} today?")}));
        messages.push(serde_json::json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"City {i}\"}}")}}]}));
        messages.push(serde_json::json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": "{\"temp_c\":18,\"sky\":\"clear\"}"}));
    }
    serde_json::json!({
        "model": "smart", "stream": true, "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "messages": messages
    })
    .to_string()
}

const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}],"usage":null}"#;
const ANTHROPIC_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" word"}}"#;

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-x".into(),
        created: 1_700_000_000,
        model: "m".into(),
    }
}

fn requests(c: &mut Criterion) {
    let long = conversation();
    c.bench_function("parse request (1 message)", |b| {
        b.iter(|| serde_json::from_str::<ChatRequest>(black_box(SMALL)).unwrap())
    });
    c.bench_function("parse request (31 messages, tools)", |b| {
        b.iter(|| serde_json::from_str::<ChatRequest>(black_box(&long)).unwrap())
    });
    let small: ChatRequest = serde_json::from_str(SMALL).unwrap();
    let req: ChatRequest = serde_json::from_str(&long).unwrap();
    c.bench_function("encode openai (1 message)", |b| {
        b.iter(|| {
            serde_json::to_vec(&openai::encode_request(black_box(&small), "gpt-4o", true)).unwrap()
        })
    });
    c.bench_function("encode openai (31 messages, tools)", |b| {
        b.iter(|| {
            serde_json::to_vec(&openai::encode_request(black_box(&req), "gpt-4o", true)).unwrap()
        })
    });
    c.bench_function("encode anthropic (31 messages, tools)", |b| {
        b.iter(|| {
            serde_json::to_vec(&anthropic::encode_request(black_box(&req), "claude", 4096).unwrap())
                .unwrap()
        })
    });
    c.bench_function("encode gemini (31 messages, tools)", |b| {
        b.iter(|| serde_json::to_vec(&gemini::encode_request(black_box(&req)).unwrap()).unwrap())
    });
}

fn chunks(c: &mut Criterion) {
    let mut out: Vec<ChatChunk> = Vec::with_capacity(4);
    c.bench_function("openai chunk: decode + re-encode", |b| {
        let mut dec = openai::Stream::new(meta());
        b.iter(|| {
            out.clear();
            dec.decode("", black_box(OPENAI_CHUNK), &mut out).unwrap();
            serde_json::to_vec(&out[0]).unwrap()
        })
    });
    c.bench_function("anthropic text delta: decode + encode", |b| {
        let mut dec = anthropic::Stream::new(meta());
        b.iter(|| {
            out.clear();
            dec.decode("content_block_delta", black_box(ANTHROPIC_DELTA), &mut out)
                .unwrap();
            serde_json::to_vec(&out[0]).unwrap()
        })
    });
}

fn state(c: &mut Criterion) {
    let keys: Vec<Secret> = (0..4).map(|i| Secret::new(format!("sk-key-{i}"))).collect();
    let profiles = AuthProfiles::new(&keys);
    let now = Instant::now();
    c.bench_function("key pick (4 keys)", |b| {
        b.iter(|| profiles.pick(black_box(now)).is_ok())
    });
    let breaker = Arc::new(Breaker::new(BreakerConfig {
        failure_threshold: 5,
        open_for: Duration::from_secs(30),
        half_open_probes: 1,
    }));
    c.bench_function("breaker permit + success", |b| {
        b.iter(|| {
            let p = breaker.try_acquire(black_box(now)).unwrap();
            p.record(Verdict::Success, now);
        })
    });
}

/// A balanced group's pick among 3 targets, per strategy, with the health check the
/// router makes first (each target's breaker state and whether its provider has a key).
fn groups(c: &mut Criterion) {
    use sluice_config::{GroupSpec, Strategy, Target};
    use sluice_providers::balance::{Group, TargetStats};
    let now = Instant::now();
    let targets: Vec<Target> = ["east", "west", "north"]
        .iter()
        .map(|p| Target {
            provider: (*p).into(),
            model: "gpt-4o".into(),
        })
        .collect();
    let breakers: Vec<Breaker> = (0..3)
        .map(|_| {
            Breaker::new(BreakerConfig {
                failure_threshold: 5,
                open_for: Duration::from_secs(30),
                half_open_probes: 1,
            })
        })
        .collect();
    let profiles: Vec<AuthProfiles> = (0..3)
        .map(|i| AuthProfiles::new(&[Secret::new(format!("sk-{i}"))]))
        .collect();
    c.bench_function("group health check (3 targets)", |b| {
        b.iter(|| {
            let mut healthy = [false; 3];
            for i in 0..3 {
                healthy[i] = profiles[i].has_ready(now)
                    && breakers[i].state(now) != sluice_providers::breaker::BreakerState::Open;
            }
            black_box(healthy)
        })
    });
    for (name, strategy, weights) in [
        ("round_robin", Strategy::RoundRobin, vec![1, 1, 1]),
        ("weighted", Strategy::Weighted, vec![1, 2, 3]),
        ("least_busy", Strategy::LeastBusy, vec![1, 1, 1]),
        ("latency", Strategy::Latency, vec![1, 1, 1]),
        ("headroom", Strategy::Headroom, vec![1, 1, 1]),
    ] {
        let spec = GroupSpec {
            targets: targets.clone(),
            weights,
            strategy,
            affinity: None,
        };
        let stats: Vec<Arc<TargetStats>> = (0..3).map(|_| Arc::default()).collect();
        for (i, s) in stats.iter().enumerate() {
            s.record_first_token(Duration::from_millis(100 + 50 * i as u64));
        }
        let group = Group::new(&spec, stats);
        c.bench_function(&format!("group pick, 3 targets, {name}"), |b| {
            b.iter(|| group.order(black_box(&[true, true, true]), None, None))
        });
    }
    let spec = GroupSpec {
        targets,
        weights: vec![1, 1, 1],
        strategy: Strategy::RoundRobin,
        affinity: Some(sluice_config::Affinity::Prefix),
    };
    let group = Group::new(&spec, (0..3).map(|_| Arc::default()).collect());
    let req: ChatRequest = serde_json::from_value(serde_json::json!({"model": "g", "messages": [
        {"role": "system", "content": "You are a careful assistant. ".repeat(40)},
        {"role": "user", "content": "Plan a trip."}]}))
    .unwrap();
    group.answered(Some(sluice_providers::balance::prefix_hash(&req)), 1);
    c.bench_function(
        "group pick with prefix affinity (1.2 KB system prompt hashed)",
        |b| {
            b.iter(|| {
                let prefix = sluice_providers::balance::prefix_hash(black_box(&req));
                group.order(&[true, true, true], Some(prefix), None)
            })
        },
    );
}

criterion_group!(benches, requests, chunks, state, groups);
criterion_main!(benches);
