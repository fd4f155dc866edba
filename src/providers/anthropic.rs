//! Translation between the OpenAI Chat Completions wire format (what clients speak to llmux) and
//! Anthropic's Messages API (what the upstream speaks).
//!
//! This module owns every Anthropic-specific shape: request bodies ([`translate_request`]),
//! non-streaming responses ([`translate_response`]), error bodies ([`translate_error`]) and the
//! SSE event stream ([`StreamTranslator`]). It does no I/O: callers hand it parsed or raw bodies
//! and SSE events, and send what it returns. Nothing here panics on upstream or client input;
//! every malformed input becomes an error value.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Error from translating a client request: becomes an OpenAI-shaped 400 `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// Token usage in OpenAI terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// Upper bound on how much upstream-provided text is copied into an error message, so a huge or
/// hostile body cannot be reflected to clients.
const MAX_ECHO_BYTES: usize = 512;

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat request -> Anthropic Messages request
// ---------------------------------------------------------------------------------------------

/// OpenAI chat request body (already with override_params applied) -> Anthropic Messages request body.
/// `default_max_tokens` is used when neither max_completion_tokens nor max_tokens is given.
///
/// Fields Anthropic has no equivalent for (penalties, seed, logit_bias, stream_options, ...) are
/// dropped rather than forwarded, because Anthropic rejects unknown fields. Features whose silent
/// loss would change the meaning of the answer (`n > 1`, `logprobs`, structured output) are
/// rejected instead.
pub fn translate_request(
    body: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Value, TranslateError> {
    reject_unsupported(body)?;

    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model,
        _ => {
            return Err(TranslateError::new(
                "`model` is required and must be a non-empty string",
                "model",
            ))
        }
    };
    let max_tokens = resolve_max_tokens(body, default_max_tokens)?;
    let (system, messages) = translate_messages(body.get("messages"))?;

    let mut out = Map::new();
    out.insert("model".to_owned(), Value::String(model.clone()));
    out.insert("max_tokens".to_owned(), Value::from(max_tokens));
    out.insert("messages".to_owned(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".to_owned(), Value::String(system));
    }

    if let Some(stop) = translate_stop(body.get("stop"))? {
        out.insert("stop_sequences".to_owned(), stop);
    }
    if let Some(temperature) = non_null(body, "temperature") {
        out.insert("temperature".to_owned(), clamp_temperature(temperature)?);
    }
    if let Some(top_p) = non_null(body, "top_p") {
        if !top_p.is_number() {
            return Err(TranslateError::new("`top_p` must be a number", "top_p"));
        }
        out.insert("top_p".to_owned(), top_p.clone());
    }
    if let Some(top_k) = non_null(body, "top_k") {
        if top_k.as_u64().is_none() {
            return Err(TranslateError::new(
                "`top_k` must be a non-negative integer",
                "top_k",
            ));
        }
        out.insert("top_k".to_owned(), top_k.clone());
    }
    if let Some(user_id) = translate_user(body)? {
        out.insert(
            "metadata".to_owned(),
            object([("user_id", Value::String(user_id))]),
        );
    }
    if let Some(stream) = non_null(body, "stream") {
        if !stream.is_boolean() {
            return Err(TranslateError::new("`stream` must be a boolean", "stream"));
        }
        out.insert("stream".to_owned(), stream.clone());
    }

    let tools = match non_null(body, "tools") {
        Some(Value::Array(tools)) => translate_tools(tools)?,
        Some(_) => return Err(TranslateError::new("`tools` must be an array", "tools")),
        None => Vec::new(),
    };
    let tool_choice = translate_tool_choice(body)?;
    // `tool_choice` only means something alongside `tools`, and OpenAI clients often send it (and
    // `parallel_tool_calls`) unconditionally: drop it rather than risk an upstream 400.
    if !tools.is_empty() {
        out.insert("tools".to_owned(), Value::Array(tools));
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".to_owned(), choice);
        }
    }

    Ok(Value::Object(out))
}

/// Returns the field's value unless it is absent or JSON `null` (OpenAI SDKs send explicit nulls
/// for unset options).
fn non_null<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn reject_unsupported(body: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(n) = non_null(body, "n") {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::new(
                "`n` must be 1: Anthropic models return a single choice",
                "n",
            ));
        }
    }
    match non_null(body, "logprobs") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            return Err(TranslateError::new(
                "`logprobs` is not supported by Anthropic models",
                "logprobs",
            ))
        }
        Some(_) => {
            return Err(TranslateError::new(
                "`logprobs` must be a boolean",
                "logprobs",
            ))
        }
    }
    if let Some(format) = non_null(body, "response_format") {
        let kind = format.get("type").and_then(Value::as_str);
        if kind != Some("text") {
            return Err(TranslateError::new(
                "`response_format` other than {\"type\":\"text\"} is not supported by Anthropic models",
                "response_format",
            ));
        }
    }
    Ok(())
}

fn resolve_max_tokens(
    body: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(value) = non_null(body, key) {
            return match value.as_u64() {
                Some(n) if n > 0 => Ok(n),
                _ => Err(TranslateError::new(
                    format!("`{key}` must be a positive integer"),
                    key,
                )),
            };
        }
    }
    if default_max_tokens == 0 {
        return Err(TranslateError::new(
            "`max_tokens` is required for Anthropic models and no default is configured",
            "max_tokens",
        ));
    }
    Ok(default_max_tokens)
}

fn translate_stop(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let invalid = || TranslateError::new("`stop` must be a string or an array of strings", "stop");
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Value::Array(vec![Value::String(s.clone())]))),
        Some(Value::Array(items)) => {
            if items.iter().any(|item| !item.is_string()) {
                return Err(invalid());
            }
            Ok((!items.is_empty()).then(|| Value::Array(items.clone())))
        }
        Some(_) => Err(invalid()),
    }
}

fn clamp_temperature(value: &Value) -> Result<Value, TranslateError> {
    let t = value
        .as_f64()
        .ok_or_else(|| TranslateError::new("`temperature` must be a number", "temperature"))?;
    // OpenAI's range is 0..=2, Anthropic's 0..=1. Clamping keeps low temperatures exact, which is
    // where callers care most (0 = deterministic-ish).
    if (0.0..=1.0).contains(&t) {
        Ok(value.clone())
    } else {
        Ok(Value::from(t.clamp(0.0, 1.0)))
    }
}

fn translate_user(body: &Map<String, Value>) -> Result<Option<String>, TranslateError> {
    // `safety_identifier` is OpenAI's successor to `user`; both identify the end user.
    for key in ["user", "safety_identifier"] {
        match non_null(body, key) {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(_) => {
                return Err(TranslateError::new(
                    format!("`{key}` must be a string"),
                    key,
                ))
            }
        }
    }
    Ok(None)
}

fn translate_tools(tools: &[Value]) -> Result<Vec<Value>, TranslateError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let tool = tool.as_object().ok_or_else(|| {
                TranslateError::new(
                    format!("`tools[{i}]` must be an object"),
                    format!("tools[{i}]"),
                )
            })?;
            match tool.get("type") {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) if t == "function" => {}
                Some(_) => {
                    return Err(TranslateError::new(
                        format!("`tools[{i}].type` must be \"function\""),
                        format!("tools[{i}].type"),
                    ))
                }
            }
            let function = tool
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    TranslateError::new(
                        format!("`tools[{i}].function` must be an object"),
                        format!("tools[{i}].function"),
                    )
                })?;
            let name = match function.get("name") {
                Some(Value::String(name)) if !name.is_empty() => name,
                _ => {
                    return Err(TranslateError::new(
                        format!("`tools[{i}].function.name` must be a non-empty string"),
                        format!("tools[{i}].function.name"),
                    ))
                }
            };

            let mut out = Map::new();
            out.insert("name".to_owned(), Value::String(name.clone()));
            match function.get("description") {
                None | Some(Value::Null) => {}
                Some(Value::String(d)) => {
                    out.insert("description".to_owned(), Value::String(d.clone()));
                }
                Some(_) => {
                    return Err(TranslateError::new(
                        format!("`tools[{i}].function.description` must be a string"),
                        format!("tools[{i}].function.description"),
                    ))
                }
            }
            let schema = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(Value::Object(params)) => {
                    let mut schema = params.clone();
                    // OpenAI tolerates `parameters: {}`; Anthropic insists on an object schema.
                    schema
                        .entry("type")
                        .or_insert_with(|| Value::from("object"));
                    Value::Object(schema)
                }
                Some(_) => {
                    return Err(TranslateError::new(
                        format!("`tools[{i}].function.parameters` must be a JSON Schema object"),
                        format!("tools[{i}].function.parameters"),
                    ))
                }
            };
            out.insert("input_schema".to_owned(), schema);
            Ok(Value::Object(out))
        })
        .collect()
}

