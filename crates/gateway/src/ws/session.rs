//! A session: what outlives a connection. Its events are numbered (`seq`) and kept in a
//! bounded replay window; the connection attached to it sends them from the window at its
//! own pace, so a reader that falls behind costs no memory beyond the window. Its calls
//! run in tasks of their own, not the connection's: they keep streaming into the window
//! while the client is away, until the session ends.
//!
//! Back-pressure, in order: an unsent `chat.delta` is merged with the next delta of the
//! same call (one event, fewer frames, nothing lost); when unsent events would still fall
//! out of the window, the attached connection is told to close (`4008`), and the client
//! learns what it lost when it resumes (`hello.replay_gap`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use serde_json::Value;
use sluice_protocol::methods::{ChatDelta, events};
use sluice_protocol::{Event, Frame};
use sluice_service::Principal;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A merged delta is not grown past this: a reader that far behind is closed instead.
const MAX_MERGED_DELTA_BYTES: usize = 64 * 1024;

pub struct Session {
    pub id: String,
    pub principal: Principal,
    log: Mutex<Log>,
    /// Woken when an event is added (for the attached connection's writer).
    pub(super) notify: Notify,
    /// Cancelled when the session ends: its calls stop (and settle).
    pub(super) ended: CancellationToken,
    attachment: Mutex<Attachment>,
    usage: Mutex<UsageTotals>,
    /// Serialises the session's store writes (and says whether its row exists).
    pub(super) store: tokio::sync::Mutex<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

/// Window bounds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub events: usize,
    pub bytes: usize,
}

struct Log {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The seq of the last event added (0: none yet).
    last_seq: u64,
    /// The highest seq the attached connection has sent (or the client had on resume).
    sent: u64,
    /// Set when unsent events fell out of the window while a connection was attached.
    overflowed: bool,
    window: Window,
}

struct Entry {
    seq: u64,
    text: Arc<str>,
    /// A delta not yet sent keeps its parts, to merge the next one of its call into it.
    delta: Option<Box<ChatDelta>>,
}

