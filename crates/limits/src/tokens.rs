//! Token counts Sluice makes itself: before a call (the prompt, for reservations) and after
//! one whose provider reported no usage. OpenAI families are counted with their own BPE
//! (`sluice-bpe`: tiktoken's counts from a compact table, compiled in: no download); other
//! models with o200k as an estimate, which is within a few percent for English prose but
//! not exact. Which model uses which encoding is tiktoken-rs's table, kept current there.

use sluice_bpe::Encoding;
use sluice_llm::{ChatRequest, Content};
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// A count, and whether it comes from the model's own tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    pub tokens: u64,
    pub exact: bool,
}

/// The model's encoding and whether it is the model's own (else o200k stands in). `None`
/// only if the compiled-in encodings could not be built: counts are then estimated from
/// bytes.
fn bpe_for(model: &str) -> (Option<&'static Encoding>, bool) {
    match get_tokenizer(model) {
        // Harmony is o200k with more special tokens, which count as text here anyway.
        Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => {
            let e = Encoding::o200k();
            (e, e.is_some())
        }
        Some(Tokenizer::Cl100kBase) => {
            let e = Encoding::cl100k();
            (e, e.is_some())
        }
        // The GPT-3 era encodings are not kept (no current model uses them).
        Some(_) | None => (Encoding::o200k(), false),
    }
}

/// Tokens of `text` in `bpe`, or estimated from its bytes without one.
fn count_in(bpe: Option<&Encoding>, text: &str) -> u64 {
    match bpe {
        Some(b) => b.count(text) as u64,
        None => tokens_from_bytes(text.len() as u64),
    }
}

/// Builds the two encodings (~20 ms, ~8 MB together) so that the first request which
/// needs a count does not wait for them. Call once at start, off the runtime's worker
/// threads.
pub fn warm() {
    let _ = Encoding::o200k();
    let _ = Encoding::cl100k();
}

/// Tokens of a piece of text.
pub fn text_tokens(text: &str, model: &str) -> TokenCount {
    let (bpe, exact) = bpe_for(model);
    TokenCount {
        tokens: count_in(bpe, text),
        exact,
    }
}

/// Bytes of a request's text counted exactly: tokenizing costs about 90 ns a token, so
/// counting a 100k-token prompt whole would take 9 ms on every request. Past this, the
/// rest is estimated at the tokens per byte measured so far.
const EXACT_BYTES: usize = 4 * 1024;

/// Counts a request's texts: exactly for the first [`EXACT_BYTES`], then by the ratio
/// measured on them plus 10 % (a reservation is settled to the real usage, so a generous
/// estimate costs little). Worst case about 1k tokens of tokenizing per request.
struct Bounded<'a> {
    bpe: Option<&'a Encoding>,
    bytes: usize,
    tokens: u64,
    estimated: bool,
}

impl Bounded<'_> {
    fn count(&mut self, s: &str) -> u64 {
        let room = EXACT_BYTES.saturating_sub(self.bytes);
        let mut end = room.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let exact = if end > 0 {
            let n = count_in(self.bpe, &s[..end]);
            self.bytes += end;
            self.tokens += n;
            n
        } else {
            0
        };
        let rest = s.len() - end;
        if rest == 0 {
            return exact;
        }
        self.estimated = true;
        let ratio_tokens = u128::from(self.tokens.max(1));
        let ratio_bytes = self.bytes.max(1) as u128;
        let scaled = (rest as u128 * ratio_tokens * 11).div_ceil(ratio_bytes * 10);
        exact + u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// Prompt tokens of a chat request, counted the way OpenAI's cookbook does: each message's
/// role, content and name plus 3 tokens of framing, 3 more priming the reply, and the
/// tools' JSON (an approximation of how tools are billed).
/// Images and other non-text parts are not counted (their cost depends on the provider).
/// Past the first 4 KiB of text the count is an estimate (see [`EXACT_BYTES`]).
pub fn prompt_tokens(req: &ChatRequest, model: &str) -> TokenCount {
    let (bpe, exact) = bpe_for(model);
    let counter = std::cell::RefCell::new(Bounded {
        bpe,
        bytes: 0,
        tokens: 0,
        estimated: false,
    });
    let count = |s: &str| counter.borrow_mut().count(s);
    let mut tokens = 3;
    for m in &req.messages {
        tokens += 3 + count(m.role.as_str());
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
    let estimated = counter.borrow().estimated;
    TokenCount {
        tokens,
        exact: exact && req.tools.is_none() && !estimated,
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
    fn many_messages_are_estimated_past_the_exact_budget() {
        let msgs: Vec<serde_json::Value> = (0..40)
            .map(|i| serde_json::json!({"role": "user", "content": format!("Message {i}: the weather is fine today, thanks for asking. ").repeat(20)}))
            .collect();
        let r = req(serde_json::json!({"model": "gpt-4o", "messages": msgs}));
        let exact: u64 = 3 + r
            .messages
            .iter()
            .map(|m| 3 + 1 + text_tokens(&m.text_content(), "gpt-4o").tokens)
            .sum::<u64>();
        let c = prompt_tokens(&r, "gpt-4o");
        assert!(!c.exact);
        assert!(
            c.tokens >= exact && c.tokens <= exact * 12 / 10,
            "{} for {exact}",
            c.tokens
        );
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
    fn without_an_encoding_counts_are_estimated_from_bytes() {
        assert_eq!(count_in(None, "12345678"), 2);
        assert_eq!(count_in(Encoding::o200k(), "Hello world"), 2);
    }

    #[test]
    fn bytes_estimate_rounds_up() {
        assert_eq!(tokens_from_bytes(0), 0);
        assert_eq!(tokens_from_bytes(1), 1);
        assert_eq!(tokens_from_bytes(8), 2);
    }
}
