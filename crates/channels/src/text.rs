//! Texts: what the agent is given (the message without the bot's mention or command), and
//! what users are told when there is no answer to give (fixed texts, no internals).

use crate::wire::TelegramMessage;

/// A Slack message's text without the mentions of users at its start (`<@U0LAN0Z89> is
/// it…` → `is it…`): in a channel the bot is addressed that way.
pub fn slack_input(text: &str) -> String {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("<@") {
        match after.find('>') {
            Some(end) => rest = after[end + 1..].trim_start_matches([' ', ',', ':']),
            None => break,
        }
        rest = rest.trim_start();
    }
    rest.trim().to_owned()
}

/// A Telegram message's text without the bot's `@username` mentions and without a
/// leading `/command[@bot]`, found by the entities' UTF-16 offsets.
pub fn telegram_input(m: &TelegramMessage, bot_username: &str) -> String {
    let Some(text) = m.text.as_deref() else {
        return String::new();
    };
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut keep = vec![true; units.len()];
    for e in &m.entities {
        let Some(span) = units.get(e.offset..e.offset.saturating_add(e.length)) else {
            continue;
        };
        let s = String::from_utf16_lossy(span);
        let drop = match e.kind.as_str() {
            "mention" => s
                .strip_prefix('@')
                .is_some_and(|n| n.eq_ignore_ascii_case(bot_username)),
            "bot_command" => e.offset == 0,
            _ => false,
        };
        if drop {
            keep[e.offset..e.offset + e.length].fill(false);
        }
    }
    let kept: Vec<u16> = units
        .iter()
        .zip(keep)
        .filter_map(|(u, k)| k.then_some(*u))
        .collect();
    String::from_utf16_lossy(&kept).trim().to_owned()
}

/// What a user is told when their message got no answer, by the run's error code.
pub fn notice_for(code: &str) -> &'static str {
    match code {
        "budget_exceeded" | "rate_limit_exceeded" => {
            "You've reached your usage limit. Please try again later."
        }
        "breaker_tripped" | "agent_breaker_open" | "spend_breaker_open" => {
            "I couldn't finish this one, and the operator has been told."
        }
        "interrupted" | "cancelled" => {
            "I was interrupted before I could answer. Please send your message again."
        }
        "too_many_runs" | "busy" => "I'm busy right now. Please try again in a minute.",
        "prompt_rejected" => {
            "I can't act on that message: it looks like an attempt to change my instructions."
        }
        "output_blocked" => {
            "I started an answer I'm not allowed to send. Please rephrase your question."
        }
        _ => "Something went wrong. Please try again later.",
    }
}

/// The text of an answer with nothing in it.
pub const EMPTY_ANSWER: &str = "(no answer)";

/// What an unknown user of a `pairing` channel is told.
pub fn pairing_notice(code: &str, ttl_minutes: u64) -> String {
    format!(
        "This assistant needs an operator's approval first. Your code is {code} (valid for \
         {ttl_minutes} minutes). Ask them to run: sluice channels pairing approve {code}"
    )
}

pub const APPROVED_NOTICE: &str = "You're approved. Send your message again.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TelegramUpdate;

    #[test]
    fn slack_mentions_at_the_start_are_dropped() {
        assert_eq!(
            slack_input("<@U0LAN0Z89> is it everything a river should be?"),
            "is it everything a river should be?"
        );
        assert_eq!(slack_input("<@U1>, <@U2>: hi <@U3>"), "hi <@U3>");
        assert_eq!(slack_input("<@U1>"), "");
        assert_eq!(slack_input("plain"), "plain");
    }

    #[test]
    fn telegram_mentions_and_commands_are_cut_by_utf16_offsets() {
        // "🙂 " is 3 UTF-16 units: the mention starts at 3, not at 2 (chars) or 5 (bytes).
        let u: TelegramUpdate = serde_json::from_str(
            r#"{"update_id":1,"message":{"message_id":5,"chat":{"id":-100,"type":"group"},
            "from":{"id":7,"is_bot":false},"date":0,"text":"🙂 @SupportBot what now?",
            "entities":[{"type":"mention","offset":3,"length":11}]}}"#,
        )
        .unwrap();
        let m = u.message.unwrap();
        assert_eq!(telegram_input(&m, "supportbot"), "🙂  what now?");
        let u: TelegramUpdate = serde_json::from_str(
            r#"{"update_id":2,"message":{"message_id":6,"chat":{"id":1,"type":"private"},
            "from":{"id":7,"is_bot":false},"date":0,"text":"/ask@SupportBot is @other here?",
            "entities":[{"type":"bot_command","offset":0,"length":15},
                        {"type":"mention","offset":19,"length":6}]}}"#,
        )
        .unwrap();
        assert_eq!(
            telegram_input(&u.message.unwrap(), "SupportBot"),
            "is @other here?"
        );
    }
}
