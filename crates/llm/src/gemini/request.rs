//! Canonical request → Gemini `GenerateContentRequest`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::{ChatRequest, Content, ContentPart, Message, Role, Tool, TranslateError};

/// Sent as the `thoughtSignature` of a replayed function call. Gemini 3 models answer 400
/// ("Function call is missing a thought_signature") when a model turn's function call comes
/// back without the opaque signature they attached to it, and the canonical model has no
/// field to carry the real one through the client. Google documents this value as the way
/// to replay calls whose signature is unknown; older models ignore it.
const UNKNOWN_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// The keywords of Gemini's `Schema` (an OpenAPI 3.0 subset). Gemini answers 400 to any
/// other key, so everything else (`$schema`, `additionalProperties`, `strict`, `$id`,
/// `$defs`, `$ref`, `oneOf`, …) is dropped.
const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// The `generateContent` body for a chat request. System and developer messages become
/// `systemInstruction`; neighbouring contents of the same role are merged, so consecutive
/// tool results form the one function-response turn Gemini expects.
pub fn encode_request(req: &ChatRequest) -> Result<Value, TranslateError> {
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool call id → function name, as seen so far: a tool result names only the id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();

    for (index, msg) in req.messages.iter().enumerate() {
        let (role, parts) = match msg.role {
            Role::System | Role::Developer => {
                let text = msg.text_content();
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            Role::User => ("user", user_parts(msg, index)?),
            Role::Assistant => ("model", assistant_parts(msg, index, &mut call_names)?),
            Role::Tool => ("user", vec![tool_result_part(msg, index, &call_names)?]),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last, merged)) if *last == role => merged.extend(parts),
            _ => contents.push((role, parts)),
        }
    }

    let mut body = Map::new();
    body.insert(
        "contents".into(),
        contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect(),
    );
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    if let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) {
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": encode_tools(tools)?}]),
        );
        if let Some(choice) = &req.tool_choice {
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": tool_choice(choice)?}),
            );
        }
    }
    let config = generation_config(req);
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

fn invalid(index: usize, reason: impl Into<String>) -> TranslateError {
    TranslateError::InvalidMessage {
        index,
        reason: reason.into(),
    }
}

fn user_parts(msg: &Message, index: usize) -> Result<Vec<Value>, TranslateError> {
    match &msg.content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(text_part(text).into_iter().collect()),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                out.extend(content_part(part, index)?);
            }
            Ok(out)
        }
    }
}

/// Gemini rejects empty text parts, so empty text yields no part at all.
fn text_part(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"text": text}))
}

fn content_part(part: &ContentPart, index: usize) -> Result<Option<Value>, TranslateError> {
    match part.kind.as_str() {
        "text" => Ok(part.text.as_deref().and_then(text_part)),
        "image_url" => {
            let Some(image) = &part.image_url else {
                return Err(invalid(index, "image_url part has no image_url"));
            };
            image_part(&image.url)
                .map(Some)
                .map_err(|reason| invalid(index, reason))
        }
        other => Err(invalid(
            index,
            format!("content part type {other:?} is not supported by Gemini"),
        )),
    }
}

