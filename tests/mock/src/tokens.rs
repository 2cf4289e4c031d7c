//! Deterministic token counts, stream pieces and embedding vectors.
//!
//! A test can predict every number: prompt tokens are the whitespace-separated words of every
//! text in the request plus 3, completion tokens the words of the answer (for tool calls a
//! quarter of each call's arguments JSON), and half the prompt (at least 1) counts as cached
//! when any text has the word "cached".

use crate::script::ToolCall;
use serde_json::Value;

/// Tokens a request's prompt counts for.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prompt {
    /// All prompt tokens, cached ones included.
    pub(crate) total: u64,
    /// How many of `total` were read from the provider's prompt cache.
    pub(crate) cached: u64,
}

/// Counts the prompt of a chat request in any of the three formats.
///
/// Texts are the string values under `content`, `text` and `system` keys anywhere in the body
/// (OpenAI and Anthropic messages, Anthropic `system`, Gemini parts), so roles, ids and tool
/// schemas do not count.
pub(crate) fn prompt(body: &Value) -> Prompt {
    let mut texts = Vec::new();
    collect_texts(body, &mut texts);
    let total = texts.iter().map(|text| words(text)).sum::<u64>() + 3;
    let cached = if texts.iter().any(|text| mentions_cached(text)) {
        (total / 2).max(1)
    } else {
        0
    };
    Prompt { total, cached }
}

fn collect_texts<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(text)
                        if matches!(key.as_str(), "content" | "text" | "system") =>
                    {
                        out.push(text);
                    }
                    _ => collect_texts(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_texts(item, out)),
        _ => {}
    }
}

fn mentions_cached(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("cached"))
}

/// Whitespace-separated words.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Completion tokens of an answer's tool calls: a quarter of each call's arguments JSON, rounded
/// up, summed over the calls. Names do not count, so one call counts as it always has.
pub(crate) fn tool_call_tokens(calls: &[ToolCall]) -> u64 {
    calls
        .iter()
        .map(|call| call.arguments_json().len().div_ceil(4) as u64)
        .sum()
}

/// Splits a text into one piece per word, each carrying the whitespace before it, so the pieces
/// concatenate back to the text: "Hello from m" → ["Hello", " from", " m"].
pub(crate) fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for ch in text.chars() {
        if ch.is_whitespace() && in_word {
            out.push(std::mem::take(&mut current));
            in_word = false;
        }
        in_word |= !ch.is_whitespace();
        current.push(ch);
    }
    match out.last_mut() {
        Some(last) if !in_word => last.push_str(&current),
        _ if current.is_empty() => {}
        _ => out.push(current),
    }
    out
}

/// Splits tool-call arguments JSON into up to 3 pieces at character boundaries, as providers
/// stream them.
pub(crate) fn argument_pieces(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    let parts = chars.len().clamp(1, 3);
    let size = chars.len().div_ceil(parts).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// An 8-float unit vector that depends only on `text`.
pub(crate) fn embedding(text: &str) -> Vec<f64> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..8)
        .map(|_| {
            // xorshift64*: spreads the hash over the eight components.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    // Rounded through f32 so the float and base64 encodings carry the same numbers.
    raw.iter().map(|x| f64::from((x / norm) as f32)).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash.max(1)
}

/// OpenAI's `encoding_format: "base64"`: little-endian f32s, standard base64 with padding.
pub(crate) fn base64_f32(vector: &[f64]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|x| (*x as f32).to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pieces_concatenate_back_to_the_text() {
        for text in ["Hello from m", "  lead and trail  ", "one", "", "a\n\nb"] {
            assert_eq!(pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(pieces("Hello from m"), ["Hello", " from", " m"]);
    }

    #[test]
    fn prompt_counts_message_texts_only() {
        let body = json!({
            "model": "gpt-x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "one two three"}]}
            ]
        });
        let prompt = prompt(&body);
        assert_eq!(prompt.total, 5 + 3);
        assert_eq!(prompt.cached, 0);
    }

    #[test]
    fn the_word_cached_makes_cached_tokens() {
        let body = json!({"contents": [{"parts": [{"text": "this is cached, please"}]}]});
        assert_eq!(prompt(&body).cached, 3, "half of 4 words + 3");
    }

    #[test]
    fn argument_pieces_rejoin() {
        let json = r#"{"city":"Paris"}"#;
        assert_eq!(argument_pieces(json).len(), 3);
        assert_eq!(argument_pieces(json).concat(), json);
        assert_eq!(argument_pieces("{}").concat(), "{}");
    }

    #[test]
    fn tool_call_tokens_add_up_over_calls() {
        let call = |arguments: Value| ToolCall {
            name: "f".into(),
            arguments,
        };
        let one = call(json!({"city": "Paris"}));
        assert_eq!(tool_call_tokens(&[one]), 4, "16 characters of JSON");
        let two = [call(json!({"city": "Paris"})), call(json!({}))];
        assert_eq!(
            tool_call_tokens(&two),
            4 + 1,
            "each call rounds up on its own"
        );
        assert_eq!(tool_call_tokens(&[]), 0);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello");
        assert_eq!(a, embedding("hello"));
        assert_ne!(a, embedding("hellp"));
        let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "norm {norm}");
    }

    #[test]
    fn base64_matches_known_encoding() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }
}
