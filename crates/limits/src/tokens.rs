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

/// Prompt tokens of a chat request, counted the way OpenAI's cookbook does: each message's
/// role, content and name plus 3 tokens of framing, 3 more priming the reply, and the
/// tools' JSON (an approximation of how tools are billed).
/// Images and other non-text parts are not counted (their cost depends on the provider).
pub fn prompt_tokens(req: &ChatRequest, model: &str) -> TokenCount {
    let (bpe, exact) = bpe_for(model);
    let count = |s: &str| bpe.encode_ordinary(s).len() as u64;
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
        exact: exact && req.tools.is_none(),
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
    fn bytes_estimate_rounds_up() {
        assert_eq!(tokens_from_bytes(0), 0);
        assert_eq!(tokens_from_bytes(1), 1);
        assert_eq!(tokens_from_bytes(8), 2);
    }
}
