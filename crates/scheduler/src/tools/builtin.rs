//! The tools built into the gateway: only what is safe to run on it (no shell, no file,
//! no network but the guarded `http_fetch`).

use serde_json::{Value, json};
use sluice_limits::spec::civil_from_days;

use super::Outcome;

pub const TIME_NOW: &str = "time_now";
pub const TIME_NOW_DESCRIPTION: &str =
    "The current date and time in UTC (ISO 8601), with the weekday and the Unix time in ms.";

pub const HTTP_FETCH: &str = "http_fetch";
pub const HTTP_FETCH_DESCRIPTION: &str = "Fetch a web page or API response by URL (HTTP GET; text and JSON only; \
     hosts the operator allowed). Returns the status, the final URL and the body.";

pub fn http_fetch_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"url": {"type": "string", "description": "An http:// or https:// URL."}},
        "required": ["url"],
        "additionalProperties": false
    })
}

/// `http_fetch`: one GET through the SSRF guard (`sluice-fetch`). A refusal or failure
/// goes back to the model with the guard's code (`host_not_allowed`, `address_blocked`…).
pub async fn http_fetch(fetcher: &sluice_fetch::Fetcher, args: &Value) -> Outcome {
    let url = args.get("url").and_then(Value::as_str).unwrap_or_default();
    match fetcher.get(url).await {
        Ok(f) => Outcome::ok(json!({
            "status": f.status,
            "url": f.url,
            "content_type": f.content_type,
            "body": f.body,
            "truncated": f.truncated,
        })),
        Err(e) => Outcome::err(e.code(), e.to_string()),
    }
}

pub fn time_now_schema() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// The time at `now_ms` (Unix ms).
pub fn time_now(now_ms: i64) -> Outcome {
    let days = now_ms.div_euclid(86_400_000);
    let in_day = now_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    Outcome::ok(json!({
        "utc": format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z"),
        "weekday": weekday,
        "unix_ms": now_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_is_iso_8601_utc_with_its_weekday() {
        // 2026-11-29 15:09:18.250 UTC, a Sunday.
        let out = time_now(1_795_964_958_250).output;
        assert_eq!(out["utc"], "2026-11-29T15:09:18.250Z");
        assert_eq!(out["weekday"], "Sunday");
        let out = time_now(951_782_400_000).output; // leap day 2000
        assert_eq!(out["utc"], "2000-02-29T00:00:00.000Z");
        assert_eq!(out["weekday"], "Tuesday");
    }
}
