//! What the wire-format tests share.

#![allow(dead_code, reason = "each test binary uses the helpers it needs")]

/// Splits an SSE transcript into `(event, data)` pairs the way an EventSource does: lines
/// end in CRLF, LF or CR, `data:` lines of one event are joined with `\n`, one optional
/// space follows the colon, a blank line ends the event, `:` lines are comments. The
/// transcript must end with a blank line, as providers' streams do.
pub fn sse_events(transcript: &str) -> Vec<(String, String)> {
    let text = transcript.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let (mut event, mut data): (String, Vec<&str>) = (String::new(), Vec::new());
    for line in text.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push((std::mem::take(&mut event), data.join("\n")));
                data.clear();
            }
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => data.push(value),
            "event" => event = value.to_owned(),
            _ => {}
        }
    }
    assert!(data.is_empty(), "transcript ends inside an event");
    events
}

/// One wire format's fixtures, under `tests/fixtures/<dir>`.
pub struct Fixtures(pub &'static str);

impl Fixtures {
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(self.0)
            .join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    pub fn text(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_slice(&self.read(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    /// Compares `actual` with `<case>.out.json` as JSON values, printing both in full when
    /// they differ; `SLUICE_BLESS=1` writes `actual` there instead.
    pub fn assert_golden(&self, case: &str, actual: &serde_json::Value) {
        let name = format!("{case}.out.json");
        if std::env::var_os("SLUICE_BLESS").is_some() {
            let text = serde_json::to_string_pretty(actual).unwrap_or_default() + "\n";
            std::fs::write(self.path(&name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
            return;
        }
        let expected = self.json(&name);
        assert!(
            *actual == expected,
            "{case}: output differs from {name}\n--- expected\n{}\n--- actual\n{}",
            serde_json::to_string_pretty(&expected).unwrap_or_default(),
            serde_json::to_string_pretty(actual).unwrap_or_default(),
        );
    }
}
