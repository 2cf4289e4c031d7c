//! The built-in `mock` provider kind: deterministic answers with configurable latency and
//! chunk spacing, so `config/demo.toml` runs with no API key and no network.

use std::time::Duration;

use sluice_config::MockSettings;
use sluice_llm::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Embedding, EmbeddingsRequest,
    EmbeddingsResponse, Message, ResponseMeta, Rest, Role, Usage,
};

use crate::{ChatReply, EmbeddingsReply};

const WORDS: &[&str] = &[
    "This",
    "is",
    "a",
    "deterministic",
    "answer",
    "from",
    "the",
    "Sluice",
    "mock",
    "provider,",
    "streamed",
    "one",
    "word",
    "at",
    "a",
    "time.",
];

fn words(n: u32) -> Vec<String> {
    (0..n as usize)
        .map(|i| {
            let w = WORDS[i % WORDS.len()];
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// Prompt tokens: whitespace-separated words in every message, a stand-in for a tokenizer.
fn prompt_tokens(req: &ChatRequest) -> u64 {
    req.messages
        .iter()
        .map(|m| m.text_content().split_whitespace().count() as u64)
        .sum()
}

pub(crate) async fn chat(req: &ChatRequest, meta: ResponseMeta, s: MockSettings) -> ChatReply {
    tokio::time::sleep(s.latency).await;
    let n = req.max_output_tokens().map_or(s.words, |m| m.min(s.words));
    let finish = if n < s.words { "length" } else { "stop" };
    let pieces = words(n);
    let usage = Usage::new(prompt_tokens(req), u64::from(n), 0, 0);
    if !req.is_stream() {
        let mut message = Message::text(Role::Assistant, pieces.concat());
        message.rest = Rest::new();
        let response = ChatResponse {
            id: meta.id,
            object: "chat.completion".into(),
            created: meta.created,
            model: meta.model,
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish.into()),
                logprobs: None,
                rest: Rest::new(),
            }],
            usage: Some(usage),
            system_fingerprint: None,
            rest: Rest::new(),
        };
        return ChatReply::Complete {
            response: Box::new(response),
            raw: None,
        };
    }

    let chunk = |delta: Delta, finish: Option<&str>| {
        let mut c = ChatChunk::new(&meta);
        let mut choice = ChunkChoice::new(delta);
        choice.finish_reason = finish.map(str::to_owned);
        c.choices.push(choice);
        c
    };
    let mut chunks = vec![chunk(
        Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        },
        None,
    )];
    chunks.extend(pieces.into_iter().map(|w| {
        chunk(
            Delta {
                content: Some(w),
                ..Delta::default()
            },
            None,
        )
    }));
    chunks.push(chunk(Delta::default(), Some(finish)));
    let mut last = ChatChunk::new(&meta);
    last.usage = Some(usage);
    chunks.push(last);

    let gap = s.chunk_delay;
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), true),
        move |(mut it, first)| async move {
            let c = it.next()?;
            // The opener and the first word go together; words after are `gap` apart.
            let is_word = c
                .choices
                .first()
                .is_some_and(|ch| ch.delta.content.as_deref().is_some_and(|t| !t.is_empty()));
            if !first && is_word && gap > Duration::ZERO {
                tokio::time::sleep(gap).await;
            }
            let first = first && !is_word;
            Some((Ok(c), (it, first)))
        },
    );
    ChatReply::Stream(Box::pin(stream))
}

pub(crate) async fn embeddings(
    req: &EmbeddingsRequest,
    model: &str,
    s: MockSettings,
) -> EmbeddingsReply {
    tokio::time::sleep(s.latency).await;
    let inputs: Vec<String> = match &req.input {
        serde_json::Value::String(t) => vec![t.clone()],
        serde_json::Value::Array(items) => items.iter().map(|v| v.to_string()).collect(),
        other => vec![other.to_string()],
    };
    let tokens: u64 = inputs
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| Embedding {
            object: "embedding".into(),
            index: i as u32,
            embedding: serde_json::Value::from(vector(text)),
        })
        .collect();
    let response = EmbeddingsResponse {
        object: "list".into(),
        data,
        model: model.to_owned(),
        usage: Some(Usage::new(tokens, 0, 0, 0)),
        rest: Rest::new(),
    };
    EmbeddingsReply {
        response,
        raw: None,
    }
}

/// A fixed 8-dimensional unit vector derived from the text (FNV-1a per dimension).
fn vector(text: &str) -> Vec<f64> {
    let raw: Vec<f64> = (0u64..8)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d;
            for b in text.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            (h % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
    raw.into_iter().map(|x| x / norm).collect()
}