fn translate_tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let invalid = || {
        TranslateError::new(
            "`tool_choice` must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
            "tool_choice",
        )
    };
    let mut choice = match non_null(body, "tool_choice") {
        None => None,
        Some(Value::String(s)) => {
            let kind = match s.as_str() {
                "auto" => "auto",
                "required" => "any",
                "none" => "none",
                _ => return Err(invalid()),
            };
            let mut m = Map::new();
            m.insert("type".to_owned(), Value::String(kind.to_owned()));
            Some(m)
        }
        Some(Value::Object(obj)) => {
            if obj.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid());
            }
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(invalid)?;
            let mut m = Map::new();
            m.insert("type".to_owned(), Value::from("tool"));
            m.insert("name".to_owned(), Value::String(name.to_owned()));
            Some(m)
        }
        Some(_) => return Err(invalid()),
    };

    match non_null(body, "parallel_tool_calls") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let choice = choice.get_or_insert_with(|| {
                let mut m = Map::new();
                m.insert("type".to_owned(), Value::from("auto"));
                m
            });
            // `{type:"none"}` accepts no other field; parallelism is moot when no tool is called.
            if choice.get("type").and_then(Value::as_str) != Some("none") {
                choice.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
            }
        }
        Some(_) => {
            return Err(TranslateError::new(
                "`parallel_tool_calls` must be a boolean",
                "parallel_tool_calls",
            ))
        }
    }
    Ok(choice.map(Value::Object))
}

/// Content of one Anthropic turn while it is being assembled. A plain string is kept as a string
/// (the compact form Anthropic documents) until a merge forces the block form.
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_value(self) -> Value {
        match self {
            Content::Text(text) => Value::String(text),
            Content::Blocks(blocks) => Value::Array(blocks),
        }
    }
}

struct Turn {
    role: &'static str,
    content: Content,
}

fn text_block(text: String) -> Value {
    object([("type", Value::from("text")), ("text", Value::String(text))])
}

/// Splits OpenAI messages into the Anthropic `system` string and the `user`/`assistant` turns.
fn translate_messages(messages: Option<&Value>) -> Result<(String, Vec<Value>), TranslateError> {
    let messages_error = || {
        TranslateError::new(
            "`messages` must be a non-empty array of messages",
            "messages",
        )
    };
    let list = messages
        .and_then(Value::as_array)
        .ok_or_else(messages_error)?;

    let mut system = String::new();
    let mut turns: Vec<Turn> = Vec::with_capacity(list.len());
    // True while the last turn is a user turn made of tool results: further tool results, and
    // then one user message, belong in it because Anthropic wants the results of one assistant
    // turn answered in a single user turn, results first.
    let mut results_open = false;

    for (i, msg) in list.iter().enumerate() {
        let msg = msg.as_object().ok_or_else(|| {
            TranslateError::new(
                format!("`messages[{i}]` must be an object"),
                format!("messages[{i}]"),
            )
        })?;
        let role = msg.get("role").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::new(
                format!("`messages[{i}].role` must be a string"),
                format!("messages[{i}].role"),
            )
        })?;
        match role {
            "system" | "developer" => append_system(&mut system, msg.get("content"), i)?,
            "user" => {
                let content = user_content(msg.get("content"), i)?;
                match turns.last_mut() {
                    Some(Turn {
                        content: Content::Blocks(blocks),
                        ..
                    }) if results_open => match content {
                        Content::Text(text) if text.is_empty() => {}
                        Content::Text(text) => blocks.push(text_block(text)),
                        Content::Blocks(more) => blocks.extend(more),
                    },
                    _ => turns.push(Turn {
                        role: "user",
                        content,
                    }),
                }
                results_open = false;
            }
            "assistant" => {
                turns.push(Turn {
                    role: "assistant",
                    content: assistant_content(msg, i)?,
                });
                results_open = false;
            }
            "tool" => {
                let block = tool_result(msg, i)?;
                match turns.last_mut() {
                    Some(Turn {
                        content: Content::Blocks(blocks),
                        ..
                    }) if results_open => blocks.push(block),
                    _ => {
                        turns.push(Turn {
                            role: "user",
                            content: Content::Blocks(vec![block]),
                        });
                        results_open = true;
                    }
                }
            }
            other => {
                return Err(TranslateError::new(
                    format!(
                        "unsupported role '{}' in `messages[{i}]`",
                        truncate_utf8(other, 64)
                    ),
                    format!("messages[{i}].role"),
                ))
            }
        }
    }

    if turns.is_empty() {
        return Err(messages_error());
    }
    let turns = turns
        .into_iter()
        .map(|turn| {
            object([
                ("role", Value::from(turn.role)),
                ("content", turn.content.into_value()),
            ])
        })
        .collect();
    Ok((system, turns))
}

fn append_system(
    system: &mut String,
    content: Option<&Value>,
    i: usize,
) -> Result<(), TranslateError> {
    let mut push = |text: &str| {
        if text.is_empty() {
            return;
        }
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(text);
    };
    match content {
        Some(Value::String(text)) => push(text),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if part.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(TranslateError::new(
                        format!(
                            "`messages[{i}].content[{j}]`: system messages only support text parts"
                        ),
                        format!("messages[{i}].content[{j}].type"),
                    ));
                }
                push(part_text(part, i, j)?);
            }
        }
        _ => {
            return Err(TranslateError::new(
                format!("`messages[{i}].content` must be a string or an array of text parts"),
                format!("messages[{i}].content"),
            ))
        }
    }
    Ok(())
}

fn part_text(part: &Value, i: usize, j: usize) -> Result<&str, TranslateError> {
    part.get("text").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::new(
            format!("`messages[{i}].content[{j}].text` must be a string"),
            format!("messages[{i}].content[{j}].text"),
        )
    })
}

fn user_content(content: Option<&Value>, i: usize) -> Result<Content, TranslateError> {
    match content {
        Some(Value::String(text)) => Ok(Content::Text(text.clone())),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| user_part(part, i, j))
            .collect::<Result<Vec<_>, _>>()
            .map(Content::Blocks),
        _ => Err(TranslateError::new(
            format!("`messages[{i}].content` must be a string or an array of content parts"),
            format!("messages[{i}].content"),
        )),
    }
}

fn user_part(part: &Value, i: usize, j: usize) -> Result<Value, TranslateError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => Ok(text_block(part_text(part, i, j)?.to_owned())),
        Some("image_url") => image_block(part, i, j),
        Some(other) => Err(TranslateError::new(
            format!(
                "content part type '{}' is not supported for Anthropic models",
                truncate_utf8(other, 64)
            ),
            format!("messages[{i}].content[{j}].type"),
        )),
        None => Err(TranslateError::new(
            format!("`messages[{i}].content[{j}].type` must be a string"),
            format!("messages[{i}].content[{j}].type"),
        )),
    }
}

fn image_block(part: &Value, i: usize, j: usize) -> Result<Value, TranslateError> {
    let invalid = |why: &str| {
        TranslateError::new(
            format!("`messages[{i}].content[{j}].image_url.url` {why}"),
            format!("messages[{i}].content[{j}].image_url.url"),
        )
    };
    // Some clients send `image_url` as a bare string instead of `{url, detail}`.
    let url = match part.get("image_url") {
        Some(Value::String(url)) => url.as_str(),
        Some(obj) => obj
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("must be a string"))?,
        None => return Err(invalid("is required")),
    };

    if let Some(rest) = strip_prefix_ignore_case(url, "data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("is not a valid data URL"))?;
        let header = strip_suffix_ignore_case(header, ";base64")
            .ok_or_else(|| invalid("must be a base64 data URL"))?;
        // Drop MIME parameters (e.g. `;charset=`): Anthropic wants the bare media type.
        let media_type = header.split(';').next().unwrap_or_default();
        if media_type.is_empty() || data.is_empty() {
            return Err(invalid("is not a valid data URL"));
        }
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if strip_prefix_ignore_case(url, "https://").is_some()
        || strip_prefix_ignore_case(url, "http://").is_some()
    {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(invalid("must be an http(s) URL or a base64 data URL"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

fn assistant_content(msg: &Map<String, Value>, i: usize) -> Result<Content, TranslateError> {
    let tool_calls = match msg.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => {
            return Err(TranslateError::new(
                format!("`messages[{i}].tool_calls` must be an array"),
                format!("messages[{i}].tool_calls"),
            ))
        }
    };

    let mut blocks = Vec::with_capacity(tool_calls.len() + 1);
    match msg.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            if tool_calls.is_empty() {
                return Ok(Content::Text(text.clone()));
            }
            // Anthropic rejects empty text blocks; an empty string next to tool calls means "none".
            if !text.is_empty() {
                blocks.push(text_block(text.clone()));
            }
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let text = match part.get("type").and_then(Value::as_str) {
                    Some("text") => part_text(part, i, j)?,
                    // A refusal the model gave earlier is still what it said.
                    Some("refusal") => {
                        part.get("refusal").and_then(Value::as_str).ok_or_else(|| {
                            TranslateError::new(
                                format!("`messages[{i}].content[{j}].refusal` must be a string"),
                                format!("messages[{i}].content[{j}].refusal"),
                            )
                        })?
                    }
                    _ => {
                        return Err(TranslateError::new(
                            format!("`messages[{i}].content[{j}]`: assistant messages only support text parts"),
                            format!("messages[{i}].content[{j}].type"),
                        ))
                    }
                };
                if !text.is_empty() {
                    blocks.push(text_block(text.to_owned()));
                }
            }
        }
        Some(_) => {
            return Err(TranslateError::new(
                format!("`messages[{i}].content` must be a string, an array of text parts or null"),
                format!("messages[{i}].content"),
            ))
        }
    }

    for (j, call) in tool_calls.iter().enumerate() {
        blocks.push(tool_use_block(call, i, j)?);
    }
    if blocks.is_empty() {
        return Err(TranslateError::new(
            format!("`messages[{i}]`: an assistant message needs content or tool_calls"),
            format!("messages[{i}].content"),
        ));
    }
    Ok(Content::Blocks(blocks))
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn tool_use_block(call: &Value, i: usize, j: usize) -> Result<Value, TranslateError> {
    let field_error = |field: &str, why: &str| {
        TranslateError::new(
            format!("`messages[{i}].tool_calls[{j}].{field}` {why}"),
            format!("messages[{i}].tool_calls[{j}].{field}"),
        )
    };

    match call.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "function" => {}
        Some(_) => return Err(field_error("type", "must be \"function\"")),
    }
    let id = non_empty_str(call.get("id"))
        .ok_or_else(|| field_error("id", "must be a non-empty string"))?;
    let function = call
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| field_error("function", "must be an object"))?;
    let name = non_empty_str(function.get("name"))
        .ok_or_else(|| field_error("function.name", "must be a non-empty string"))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "",
        Some(Value::String(args)) => args.as_str(),
        Some(_) => return Err(field_error("function.arguments", "must be a JSON string")),
    };
    // Models emit "" for argument-less calls; Anthropic needs an object either way.
    let input = if arguments.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(input @ Value::Object(_)) => input,
            Ok(_) => {
                return Err(field_error(
                    "function.arguments",
                    "must encode a JSON object",
                ))
            }
            Err(_) => return Err(field_error("function.arguments", "is not valid JSON")),
        }
    };
    Ok(object([
        ("type", Value::from("tool_use")),
        ("id", Value::from(id)),
        ("name", Value::from(name)),
        ("input", input),
    ]))
}

