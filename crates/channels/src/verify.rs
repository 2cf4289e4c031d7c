//! Is this webhook really from the platform? Each check works on the raw body, before
//! anything parses it (a forged request is refused without its JSON ever being read), and
//! every secret or signature comparison is constant-time (`subtle`, or `Mac::verify_slice`,
//! which is).
//!
//! - **Slack** ([Verifying requests from Slack](https://api.slack.com/authentication/verifying-requests-from-slack)):
//!   `X-Slack-Signature: v0=` + hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`
//!   keyed with the app's signing secret; a timestamp more than five minutes from now is
//!   refused, so a captured request cannot be replayed later.
//! - **WhatsApp Cloud API** (Meta's webhooks): `X-Hub-Signature-256: sha256=` + hex
//!   HMAC-SHA256 of the body keyed with the app secret.
//! - **Telegram Bot API**: the `secret_token` given to `setWebhook` comes back in
//!   `X-Telegram-Bot-Api-Secret-Token` (the Bot API signs nothing else).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a Slack request's timestamp may be from now, either way.
pub const SLACK_MAX_SKEW_S: i64 = 5 * 60;

/// Why a webhook is refused. Each is a 401 to the platform, and nothing is run or stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    #[error("the request timestamp is more than {SLACK_MAX_SKEW_S} s from now")]
    Stale,
    #[error("the signature does not match")]
    BadSignature,
}

impl Refused {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::MissingHeader(_) => "missing_signature",
            Refused::Malformed(_) => "malformed_signature",
            Refused::Stale => "stale_timestamp",
            Refused::BadSignature => "bad_signature",
        }
    }
}

/// Slack's v0 signature. `timestamp` and `signature` are the `X-Slack-Request-Timestamp`
/// and `X-Slack-Signature` headers; `now_s` is Unix seconds.
pub fn slack(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), Refused> {
    const SIG: &str = "X-Slack-Signature";
    slack_timestamp(timestamp, now_s)?;
    let ts_text = timestamp.unwrap_or_default();
    let sig = signature.ok_or(Refused::MissingHeader(SIG))?;
    let expected = sig
        .strip_prefix("v0=")
        .and_then(hex)
        .ok_or(Refused::Malformed(SIG))?;
    let mut mac = HmacSha256::new_from_slice(signing_secret).map_err(|_| Refused::BadSignature)?;
    mac.update(b"v0:");
    mac.update(ts_text.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| Refused::BadSignature)
}

/// Slack's `X-Slack-Request-Timestamp`: present, a number, within
/// [`SLACK_MAX_SKEW_S`] of `now_s`. Checked before the body is read (and again with it).
pub fn slack_timestamp(timestamp: Option<&str>, now_s: i64) -> Result<(), Refused> {
    const TS: &str = "X-Slack-Request-Timestamp";
    let ts_text = timestamp.ok_or(Refused::MissingHeader(TS))?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| Refused::Malformed(TS))?;
    if now_s.abs_diff(ts) > SLACK_MAX_SKEW_S.unsigned_abs() {
        return Err(Refused::Stale);
    }
    Ok(())
}

/// Meta's `X-Hub-Signature-256` (WhatsApp Cloud API webhooks).
pub fn whatsapp(app_secret: &[u8], signature: Option<&str>, body: &[u8]) -> Result<(), Refused> {
    const SIG: &str = "X-Hub-Signature-256";
    let sig = signature.ok_or(Refused::MissingHeader(SIG))?;
    let expected = sig
        .strip_prefix("sha256=")
        .and_then(hex)
        .ok_or(Refused::Malformed(SIG))?;
    let mut mac = HmacSha256::new_from_slice(app_secret).map_err(|_| Refused::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| Refused::BadSignature)
}

/// Telegram's `X-Telegram-Bot-Api-Secret-Token`, compared in constant time.
pub fn telegram(secret_token: &str, header: Option<&str>) -> Result<(), Refused> {
    const TOKEN: &str = "X-Telegram-Bot-Api-Secret-Token";
    let given = header.ok_or(Refused::MissingHeader(TOKEN))?;
    // Lengths are not secret (Telegram documents 1–256 characters); contents are.
    if given.len() == secret_token.len()
        && bool::from(given.as_bytes().ct_eq(secret_token.as_bytes()))
    {
        Ok(())
    } else {
        Err(Refused::BadSignature)
    }
}

