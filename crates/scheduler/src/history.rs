//! A session's history for a run: the completed runs' turns, newest last, trimmed from
//! the oldest whole turn (a user message and everything up to the next one, so an
//! assistant's tool calls travel with their results) until the request fits the agent's
//! context window. Only a completed run adds its turn, so a failed run never leaves
//! orphan tool calls behind.

use sluice_llm::{ChatRequest, Message, Role};
use sluice_store::Store;
use sluice_store::sessions::NewMessage;

/// Messages read from a session at most (the newest).
const MAX_HISTORY: u32 = 1000;

/// The session's messages, oldest first. A message that no longer parses is skipped.
pub(crate) async fn load(store: &Store, session_id: &str) -> Result<Vec<Message>, String> {
    let rows = store
        .session_messages(session_id, None, MAX_HISTORY)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages: Vec<Message> = rows
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.content).ok())
        .collect();
    // A page may start inside a turn: it starts at its first user message.
    let start = messages
        .iter()
        .position(|m| m.role == Role::User)
        .unwrap_or(messages.len());
    messages.drain(..start);
    Ok(messages)
}

/// A session's history with each message's tokens counted once (the history does not
/// change during a run; each step only decides how much of it fits).
#[derive(Debug, Default)]
pub(crate) struct History {
    pub messages: Vec<Message>,
    /// Tokens of each message, as it adds to a prompt.
    tokens: Vec<u64>,
}

impl History {
    pub fn new(messages: Vec<Message>, model: &str) -> History {
        let tokens = messages.iter().map(|m| message_tokens(m, model)).collect();
        History { messages, tokens }
    }

    /// The index from which the history fits in `room` tokens: the first message of the
    /// oldest whole turn kept (a user message and what follows it). `messages.len()` when
    /// none fits.
    pub fn fitting(&self, room: u64) -> usize {
        let mut sum = 0u64;
        let mut from = self.messages.len();
        for i in (0..self.messages.len()).rev() {
            sum = sum.saturating_add(self.tokens[i]);
            if sum > room {
                break;
            }
            if self.messages[i].role == Role::User {
                from = i;
            }
        }
        from
    }
}

/// What one message adds to a prompt's token count (a prompt's count is a fixed part plus
/// its messages', one by one).
fn message_tokens(m: &Message, model: &str) -> u64 {
    let alone = ChatRequest {
        model: model.to_owned(),
        messages: vec![m.clone()],
        stream: None,
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        stop: None,
        tools: None,
        tool_choice: None,
        parallel_tool_calls: None,
        user: None,
        rest: Default::default(),
    };
    let empty = ChatRequest {
        messages: Vec::new(),
        ..alone.clone()
    };
    sluice_limits::tokens::prompt_tokens(&alone, model)
        .tokens
        .saturating_sub(sluice_limits::tokens::prompt_tokens(&empty, model).tokens)
}

/// Appends a completed run's turn to its session.
pub(crate) async fn append(store: &Store, session_id: &str, turn: &[Message], now_ms: i64) {
    let messages: Vec<NewMessage> = turn
        .iter()
        .map(|m| NewMessage {
            role: m.role.as_str().to_owned(),
            content: serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
            created_at_ms: now_ms,
        })
        .collect();
    if let Err(e) = store.append_messages(session_id, &messages).await {
        tracing::warn!(session = %session_id, "cannot store the run's turn: {e}");
    }
    let _ = store.touch_session(session_id, now_ms).await;
}

/// The request of one step: the agent's system prompt, the history kept, the run's turn.
pub(crate) fn messages(
    system: Option<&str>,
    history: &[Message],
    turn: &[Message],
) -> Vec<Message> {
    let mut out = Vec::with_capacity(history.len() + turn.len() + 1);
    if let Some(s) = system {
        out.push(Message::text(Role::System, s));
    }
    out.extend_from_slice(history);
    out.extend_from_slice(turn);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(text: &str) -> Vec<Message> {
        vec![
            Message::text(Role::User, text),
            Message::text(Role::Assistant, "ok"),
        ]
    }

    #[test]
    fn whole_turns_are_dropped_oldest_first() {
        let history: Vec<Message> = ["a", "b", "c"].iter().flat_map(|t| turn(t)).collect();
        let h = History::new(history, "gpt-4o");
        let all: u64 = h.tokens.iter().sum();
        assert!(h.tokens.iter().all(|t| *t > 0));
        assert_eq!(h.fitting(all), 0, "everything fits");
        let last_two: u64 = h.tokens[2..].iter().sum();
        assert_eq!(h.fitting(last_two), 2, "the first turn dropped");
        assert_eq!(h.fitting(last_two - 1), 4, "a turn is dropped whole");
        assert_eq!(h.fitting(0), 6, "nothing fits");
    }

    #[test]
    fn a_prompt_is_its_fixed_part_plus_its_messages() {
        let messages: Vec<Message> = ["a long first message", "b"]
            .iter()
            .flat_map(|t| turn(t))
            .collect();
        let h = History::new(messages.clone(), "gpt-4o");
        let req = ChatRequest {
            messages: Vec::new(),
            ..serde_json::from_value::<ChatRequest>(
                serde_json::json!({"model": "gpt-4o", "messages": []}),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let base = sluice_limits::tokens::prompt_tokens(&req, "gpt-4o").tokens;
        let whole = ChatRequest { messages, ..req };
        assert_eq!(
            sluice_limits::tokens::prompt_tokens(&whole, "gpt-4o").tokens,
            base + h.tokens.iter().sum::<u64>()
        );
    }
}
