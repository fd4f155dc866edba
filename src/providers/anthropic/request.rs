//! OpenAI chat request -> Anthropic Messages request.

use super::*;

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::providers::anthropic) fn obj(v: Value) -> Map<String, Value> {
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
}