/// A `data:` URL becomes inline bytes; any other URL is passed by reference.
fn image_part(url: &str) -> Result<Value, String> {
    if let Some(parsed) = crate::types::parse_data_url(url) {
        let (mime, data) = parsed?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let mut file = Map::new();
    if let Some(mime) = mime_from_extension(url) {
        file.insert("mimeType".into(), mime.into());
    }
    file.insert("fileUri".into(), url.into());
    Ok(json!({"fileData": file}))
}

fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

fn assistant_parts<'a>(
    msg: &'a Message,
    index: usize,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<Value>, TranslateError> {
    let mut parts: Vec<Value> = text_part(&msg.text_content()).into_iter().collect();
    for (n, call) in msg.tool_calls.iter().flatten().enumerate() {
        let args = call
            .arguments_object()
            .map_err(|reason| invalid(index, reason))?;
        let mut part = json!({"functionCall": {"name": call.function.name, "args": args}});
        // Gemini signs only the first call of a parallel batch.
        if n == 0 {
            part["thoughtSignature"] = UNKNOWN_THOUGHT_SIGNATURE.into();
        }
        parts.push(part);
        call_names.insert(&call.id, &call.function.name);
    }
    Ok(parts)
}

fn tool_result_part(
    msg: &Message,
    index: usize,
    call_names: &HashMap<&str, &str>,
) -> Result<Value, TranslateError> {
    let Some(id) = msg.tool_call_id.as_deref() else {
        return Err(invalid(index, "tool message has no tool_call_id"));
    };
    let Some(name) = call_names.get(id) else {
        return Err(invalid(
            index,
            format!("no earlier assistant tool call has id {id:?}"),
        ));
    };
    let text = msg.text_content();
    // Gemini's `response` must be an object: a JSON object result goes as is, anything
    // else is wrapped as text.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(obj @ Value::Object(_)) => obj,
        _ => json!({"content": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

fn encode_tools(tools: &[Tool]) -> Result<Vec<Value>, TranslateError> {
    tools
        .iter()
        .map(|tool| {
            if tool.kind != "function" {
                return Err(TranslateError::Unsupported(format!(
                    "tool type {:?} is not supported by Gemini",
                    tool.kind
                )));
            }
            let f = &tool.function;
            let mut decl = Map::new();
            decl.insert("name".into(), f.name.clone().into());
            if let Some(description) = &f.description {
                decl.insert("description".into(), description.clone().into());
            }
            if let Some(parameters) = f.parameters.as_ref().map(sanitize_schema) {
                // Gemini rejects an OBJECT with no properties; a function without
                // arguments is declared without `parameters`.
                let empty = parameters
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty);
                if !(parameters["type"] == "object" && empty) {
                    decl.insert("parameters".into(), parameters);
                }
            }
            Ok(Value::Object(decl))
        })
        .collect()
}

/// How deep `$ref`s are followed; a recursive schema is cut off there.
const MAX_REF_DEPTH: usize = 8;

/// The `format`s Gemini accepts: others make it answer 400 ("only 'enum' and 'date-time'
/// are supported for STRING type"), and a format is only a hint, so they are dropped.
const SCHEMA_FORMATS: &[&str] = &["enum", "date-time", "float", "double", "int32", "int64"];

/// Keeps only the keywords Gemini's `Schema` accepts, at every level, and inlines local
/// `$ref`s (`#/$defs/…`, `#/definitions/…`) since Gemini has no references. Property names
/// are the caller's, so a property called `strict` or `$id` survives.
fn sanitize_schema(schema: &Value) -> Value {
    sanitize(schema, schema, 0)
}

fn sanitize(schema: &Value, root: &Value, depth: usize) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" => {
                let Value::Object(props) = value else {
                    continue;
                };
                let props = props
                    .iter()
                    .map(|(name, s)| (name.clone(), sanitize(s, root, depth)));
                out.insert(key.clone(), Value::Object(props.collect()));
            }
            "items" => {
                out.insert(key.clone(), sanitize(value, root, depth));
            }
            "anyOf" => {
                let Value::Array(options) = value else {
                    continue;
                };
                out.insert(
                    key.clone(),
                    options.iter().map(|s| sanitize(s, root, depth)).collect(),
                );
            }
            // JSON Schema's `"type": ["string", "null"]` (what OpenAI strict mode asks for)
            // is OpenAPI's `"type": "string", "nullable": true`.
            "type" if value.is_array() => {
                let types: Vec<&Value> = value.as_array().into_iter().flatten().collect();
                let non_null: Vec<&Value> =
                    types.iter().copied().filter(|t| *t != "null").collect();
                if non_null.len() < types.len() {
                    out.insert("nullable".into(), true.into());
                }
                match non_null.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert(key.clone(), (*one).clone());
                    }
                    many => {
                        let options = many.iter().map(|t| json!({"type": t}));
                        out.insert("anyOf".into(), options.collect());
                    }
                }
            }
            "format" if !value.as_str().is_some_and(|f| SCHEMA_FORMATS.contains(&f)) => {}
            k if SCHEMA_KEYWORDS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    // Keywords written beside a `$ref` win over the referenced schema's.
    let target = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve_ref(root, r));
    if let Some(target) = target.filter(|_| depth < MAX_REF_DEPTH)
        && let Value::Object(inlined) = sanitize(target, root, depth + 1)
    {
        for (key, value) in inlined {
            out.entry(key).or_insert(value);
        }
    }
    Value::Object(out)
}

/// Finds a local reference such as `#/$defs/Place` in the root schema.
fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// `tool_choice` → `functionCallingConfig`.
fn tool_choice(choice: &Value) -> Result<Value, TranslateError> {
    let unsupported =
        || TranslateError::Unsupported(format!("tool_choice {choice} is not supported by Gemini"));
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(json!({"mode": "AUTO"})),
            "none" => Ok(json!({"mode": "NONE"})),
            "required" => Ok(json!({"mode": "ANY"})),
            _ => Err(unsupported()),
        },
        Value::Object(_) => {
            let Some(name) = choice.pointer("/function/name").and_then(Value::as_str) else {
                return Err(unsupported());
            };
            Ok(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
        }
        _ => Err(unsupported()),
    }
}

fn generation_config(req: &ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(max) = req.max_output_tokens() {
        config.insert("maxOutputTokens".into(), max.into());
    }
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        config.insert("topP".into(), p.into());
    }
    let stop = req.stop_sequences();
    if !stop.is_empty() {
        config.insert("stopSequences".into(), stop.into());
    }
    let format = req.rest.get("response_format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), "application/json".into());
            if let Some(schema) = format.and_then(|f| f.pointer("/json_schema/schema")) {
                config.insert("responseSchema".into(), sanitize_schema(schema));
            }
        }
        _ => {}
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_and_links_become_inline_and_file_data() {
        let inline = image_part("data:image/png;base64,iVBORw0KGgo=").unwrap();
        assert_eq!(
            inline,
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        let link = image_part("https://example.com/cat.JPG?size=large").unwrap();
        assert_eq!(
            link,
            json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=large"}})
        );
        let unknown = image_part("https://example.com/render?id=7").unwrap();
        assert_eq!(
            unknown,
            json!({"fileData": {"fileUri": "https://example.com/render?id=7"}}),
            "no guess without an extension"
        );
        assert!(
            image_part("data:image/png,rawbytes").is_err(),
            "only base64 data URLs"
        );
    }

    #[test]
    fn schema_type_lists_become_nullable_or_any_of() {
        let schema = json!({"type": ["string", "null"], "description": "d"});
        assert_eq!(
            sanitize_schema(&schema),
            json!({"type": "string", "nullable": true, "description": "d"})
        );
        let schema = json!({"type": ["string", "integer"]});
        assert_eq!(
            sanitize_schema(&schema),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }

    #[test]
    fn recursive_refs_stop_at_the_depth_limit() {
        let schema = json!({
            "type": "object",
            "properties": {"root": {"$ref": "#/$defs/node"}},
            "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}}
        });
        let out = sanitize_schema(&schema);
        let mut node = &out["properties"]["root"];
        for _ in 0..MAX_REF_DEPTH {
            assert_eq!(node["type"], "object");
            node = &node["properties"]["child"];
        }
        assert_eq!(*node, json!({}), "cut off after {MAX_REF_DEPTH} levels");
    }
}
