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
    pub principal: Arc<Principal>,
    log: Mutex<Log>,
    /// Woken when an event is added (for the attached connection's writer).
    pub(super) notify: Notify,
    /// Cancelled when the session ends: its calls stop (and settle).
    pub(super) ended: CancellationToken,
    attachment: Mutex<Attachment>,
    usage: Mutex<UsageTotals>,
    /// Calls streaming into the session now (their `res` answered, their stream not
    /// ended): bounded, so one socket cannot hold unbounded upstream streams.
    pub(super) streaming: std::sync::atomic::AtomicUsize,
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
    /// The attached connection's generation (0: none) and its overflow signal, kept with
    /// the log so that taking events and signalling an overflow see one attachment.
    holder: u64,
    overflow: Option<CancellationToken>,
    window: Window,
}

struct Entry {
    seq: u64,
    body: Body,
    /// The frame's size (for a delta still in parts, a close estimate).
    len: usize,
}

enum Body {
    Text(Arc<str>),
    /// A delta not yet sent keeps its parts: the next delta of its call merges into it
    /// in place, and it is serialised once, when it is sent.
    Delta(Box<ChatDelta>),
}

/// Bytes a delta's frame adds beyond its chunk's text.
const DELTA_OVERHEAD: usize = 256;

#[derive(Debug, Default)]
struct Attachment {
    /// Which connection holds the session (each attach takes the next number); `None`:
    /// the client is away.
    holder: Option<u64>,
    next: u64,
    /// Told to close when another connection takes the session over.
    kick: Option<CancellationToken>,
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
    /// `stored`: the session's row is already in the store (a session restored from it).
    pub fn new(
        id: String,
        principal: Arc<Principal>,
        window: Window,
        first_seq: u64,
        stored: bool,
    ) -> Session {
        Session {
            id,
            principal,
            log: Mutex::new(Log {
                entries: VecDeque::new(),
                bytes: 0,
                last_seq: first_seq.saturating_sub(1),
                sent: first_seq.saturating_sub(1),
                overflowed: false,
                holder: 0,
                overflow: None,
                window,
            }),
            notify: Notify::new(),
            ended: CancellationToken::new(),
            attachment: Mutex::default(),
            usage: Mutex::default(),
            streaming: std::sync::atomic::AtomicUsize::new(0),
            store: tokio::sync::Mutex::new(stored),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event; returns its seq.
    pub fn emit(&self, event: &str, data: Value) -> u64 {
        let seq = {
            let mut log = self.log();
            log.last_seq += 1;
            let seq = log.last_seq;
            let text = frame_text(seq, event, data);
            let len = text.len();
            log.push(Entry {
                seq,
                body: Body::Text(text),
                len,
            });
            seq
        };
        self.wake();
        seq
    }

    /// Adds a `chat.delta`, merged into the last event when that is an unsent delta of
    /// the same call (then it keeps that event's seq); returns its seq.
    pub fn emit_delta(&self, delta: ChatDelta) -> u64 {
        let seq = {
            let mut log = self.log();
            match log.merge_delta(&delta) {
                Some(seq) => seq,
                None => {
                    log.last_seq += 1;
                    let seq = log.last_seq;
                    let len = delta_len(&delta.chunk);
                    log.push(Entry {
                        seq,
                        body: Body::Delta(Box::new(delta)),
                        len,
                    });
                    seq
                }
            }
        };
        self.wake();
        seq
    }

    /// Tells the attached connection: there is more to send (or it fell behind).
    fn wake(&self) {
        {
            let log = self.log();
            if log.overflowed
                && let Some(t) = &log.overflow
            {
                t.cancel();
            }
        }
        self.notify.notify_one();
    }

    /// Frames to send after what connection `generation` has sent, marked sent. `Err`:
    /// the reader fell out of the window and must be closed (`4008`). A connection that no
    /// longer holds the session (taken over meanwhile) gets nothing: the events are the
    /// new holder's.
    pub fn take_unsent(&self, generation: u64, out: &mut Vec<Arc<str>>) -> Result<(), FellBehind> {
        let mut log = self.log();
        if log.holder != generation {
            return Ok(());
        }
        if log.overflowed {
            return Err(FellBehind);
        }
        let sent = log.sent;
        let mut grew = 0usize;
        let mut shrank = 0usize;
        for e in log.entries.iter_mut().filter(|e| e.seq > sent) {
            if let Body::Delta(d) = &e.body {
                let data = serde_json::to_value(&**d).unwrap_or(Value::Null);
                let text = frame_text(e.seq, events::CHAT_DELTA, data);
                shrank += e.len;
                e.len = text.len();
                grew += e.len;
                e.body = Body::Text(text);
            }
            if let Body::Text(t) = &e.body {
                out.push(t.clone());
            }
        }
        log.bytes = log.bytes + grew - shrank;
        log.sent = log.last_seq;
        Ok(())
    }

    /// Attaches a connection that has every event up to `last_seq` (a new connection:
    /// the session's own `last_seq`). Any connection holding the session is kicked.
    /// `None` when the session has ended meanwhile (its grace passed): the caller starts
    /// over (a resume then finds it in the store).
    pub fn attach(&self, client_last_seq: Option<u64>) -> Option<Attached> {
        let mut att = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if self.ended.is_cancelled() {
            return None;
        }
        if let Some(old) = att.kick.take() {
            old.cancel();
        }
        att.next += 1;
        let generation = att.next;
        att.holder = Some(generation);
        let kicked = CancellationToken::new();
        att.kick = Some(kicked.clone());
        let overflow = CancellationToken::new();
        drop(att);
        let mut log = self.log();
        log.overflowed = false;
        log.holder = generation;
        log.overflow = Some(overflow.clone());
        let last_seq = log.last_seq;
        let from = client_last_seq.unwrap_or(last_seq).min(last_seq);
        let oldest = log
            .entries
            .front()
            .map_or(last_seq.saturating_add(1), |e| e.seq);
        let gap_from = (from.saturating_add(1) < oldest).then_some(oldest);
        log.sent = from;
        drop(log);
        self.notify.notify_one();
        Some(Attached {
            generation,
            kicked,
            overflow,
            last_seq,
            gap_from,
        })
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
        drop(att);
        let mut log = self.log();
        if log.holder == generation {
            log.holder = 0;
            log.overflow = None;
        }
        true
    }

    /// The generation of the connection holding the session (0: none).
    pub fn holder(&self) -> u64 {
        self.log().holder
    }

    /// Whether connection `generation` still holds the session.
    pub fn held_by(&self, generation: u64) -> bool {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holder
            == Some(generation)
    }

    /// Whether the client has been away since connection `generation` detached (no
    /// attach since); if so the session is marked ended at once, under the same lock an
    /// attach takes, so a resume cannot slip in between and attach to an ended session.
    pub fn end_if_away_since(&self, generation: u64) -> bool {
        let att = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        if att.holder.is_some() || att.next != generation {
            return false;
        }
        self.ended.cancel();
        true
    }

    /// Whether the session has ended (its grace passed, or the gateway stopped).
    pub fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
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
        self.bytes += e.len;
        self.entries.push_back(e);
        while self.entries.len() > self.window.events || self.bytes > self.window.bytes {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.len;
            if old.seq > self.sent {
                self.overflowed = true;
            }
        }
    }

    /// Merges a delta into the last event when that is an unsent delta of the same call
    /// (its seq is kept); `None` when it cannot be merged.
    fn merge_delta(&mut self, next: &ChatDelta) -> Option<u64> {
        let sent = self.sent;
        // A merged delta stays well inside the window: past this it is a new event, and
        // a window that cannot hold the reader's backlog overflows (`4008`).
        let cap = MAX_MERGED_DELTA_BYTES.min(self.window.bytes / 4);
        let last = self.entries.back_mut()?;
        if last.seq <= sent || last.len > cap {
            return None;
        }
        let Body::Delta(prev) = &mut last.body else {
            return None;
        };
        if next.call_id != prev.call_id || !merge_chunk(&mut prev.chunk, &next.chunk) {
            return None;
        }
        let len = delta_len(&prev.chunk);
        self.bytes = self.bytes + len - last.len;
        last.len = len;
        Some(last.seq)
    }
}

/// A delta frame's size, estimated from its chunk's text (serialising on every merge
/// would make a long merged answer cost quadratic time).
fn delta_len(chunk: &Value) -> usize {
    let text = |v: &Value| v.as_str().map_or(0, str::len);
    let choice = &chunk["choices"][0]["delta"];
    let args: usize = choice["tool_calls"].as_array().map_or(0, |calls| {
        calls
            .iter()
            .map(|c| text(&c["function"]["arguments"]))
            .sum()
    });
    DELTA_OVERHEAD + text(&choice["content"]) + args
}

fn frame_text(seq: u64, event: &str, data: Value) -> Arc<str> {
    Arc::from(sluice_protocol::encode(&Frame::Event(Event {
        seq,
        event: event.to_owned(),
        data,
    })))
}

/// Merges the next chunk of a stream into `into`, in place: text and tool-call
/// arguments appended, other fields (finish reason, usage) taken from the later chunk.
/// `false` (and `into` unchanged) when the chunks cannot be one (different choices).
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
    // Only what merging knows how to join: text, tool-call arguments, role, finish reason.
    // A chunk with anything else (reasoning, refusal, logprobs, audio) stays whole.
    if !only_known_parts(&a[0]) || !only_known_parts(&b[0]) {
        return false;
    }
    let theirs = &b[0];
    let mine = &mut into["choices"][0];
    if !mine["delta"].is_object() {
        mine["delta"] = Value::Object(Default::default());
    }
    let nd = &theirs["delta"];
    let d = &mut mine["delta"];
    if let Some(t) = nd.get("content").and_then(Value::as_str) {
        match d.get_mut("content") {
            Some(Value::String(s)) => s.push_str(t),
            _ => d["content"] = Value::String(t.to_owned()),
        }
    }
    if let Some(calls) = nd.get("tool_calls").and_then(Value::as_array) {
        if !d["tool_calls"].is_array() {
            d["tool_calls"] = Value::Array(Vec::new());
        }
        if let Some(list) = d["tool_calls"].as_array_mut() {
            for call in calls {
                let idx = call.get("index");
                match list.iter_mut().find(|c| c.get("index") == idx) {
                    Some(c) => {
                        if let Some(args) = call["function"]["arguments"].as_str() {
                            match c["function"].get_mut("arguments") {
                                Some(Value::String(s)) => s.push_str(args),
                                _ => c["function"]["arguments"] = Value::String(args.to_owned()),
                            }
                        }
                    }
                    None => list.push(call.clone()),
                }
            }
        }
    }
    if let Some(r) = nd.get("role") {
        d["role"] = r.clone();
    }
    if let Some(f) = theirs.get("finish_reason").filter(|f| !f.is_null()) {
        mine["finish_reason"] = f.clone();
    }
    if let Some(u) = next.get("usage").filter(|u| !u.is_null()) {
        into["usage"] = u.clone();
    }
    true
}

