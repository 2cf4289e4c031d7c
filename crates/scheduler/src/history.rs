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

/// The index of `history` from which the request fits: the first message of the oldest
/// turn kept. `fits(from)` says whether the request with `history[from..]` fits.
pub(crate) fn trim(history: &[Message], fits: impl Fn(usize) -> bool) -> Option<usize> {
    let mut from = 0;
    loop {
        if fits(from) {
            return Some(from);
        }
        if from >= history.len() {
            return None;
        }
        // Drop one whole turn: to the next user message, or everything.
        from = history[from + 1..]
            .iter()
            .position(|m| m.role == Role::User)
            .map_or(history.len(), |i| from + 1 + i);
    }
}

/// Appends a completed run's turn to its session.
pub(crate) async fn append(store: &Store, session_id: &str, turn: &[Message], now_ms: i64) {
    let messages: Vec<NewMessage> = turn
        .iter()
        .map(|m| NewMessage {
            role: role_name(m.role).to_owned(),
            content: serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
            created_at_ms: now_ms,
        })
        .collect();
    if let Err(e) = store.append_messages(session_id, &messages).await {
        tracing::warn!(session = %session_id, "cannot store the run's turn: {e}");
    }
    let _ = store.touch_session(session_id, now_ms).await;
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
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

/// Whether a request's prompt and its output cap fit `context` tokens.
pub(crate) fn fits(req: &ChatRequest, max_output: u64, context: u64) -> bool {
    sluice_limits::tokens::prompt_tokens(req, &req.model).tokens + max_output <= context
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
        assert_eq!(trim(&history, |_| true), Some(0));
        assert_eq!(
            trim(&history, |from| from >= 3),
            Some(4),
            "two turns dropped"
        );
        assert_eq!(trim(&history, |from| from == history.len()), Some(6));
        assert_eq!(
            trim(&history, |_| false),
            None,
            "even without history it does not fit"
        );
    }
}
