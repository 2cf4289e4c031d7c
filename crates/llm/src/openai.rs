//! OpenAI-compatible chat completions: the canonical format itself, so translation is
//! mostly passing through, plus reading errors and the stream's `data:` events.

use serde::Deserialize;

use crate::{
    ChatChunk, ChatRequest, ChatResponse, DecodeError, Decoded, ResponseMeta, StreamDecoder,
    StreamOptions, UpstreamError,
};

/// The body to send upstream: the client's request with the upstream model name, and, for
/// streams where the provider supports it, `stream_options.include_usage` turned on so the
/// stream ends with a usage chunk.
pub fn encode_request(req: &ChatRequest, model: &str, inject_stream_usage: bool) -> ChatRequest {
    let mut out = req.clone();
    out.model = model.to_owned();
    if out.is_stream() && inject_stream_usage {
        out.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    out
}

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    // A 2xx body is almost always a completion: parse it as one first, and look for an
    // error envelope only when that fails.
    serde_json::from_slice(body).map_err(|e| match decode_error(body) {
        Some(err) => DecodeError::Upstream(err),
        None => DecodeError::malformed(e),
    })
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Reads `{"error":{"message","type","code"}}`. The `code` (e.g. `insufficient_quota`,
/// `context_length_exceeded`) is the most specific, so it wins over `type`.
pub fn decode_error(body: &[u8]) -> Option<UpstreamError> {
    let env: ErrorEnvelope = serde_json::from_slice(body).ok()?;
    let code = match env.error.code {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(UpstreamError {
        kind: code.or(env.error.kind).unwrap_or_default(),
        message: env.error.message.unwrap_or_default(),
        retry_after: None,
    })
}

/// Decodes `data:` events of an OpenAI-compatible stream; `[DONE]` ends it.
///
/// Lenient in what the gateway can do without, strict in what it needs. OpenAI-compatible
/// servers (vLLM, Ollama, LM Studio, Azure's filter chunks) omit or blank `id`, `created`
/// and `model`: they are filled from earlier chunks, else from the request's
/// [`ResponseMeta`]. `event: ping` frames and empty objects are keep-alives and skipped. A
/// `data:` line that is not a JSON object, or that holds an `error`, fails the stream.
#[derive(Debug)]
pub struct Stream {
    /// The stream's identity: the request's until a chunk names its own.
    meta: ResponseMeta,
}

impl Stream {
    pub fn new(meta: ResponseMeta) -> Self {
        Stream { meta }
    }
}

impl StreamDecoder for Stream {
    fn decode(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Decoded, DecodeError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Decoded::Done);
        }
        if data.is_empty() || event == "ping" {
            return Ok(Decoded::More);
        }
        let mut chunk: ChatChunk =
            serde_json::from_str(data).map_err(|e| match decode_error(data.as_bytes()) {
                Some(err) => DecodeError::Upstream(err),
                None => DecodeError::malformed(e),
            })?;
        if let Some(err) = chunk.rest.get("error").filter(|e| !e.is_null()) {
            return Err(match (decode_error(data.as_bytes()), err) {
                (Some(err), _) => DecodeError::Upstream(err),
                (None, serde_json::Value::String(message)) => {
                    DecodeError::Upstream(UpstreamError {
                        message: message.clone(),
                        ..UpstreamError::default()
                    })
                }
                (None, _) => DecodeError::malformed("an error event in no known shape"),
            });
        }
        if chunk.choices.is_empty()
            && chunk.usage.is_none()
            && chunk.rest.is_empty()
            && chunk.system_fingerprint.is_none()
        {
            // `{}` and the like: a keep-alive with nothing to forward.
            return Ok(Decoded::More);
        }
        fill(&mut chunk.id, &mut self.meta.id);
        fill(&mut chunk.model, &mut self.meta.model);
        if chunk.created == 0 {
            chunk.created = self.meta.created;
        } else {
            self.meta.created = chunk.created;
        }
        out.push(chunk);
        Ok(Decoded::More)
    }
}

/// A blank field takes the stream's known value; a given one becomes it.
fn fill(field: &mut String, known: &mut String) {
    if field.is_empty() {
        field.clone_from(known);
    } else if field != known {
        known.clone_from(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: serde_json::Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn encode_keeps_unknown_fields_and_injects_usage_only_for_streams() {
        let req = request(json!({
            "model": "smart", "stream": true, "seed": 7,
            "messages": [{"role": "user", "content": "hi"}]
        }));
        let out = serde_json::to_value(encode_request(&req, "gpt-4o", true)).unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["seed"], 7, "unknown fields pass through");
        assert_eq!(out["stream_options"]["include_usage"], true);

        let out = serde_json::to_value(encode_request(&req, "gpt-4o", false)).unwrap();
        assert!(
            out.get("stream_options").is_none(),
            "not injected when unsupported"
        );

        let plain = request(json!({"model": "m", "messages": []}));
        let out = serde_json::to_value(encode_request(&plain, "m", true)).unwrap();
        assert!(
            out.get("stream_options").is_none(),
            "not injected without stream"
        );
    }

    #[test]
    fn round_trips_tool_calls() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
            }}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 4}}
        });
        let resp = decode_response(body.to_string().as_bytes()).unwrap();
        let calls = resp.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(resp.usage.as_ref().unwrap().cached_tokens(), 4);
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            body,
            "lossless round trip"
        );
    }

    #[test]
    fn error_body_prefers_code_over_type() {
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let err = decode_error(body).unwrap();
        assert_eq!(err.kind, "insufficient_quota");
        let body = br#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#;
        assert_eq!(decode_error(body).unwrap().kind, "invalid_request_error");
        assert!(decode_error(b"not json").is_none());
    }

    #[test]
    fn stream_decodes_chunks_errors_and_done() {
        let mut s = Stream::new(ResponseMeta {
            id: "chatcmpl-req".into(),
            created: 7,
            model: "m".into(),
        });
        let mut out = Vec::new();
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(s.decode("", chunk, &mut out).unwrap(), Decoded::More);
        assert_eq!(out[0].choices[0].delta.content.as_deref(), Some("Hi"));
        assert_eq!(s.decode("", "[DONE]", &mut out).unwrap(), Decoded::Done);
        let err = s.decode(
            "",
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            &mut out,
        );
        assert!(matches!(err, Err(DecodeError::Upstream(e)) if e.kind == "server_error"));
        assert!(matches!(
            s.decode("", "{nope", &mut out),
            Err(DecodeError::Malformed(_))
        ));
    }
}