fn tool_result(msg: &Map<String, Value>, i: usize) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            TranslateError::new(
                format!("`messages[{i}].tool_call_id` must be a non-empty string"),
                format!("messages[{i}].tool_call_id"),
            )
        })?;
    let mut block = Map::new();
    block.insert("type".to_owned(), Value::from("tool_result"));
    block.insert("tool_use_id".to_owned(), Value::String(id.to_owned()));
    match msg.get("content") {
        // A result without content is legal on both sides ("the tool returned nothing").
        None | Some(Value::Null) => {}
        content => {
            let content = user_content(content, i)?.into_value();
            block.insert("content".to_owned(), content);
        }
    }
    Ok(Value::Object(block))
}

// ---------------------------------------------------------------------------------------------
// Response: Anthropic message -> OpenAI chat.completion
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    id: String,
    model: String,
    content: Vec<WireBlock>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// thinking, redacted_thinking, server tool blocks...: nothing OpenAI clients can represent.
    #[serde(other)]
    Other,
}

/// Anthropic usage counters; every field is optional because message_delta events carry only
/// the ones that changed and some proxies send nulls.
#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`. Unknown or missing reasons become
/// "stop": the turn did end, and OpenAI clients know no other value to expect.
fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Builds a JSON object by moving the given values in. `json!` would serialize its operands by
/// reference, cloning every string and subtree handed to it.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain structs and `Value`s cannot fail (all map keys are strings); should it
    // ever, an empty object is a safer output than a panic on the hot path.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

/// Anthropic 2xx response body -> (OpenAI `chat.completion` JSON object, usage).
/// `created` is the unix timestamp to put in `created`. A body that is not a valid Anthropic message -> Err (the integrator maps it to a 502).
pub fn translate_response(body: &[u8], created: u64) -> Result<(Value, Usage), TranslateError> {
    let msg: WireMessage<'_> = serde_json::from_slice(body).map_err(|e| TranslateError {
        // Position only: serde's message may quote (large) fragments of the upstream body.
        message: format!(
            "upstream returned a malformed Anthropic message (line {}, column {})",
            e.line(),
            e.column()
        ),
        param: None,
    })?;
    if let Some(kind) = msg.kind.as_deref() {
        if kind != "message" {
            return Err(TranslateError {
                message: format!(
                    "upstream returned an object of type '{}' instead of a message",
                    truncate_utf8(kind, 64)
                ),
                param: None,
            });
        }
    }

    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in msg.content {
        match block {
            WireBlock::Text { text: t } => match &mut text {
                Some(acc) => acc.push_str(&t),
                None => text = Some(t),
            },
            WireBlock::ToolUse { id, name, input } => tool_calls.push(object([
                ("id", Value::String(id)),
                ("type", Value::from("function")),
                (
                    "function",
                    object([
                        ("name", Value::String(name)),
                        ("arguments", Value::String(to_json_string(&input))),
                    ]),
                ),
            ])),
            WireBlock::Other => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".to_owned(), Value::from("assistant"));
    message.insert(
        "content".to_owned(),
        text.map_or(Value::Null, Value::String),
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }

    let usage = usage_from(&msg.usage.unwrap_or_default());
    let finish_reason = finish_reason_for(msg.stop_reason.as_deref());
    let choice = object([
        ("index", Value::from(0)),
        ("message", Value::Object(message)),
        ("logprobs", Value::Null),
        ("finish_reason", Value::from(finish_reason)),
    ]);
    let usage_json = object([
        ("prompt_tokens", Value::from(usage.prompt_tokens)),
        ("completion_tokens", Value::from(usage.completion_tokens)),
        (
            "total_tokens",
            Value::from(usage.prompt_tokens.saturating_add(usage.completion_tokens)),
        ),
        (
            "prompt_tokens_details",
            object([("cached_tokens", Value::from(usage.cached_tokens))]),
        ),
    ]);
    let completion = object([
        ("id", Value::String(msg.id)),
        ("object", Value::from("chat.completion")),
        ("created", Value::from(created)),
        ("model", Value::String(msg.model)),
        ("choices", Value::Array(vec![choice])),
        ("usage", usage_json),
    ]);
    Ok((completion, usage))
}

fn usage_from(wire: &WireUsage) -> Usage {
    let cache_read = wire.cache_read_input_tokens.unwrap_or(0);
    // Anthropic's input_tokens excludes cached tokens; OpenAI's prompt_tokens includes them.
    Usage {
        prompt_tokens: wire
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cache_read)
            .saturating_add(wire.cache_creation_input_tokens.unwrap_or(0)),
        completion_tokens: wire.output_tokens.unwrap_or(0),
        cached_tokens: cache_read,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors: Anthropic error body -> OpenAI error object
// ---------------------------------------------------------------------------------------------

/// Anthropic error response (any status, any body — may be non-JSON or empty) -> (HTTP status to return to the client, OpenAI error object `{"error":{"message","type","param","code"}}`).
///
/// 529 (Anthropic "overloaded") becomes 503, which OpenAI clients know to retry. A status that is
/// not an error status at all (a 2xx carrying an error body, or garbage) becomes 502: the
/// upstream misbehaved and the client must not read it as success.
#[must_use]
pub fn translate_error(status: u16, body: &[u8]) -> (u16, Value) {
    let client_status = match status {
        529 => 503,
        400..=599 => status,
        _ => 502,
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let detail = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_object);
    let error = match detail {
        Some(detail) => {
            let kind = detail
                .get("type")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| kind_for_status(status));
            let message = match detail.get("message").and_then(Value::as_str) {
                Some(m) if !m.is_empty() => Cow::Borrowed(truncate_utf8(m, MAX_ECHO_BYTES)),
                _ => Cow::Owned(format!("Anthropic returned HTTP {status}")),
            };
            openai_error(kind, &message)
        }
        None => openai_error(kind_for_status(status), &generic_message(status, body)),
    };
    (client_status, error)
}

/// The Anthropic error type a status implies, for bodies that do not say.
fn kind_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Anthropic error type -> (OpenAI `type`, OpenAI `code`). Client-side types keep Anthropic's
/// name (more precise than OpenAI's) and gain the `code` OpenAI SDKs and dashboards key on;
/// server-side failures collapse into OpenAI's `server_error`.
fn openai_kind(kind: &str) -> (&str, Option<&'static str>) {
    match kind {
        "authentication_error" => (kind, Some("invalid_api_key")),
        "permission_error" => (kind, Some("permission_denied")),
        "not_found_error" => (kind, Some("model_not_found")),
        "rate_limit_error" => (kind, Some("rate_limit_exceeded")),
        "billing_error" => (kind, Some("insufficient_quota")),
        "request_too_large" => ("invalid_request_error", Some("request_too_large")),
        "overloaded_error" => ("server_error", Some("overloaded")),
        "timeout_error" => ("server_error", Some("timeout")),
        "api_error" => ("server_error", None),
        _ => (kind, None),
    }
}

fn openai_error(anthropic_kind: &str, message: &str) -> Value {
    let (kind, code) = openai_kind(truncate_utf8(anthropic_kind, 64));
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

fn generic_message(status: u16, body: &[u8]) -> String {
    let head = &body[..body.len().min(MAX_ECHO_BYTES)];
    // Cutting at MAX_ECHO_BYTES may split a character; keep only the valid prefix.
    let snippet = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    }
    .trim();
    if snippet.is_empty() {
        format!("Anthropic returned HTTP {status}")
    } else {
        format!("Anthropic returned HTTP {status}: {snippet}")
    }
}

/// Longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Streaming: Anthropic SSE events -> OpenAI chat.completion.chunk payloads
// ---------------------------------------------------------------------------------------------

/// One translated SSE payload for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// An OpenAI chunk JSON (serialized), to be sent as `data: <json>\n\n`.
    Chunk(String),
    /// The stream finished normally (after message_stop): the caller sends `data: [DONE]\n\n`.
    Done,
    /// Upstream sent an `error` event: OpenAI-shaped error object `{"error":{...}}` serialized; the caller sends it as `data: ...` then closes.
    Error(String),
}

