//! Answers cut to a platform's message length: Telegram's `sendMessage` takes at most
//! 4096 characters, WhatsApp's text body 4096, Slack's `text` is best kept under 4000.
//!
//! Lengths are counted in UTF-16 code units, which is how Telegram counts (its entity
//! offsets are UTF-16) and never fewer than the characters any platform counts, so a piece
//! is never over the limit whichever way it is measured. A cut falls, by preference, at a
//! paragraph break, then a line break, then a space, in the last quarter of the piece;
//! otherwise at the limit, between two characters (never inside one: an emoji's surrogate
//! pair stays whole). Nothing is dropped: the pieces joined give the text back.

/// Telegram's and WhatsApp's limit for one text message.
pub const TELEGRAM_MAX: usize = 4096;
pub const WHATSAPP_MAX: usize = 4096;
/// Slack's advice for `chat.postMessage` `text` (its hard limit is far higher, but longer
/// texts are truncated in the client).
pub const SLACK_MAX: usize = 4000;

/// `text` in pieces of at most `max` UTF-16 code units (`max` ≥ 2, so any character fits).
pub fn split(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(2);
    let mut out = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > max {
        let limit = byte_index_at_units(rest, max);
        let window = &rest[..limit];
        let floor = limit - limit / 4;
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| {
                window
                    .rfind(sep)
                    .map(|i| i + sep.len())
                    .filter(|&i| i >= floor && i < limit)
            })
            .unwrap_or(limit);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The byte index of the longest prefix of `s` of at most `units` UTF-16 code units.
fn byte_index_at_units(s: &str, units: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > units {
            return i;
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_piece_and_nothing_is_lost() {
        assert_eq!(split("hello", 4096), ["hello"]);
        assert_eq!(split("", 4096), [""]);
        let long = "word ".repeat(2000);
        let pieces = split(&long, TELEGRAM_MAX);
        assert_eq!(pieces.concat(), long);
        assert!(pieces.iter().all(|p| utf16_len(p) <= TELEGRAM_MAX));
        assert!(pieces[0].ends_with(' '), "cut after a space");
    }

    #[test]
    fn cuts_prefer_paragraphs_then_lines_then_spaces() {
        let text = format!(
            "{}\n\n{}\n{}",
            "a".repeat(90),
            "b".repeat(5),
            "c".repeat(30)
        );
        let pieces = split(&text, 100);
        assert!(pieces[0].ends_with("\n\n"), "{pieces:?}");
        assert_eq!(pieces.concat(), text);
        // No break near the end of the window: cut at the limit.
        let solid = "x".repeat(250);
        let pieces = split(&solid, 100);
        assert_eq!(
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }

    #[test]
    fn characters_outside_the_bmp_count_twice_and_are_never_cut() {
        // Each emoji is two UTF-16 units (a surrogate pair).
        let emoji = "😀".repeat(3000);
        let pieces = split(&emoji, TELEGRAM_MAX);
        assert!(pieces.iter().all(|p| utf16_len(p) <= TELEGRAM_MAX));
        assert_eq!(pieces[0].chars().count(), 2048);
        assert_eq!(pieces.concat(), emoji);
        let mixed = format!("{}😀", "a".repeat(4095));
        let pieces = split(&mixed, TELEGRAM_MAX);
        assert_eq!(pieces, [&mixed[..4095], "😀"], "the pair is not split");
    }
}