/// Whether a choice of a chunk holds only parts [`merge_chunk`] joins.
fn only_known_parts(choice: &Value) -> bool {
    let Some(c) = choice.as_object() else {
        return false;
    };
    let choice_ok = c.iter().all(|(k, v)| match k.as_str() {
        "index" | "delta" | "finish_reason" => true,
        _ => v.is_null(),
    });
    let delta_ok = c.get("delta").and_then(Value::as_object).is_some_and(|d| {
        d.iter().all(|(k, v)| match k.as_str() {
            "role" | "content" | "tool_calls" => true,
            _ => v.is_null(),
        })
    });
    choice_ok && delta_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_with_parts_merging_does_not_know_stay_whole() {
        let mut a = json!({"choices": [{"index": 0, "delta": {"content": "a"}}]});
        let reasoning = json!({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]});
        assert!(!merge_chunk(&mut a, &reasoning), "reasoning would be lost");
        let logprobs = json!({"choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": {"content": []}}]});
        assert!(!merge_chunk(&mut a, &logprobs));
        let plain = json!({"choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": null}]});
        assert!(merge_chunk(&mut a, &plain));
        assert_eq!(a["choices"][0]["delta"]["content"], "ab");
    }

    fn principal() -> Arc<Principal> {
        Arc::new(Principal {
            key_name: "k".into(),
            key_id: None,
            key_ref: Arc::from("config:k"),
            key_scope: Arc::from("key:config:k"),
            user_id: None,
            allowed_models: None,
            limits: Default::default(),
        })
    }

    fn delta(call: &str, text: &str) -> ChatDelta {
        ChatDelta {
            call_id: call.into(),
            req_id: "r".into(),
            chunk: json!({"choices": [{"index": 0, "delta": {"content": text}}]}),
        }
    }

    fn texts(s: &Session) -> Vec<Value> {
        let mut out = Vec::new();
        s.take_unsent(s.holder(), &mut out).unwrap();
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
            false,
        );
        s.attach(None);
        assert_eq!(s.emit_delta(delta("a", "Hel")), 1);
        assert_eq!(s.emit_delta(delta("a", "lo")), 1, "merged");
        assert_eq!(s.emit_delta(delta("b", "x")), 2, "another call");
        let sent = texts(&s);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0]["data"]["chunk"]["choices"][0]["delta"]["content"],
            "Hello"
        );
        // Once sent, a delta is not merged into any more.
        assert_eq!(s.emit_delta(delta("b", "y")), 3);
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
            false,
        );
        let first = s.attach(None).unwrap();
        for i in 0..5 {
            s.emit("x", json!({"i": i}));
        }
        assert!(
            s.take_unsent(first.generation, &mut Vec::new()).is_err(),
            "events 1 and 2 were lost unsent"
        );
        assert!(s.detach(first.generation));
        let again = s.attach(Some(0)).unwrap();
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
            false,
        );
        let a = s.attach(None).unwrap();
        for i in 0..4 {
            s.emit("x", json!({"i": i}));
        }
        assert_eq!(texts(&s).len(), 4);
        s.detach(a.generation);
        s.emit("x", json!({"i": 4}));
        let b = s.attach(Some(2)).unwrap();
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