/// Streaming: a state machine fed with Anthropic SSE events (event name + data string) that yields OpenAI `chat.completion.chunk` payloads.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    /// The role chunk has been sent.
    started: bool,
    /// Done or Error has been emitted; later events are ignored.
    finished: bool,
    has_content: bool,
    finish_reason: Option<&'static str>,
    /// (Anthropic content block index, OpenAI tool call ordinal) of every tool_use block so far.
    /// Input deltas name the block index; OpenAI clients want dense ordinals from 0.
    tool_blocks: Vec<(u64, u32)>,
    input_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    output_tokens: u64,
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow)]
    message: StartMessage<'a>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: StartBlock<'a>,
}

#[derive(Deserialize)]
struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    index: u64,
    #[serde(borrow)]
    delta: DeltaBody<'a>,
}

/// Flat rather than a tagged enum: serde buffers tagged enums, and this is parsed per token.
#[derive(Deserialize)]
struct DeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow, default)]
    delta: Option<MessageDeltaBody<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct MessageDeltaBody<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceOut<'a>],
    /// Absent without include_usage; `Some(None)` serializes the `null` OpenAI puts on every
    /// chunk but the last when include_usage is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl StreamTranslator {
    /// `include_usage` = request's stream_options.include_usage; `created` unix ts; `fallback_model` = model asked for, used until message_start reports one.
    #[must_use]
    pub fn new(include_usage: bool, created: u64, fallback_model: &str) -> Self {
        Self {
            include_usage,
            created,
            id: String::new(),
            model: fallback_model.to_owned(),
            started: false,
            finished: false,
            has_content: false,
            finish_reason: None,
            tool_blocks: Vec::new(),
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_creation_tokens: 0,
            output_tokens: 0,
        }
    }

    /// Feed one SSE event. `event` is the SSE `event:` name (may be empty: then use the data's "type" field). Unknown events and ping/content_block_stop/thinking/signature/citations deltas produce nothing. Malformed data JSON -> StreamOutput::Error with an OpenAI error object (type "server_error", message saying upstream sent malformed event).
    ///
    /// Events whose data carries nothing needed (ping, content_block_stop, message_stop, unknown)
    /// are not parsed at all. Once Done or Error has been produced, further events are ignored.
    pub fn on_event(&mut self, event: &str, data: &str, out: &mut Vec<StreamOutput>) {
        if self.finished {
            return;
        }
        let kind: Cow<'_, str> = if event.is_empty() {
            match serde_json::from_str::<EventType<'_>>(data) {
                Ok(EventType { kind: Some(kind) }) => kind,
                // Valid JSON without a type names no event we know.
                Ok(EventType { kind: None }) => return,
                Err(_) => return self.fail_malformed("unnamed", out),
            }
        } else {
            Cow::Borrowed(event)
        };

        match kind.as_ref() {
            "message_start" => self.on_message_start(data, out),
            "content_block_start" => self.on_block_start(data, out),
            "content_block_delta" => self.on_block_delta(data, out),
            "message_delta" => self.on_message_delta(data, out),
            "message_stop" => self.on_message_stop(out),
            "error" => self.on_error(data, out),
            _ => {}
        }
    }

    /// True once any chunk carrying content (text delta, tool call start/arguments) has been produced — the router uses it to know when it has committed to this upstream.
    #[must_use]
    pub fn has_content(&self) -> bool {
        self.has_content
    }

    /// Usage seen so far (input from message_start, output from message_delta which is cumulative).
    #[must_use]
    pub fn usage(&self) -> Usage {
        usage_from(&WireUsage {
            input_tokens: Some(self.input_tokens),
            output_tokens: Some(self.output_tokens),
            cache_creation_input_tokens: Some(self.cache_creation_tokens),
            cache_read_input_tokens: Some(self.cache_read_tokens),
        })
    }

    /// The OpenAI finish_reason, once message_delta (or message_stop) has set one.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason
    }

    fn record_usage(&mut self, usage: &WireUsage) {
        // message_delta repeats counters cumulatively; absent fields keep their earlier value.
        if let Some(n) = usage.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = usage.cache_read_input_tokens {
            self.cache_read_tokens = n;
        }
        if let Some(n) = usage.cache_creation_input_tokens {
            self.cache_creation_tokens = n;
        }
        if let Some(n) = usage.output_tokens {
            self.output_tokens = n;
        }
    }

    fn on_message_start(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(start) = serde_json::from_str::<MessageStart<'_>>(data) else {
            return self.fail_malformed("message_start", out);
        };
        if let Some(id) = start.message.id {
            self.id = id.into_owned();
        }
        if let Some(model) = start.message.model.filter(|m| !m.is_empty()) {
            self.model = model.into_owned();
        }
        if let Some(usage) = &start.message.usage {
            self.record_usage(usage);
        }
        self.ensure_started(out);
    }

    /// Sends the role chunk if it has not gone out yet, so that a stream missing message_start
    /// still opens the way OpenAI clients expect.
    fn ensure_started(&mut self, out: &mut Vec<StreamOutput>) {
        if !self.started {
            self.started = true;
            let delta = DeltaOut {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaOut::default()
            };
            self.push_chunk(delta, None, out);
        }
    }

    fn on_block_start(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(start) = serde_json::from_str::<BlockStart<'_>>(data) else {
            return self.fail_malformed("content_block_start", out);
        };
        let block = start.content_block;
        match block.kind.as_ref() {
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id.as_deref(), block.name.as_deref()) else {
                    return self.fail_malformed("content_block_start", out);
                };
                let ordinal = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                self.tool_blocks.push((start.index, ordinal));
                self.ensure_started(out);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: ordinal,
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    ..DeltaOut::default()
                };
                self.has_content = true;
                self.push_chunk(delta, None, out);
            }
            // Anthropic opens text blocks empty, but nothing forbids initial text.
            "text" => {
                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.push_text(text, out);
                }
            }
            _ => {}
        }
    }

    fn on_block_delta(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(delta) = serde_json::from_str::<BlockDelta<'_>>(data) else {
            return self.fail_malformed("content_block_delta", out);
        };
        match delta.delta.kind.as_ref() {
            "text_delta" => {
                let Some(text) = delta.delta.text else {
                    return self.fail_malformed("content_block_delta", out);
                };
                if !text.is_empty() {
                    self.push_text(&text, out);
                }
            }
            "input_json_delta" => {
                let Some(partial) = delta.delta.partial_json else {
                    return self.fail_malformed("content_block_delta", out);
                };
                // Deltas for blocks that are not client tool calls (server_tool_use, ...) have
                // no OpenAI counterpart; Anthropic also opens every tool input with "".
                let Some(&(_, ordinal)) = self
                    .tool_blocks
                    .iter()
                    .rev()
                    .find(|(index, _)| *index == delta.index)
                else {
                    return;
                };
                if partial.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: ordinal,
                        id: None,
                        kind: None,
                        function: FunctionOut {
                            name: None,
                            arguments: &partial,
                        },
                    }]),
                    ..DeltaOut::default()
                };
                self.has_content = true;
                self.push_chunk(delta, None, out);
            }
            // thinking_delta, signature_delta, citations_delta and future kinds.
            _ => {}
        }
    }

    fn push_text(&mut self, text: &str, out: &mut Vec<StreamOutput>) {
        self.ensure_started(out);
        let delta = DeltaOut {
            content: Some(text),
            ..DeltaOut::default()
        };
        self.has_content = true;
        self.push_chunk(delta, None, out);
    }

    fn on_message_delta(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(delta) = serde_json::from_str::<MessageDelta<'_>>(data) else {
            return self.fail_malformed("message_delta", out);
        };
        if let Some(usage) = &delta.usage {
            self.record_usage(usage);
        }
        let stop_reason = delta.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
        let reason = finish_reason_for(stop_reason);
        self.finish_reason = Some(reason);
        self.ensure_started(out);
        self.push_chunk(DeltaOut::default(), Some(reason), out);
    }

    fn on_message_stop(&mut self, out: &mut Vec<StreamOutput>) {
        self.ensure_started(out);
        // OpenAI clients wait for a finish_reason; give one even if message_delta went missing.
        if self.finish_reason.is_none() {
            self.finish_reason = Some("stop");
            self.push_chunk(DeltaOut::default(), Some("stop"), out);
        }
        if self.include_usage {
            let usage = self.usage();
            let chunk = ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(UsageOut {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
                })),
            };
            out.push(StreamOutput::Chunk(to_json_string(&chunk)));
        }
        self.finished = true;
        out.push(StreamOutput::Done);
    }

    fn on_error(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let parsed: Option<Value> = serde_json::from_str(data).ok();
        let detail = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_object);
        let kind = detail
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .unwrap_or("api_error");
        let message = detail
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map_or("upstream stream failed", |m| {
                truncate_utf8(m, MAX_ECHO_BYTES)
            });
        self.finished = true;
        out.push(StreamOutput::Error(to_json_string(&openai_error(
            kind, message,
        ))));
    }

    fn fail_malformed(&mut self, event: &str, out: &mut Vec<StreamOutput>) {
        self.finished = true;
        let message = format!("upstream sent a malformed {event} event");
        out.push(StreamOutput::Error(to_json_string(&json!({
            "error": { "message": message, "type": "server_error", "param": null, "code": null },
        }))));
    }

    fn push_chunk(
        &self,
        delta: DeltaOut<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<StreamOutput>,
    ) {
        let choices = [ChoiceOut {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        out.push(StreamOutput::Chunk(to_json_string(&chunk)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("test body must be an object, got {other}"),
        }
    }

    fn req(v: Value) -> Result<Value, TranslateError> {
        translate_request(&obj(v), 4096)
    }

    fn req_ok(v: Value) -> Value {
        req(v).expect("request should translate")
    }

    fn req_err(v: Value) -> TranslateError {
        req(v).expect_err("request should be rejected")
    }

    fn base(messages: Value) -> Value {
        json!({ "model": "claude-sonnet-4-5", "messages": messages })
    }

    // ---- request ------------------------------------------------------------------------

    #[test]
    fn doc_multi_turn_tool_example_translates_exactly() {
        let openai = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_01", "type": "function",
                     "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"}
            ]
        });
        let expected = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_01", "name": "wx", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"}
                ]}
            ]
        });
        assert_eq!(req_ok(openai), expected);
    }

    #[test]
    fn system_and_developer_messages_join_in_order_from_anywhere() {
        let out = req_ok(base(json!([
            {"role": "system", "content": "A"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "B"}, {"type": "text", "text": "C"}]},
            {"role": "assistant", "content": "yo"},
            {"role": "system", "content": ""},
            {"role": "system", "content": "D"}
        ])));
        assert_eq!(out["system"], "A\n\nB\n\nC\n\nD");
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"}
            ])
        );
    }

    #[test]
    fn no_system_key_without_system_messages() {
        let out = req_ok(base(json!([{"role": "user", "content": "hi"}])));
        assert!(out.get("system").is_none());
    }

    #[test]
    fn system_message_with_non_text_part_is_rejected() {
        let e = req_err(base(json!([
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
        ])));
        assert_eq!(e.param.as_deref(), Some("messages[1].content[1].type"));
        let e = req_err(base(
            json!([{"role": "system", "content": 5}, {"role": "user", "content": "hi"}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
    }

    #[test]
    fn user_parts_translate_text_and_images() {
        let out = req_ok(base(json!([{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "image_url", "image_url": "HTTP://example.com/dog.gif"}
        ]}])));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "url", "url": "HTTP://example.com/dog.gif"}}
            ])
        );
    }

    #[test]
    fn unsupported_user_part_type_names_the_param() {
        let e = req_err(base(json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [
                {"type": "text", "text": "x"},
                {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
            ]}
        ])));
        assert_eq!(e.param.as_deref(), Some("messages[2].content[1].type"));
        assert!(e.message.contains("input_audio"));
        let e = req_err(base(
            json!([{"role": "user", "content": [{"text": "no type"}]}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        let e = req_err(base(
            json!([{"role": "user", "content": [{"type": "text", "text": 3}]}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].text"));
    }

    #[test]
    fn bad_image_urls_are_rejected() {
        for url in [
            json!("ftp://example.com/a.png"),
            json!("data:image/png,notbase64"),
            json!("data:;base64,AAAA"),
            json!("data:image/png;base64,"),
            json!("data:image/png;base64"),
            json!(42),
        ] {
            let e = req_err(base(json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}
            ]}])));
            assert_eq!(
                e.param.as_deref(),
                Some("messages[0].content[0].image_url.url"),
                "{url}"
            );
        }
        let e = req_err(base(
            json!([{"role": "user", "content": [{"type": "image_url"}]}]),
        ));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
    }

    #[test]
    fn assistant_text_and_tool_calls_become_blocks() {
        let out = req_ok(base(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "-3C"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]}
        ])));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_a", "name": "wx", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "call_b", "name": "now", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "-3C"},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": [{"type": "text", "text": "noon"}]}
                ]}
            ])
        );
    }

    #[test]
    fn assistant_parts_keep_text_and_refusal() {
        let out = req_ok(base(json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}, {"type": "text", "text": ""}]}
        ])));
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "no"}])
        );
    }

    #[test]
    fn assistant_errors_name_the_param() {
        let cases = [
            (
                json!({"role": "assistant", "content": null}),
                "messages[1].content",
            ),
            (
                json!({"role": "assistant", "content": 7}),
                "messages[1].content",
            ),
            (
                json!({"role": "assistant", "tool_calls": {}}),
                "messages[1].tool_calls",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{bad"}}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1,2]"}}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}),
                "messages[1].tool_calls[0].id",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}),
                "messages[1].tool_calls[0].function.name",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c"}]}),
                "messages[1].tool_calls[0].function",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f"}}]}),
                "messages[1].tool_calls[0].type",
            ),
            (
                json!({"role": "assistant", "content": [{"type": "image_url", "image_url": "https://x"}]}),
                "messages[1].content[0].type",
            ),
        ];
        for (msg, param) in cases {
            let e = req_err(base(json!([{"role": "user", "content": "q"}, msg])));
            assert_eq!(e.param.as_deref(), Some(param), "{msg}");
        }
    }

    #[test]
    fn tool_results_merge_and_following_user_message_joins_after_them() {
        let out = req_ok(base(json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "t2", "type": "function", "function": {"name": "b", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": "r1"},
            {"role": "system", "content": "between"},
            {"role": "tool", "tool_call_id": "t2"},
            {"role": "user", "content": "and then?"},
            {"role": "user", "content": [{"type": "text", "text": "separate"}]}
        ])));
        assert_eq!(out["system"], "between");
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "b", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                    {"type": "tool_result", "tool_use_id": "t2"},
                    {"type": "text", "text": "and then?"}
                ]},
                {"role": "user", "content": [{"type": "text", "text": "separate"}]}
            ])
        );
    }

    #[test]
    fn user_parts_merge_into_tool_result_turn_and_new_tool_after_user_opens_new_turn() {
        let out = req_ok(base(json!([
            {"role": "tool", "tool_call_id": "t1", "content": "r1"},
            {"role": "user", "content": [{"type": "text", "text": "u"}, {"type": "image_url", "image_url": {"url": "https://x/i.png"}}]},
            {"role": "tool", "tool_call_id": "t2", "content": "r2"}
        ])));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                    {"type": "text", "text": "u"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "r2"}]}
            ])
        );
    }

    #[test]
    fn tool_message_errors() {
        let e = req_err(base(json!([{"role": "tool", "content": "r"}])));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = req_err(base(
            json!([{"role": "tool", "tool_call_id": "t", "content": 3}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
    }

    #[test]
    fn message_shape_errors() {
        let e = req_err(base(
            json!([{"role": "function", "name": "f", "content": "x"}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = req_err(base(json!([{"content": "x"}])));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = req_err(base(json!(["x"])));
        assert_eq!(e.param.as_deref(), Some("messages[0]"));
        let e = req_err(base(json!([{"role": "user"}])));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        for messages in [
            json!([]),
            json!({}),
            json!("hi"),
            json!([{"role": "system", "content": "only"}]),
        ] {
            let e = req_err(base(messages));
            assert_eq!(e.param.as_deref(), Some("messages"));
        }
        let e = req_err(json!({"model": "m"}));
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn model_is_required() {
        for body in [
            json!({"messages": [{"role": "user", "content": "x"}]}),
            json!({"model": null, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": 3, "messages": [{"role": "user", "content": "x"}]}),
        ] {
            assert_eq!(req_err(body).param.as_deref(), Some("model"));
        }
    }

    #[test]
    fn max_tokens_precedence_default_and_validation() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        let out = req_ok(
            json!({"model": "m", "messages": msgs, "max_completion_tokens": 10, "max_tokens": 20}),
        );
        assert_eq!(out["max_tokens"], 10);
        let out = req_ok(
            json!({"model": "m", "messages": msgs, "max_completion_tokens": null, "max_tokens": 20}),
        );
        assert_eq!(out["max_tokens"], 20);
        let out = req_ok(json!({"model": "m", "messages": msgs}));
        assert_eq!(out["max_tokens"], 4096);
        for (key, bad) in [
            ("max_completion_tokens", json!(0)),
            ("max_completion_tokens", json!(-5)),
            ("max_tokens", json!("100")),
            ("max_tokens", json!(1.5)),
        ] {
            let mut body = obj(json!({"model": "m", "messages": msgs}));
            body.insert(key.to_owned(), bad);
            let e = translate_request(&body, 4096).expect_err("must reject");
            assert_eq!(e.param.as_deref(), Some(key));
        }
        let e = translate_request(&obj(json!({"model": "m", "messages": msgs})), 0)
            .expect_err("a zero default must not reach Anthropic");
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn stop_becomes_stop_sequences() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        let out = req_ok(json!({"model": "m", "messages": msgs, "stop": "END"}));
        assert_eq!(out["stop_sequences"], json!(["END"]));
        let out = req_ok(json!({"model": "m", "messages": msgs, "stop": ["a", "b"]}));
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        for stop in [json!(null), json!([])] {
            let out = req_ok(json!({"model": "m", "messages": msgs, "stop": stop}));
            assert!(out.get("stop_sequences").is_none());
            assert!(out.get("stop").is_none());
        }
        for stop in [json!(1), json!(["a", 2]), json!({"a": 1})] {
            let e = req_err(json!({"model": "m", "messages": msgs, "stop": stop}));
            assert_eq!(e.param.as_deref(), Some("stop"));
        }
    }

    #[test]
    fn temperature_is_clamped_into_anthropic_range() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        let t = |v: Value| {
            req_ok(json!({"model": "m", "messages": msgs, "temperature": v}))["temperature"].clone()
        };
        assert_eq!(t(json!(1.7)), json!(1.0));
        assert_eq!(t(json!(2)), json!(1.0));
        assert_eq!(t(json!(-0.5)), json!(0.0));
        assert_eq!(t(json!(0.3)), json!(0.3));
        assert_eq!(t(json!(0)), json!(0));
        let out = req_ok(json!({"model": "m", "messages": msgs, "temperature": null}));
        assert!(out.get("temperature").is_none());
        let e = req_err(json!({"model": "m", "messages": msgs, "temperature": "hot"}));
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }

    #[test]
    fn sampling_user_and_stream_pass_through() {
        let out = req_ok(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "top_p": 0.9, "top_k": 40, "user": "u-42", "stream": true
        }));
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["top_k"], 40);
        assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
        assert_eq!(out["stream"], true);
        assert!(out.get("user").is_none());

        let out = req_ok(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "safety_identifier": "s-1", "stream": false}),
        );
        assert_eq!(out["metadata"], json!({"user_id": "s-1"}));
        assert_eq!(out["stream"], false);

        for (key, bad) in [
            ("top_p", json!("x")),
            ("top_k", json!(-1)),
            ("user", json!(5)),
            ("stream", json!("yes")),
        ] {
            let mut body =
                obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
            body.insert(key.to_owned(), bad);
            let e = translate_request(&body, 100).expect_err("must reject");
            assert_eq!(e.param.as_deref(), Some(key));
        }
    }

    #[test]
    fn unsupported_features_are_rejected() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        for (key, bad) in [
            ("n", json!(2)),
            ("n", json!(0)),
            ("n", json!("1")),
            ("logprobs", json!(true)),
            ("logprobs", json!("yes")),
            ("response_format", json!({"type": "json_object"})),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
            ),
            ("response_format", json!("text")),
        ] {
            let mut body = obj(json!({"model": "m", "messages": msgs}));
            body.insert(key.to_owned(), bad);
            let e = translate_request(&body, 100).expect_err("must reject");
            assert_eq!(e.param.as_deref(), Some(key));
        }
        let out = req_ok(json!({
            "model": "m", "messages": msgs, "n": 1, "logprobs": false, "response_format": {"type": "text"}
        }));
        assert!(
            out.get("n").is_none()
                && out.get("logprobs").is_none()
                && out.get("response_format").is_none()
        );
    }

    #[test]
    fn openai_only_and_unknown_fields_are_dropped() {
        let out = req_ok(json!({
            "model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}],
            "frequency_penalty": 0.5, "presence_penalty": 0.1, "seed": 7, "logit_bias": {"1": 2},
            "stream_options": {"include_usage": true}, "top_logprobs": null, "service_tier": "auto",
            "reasoning_effort": "low", "metadata": {"a": "b"}, "store": true, "whatever": [1]
        }));
        let mut keys: Vec<&str> = out
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, ["max_tokens", "messages", "model"]);
        assert_eq!(out["messages"], json!([{"role": "user", "content": "x"}]));
    }

    #[test]
    fn tools_and_tool_choice_translate() {
        let tools = json!([
            {"type": "function", "function": {"name": "wx", "description": "Weather", "strict": true,
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}},
            {"type": "function", "function": {"name": "loose", "parameters": {}}}
        ]);
        let expected_tools = json!([
            {"name": "wx", "description": "Weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            {"name": "loose", "input_schema": {"type": "object"}}
        ]);
        let cases = [
            (json!(null), json!(null), Value::Null),
            (json!("auto"), json!(null), json!({"type": "auto"})),
            (json!("required"), json!(null), json!({"type": "any"})),
            (json!("none"), json!(null), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "wx"}}),
                json!(null),
                json!({"type": "tool", "name": "wx"}),
            ),
            (json!(null), json!(true), Value::Null),
            (
                json!(null),
                json!(false),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            ),
            (
                json!("required"),
                json!(false),
                json!({"type": "any", "disable_parallel_tool_use": true}),
            ),
            (
                json!({"type": "function", "function": {"name": "wx"}}),
                json!(false),
                json!({"type": "tool", "name": "wx", "disable_parallel_tool_use": true}),
            ),
            (json!("none"), json!(false), json!({"type": "none"})),
        ];
        for (choice, parallel, expected_choice) in cases {
            let out = req_ok(json!({
                "model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools,
                "tool_choice": choice, "parallel_tool_calls": parallel
            }));
            assert_eq!(out["tools"], expected_tools);
            assert_eq!(
                out.get("tool_choice").cloned().unwrap_or(Value::Null),
                expected_choice,
                "{choice} {parallel}"
            );
        }
    }

    #[test]
    fn tool_choice_without_tools_is_dropped() {
        for tools in [json!(null), json!([])] {
            let out = req_ok(json!({
                "model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools,
                "tool_choice": "required", "parallel_tool_calls": false
            }));
            assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
        }
    }

    #[test]
    fn bad_tools_and_tool_choice_are_rejected() {
        let good_tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let cases = [
            (json!({"tools": "x"}), "tools"),
            (json!({"tools": [1]}), "tools[0]"),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"tools": [{"type": "function"}]}),
                "tools[0].function",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": ""}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]}),
                "tools[0].function.description",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"tools": good_tools, "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"tools": good_tools, "tool_choice": {"type": "function"}}),
                "tool_choice",
            ),
            (
                json!({"tools": good_tools, "tool_choice": {"type": "allowed_tools"}}),
                "tool_choice",
            ),
            (
                json!({"tools": good_tools, "tool_choice": 1}),
                "tool_choice",
            ),
            (
                json!({"tools": good_tools, "parallel_tool_calls": "no"}),
                "parallel_tool_calls",
            ),
        ];
        for (extra, param) in cases {
            let mut body =
                obj(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
            body.extend(obj(extra.clone()));
            let e = translate_request(&body, 100).expect_err("must reject");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
        }
    }

    // ---- response -----------------------------------------------------------------------

    #[test]
    fn doc_response_translates_exactly() {
        let body = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"18C."}],
 "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;
        let (out, usage) = translate_response(body, 1_735_689_600).expect("valid message");
        assert_eq!(
            out,
            json!({
                "id": "msg_01", "object": "chat.completion", "created": 1_735_689_600u64,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "18C."},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56,
                          "prompt_tokens_details": {"cached_tokens": 0}}
            })
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 50,
                completion_tokens: 6,
                cached_tokens: 0
            }
        );
    }

    #[test]
    fn tool_use_response_and_cache_usage() {
        let body = json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {"type": "tool_use", "id": "toolu_1", "name": "wx", "input": {"city": "Paris", "days": [1, 2]}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 20, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100}
        });
        let (out, usage) =
            translate_response(body.to_string().as_bytes(), 1).expect("valid message");
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], "Let me check.");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        let calls = message["tool_calls"].as_array().expect("tool_calls array");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["id"], "toolu_1");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "wx");
        let args: Value = serde_json::from_str(
            calls[0]["function"]["arguments"]
                .as_str()
                .expect("string args"),
        )
        .expect("arguments are JSON");
        assert_eq!(args, json!({"city": "Paris", "days": [1, 2]}));
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 115,
                completion_tokens: 20,
                cached_tokens: 100
            }
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 115, "completion_tokens": 20, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}})
        );
    }

    #[test]
    fn response_without_text_has_null_content_and_no_tool_calls_key() {
        let body = br#"{"id":"m","type":"message","model":"c","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":0,"cache_read_input_tokens":null}}"#;
        let (out, usage) = translate_response(body, 0).expect("valid");
        assert_eq!(
            out["choices"][0]["message"],
            json!({"role": "assistant", "content": null})
        );
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 1,
                completion_tokens: 0,
                cached_tokens: 0
            }
        );
    }

    #[test]
    fn stop_reason_mapping() {
        for (reason, expected) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("brand_new_reason", "stop"),
        ] {
            let body = json!({"id": "m", "type": "message", "model": "c", "content": [], "stop_reason": reason});
            let (out, _) = translate_response(body.to_string().as_bytes(), 0).expect("valid");
            assert_eq!(out["choices"][0]["finish_reason"], expected, "{reason}");
        }
    }

    #[test]
    fn invalid_response_bodies_are_errors() {
        let bodies: [&[u8]; 11] = [
            b"",
            b"not json",
            b"[]",
            b"{}",
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            br#"{"id":"m","type":"message","model":"c"}"#,
            br#"{"id":"m","type":"message","model":"c","content":"hi"}"#,
            br#"{"id":1,"type":"message","model":"c","content":[]}"#,
            br#"{"id":"m","type":"message","model":"c","content":[{"type":"text"}]}"#,
            br#"{"id":"m","type":"message","model":"c","content":[],"usage":{"input_tokens":-1}}"#,
            b"\xff\xfe\x00garbage",
        ];
        for body in bodies {
            assert!(
                translate_response(body, 0).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    // ---- errors -------------------------------------------------------------------------

    fn anthropic_error(kind: &str, message: &str) -> Vec<u8> {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn error_types_map_to_openai() {
        let cases = [
            (
                400,
                "invalid_request_error",
                400,
                "invalid_request_error",
                Value::Null,
            ),
            (
                401,
                "authentication_error",
                401,
                "authentication_error",
                json!("invalid_api_key"),
            ),
            (
                402,
                "billing_error",
                402,
                "billing_error",
                json!("insufficient_quota"),
            ),
            (
                403,
                "permission_error",
                403,
                "permission_error",
                json!("permission_denied"),
            ),
            (
                404,
                "not_found_error",
                404,
                "not_found_error",
                json!("model_not_found"),
            ),
            (
                413,
                "request_too_large",
                413,
                "invalid_request_error",
                json!("request_too_large"),
            ),
            (
                429,
                "rate_limit_error",
                429,
                "rate_limit_error",
                json!("rate_limit_exceeded"),
            ),
            (500, "api_error", 500, "server_error", Value::Null),
            (504, "timeout_error", 504, "server_error", json!("timeout")),
            (
                529,
                "overloaded_error",
                503,
                "server_error",
                json!("overloaded"),
            ),
            (418, "teapot_error", 418, "teapot_error", Value::Null),
        ];
        for (status, kind, want_status, want_type, want_code) in cases {
            let (s, v) = translate_error(status, &anthropic_error(kind, "boom"));
            assert_eq!(s, want_status, "{kind}");
            assert_eq!(
                v,
                json!({"error": {"message": "boom", "type": want_type, "param": null, "code": want_code}}),
                "{kind}"
            );
        }
    }

    #[test]
    fn non_json_and_odd_error_bodies_get_generic_messages() {
        let (s, v) = translate_error(502, b"<html>Bad Gateway</html>");
        assert_eq!(s, 502);
        assert_eq!(
            v["error"]["message"],
            "Anthropic returned HTTP 502: <html>Bad Gateway</html>"
        );
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["param"], Value::Null);

        let (s, v) = translate_error(529, b"");
        assert_eq!(s, 503);
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 529");
        assert_eq!(v["error"]["code"], "overloaded");

        let (_, v) = translate_error(429, b"slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");

        let (_, v) = translate_error(401, br#"{"error":{"message":"bad key"}}"#);
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "bad key");

        let (_, v) = translate_error(400, br#"{"error":{"type":"invalid_request_error"}}"#);
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 400");

        let (_, v) = translate_error(400, br#"{"error":"plain"}"#);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Anthropic returned HTTP 400")));
    }

    #[test]
    fn raw_body_echo_is_bounded() {
        let big = "é".repeat(2000);
        let (_, v) = translate_error(500, big.as_bytes());
        let message = v["error"]["message"].as_str().expect("message");
        let echoed = message.trim_start_matches("Anthropic returned HTTP 500: ");
        assert!(echoed.len() <= MAX_ECHO_BYTES && !echoed.is_empty());

        let (_, v) = translate_error(500, &anthropic_error("api_error", &"x".repeat(10_000)));
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() <= MAX_ECHO_BYTES));

        let (_, v) = translate_error(500, b"\xff\xfe\xfd");
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 500");
    }

    #[test]
    fn non_error_statuses_become_bad_gateway() {
        for status in [0, 200, 302, 600, u16::MAX] {
            let (s, v) = translate_error(status, b"{}");
            assert_eq!(s, 502, "{status}");
            assert!(v["error"]["message"].is_string());
        }
        let (s, v) = translate_error(200, &anthropic_error("overloaded_error", "Overloaded"));
        assert_eq!(s, 502);
        assert_eq!(v["error"]["code"], "overloaded");
    }

    // ---- streaming ----------------------------------------------------------------------

    const DOC_STREAM: &[(&str, &str)] = &[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type":"ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"wx","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Paris\"}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":32}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
        (
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
    ];

    fn replay(t: &mut StreamTranslator, events: &[(&str, &str)]) -> Vec<StreamOutput> {
        let mut out = Vec::new();
        for (event, data) in events {
            t.on_event(event, data, &mut out);
        }
        out
    }

    fn chunk(s: &str) -> StreamOutput {
        StreamOutput::Chunk(s.to_owned())
    }

    #[test]
    fn doc_stream_replay_with_usage() {
        let mut t = StreamTranslator::new(true, 1_735_689_600, "claude-sonnet-4-5");
        let out = replay(&mut t, DOC_STREAM);
        let head = r#"{"id":"msg_01","object":"chat.completion.chunk","created":1735689600,"model":"claude-sonnet-4-5","choices":"#;
        let expected = vec![
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"content":"Hi."}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"toolu_01","type":"function","function":{{"name":"wx","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"city\":\"Paris\"}}"}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[],"usage":{{"prompt_tokens":50,"completion_tokens":32,"total_tokens":82}}}}"#
            )),
            StreamOutput::Done,
        ];
        assert_eq!(out, expected);
        assert!(t.has_content());
        assert_eq!(
            t.usage(),
            Usage {
                prompt_tokens: 50,
                completion_tokens: 32,
                cached_tokens: 0
            }
        );
        assert_eq!(t.finish_reason(), Some("tool_calls"));
    }

    #[test]
    fn doc_stream_replay_without_usage() {
        let mut t = StreamTranslator::new(false, 7, "fallback");
        let out = replay(&mut t, DOC_STREAM);
        assert_eq!(out.len(), 6, "no usage chunk without include_usage");
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        for o in &out[..5] {
            let StreamOutput::Chunk(s) = o else {
                panic!("expected chunk, got {o:?}")
            };
            let v: Value = serde_json::from_str(s).expect("chunk is JSON");
            assert!(v.get("usage").is_none(), "{s}");
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["created"], 7);
            assert_eq!(v["model"], "claude-sonnet-4-5");
            assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        }
        assert_eq!(
            out[0],
            chunk(
                r#"{"id":"msg_01","object":"chat.completion.chunk","created":7,"model":"claude-sonnet-4-5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
            )
        );
        // Usage is tracked for the router even when the client did not ask for it.
        assert_eq!(t.usage().completion_tokens, 32);
    }

    fn chunks_as_values(out: &[StreamOutput]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                StreamOutput::Chunk(s) => Some(serde_json::from_str(s).expect("chunk is JSON")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_call_ordinals_are_dense_and_deltas_route_by_block_index() {
        let mut t = StreamTranslator::new(false, 0, "m");
        let out = replay(
            &mut t,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"msg","model":"c","usage":{"input_tokens":3,"cache_read_input_tokens":4,"cache_creation_input_tokens":5}}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t_a","name":"a","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"q\":1}"}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"t_b","name":"b","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"x\""}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":":1}"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
                ),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        );
        let chunks = chunks_as_values(&out);
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"tool_calls": [{"index": 0, "id": "t_a", "type": "function", "function": {"name": "a", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 1, "id": "t_b", "type": "function", "function": {"name": "b", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"x\""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                &json!({"tool_calls": [{"index": 1, "function": {"arguments": ":1}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        assert_eq!(
            t.usage(),
            Usage {
                prompt_tokens: 12,
                completion_tokens: 9,
                cached_tokens: 4
            }
        );
    }

    #[test]
    fn has_content_only_after_content() {
        let mut t = StreamTranslator::new(false, 0, "m");
        let mut out = Vec::new();
        t.on_event("message_start", DOC_STREAM[0].1, &mut out);
        t.on_event("ping", "{}", &mut out);
        t.on_event("content_block_start", DOC_STREAM[1].1, &mut out);
        t.on_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#,
            &mut out,
        );
        assert!(!t.has_content());
        assert_eq!(out.len(), 1);
        assert_eq!(t.finish_reason(), None);
        t.on_event("content_block_delta", DOC_STREAM[3].1, &mut out);
        assert!(t.has_content());
    }

    #[test]
    fn empty_event_name_uses_data_type() {
        let mut named = StreamTranslator::new(true, 5, "m");
        let mut unnamed = StreamTranslator::new(true, 5, "m");
        let named_out = replay(&mut named, DOC_STREAM);
        let events: Vec<(&str, &str)> = DOC_STREAM.iter().map(|(_, d)| ("", *d)).collect();
        let unnamed_out = replay(&mut unnamed, &events);
        assert_eq!(named_out, unnamed_out);
        // JSON without a type is an unknown event, not an error.
        let mut out = Vec::new();
        StreamTranslator::new(false, 0, "m").on_event("", r#"{"hello":1}"#, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fallback_model_until_message_start_reports_one() {
        let mut t = StreamTranslator::new(false, 0, "asked-for");
        let out = replay(
            &mut t,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"msg_9","usage":{"input_tokens":1}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\n\"b\""}}"#,
                ),
            ],
        );
        let chunks = chunks_as_values(&out);
        assert_eq!(chunks[0]["model"], "asked-for");
        assert_eq!(chunks[0]["id"], "msg_9");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "a\n\"b\"");
    }

    #[test]
    fn stream_without_message_start_or_message_delta_still_opens_and_finishes() {
        let mut t = StreamTranslator::new(true, 0, "m");
        let out = replay(
            &mut t,
            &[
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        );
        let chunks = chunks_as_values(&out);
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "x"}));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        assert_eq!(t.finish_reason(), Some("stop"));
    }

    #[test]
    fn message_delta_finish_reasons_and_usage_updates() {
        for (reason, expected) in [
            (json!("end_turn"), "stop"),
            (json!("max_tokens"), "length"),
            (json!("refusal"), "content_filter"),
            (json!("pause_turn"), "stop"),
            (json!(null), "stop"),
        ] {
            let mut t = StreamTranslator::new(false, 0, "m");
            let data = json!({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 4, "input_tokens": 8, "cache_read_input_tokens": 2}}).to_string();
            let out = replay(
                &mut t,
                &[("message_start", DOC_STREAM[0].1), ("message_delta", &data)],
            );
            let chunks = chunks_as_values(&out);
            assert_eq!(chunks[1]["choices"][0]["finish_reason"], expected);
            assert_eq!(t.finish_reason(), Some(expected));
            assert_eq!(
                t.usage(),
                Usage {
                    prompt_tokens: 10,
                    completion_tokens: 4,
                    cached_tokens: 2
                }
            );
        }
    }

    #[test]
    fn error_event_becomes_openai_error_and_ends_stream() {
        let mut t = StreamTranslator::new(true, 0, "m");
        let out = replay(
            &mut t,
            &[
                ("message_start", DOC_STREAM[0].1),
                (
                    "error",
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ),
                ("content_block_delta", DOC_STREAM[3].1),
                ("message_stop", "{}"),
            ],
        );
        assert_eq!(out.len(), 2);
        let StreamOutput::Error(e) = &out[1] else {
            panic!("expected error, got {:?}", out[1])
        };
        let e: Value = serde_json::from_str(e).expect("error is JSON");
        assert_eq!(
            e,
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
        );
        assert!(!t.has_content());

        for data in ["", "garbage", r#"{"type":"error"}"#] {
            let mut out = Vec::new();
            StreamTranslator::new(false, 0, "m").on_event("error", data, &mut out);
            let [StreamOutput::Error(e)] = out.as_slice() else {
                panic!("expected one error for {data:?}")
            };
            let e: Value = serde_json::from_str(e).expect("error is JSON");
            assert_eq!(e["error"]["type"], "server_error");
        }
        let mut out = Vec::new();
        StreamTranslator::new(false, 0, "m").on_event(
            "error",
            r#"{"error":{"type":"rate_limit_error","message":"slow"}}"#,
            &mut out,
        );
        let [StreamOutput::Error(e)] = out.as_slice() else {
            panic!("expected one error")
        };
        let e: Value = serde_json::from_str(e).expect("error is JSON");
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn malformed_events_produce_a_server_error_once() {
        let cases = [
            ("message_start", "not json"),
            ("message_start", r#"{"type":"message_start"}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"x"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":0,"delta":{"type":"text_delta"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":0,"delta":{"type":"text_delta","text":5}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":"0","delta":{"type":"text_delta","text":"x"}}"#,
            ),
            ("message_delta", r#"{"usage":{"output_tokens":"many"}}"#),
            ("", "{{{"),
        ];
        for (event, data) in cases {
            let mut t = StreamTranslator::new(false, 0, "m");
            let mut out = Vec::new();
            t.on_event(event, data, &mut out);
            t.on_event("content_block_delta", DOC_STREAM[3].1, &mut out);
            let [StreamOutput::Error(e)] = out.as_slice() else {
                panic!("{event} {data}: {out:?}")
            };
            let e: Value = serde_json::from_str(e).expect("error is JSON");
            assert_eq!(e["error"]["type"], "server_error");
            assert!(e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed")));
        }
        // Events whose payload is not needed are not judged.
        let mut out = Vec::new();
        let mut t = StreamTranslator::new(false, 0, "m");
        for event in ["ping", "content_block_stop", "brand_new_event"] {
            t.on_event(event, "garbage", &mut out);
        }
        assert!(out.is_empty());
    }

    // ---- robustness ---------------------------------------------------------------------

    /// xorshift64*: deterministic garbage without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| (self.next() >> 56) as u8).collect()
        }
    }

    fn weird_values() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(1.5e300),
            json!(u64::MAX),
            json!(""),
            json!("data:"),
            json!("data:;base64,"),
            json!("é"),
            json!([]),
            json!([null, 1, "x", {}]),
            json!({}),
            json!({"type": "function", "function": {"name": "f"}}),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:\u{e9};base64,\u{e9}"}}]}]),
            json!([{"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "\u{0}"}}]}]),
        ]
    }

    #[test]
    fn translate_request_never_panics_on_wrong_types() {
        let keys = [
            "model",
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "temperature",
            "top_p",
            "top_k",
            "user",
            "safety_identifier",
            "stream",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "n",
            "logprobs",
            "response_format",
            "stream_options",
        ];
        let valid = obj(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "r"}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}]
        }));
        for key in keys {
            for value in weird_values() {
                let mut body = valid.clone();
                body.insert(key.to_owned(), value);
                let _ = translate_request(&body, 1);
                let _ = translate_request(&body, 0);
                let _ = translate_request(&body, u64::MAX);
            }
        }
        // Wrong types inside each message field too.
        for (i, field) in [
            (1, "content"),
            (1, "role"),
            (2, "tool_calls"),
            (2, "content"),
            (3, "tool_call_id"),
            (3, "content"),
        ] {
            for value in weird_values() {
                let mut body = valid.clone();
                if let Some(msg) = body
                    .get_mut("messages")
                    .and_then(|m| m.get_mut(i))
                    .and_then(Value::as_object_mut)
                {
                    msg.insert(field.to_owned(), value);
                }
                let _ = translate_request(&body, 1);
            }
        }
        let _ = translate_request(&Map::new(), 1);
    }

    #[test]
    fn response_error_and_stream_never_panic_on_garbage() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let samples: Vec<Vec<u8>> = {
            let mut v: Vec<Vec<u8>> = (0..300)
                .map(|i| {
                    let len = (rng.next() % 300) as usize + i % 3;
                    rng.bytes(len)
                })
                .collect();
            // Every prefix of valid documents: truncated upstream bodies are common.
            for doc in DOC_STREAM.iter().map(|(_, d)| d.as_bytes()).chain([
                br#"{"id":"m","type":"message","model":"c","content":[{"type":"tool_use","id":"t","name":"n","input":{"a":[1]}}],"usage":{"input_tokens":1}}"#.as_slice(),
                anthropic_error("rate_limit_error", "slow").as_slice(),
            ]) {
                v.extend((0..doc.len()).map(|n| doc[..n].to_vec()));
            }
            v
        };
        let events = [
            "",
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
            "ping",
            "nonsense",
        ];
        for sample in &samples {
            let _ = translate_response(sample, u64::MAX);
            for status in [0, 200, 400, 429, 500, 529, u16::MAX] {
                let (_, v) = translate_error(status, sample);
                assert!(v["error"]["message"].is_string());
            }
            let text = String::from_utf8_lossy(sample);
            for event in events {
                let mut t = StreamTranslator::new(true, 0, "m");
                let mut out = Vec::new();
                t.on_event(event, &text, &mut out);
                let _ = (t.usage(), t.finish_reason(), t.has_content());
            }
        }
        // Huge counters must saturate instead of overflowing.
        let body = json!({"id": "m", "type": "message", "model": "c", "content": [],
                          "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "output_tokens": u64::MAX}});
        let (out, usage) = translate_response(body.to_string().as_bytes(), 0).expect("valid");
        assert_eq!(usage.prompt_tokens, u64::MAX);
        assert_eq!(out["usage"]["total_tokens"], u64::MAX);
        let mut t = StreamTranslator::new(true, 0, "m");
        let start = json!({"type": "message_start", "message": {"id": "x", "usage": {"input_tokens": u64::MAX, "cache_creation_input_tokens": 5, "output_tokens": u64::MAX}}}).to_string();
        let out = replay(&mut t, &[("message_start", &start), ("message_stop", "")]);
        assert_eq!(out.last(), Some(&StreamOutput::Done));
    }
}
