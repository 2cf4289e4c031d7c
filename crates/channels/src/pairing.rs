//! Pairing codes: 8 characters from an alphabet without look-alikes (`0O1I`), 40 bits from
//! the OS's random source (a v4 UUID's random bytes; no extra crate).

const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A fresh code.
pub fn code() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    // Bytes 6 and 8 carry the version and variant; 0..5 are all random.
    let mut bits = u64::from_be_bytes([0, 0, 0, b[0], b[1], b[2], b[3], b[4]]);
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        out.push(char::from(ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
    }
    out
}

/// An operator's approval of a pairing code (any case; spaces and dashes ignored): the
/// user is let in, and a "you're approved" notice is queued, which the running gateway's
/// deliverer sends. `None`: no pending, unexpired request has that code.
pub async fn approve(
    store: &sluice_store::Store,
    code: &str,
    by: &str,
) -> Result<Option<sluice_store::PairingRow>, sluice_store::StoreError> {
    let now = sluice_service::ids::now_ms();
    let Some(row) = store.approve_pairing(&normalize(code), by, now).await? else {
        return Ok(None);
    };
    if let Some(target) = &row.target {
        let platform_user = match row.channel.as_str() {
            "telegram" => format!("telegram:{}:{}", row.bot, row.user_id),
            "whatsapp" => format!("whatsapp:{}", row.user_id),
            _ => format!("slack:{}", row.user_id),
        };
        let notice = sluice_store::NewDelivery {
            id: uuid::Uuid::now_v7().to_string(),
            channel: row.channel.clone(),
            bot: row.bot.clone(),
            message_key: format!("approved:{}:{now}", row.user_id),
            kind: "notice".into(),
            conversation: format!("pairing:{}:{}:{}", row.channel, row.bot, row.user_id),
            platform_user,
            target: target.clone(),
            input: None,
            text: Some(crate::text::APPROVED_NOTICE.to_owned()),
            state: "ready".into(),
            created_at_ms: now,
        };
        store.insert_notice(&notice).await?;
    }
    Ok(Some(row))
}

/// A code as an operator may type it: any case, spaces and dashes ignored.
pub fn normalize(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_unambiguous_characters_and_differ() {
        let codes: std::collections::HashSet<String> = (0..200).map(|_| code()).collect();
        assert!(
            codes.len() > 195,
            "40 random bits rarely collide in 200 draws"
        );
        for c in &codes {
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            assert!(!c.contains(['0', 'O', '1', 'I']));
        }
        assert_eq!(normalize(" k7qx-3m9p "), "K7QX3M9P");
    }
}
