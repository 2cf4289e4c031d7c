//! JSON whose keys stay in the order written, and the three layouts the providers print.
//!
//! `serde_json::Value` sorts object keys unless its `preserve_order` feature is on, and turning
//! that on here would change it for every crate built beside this one. Response bodies are
//! therefore built as [`J`] trees with the [`obj!`] macro, in the providers' own field order.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};
use std::io;

/// A JSON value whose objects keep their keys in insertion order.
#[derive(Clone, Debug)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
    /// A value given by the test (tool arguments); printed as serde_json orders it.
    Value(serde_json::Value),
}

/// `obj! { "id": id, "object": "list" }` builds a [`J::Obj`] in the order written.
macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {
        $crate::json::J::Obj(vec![$(($k, $crate::json::J::from($v))),*])
    };
}
pub(crate) use obj;

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::Int(n) => s.serialize_u64(*n),
            J::Float(f) => s.serialize_f64(*f),
            J::Str(text) => s.serialize_str(text),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            J::Value(value) => value.serialize(s),
        }
    }
}

impl From<&str> for J {
    fn from(text: &str) -> J {
        J::Str(text.to_owned())
    }
}
impl From<String> for J {
    fn from(text: String) -> J {
        J::Str(text)
    }
}
impl From<&String> for J {
    fn from(text: &String) -> J {
        J::Str(text.clone())
    }
}
impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}
impl From<u64> for J {
    fn from(n: u64) -> J {
        J::Int(n)
    }
}
/// Telegram chat ids are negative for groups.
impl From<i64> for J {
    fn from(n: i64) -> J {
        J::Value(serde_json::Value::from(n))
    }
}
impl From<u16> for J {
    fn from(n: u16) -> J {
        J::Int(u64::from(n))
    }
}
impl From<usize> for J {
    fn from(n: usize) -> J {
        J::Int(n as u64)
    }
}
impl From<f64> for J {
    fn from(f: f64) -> J {
        J::Float(f)
    }
}
impl From<Vec<J>> for J {
    fn from(items: Vec<J>) -> J {
        J::Arr(items)
    }
}
impl From<serde_json::Value> for J {
    fn from(value: serde_json::Value) -> J {
        J::Value(value)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(value: Option<T>) -> J {
        value.map_or(J::Null, Into::into)
    }
}

impl J {
    /// Adds a field at the end of an object; does nothing to other values.
    pub(crate) fn push(&mut self, key: &'static str, value: impl Into<J>) {
        if let J::Obj(fields) = self {
            fields.push((key, value.into()));
        }
    }
}

/// `{"a":1,"b":[2,3]}`: OpenAI stream chunks, all of Anthropic.
pub(crate) fn compact(value: &J) -> String {
    write_with(value, CompactFormatter)
}

/// Indented with `indent`, newline-terminated: OpenAI (2 spaces for bodies, 4 for errors) and
/// Gemini JSON answers.
pub(crate) fn pretty(value: &J, indent: &[u8]) -> String {
    let mut text = write_with(value, PrettyFormatter::with_indent(indent));
    text.push('\n');
    text
}

/// Google's one-line layout for SSE events: a space after each colon, none after commas,
/// `{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"}}]}`.
pub(crate) fn google_line(value: &J) -> String {
    write_with(value, GoogleLine)
}

fn write_with<F: Formatter>(value: &J, formatter: F) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut ser)
        .expect("a J tree has string keys and finite numbers only");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A response with `status`, `content_type` and an already laid-out body.
pub(crate) fn response(status: u16, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let value = HeaderValue::from_static(content_type);
    response.headers_mut().insert(header::CONTENT_TYPE, value);
    response
}

/// Adds a header; values the mock builds are always valid header text.
pub(crate) fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

struct GoogleLine;

impl Formatter for GoogleLine {
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_order_written() {
        let value = obj! { "z": 1u64, "a": vec![J::Null, J::from("x")], "m": obj! { "k": true } };
        assert_eq!(compact(&value), r#"{"z":1,"a":[null,"x"],"m":{"k":true}}"#);
    }

    #[test]
    fn google_line_spaces_colons_only() {
        let value = obj! { "parts": vec![obj! { "text": "Hi" }], "role": "model" };
        assert_eq!(
            google_line(&value),
            r#"{"parts": [{"text": "Hi"}],"role": "model"}"#
        );
    }

    #[test]
    fn pretty_uses_the_given_indent() {
        let value = obj! { "error": obj! { "code": 429u64 } };
        assert_eq!(
            pretty(&value, b"    "),
            "{\n    \"error\": {\n        \"code\": 429\n    }\n}\n"
        );
    }
}
