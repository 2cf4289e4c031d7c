//! What the wire-format tests share.

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
