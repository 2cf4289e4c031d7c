//! The scheduler's own work per step and per tool call, without I/O: the run budget's
//! reserve and settle in a three-level delegation tree (every model call), a tool's
//! arguments checked against its schema and its result capped (every tool call).
//! Run: `cargo bench -p sluice-scheduler --bench step`.

#![allow(
    clippy::unwrap_used,
    reason = "a bench whose setup fails is a broken bench"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sluice_limits::run::{RunBudget, RunMeters};
use sluice_scheduler::tools::capped;
use sluice_scheduler::tools::schema::ArgsSchema;

fn budget(c: &mut Criterion) {
    let caps = RunMeters {
        tokens: u64::MAX / 4,
        cost_nanos: u64::MAX / 4,
        llm_calls: u64::MAX / 4,
    };
    let root = RunBudget::new("root", caps);
    let grandchild = root.child("child", caps).child("grandchild", caps);
    c.bench_function("run budget: reserve and settle, 3 levels", |b| {
        b.iter(|| {
            let r = grandchild
                .reserve(black_box(5_000), black_box(40_000))
                .unwrap();
            r.settle_split(1_200, 300, 9_000);
        });
    });
}

fn tools(c: &mut Criterion) {
    let schema = ArgsSchema::compile(&json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 500},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "filters": {"type": "array", "items": {"type": "string", "pattern": "^[a-z_]+$"}}
        },
        "required": ["query"],
        "additionalProperties": false
    }));
    let args = json!({"query": "rust gateways", "limit": 10, "filters": ["recent", "docs_only"]});
    c.bench_function("tool arguments: schema check", |b| {
        b.iter(|| schema.check(black_box(&args)).unwrap());
    });
    let result = json!({"items": (0..200).map(|i| json!({"id": i, "title": format!("result number {i}")})).collect::<Vec<_>>()});
    c.bench_function("tool result: cap a 7 KiB result at 4 KiB", |b| {
        b.iter(|| capped(black_box(&result), 4096));
    });
}

criterion_group!(benches, budget, tools);
criterion_main!(benches);
