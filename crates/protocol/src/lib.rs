//! Sluice's WebSocket protocol, version 1: the frames ([`frame`]), the methods and events
//! with their payloads ([`methods`]), the closed list of error codes ([`codes`]) and the
//! close codes ([`close`]). Shared by the gateway (`/ws`) and the Rust client; clients in
//! other languages validate against the JSON Schemas from [`schema`]. The normative spec
//! is docs/protocol.md.
//!
//! No I/O here: types, a decoder that never panics on untrusted text ([`decode`]), and
//! schema generation.

pub mod close;
pub mod codes;
pub mod frame;
pub mod methods;
pub mod runs;

pub use frame::{
    Auth, ClientInfo, Connect, ErrorBody, Event, Frame, Hello, NodeInfo, ReplayGap, Request,
    Response, Resume, Role, ServerLimits, ToolSpec,
};

/// The protocol versions this build speaks.
pub const MIN_PROTOCOL: u32 = 1;
pub const MAX_PROTOCOL: u32 = 1;

/// Why a text frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
    /// The id of a `req` whose other parts were wrong: its answer can name it.
    pub req_id: Option<String>,
}

/// Decodes one text frame. Never panics; a frame that is a `req` with a usable id but
/// a bad shape reports that id, so the error can be its answer.
pub fn decode(text: &str) -> Result<Frame, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
        message: format!("not JSON: {e}"),
        req_id: None,
    })?;
    let req_id = (value.get("type").and_then(|t| t.as_str()) == Some("req"))
        .then(|| value.get("id").and_then(|i| i.as_str()))
        .flatten()
        .filter(|id| valid_id(id))
        .map(str::to_owned);
    serde_json::from_value(value).map_err(|e| DecodeError {
        message: format!("not a protocol frame: {e}"),
        req_id,
    })
}

/// Encodes a frame as the text of one WebSocket message.
pub fn encode(frame: &Frame) -> String {
    // Our own types serialise to a string without fail.
    serde_json::to_string(frame).unwrap_or_default()
}

/// Whether a request id is acceptable: 1 to 128 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128
}

pub mod schema {
    //! JSON Schemas of the frames and of each method's payloads, for clients in other
    //! languages. `cargo run -p sluice-protocol --example schema` prints them; the copy in
    //! docs/protocol.schema.json is checked against this by a test.

    use schemars::schema_for;
    use serde_json::{Value, json};

    use crate::methods::*;
    use crate::runs;

    /// Every schema, by name.
    pub fn all() -> Value {
        json!({
            "$comment": "Sluice WebSocket protocol 1. Generated from crates/protocol; see docs/protocol.md.",
            "frame": schema_for!(crate::Frame),
            "methods": {
                CHAT_COMPLETIONS: {"result": schema_for!(ChatStarted)},
                SESSION_HISTORY: {"params": schema_for!(HistoryParams), "result": schema_for!(History)},
                USAGE_GET: {"result": schema_for!(Usage)},
                TOOL_INVOKE: {"params": schema_for!(ToolInvoke), "result": schema_for!(ToolResult)},
                runs::AGENT_RUN: {"params": schema_for!(runs::AgentRun), "result": schema_for!(runs::RunAccepted)},
                runs::RUN_SUBSCRIBE: {"params": schema_for!(runs::RunSubscribe), "result": schema_for!(runs::RunStatus)},
                runs::RUN_CANCEL: {"params": schema_for!(runs::RunRef), "result": schema_for!(runs::RunStatus)},
            },
            "events": {
                events::CHAT_DELTA: schema_for!(ChatDelta),
                events::CHAT_COMPLETED: schema_for!(ChatCompleted),
                events::CHAT_FAILED: schema_for!(ChatFailed),
                runs::events::STARTED: schema_for!(runs::RunStarted),
                runs::events::DELTA: schema_for!(runs::RunDelta),
                runs::events::TOOL_CALL: schema_for!(runs::RunToolCall),
                runs::events::TOOL_RESULT: schema_for!(runs::RunToolResult),
                runs::events::COMPLETED: schema_for!(runs::RunCompleted),
                runs::events::FAILED: schema_for!(runs::RunFailed),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_with_their_type_tag() {
        let frames = [
            json!({"type": "connect", "min_protocol": 1, "max_protocol": 2, "auth": {"token": "k"}}),
            json!({"type": "req", "id": "c1", "method": "ping", "params": {}}),
            json!({"type": "res", "id": "c1", "ok": true, "result": {"pong": true}}),
            json!({"type": "event", "seq": 3, "event": "chat.delta", "data": {}}),
        ];
        for f in frames {
            let decoded = decode(&f.to_string()).expect("decodes");
            let back: serde_json::Value = serde_json::from_str(&encode(&decoded)).unwrap();
            for (k, v) in f.as_object().unwrap() {
                assert_eq!(&back[k], v, "{k} survives the round trip");
            }
        }
    }

    #[test]
    fn design_md_connect_shorthand_is_accepted() {
        let Frame::Connect(c) =
            decode(r#"{"type":"connect","protocol":1,"auth":{"token":"t"},"role":"node","node":{"name":"n","tools":[]}}"#)
                .unwrap()
        else {
            panic!("a connect frame");
        };
        assert_eq!(c.versions(), (1, 1));
        assert_eq!(c.role, Role::Node);
    }

    #[test]
    fn a_bad_request_reports_its_id_and_garbage_does_not_panic() {
        let e = decode(r#"{"type":"req","id":"r9","method":5}"#).unwrap_err();
        assert_eq!(e.req_id.as_deref(), Some("r9"));
        for text in [
            "",
            "{",
            "[]",
            "null",
            r#"{"type":"nope"}"#,
            "\u{0}",
            r#"{"type":"req"}"#,
        ] {
            let e = decode(text).unwrap_err();
            assert!(e.req_id.is_none(), "{text:?}");
        }
    }

    #[test]
    fn numbers_survive_a_round_trip_exactly() {
        // Found by fuzzing: a long mantissa landed on a neighbouring f64 without
        // serde_json's float_roundtrip.
        let text = r#"{"type":"req","id":"c1","method":"m","params":{"md":333333333300000066792140173563220}}"#;
        let frame = decode(text).unwrap();
        assert_eq!(decode(&encode(&frame)).unwrap(), frame);
    }

    #[test]
    fn the_published_schema_is_current() {
        let published = include_str!("../../../docs/protocol.schema.json");
        let published: serde_json::Value = serde_json::from_str(published).expect("valid JSON");
        assert_eq!(
            published,
            schema::all(),
            "regenerate: cargo run -p sluice-protocol --example schema > docs/protocol.schema.json"
        );
    }
}
