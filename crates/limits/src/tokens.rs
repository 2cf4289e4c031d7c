//! Token counts Sluice makes itself: before a call (the prompt, for reservations) and after
//! one whose provider reported no usage. OpenAI families are counted with their own BPE
//! (tiktoken, compiled in: no download); other models with o200k as an estimate, which
//! is within a few percent for English prose but not exact.

use sluice_llm::{ChatRequest, Content};
use tiktoken_rs::CoreBPE;

/// A count, and whether it comes from the model's own tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    pub tokens: u64,
    pub exact: bool,
}

fn bpe_for(model: &str) -> (&'static CoreBPE, bool) {
    match tiktoken_rs::tokenizer::get_tokenizer(model)
        .and_then(|t| tiktoken_rs::bpe_for_tokenizer(t).ok())
    {
        Some(bpe) => (bpe, true),
        None => (tiktoken_rs::o200k_base_singleton(), false),
    }
}

/// Loads the tokenizers (~0.7 s for o200k and cl100k together) so that the first
/// request which needs a count does not pay for it. Call once at start, off the runtime's
/// worker threads.
pub fn warm() {
    let _ = tiktoken_rs::o200k_base_singleton();
    let _ = tiktoken_rs::cl100k_base_singleton();
}

/// Tokens of a piece of text.
pub fn text_tokens(text: &str, model: &str) -> TokenCount {
    let (bpe, exact) = bpe_for(model);
    TokenCount {
        tokens: bpe.encode_ordinary(text).len() as u64,
        exact,
    }
}

/// Texts longer than this are not counted whole: tokenizing costs about 90 ns a token,
/// so a 100k-token prompt would take 9 ms on every request.
const LONG_TEXT: usize = 32 * 1024;
/// How much of a long text is counted; the rest is assumed to be like it.
const SAMPLE: usize = 8 * 1024;

/// Tokens of `s`: exact up to [`LONG_TEXT`] bytes; beyond, the tokens per byte of its
/// first [`SAMPLE`] bytes scaled to its length, plus 10 % (a reservation is settled to the
/// real usage, so a generous estimate costs little). `false` when estimated.
fn count_bounded(bpe: &CoreBPE, s: &str) -> (u64, bool) {
    if s.len() <= LONG_TEXT {
        return (bpe.encode_ordinary(s).len() as u64, true);
    }
    let mut end = SAMPLE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let sample = bpe.encode_ordinary(&s[..end]).len() as u64;
    let scaled = u128::from(sample) * s.len() as u128 * 11 / (end as u128 * 10);
    (u64::try_from(scaled).unwrap_or(u64::MAX).max(1), false)
}

/// Prompt tokens of a chat request, counted the way OpenAI's cookbook does: each message's
/// role, content and name plus 3 tokens of framing, 3 more priming the reply, and the
/// tools' JSON (an approximation of how tools are billed).
/// Images and other non-text parts are not counted (their cost depends on the provider).
/// Texts over 32 KiB are estimated from a sample (see `count_bounded`).
pub fn prompt_tokens(req: &ChatRequest, model: &str) -> TokenCount {
    let (bpe, exact) = bpe_for(model);
    let whole = std::cell::Cell::new(true);
    let count = |s: &str| {
        let (n, counted) = count_bounded(bpe, s);
        whole.set(whole.get() && counted);
        n
    };
    let mut tokens = 3;
    for m in &req.messages {
        tokens += 3 + count(role_name(m.role));
        match &m.content {
            None => {}
            Some(Content::Text(t)) => tokens += count(t),
            Some(Content::Parts(parts)) => {
                tokens += parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .map(count)
                    .sum::<u64>();
            }
        }
        if let Some(name) = &m.name {
            tokens += 1 + count(name);
        }
        for call in m.tool_calls.iter().flatten() {
            tokens += 3 + count(&call.function.name) + count(&call.function.arguments);
        }
    }
    if let Some(tools) = &req.tools
        && let Ok(json) = serde_json::to_string(tools)
    {
        tokens += count(&json);
    }
    TokenCount {
        tokens,
        exact: exact && req.tools.is_none() && whole.get(),
    }
}

fn role_name(role: sluice_llm::Role) -> &'static str {
    match role {
        sluice_llm::Role::System => "system",
        sluice_llm::Role::Developer => "developer",
        sluice_llm::Role::User => "user",
        sluice_llm::Role::Assistant => "assistant",
        sluice_llm::Role::Tool => "tool",
    }
}

/// Completion tokens estimated from the bytes of streamed text, when nothing better is
/// known: about four bytes a token.
pub fn tokens_from_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn openai_models_are_counted_exactly() {
        let c = text_tokens("Hello world", "gpt-4o");
        assert_eq!(
            c,
            TokenCount {
                tokens: 2,
                exact: true
            }
        );
        let c = text_tokens("Hello world", "claude-sonnet-4-5");
        assert_eq!(c.tokens, 2);
        assert!(!c.exact, "other models are an estimate");
    }

    #[test]
    fn prompts_count_framing_like_openai() {
        // One user message "Hello world": 3 (priming) + 3 (framing) + 1 ("user") + 2 (text).
        let r = req(
            serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello world"}]}),
        );
        assert_eq!(prompt_tokens(&r, "gpt-4o").tokens, 9);
        let two = req(serde_json::json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello world"}]}
        ]}));
        // + 3 + 1 ("system") + 3 ("Be brief.").
        assert_eq!(prompt_tokens(&two, "gpt-4o").tokens, 16);
    }

    #[test]
    fn long_texts_are_estimated_from_a_sample_within_bounds() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(2_000); // 90 KB
        let exact = text_tokens(&text, "gpt-4o").tokens;
        let r = req(
            serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}),
        );
        let c = prompt_tokens(&r, "gpt-4o");
        assert!(!c.exact, "a sampled count says so");
        assert!(
            c.tokens >= exact && c.tokens <= exact * 12 / 10,
            "{} for {exact}",
            c.tokens
        );
        // Multi-byte text: the sample ends on a character boundary.
        let cjk = "漢字かな交じり文。".repeat(2_000);
        let r = req(
            serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": cjk}]}),
        );
        let exact = text_tokens(&cjk, "gpt-4o").tokens;
        let c = prompt_tokens(&r, "gpt-4o").tokens;
        assert!(c >= exact && c <= exact * 12 / 10, "{c} for {exact}");
    }

    #[test]
    fn bytes_estimate_rounds_up() {
        assert_eq!(tokens_from_bytes(0), 0);
        assert_eq!(tokens_from_bytes(1), 1);
        assert_eq!(tokens_from_bytes(8), 2);
    }
}
