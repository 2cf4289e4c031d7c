//! Canonical request → Anthropic Messages request body.

use serde_json::{Map, Value, json};

use crate::{ChatRequest, Content, ContentPart, Message, Role, Tool, ToolCall, TranslateError};

/// The body to `POST /v1/messages` for `req`, sent to the upstream `model`.
///
/// `default_max_tokens` is used when the client set no output cap: Anthropic requires one.
/// OpenAI-only fields (`seed`, `logprobs`, `response_format`, …) are dropped, as are
/// message `name`s and image `detail`, which Anthropic has no place for.
pub fn encode_request(
    req: &ChatRequest,
    model: &str,
    default_max_tokens: u32,
) -> Result<Value, TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (index, msg) in req.messages.iter().enumerate() {
        match msg.role {
            Role::System | Role::Developer => system.push(system_text(index, msg)?),
            Role::User => turns.push_user(user_content(index, msg)?),
            Role::Assistant => turns.push_assistant(assistant_blocks(index, msg)?),
            Role::Tool => turns.push_tool_result(tool_result(index, msg)?),
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "max_tokens".into(),
        req.max_output_tokens().unwrap_or(default_max_tokens).into(),
    );
    system.retain(|s| !s.is_empty());
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    body.insert("messages".into(), turns.into_value());

    let tools = req.tools.as_deref().unwrap_or_default();
    if !tools.is_empty() {
        let tools = tools
            .iter()
            .map(encode_tool)
            .collect::<Result<Vec<_>, _>>()?;
        body.insert("tools".into(), tools.into());
    }
    if let Some(choice) = encode_tool_choice(
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
        !tools.is_empty(),
    )? {
        body.insert("tool_choice".into(), choice);
    }

    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    let stop = req.stop_sequences();
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), stop.into());
    }
    if req.is_stream() {
        body.insert("stream".into(), true.into());
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    Ok(Value::Object(body))
}

fn invalid(index: usize, reason: impl Into<String>) -> TranslateError {
    TranslateError::InvalidMessage {
        index,
        reason: reason.into(),
    }
}

/// A turn's content: Anthropic takes a plain string or a list of blocks.
enum TurnContent {
    Text(String),
    Blocks(Vec<Value>),
}

impl TurnContent {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            TurnContent::Text(text) => vec![text_block(text)],
            TurnContent::Blocks(blocks) => blocks,
        }
    }
}

struct Turn {
    role: &'static str,
    content: TurnContent,
    /// A user turn made for tool results, which later tool results and the next user
    /// message join.
    tool_results: bool,
}

/// The `messages` being built. Anthropic answers a turn of parallel tool calls with one
/// user turn holding every result, and wants roles to alternate, so tool results and the
/// user message right after them share a turn.
#[derive(Default)]
struct Turns(Vec<Turn>);

impl Turns {
    /// The last turn, if it holds tool results that more may join.
    fn open_tool_results(&mut self) -> Option<&mut Turn> {
        self.0.last_mut().filter(|turn| turn.tool_results)
    }

    fn push_user(&mut self, content: TurnContent) {
        if let Some(turn) = self.open_tool_results()
            && let TurnContent::Blocks(blocks) = &mut turn.content
        {
            blocks.extend(content.into_blocks());
            // Tool results must lead a user turn, so any that come later start a new one.
            turn.tool_results = false;
            return;
        }
        self.0.push(Turn {
            role: "user",
            content,
            tool_results: false,
        });
    }

    fn push_assistant(&mut self, blocks: Vec<Value>) {
        let content = TurnContent::Blocks(blocks);
        self.0.push(Turn {
            role: "assistant",
            content,
            tool_results: false,
        });
    }

    fn push_tool_result(&mut self, block: Value) {
        if let Some(turn) = self.open_tool_results()
            && let TurnContent::Blocks(blocks) = &mut turn.content
        {
            blocks.push(block);
            return;
        }
        let content = TurnContent::Blocks(vec![block]);
        self.0.push(Turn {
            role: "user",
            content,
            tool_results: true,
        });
    }

    fn into_value(self) -> Value {
        let turns = self.0.into_iter().map(|turn| {
            let content = match turn.content {
                TurnContent::Text(text) => Value::String(text),
                TurnContent::Blocks(blocks) => Value::Array(blocks),
            };
            json!({ "role": turn.role, "content": content })
        });
        Value::Array(turns.collect())
    }
}

fn text_block(text: impl Into<String>) -> Value {
    json!({ "type": "text", "text": text.into() })
}

/// The text of a system or developer message, which may only hold text.
fn system_text(index: usize, msg: &Message) -> Result<String, TranslateError> {
    match &msg.content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text.clone()),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(t)) => text.push_str(t),
                    _ => {
                        let reason = format!("a system message cannot hold a `{}` part", part.kind);
                        return Err(invalid(index, reason));
                    }
                }
            }
            Ok(text)
        }
    }
}