#[derive(Debug, Default)]
struct Attachment {
    /// Which connection holds the session (each attach takes the next number); `None`:
    /// the client is away.
    holder: Option<u64>,
    next: u64,
    /// Told to close when another connection takes the session over.
    kick: Option<CancellationToken>,
    /// Told to close when unsent events fell out of the window.
    overflow: Option<CancellationToken>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct UsageTotals {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_nanos: u64,
}

/// Unsent events fell out of the window: the reader did not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FellBehind;

/// What a connection gets when it attaches.
pub struct Attached {
    pub generation: u64,
    /// Told when the connection must close: taken over by another.
    pub kicked: CancellationToken,
    /// Told when the connection must close: it fell out of the window (`4008`).
    pub overflow: CancellationToken,
    /// The session's newest seq.
    pub last_seq: u64,
    /// The oldest seq the window still holds after the client's `last_seq`, when events
    /// between were lost.
    pub gap_from: Option<u64>,
}

impl Session {
    pub fn new(id: String, principal: Principal, window: Window, first_seq: u64) -> Session {
        Session {
            id,
            principal,
            log: Mutex::new(Log {
                entries: VecDeque::new(),
                bytes: 0,
                last_seq: first_seq.saturating_sub(1),
                sent: first_seq.saturating_sub(1),
                overflowed: false,
                window,
            }),
            notify: Notify::new(),
            ended: CancellationToken::new(),
            attachment: Mutex::default(),
            usage: Mutex::default(),
            store: tokio::sync::Mutex::new(false),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event; returns its seq.
    pub fn emit(&self, event: &str, data: Value) -> u64 {
        let seq = {
            let mut log = self.log();
            if event == events::CHAT_DELTA
                && let Some(seq) = log.merge_delta(&data)
            {
                seq
            } else {
                log.last_seq += 1;
                let seq = log.last_seq;
                let delta = (event == events::CHAT_DELTA)
                    .then(|| {
                        serde_json::from_value::<ChatDelta>(data.clone())
                            .ok()
                            .map(Box::new)
                    })
                    .flatten();
                let text = frame_text(seq, event, data);
                log.push(Entry { seq, text, delta });
                seq
            }
        };
        if self.log().overflowed
            && let Some(t) = &self
                .attachment
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .overflow
        {
            t.cancel();
        }
        self.notify.notify_one();
        seq
    }

    /// Frames to send after what the connection has sent, marked sent. `Err`: the
    /// reader fell out of the window and must be closed (`4008`).
    pub fn take_unsent(&self, out: &mut Vec<Arc<str>>) -> Result<(), FellBehind> {
        let mut log = self.log();
        if log.overflowed {
            return Err(FellBehind);
        }
        let sent = log.sent;
        for e in log.entries.iter_mut().filter(|e| e.seq > sent) {
            e.delta = None;
            out.push(e.text.clone());
        }
        log.sent = log.last_seq;
        Ok(())
    }

    /// Attaches a connection that has every event up to `last_seq` (a new connection:
    /// the session's own `last_seq`). Any connection holding the session is kicked.
    pub fn attach(&self, client_last_seq: Option<u64>) -> Attached {
        let mut att = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = att.kick.take() {
            old.cancel();
        }
        att.next += 1;
        let generation = att.next;
        att.holder = Some(generation);
        let kicked = CancellationToken::new();
        att.kick = Some(kicked.clone());
        let overflow = CancellationToken::new();
        att.overflow = Some(overflow.clone());
        drop(att);
        let mut log = self.log();
        log.overflowed = false;
        let last_seq = log.last_seq;
        let from = client_last_seq.unwrap_or(last_seq).min(last_seq);
        let oldest = log.entries.front().map_or(last_seq + 1, |e| e.seq);
        let gap_from = (from + 1 < oldest).then_some(oldest);
        log.sent = from;
        // Deltas that were sent before stay as they are; whatever is unsent now may be
        // merged again only if it still carries its parts (it does).
        drop(log);
        self.notify.notify_one();
        Attached {
            generation,
            kicked,
            overflow,
            last_seq,
            gap_from,
        }
    }

    /// The connection `generation` went away; `true` if it held the session (which is
    /// now waiting for a resume).
    pub fn detach(&self, generation: u64) -> bool {
        let mut att = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if att.holder != Some(generation) {
            return false;
        }
        att.holder = None;
        att.kick = None;
        att.overflow = None;
        true
    }

    /// Whether connection `generation` still holds the session.
    pub fn held_by(&self, generation: u64) -> bool {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holder
            == Some(generation)
    }

    pub fn is_detached(&self) -> bool {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holder
            .is_none()
    }

    pub fn add_usage(&self, settled: sluice_service::Settled) {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        u.calls += 1;
        u.prompt_tokens += settled.prompt_tokens;
        u.completion_tokens += settled.completion_tokens;
        u.cost_nanos += settled.cost_nanos;
    }

    pub fn usage(&self) -> UsageTotals {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (events held, bytes held): for tests and the admin view.
    pub fn window_use(&self) -> (usize, usize) {
        let log = self.log();
        (log.entries.len(), log.bytes)
    }
}

impl Log {
    fn push(&mut self, e: Entry) {
        self.bytes += e.text.len();
        self.entries.push_back(e);
        while self.entries.len() > self.window.events || self.bytes > self.window.bytes {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.text.len();
            if old.seq > self.sent {
                self.overflowed = true;
            }
        }
    }

    /// Merges a delta into the last event when that is an unsent delta of the same call
    /// (its seq is kept); `None` when it cannot be merged.
    fn merge_delta(&mut self, data: &Value) -> Option<u64> {
        let sent = self.sent;
        let last = self.entries.back_mut()?;
        if last.seq <= sent {
            return None;
        }
        let prev = last.delta.as_mut()?;
        let next: ChatDelta = serde_json::from_value(data.clone()).ok()?;
        if next.call_id != prev.call_id || last.text.len() > MAX_MERGED_DELTA_BYTES {
            return None;
        }
        if !merge_chunk(&mut prev.chunk, &next.chunk) {
            return None;
        }
        let data = serde_json::to_value(&**prev).ok()?;
        let text = frame_text(last.seq, events::CHAT_DELTA, data);
        let seq = last.seq;
        let old_len = last.text.len();
        last.text = text;
        let new_len = last.text.len();
        self.bytes = self.bytes - old_len + new_len;
        Some(seq)
    }
}

fn frame_text(seq: u64, event: &str, data: Value) -> Arc<str> {
    Arc::from(sluice_protocol::encode(&Frame::Event(Event {
        seq,
        event: event.to_owned(),
        data,
    })))
}

/// Merges the next chunk of a stream into `into`: text and tool-call arguments
/// concatenated, other fields (finish reason, usage, ids) taken from the later chunk.
/// `false` when the chunks cannot be merged into one (different choice indexes, say).
pub fn merge_chunk(into: &mut Value, next: &Value) -> bool {
    let (Some(a), Some(b)) = (
        into.get("choices").and_then(Value::as_array),
        next.get("choices").and_then(Value::as_array),
    ) else {
        return false;
    };
    if a.len() != 1 || b.len() != 1 || a[0].get("index") != b[0].get("index") {
        return false;
    }
    let mut merged = a[0].clone();
    let nd = &b[0]["delta"];
    let d = &mut merged["delta"];
    if !d.is_object() {
        *d = Value::Object(Default::default());
    }
    if let Some(t) = nd.get("content").and_then(Value::as_str) {
        let joined = format!(
            "{}{t}",
            d.get("content").and_then(Value::as_str).unwrap_or("")
        );
        d["content"] = Value::String(joined);
    }
    if let Some(calls) = nd.get("tool_calls").and_then(Value::as_array) {
        let mine = d["tool_calls"].as_array().cloned().unwrap_or_default();
        let mut mine = mine;
        for call in calls {
            let idx = call.get("index");
            match mine.iter_mut().find(|c| c.get("index") == idx) {
                Some(c) => {
                    if let Some(args) = call["function"]["arguments"].as_str() {
                        let joined = format!(
                            "{}{args}",
                            c["function"]["arguments"].as_str().unwrap_or("")
                        );
                        c["function"]["arguments"] = Value::String(joined);
                    }
                }
                None => mine.push(call.clone()),
            }
        }
        d["tool_calls"] = Value::Array(mine);
    }
    if let Some(r) = nd.get("role") {
        d["role"] = r.clone();
    }
    if let Some(f) = b[0].get("finish_reason").filter(|f| !f.is_null()) {
        merged["finish_reason"] = f.clone();
    }
    into["choices"] = Value::Array(vec![merged]);
    if let Some(u) = next.get("usage").filter(|u| !u.is_null()) {
        into["usage"] = u.clone();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal() -> Principal {
        Principal {
            key_name: "k".into(),
            key_id: None,
            key_ref: Arc::from("config:k"),
            key_scope: Arc::from("key:config:k"),
            user_id: None,
            allowed_models: None,
            limits: Default::default(),
        }
    }

    fn delta(call: &str, text: &str) -> Value {
        json!({"call_id": call, "req_id": "r", "chunk": {"choices": [{"index": 0, "delta": {"content": text}}]}})
    }

    fn texts(s: &Session) -> Vec<Value> {
        let mut out = Vec::new();
        s.take_unsent(&mut out).unwrap();
        out.iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    }

    #[test]
    fn unsent_deltas_of_one_call_merge_and_keep_one_seq() {
        let s = Session::new(
            "s".into(),
            principal(),
            Window {
                events: 10,
                bytes: 1 << 20,
            },
            1,
        );
        s.attach(None);
        assert_eq!(s.emit(events::CHAT_DELTA, delta("a", "Hel")), 1);
        assert_eq!(s.emit(events::CHAT_DELTA, delta("a", "lo")), 1, "merged");
        assert_eq!(
            s.emit(events::CHAT_DELTA, delta("b", "x")),
            2,
            "another call"
        );
        let sent = texts(&s);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0]["data"]["chunk"]["choices"][0]["delta"]["content"],
            "Hello"
        );
        // Once sent, a delta is not merged into any more.
        assert_eq!(s.emit(events::CHAT_DELTA, delta("b", "y")), 3);
    }

    #[test]
    fn a_reader_that_falls_out_of_the_window_is_told_and_a_resume_sees_the_gap() {
        let s = Session::new(
            "s".into(),
            principal(),
            Window {
                events: 3,
                bytes: 1 << 20,
            },
            1,
        );
        let first = s.attach(None);
        for i in 0..5 {
            s.emit("x", json!({"i": i}));
        }
        assert!(
            s.take_unsent(&mut Vec::new()).is_err(),
            "events 1 and 2 were lost unsent"
        );
        assert!(s.detach(first.generation));
        let again = s.attach(Some(0));
        assert_eq!((again.last_seq, again.gap_from), (5, Some(3)));
        let sent = texts(&s);
        let seqs: Vec<u64> = sent.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [3, 4, 5]);
    }

    #[test]
    fn a_resume_replays_after_last_seq_without_duplicates() {
        let s = Session::new(
            "s".into(),
            principal(),
            Window {
                events: 100,
                bytes: 1 << 20,
            },
            1,
        );
        let a = s.attach(None);
        for i in 0..4 {
            s.emit("x", json!({"i": i}));
        }
        assert_eq!(texts(&s).len(), 4);
        s.detach(a.generation);
        s.emit("x", json!({"i": 4}));
        let b = s.attach(Some(2));
        assert_eq!(b.gap_from, None);
        let seqs: Vec<u64> = texts(&s)
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert!(a.kicked.is_cancelled() || !s.held_by(a.generation));
    }

    #[test]
    fn merging_joins_tool_call_arguments_by_index() {
        let mut a = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": "{\"a\""}}]}}]});
        let b = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]});
        assert!(merge_chunk(&mut a, &b));
        assert_eq!(
            a["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(a["choices"][0]["finish_reason"], "tool_calls");
    }
}