/// Lower- or upper-case hex of a SHA-256 MAC (32 bytes), or `None`.
fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's own example, from "Verifying requests from Slack".
    const SLACK_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: &str = "1531420618";
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const SLACK_NOW: i64 = 1_531_420_618 + 60;

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TS),
                Some(SLACK_SIG),
                SLACK_BODY,
                SLACK_NOW
            ),
            Ok(())
        );
        let upper = format!("v0={}", SLACK_SIG[3..].to_uppercase());
        assert_eq!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TS),
                Some(&upper),
                SLACK_BODY,
                SLACK_NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn slack_refuses_forgeries_replays_and_missing_parts() {
        let check = |secret: &[u8], ts: Option<&str>, sig: Option<&str>, body: &[u8], now| {
            slack(secret, ts, sig, body, now).map_err(|e| e.code())
        };
        let ok = (Some(SLACK_TS), Some(SLACK_SIG));
        let mut tampered = SLACK_BODY.to_vec();
        tampered[6] ^= 1;
        for (case, got, want) in [
            (
                "body changed",
                check(SLACK_SECRET, ok.0, ok.1, &tampered, SLACK_NOW),
                "bad_signature",
            ),
            (
                "wrong secret",
                check(b"other-secret", ok.0, ok.1, SLACK_BODY, SLACK_NOW),
                "bad_signature",
            ),
            (
                "timestamp changed",
                check(
                    SLACK_SECRET,
                    Some("1531420619"),
                    ok.1,
                    SLACK_BODY,
                    1_531_420_619,
                ),
                "bad_signature",
            ),
            (
                "replayed 6 min later",
                check(SLACK_SECRET, ok.0, ok.1, SLACK_BODY, 1_531_420_618 + 301),
                "stale_timestamp",
            ),
            (
                "from 6 min ahead",
                check(SLACK_SECRET, ok.0, ok.1, SLACK_BODY, 1_531_420_618 - 301),
                "stale_timestamp",
            ),
            (
                "no timestamp",
                check(SLACK_SECRET, None, ok.1, SLACK_BODY, SLACK_NOW),
                "missing_signature",
            ),
            (
                "no signature",
                check(SLACK_SECRET, ok.0, None, SLACK_BODY, SLACK_NOW),
                "missing_signature",
            ),
            (
                "timestamp not a number",
                check(SLACK_SECRET, Some("soon"), ok.1, SLACK_BODY, SLACK_NOW),
                "malformed_signature",
            ),
            (
                "other version",
                check(
                    SLACK_SECRET,
                    ok.0,
                    Some(&SLACK_SIG.replace("v0=", "v1=")),
                    SLACK_BODY,
                    SLACK_NOW,
                ),
                "malformed_signature",
            ),
            (
                "short signature",
                check(SLACK_SECRET, ok.0, Some("v0=abcd"), SLACK_BODY, SLACK_NOW),
                "malformed_signature",
            ),
        ] {
            assert_eq!(got, Err(want), "{case}");
        }
        assert_eq!(
            check(SLACK_SECRET, ok.0, ok.1, SLACK_BODY, 1_531_420_618 + 300),
            Ok(()),
            "5 min is still in time"
        );
    }

    #[test]
    fn whatsapp_checks_the_hub_signature_of_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        // HMAC-SHA256(app secret, body), computed independently (Python's hmac module).
        let sig = "sha256=1ca363dab318df784e1963b29dca91e2098e6cf2fbf0d3c14e09580a90684a61";
        assert_eq!(whatsapp(b"app-secret-for-tests", Some(sig), body), Ok(()));
        assert_eq!(
            whatsapp(b"another-secret", Some(sig), body),
            Err(Refused::BadSignature)
        );
        let spaced = br#"{"object": "whatsapp_business_account","entry":[]}"#;
        assert_eq!(
            whatsapp(b"app-secret-for-tests", Some(sig), spaced),
            Err(Refused::BadSignature),
            "the raw bytes are signed, not the JSON's meaning"
        );
        assert_eq!(
            whatsapp(b"app-secret-for-tests", Some(&sig[7..]), body).map_err(|e| e.code()),
            Err("malformed_signature")
        );
        assert_eq!(
            whatsapp(b"app-secret-for-tests", None, body).map_err(|e| e.code()),
            Err("missing_signature")
        );
    }

    #[test]
    fn telegram_compares_the_secret_token() {
        assert_eq!(telegram("s3cret-Token_1", Some("s3cret-Token_1")), Ok(()));
        for wrong in ["s3cret-Token_2", "s3cret-Token_", "", "s3cret-Token_11"] {
            assert_eq!(
                telegram("s3cret-Token_1", Some(wrong)),
                Err(Refused::BadSignature),
                "{wrong:?}"
            );
        }
        assert_eq!(
            telegram("s3cret-Token_1", None).map_err(|e| e.code()),
            Err("missing_signature")
        );
    }
}