fn user_content(index: usize, msg: &Message) -> Result<TurnContent, TranslateError> {
    match &msg.content {
        None => Err(invalid(index, "user message without content")),
        Some(Content::Text(text)) => Ok(TurnContent::Text(text.clone())),
        Some(Content::Parts(parts)) => Ok(TurnContent::Blocks(part_blocks(index, parts)?)),
    }
}

fn part_blocks(index: usize, parts: &[ContentPart]) -> Result<Vec<Value>, TranslateError> {
    parts.iter().map(|part| part_block(index, part)).collect()
}

fn part_block(index: usize, part: &ContentPart) -> Result<Value, TranslateError> {
    match part.kind.as_str() {
        "text" => {
            let Some(text) = &part.text else {
                return Err(invalid(index, "text part without `text`"));
            };
            Ok(text_block(text.as_str()))
        }
        "image_url" => {
            let Some(image) = &part.image_url else {
                return Err(invalid(index, "image_url part without `image_url`"));
            };
            image_block(index, &image.url)
        }
        other => Err(invalid(
            index,
            format!("content part type `{other}` is not supported"),
        )),
    }
}

/// `data:<mime>;base64,<data>` becomes an inline image, an http(s) URL one Anthropic
/// fetches itself.
fn image_block(index: usize, url: &str) -> Result<Value, TranslateError> {
    if let Some(parsed) = crate::types::parse_data_url(url) {
        let (media_type, data) = parsed.map_err(|reason| invalid(index, reason))?;
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(invalid(
        index,
        "image URL is neither a data: URL nor http(s)",
    ))
}

/// Text, then one `tool_use` block per tool call. Empty text is left out: OpenAI clients
/// send `""` beside tool calls, and Anthropic rejects empty text blocks.
fn assistant_blocks(index: usize, msg: &Message) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match &msg.content {
        Some(Content::Text(text)) if !text.is_empty() => blocks.push(text_block(text.as_str())),
        None | Some(Content::Text(_)) => {}
        Some(Content::Parts(parts)) => {
            for part in parts {
                if part.kind == "text" && part.text.as_deref() == Some("") {
                    continue;
                }
                blocks.push(part_block(index, part)?);
            }
        }
    }
    for call in msg.tool_calls.iter().flatten() {
        blocks.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.function.name,
            "input": tool_input(index, call)?,
        }));
    }
    Ok(blocks)
}

/// The tool call's `arguments` string as the JSON object Anthropic's `input` must be.
fn tool_input(index: usize, call: &ToolCall) -> Result<Value, TranslateError> {
    call.arguments_object()
        .map_err(|reason| invalid(index, reason))
}

fn tool_result(index: usize, msg: &Message) -> Result<Value, TranslateError> {
    let Some(id) = &msg.tool_call_id else {
        return Err(invalid(index, "tool message without `tool_call_id`"));
    };
    let mut block = Map::new();
    block.insert("type".into(), "tool_result".into());
    block.insert("tool_use_id".into(), id.as_str().into());
    match &msg.content {
        None => {}
        Some(Content::Text(text)) => {
            block.insert("content".into(), text.as_str().into());
        }
        Some(Content::Parts(parts)) => {
            block.insert("content".into(), part_blocks(index, parts)?.into());
        }
    }
    Ok(Value::Object(block))
}

fn encode_tool(tool: &Tool) -> Result<Value, TranslateError> {
    if tool.kind != "function" {
        return Err(TranslateError::Unsupported(format!(
            "tool type `{}` has no Anthropic equivalent",
            tool.kind
        )));
    }
    let f = &tool.function;
    let mut out = Map::new();
    out.insert("name".into(), f.name.as_str().into());
    if let Some(description) = &f.description {
        out.insert("description".into(), description.as_str().into());
    }
    let schema = f
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice`.
///
/// `parallel_tool_calls: false` becomes `disable_parallel_tool_use`, which Anthropic only
/// accepts on `auto`, `any` and `tool`; with `none` no tool is called, so it is left off.
fn encode_tool_choice(
    choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
    has_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let unsupported = |v: &Value| TranslateError::Unsupported(format!("tool_choice {v}"));
    let mut out = match choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(unsupported(&Value::String(s.clone()))),
        }),
        Some(v) if v["type"] == "function" => {
            let Some(name) = v["function"]["name"].as_str() else {
                return Err(unsupported(v));
            };
            Some(json!({"type": "tool", "name": name}))
        }
        Some(v) => return Err(unsupported(v)),
    };
    if parallel_tool_calls == Some(false) {
        if out.is_none() && has_tools {
            out = Some(json!({"type": "auto"}));
        }
        if let Some(Value::Object(c)) = &mut out
            && c.get("type").and_then(Value::as_str) != Some("none")
        {
            c.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    Ok(out)
}
