//! The platforms' webhook signatures, computed here with `hmac` and `sha2` directly, never with
//! Sluice's verifier, so a gateway test checks that verifier against an independent signer.
//!
//! - Slack: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the signing secret
//!   (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//! - Meta (WhatsApp Cloud API): `sha256=` + hex HMAC-SHA256 of the raw body keyed with the app
//!   secret, sent as `X-Hub-Signature-256`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The `X-Slack-Signature` value for `body` sent at `timestamp` (Unix seconds, as written in
/// `X-Slack-Request-Timestamp`).
pub fn slack_v0(signing_secret: &str, timestamp: &str, body: &str) -> String {
    let base = format!("v0:{timestamp}:{body}");
    format!(
        "v0={}",
        hmac_hex(signing_secret.as_bytes(), base.as_bytes())
    )
}

/// The `X-Hub-Signature-256` value for `body`.
pub fn hub_sha256(app_secret: &str, body: &str) -> String {
    format!(
        "sha256={}",
        hmac_hex(app_secret.as_bytes(), body.as_bytes())
    )
}

/// Lower-case hex HMAC-SHA256, as both platforms print it.
fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length (long keys are hashed), so this never fails.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own worked example, from "Verifying requests from Slack".
    #[test]
    fn slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            slack_v0("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "the mock must sign exactly as Slack documents"
        );
    }

    /// RFC 4231 test case 2 (HMAC-SHA256, key "Jefe"): the hub signature is plain HMAC-SHA256.
    #[test]
    fn hub_signature_is_plain_hmac_sha256() {
        assert_eq!(
            hub_sha256("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
