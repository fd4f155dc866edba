//! Responses request → Chat Completions request.

use serde_json::{json, Map, Value};

use super::{invalid, new_id, object};
use crate::providers::AttemptError;

/// Top-level Responses fields this module translates or deliberately drops; any other field
/// goes to the chat target unchanged (the provider decides).
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "stream",
    // Dropped: router-side, or no chat equivalent.
    "stream_options",
    "metadata",
    "store",
    "previous_response_id",
    "include",
    "truncation",
    "background",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
];

/// A Responses request (the leaf's overrides already merged in) → a Chat Completions body.
///
/// `history` holds the Responses items of the earlier turns (their input and output items, in
/// order, as the router stored them for `previous_response_id`); they come before this
/// request's `input`, after the `instructions` (which are never inherited).
pub fn to_chat(
    req: &Map<String, Value>,
    history: &[Value],
) -> Result<Map<String, Value>, AttemptError> {
    let mut out = Map::new();
    // Unknown fields first, so that a translated field wins over a same-named one.
    for (k, v) in req {
        if !KNOWN.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    for key in ["model", "temperature", "top_p", "user"] {
        if let Some(v) = non_null(req, key) {
            out.insert(key.into(), v.clone());
        }
    }

    let mut messages = Vec::new();
    match req.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(invalid("instructions", "`instructions` must be a string")),
    }
    for (i, item) in history.iter().enumerate() {
        push_item(&mut messages, item, Loc::History(i))?;
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut messages, item, Loc::Input(i))?;
            }
        }
        _ => {
            return Err(invalid(
                "input",
                "`input` must be a string or an array of input items",
            ))
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    let tools = tools(req.get("tools"))?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(req.get("tool_choice"))? {
        // Chat refuses a tool_choice without tools; `auto` and `none` then mean nothing anyway.
        if has_tools || !matches!(choice.as_str(), Some("auto" | "none")) {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(p) = non_null(req, "parallel_tool_calls") {
        // Chat refuses parallel_tool_calls without tools too.
        if has_tools {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    if let Some(format) = response_format(req.get("text"))? {
        out.insert("response_format".into(), format);
    }
    match req.get("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            if let Some(effort) = non_null(r, "effort") {
                out.insert("reasoning_effort".into(), effort.clone());
            }
        }
        Some(_) => return Err(invalid("reasoning", "`reasoning` must be an object")),
    }
    if let Some(max) = non_null(req, "max_output_tokens") {
        out.insert("max_completion_tokens".into(), max.clone());
    }
    if req.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// This request's `input` as Responses items, for the router to store: a string becomes one
/// user message, a message without `type` gets `"type":"message"`, string message content
/// becomes one text part, and every item without an `id` gets a fresh one.
pub fn input_items(req: &Map<String, Value>) -> Result<Vec<Value>, AttemptError> {
    match req.get("input") {
        Some(Value::String(s)) => Ok(vec![json!({
            "type": "message",
            "id": new_id("msg_"),
            "role": "user",
            "content": [{"type": "input_text", "text": s}],
        })]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let Value::Object(item) = item else {
                    return Err(invalid(
                        format!("input[{i}]"),
                        "each input item must be an object",
                    ));
                };
                let mut item = item.clone();
                if !item.contains_key("type") && item.contains_key("role") {
                    item.insert("type".into(), "message".into());
                }
                let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
                let is_message = kind == "message";
                let prefix = match kind {
                    "message" => "msg_",
                    "function_call" | "function_call_output" => "fc_",
                    "reasoning" => "rs_",
                    _ => "item_",
                };
                if is_message {
                    if let Some(Value::String(text)) = item.get("content") {
                        let part = if item.get("role").and_then(Value::as_str) == Some("assistant")
                        {
                            "output_text"
                        } else {
                            "input_text"
                        };
                        let content = json!([{"type": part, "text": text}]);
                        item.insert("content".into(), content);
                    }
                }
                if item.get("id").is_none_or(Value::is_null) {
                    item.insert("id".into(), new_id(prefix).into());
                }
                Ok(Value::Object(item))
            })
            .collect(),
        _ => Err(invalid(
            "input",
            "`input` must be a string or an array of input items",
        )),
    }
}

fn non_null<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// Where an item comes from, for error messages.
#[derive(Clone, Copy)]
enum Loc {
    /// `input[i]` of this request.
    Input(usize),
    /// Item `i` of the stored conversation `previous_response_id` names.
    History(usize),
}

impl Loc {
    /// `field` continues the item's path: `""`, `".call_id"`, `".content[1].type"`.
    fn err(self, field: &str, message: impl Into<String>) -> AttemptError {
        match self {
            Loc::Input(i) => invalid(format!("input[{i}]{field}"), message),
            Loc::History(i) => invalid(
                "previous_response_id",
                format!(
                    "{} (item {i}{field} of the stored conversation)",
                    message.into()
                ),
            ),
        }
    }
}

fn str_field<'a>(
    item: &'a Map<String, Value>,
    key: &str,
    loc: Loc,
    what: &str,
) -> Result<&'a str, AttemptError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| loc.err(&format!(".{key}"), format!("{what} needs a string `{key}`")))
}

/// Appends the chat message(s) for one Responses item.
fn push_item(messages: &mut Vec<Value>, item: &Value, loc: Loc) -> Result<(), AttemptError> {
    let Value::Object(item) = item else {
        return Err(loc.err("", "each input item must be an object"));
    };
    let kind = match item.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None | Some(Value::Null) if item.contains_key("role") => "message",
        _ => return Err(loc.err(".type", "each input item needs a string `type`")),
    };
    match kind {
        "message" => messages.push(message(item, loc)?),
        "function_call" => {
            let call_id = str_field(item, "call_id", loc, "a `function_call` item")?;
            let name = str_field(item, "name", loc, "a `function_call` item")?;
            let arguments = match item.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let call = json!({
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            });
            // Consecutive calls, and calls right after the assistant's text, are one chat turn.
            let last = messages
                .last_mut()
                .and_then(Value::as_object_mut)
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
            match last {
                Some(last) => match last.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        last.insert("tool_calls".into(), Value::Array(vec![call]));
                    }
                },
                None => messages.push(json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [call],
                })),
            }
        }
        "function_call_output" => {
            let call_id = str_field(item, "call_id", loc, "a `function_call_output` item")?;
            let content = match item.get("output") {
                None | Some(Value::Null) => {
                    return Err(
                        loc.err(".output", "a `function_call_output` item needs an `output`")
                    )
                }
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => match all_text(parts) {
                    Some(text) => text,
                    None => Value::Array(parts.clone()).to_string(),
                },
                Some(other) => other.to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
        }
        // Chat has no place for reasoning items (their encrypted content is OpenAI's).
        "reasoning" => {}
        other => {
            return Err(loc.err(
                ".type",
                format!(
                    "input item type `{other}` cannot be sent to this target: it speaks Chat \
                     Completions, which knows only `message`, `function_call` and \
                     `function_call_output` items"
                ),
            ))
        }
    }
    Ok(())
}

/// The concatenated text of parts that are all text parts.
fn all_text(parts: &[Value]) -> Option<String> {
    let mut text = String::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                text.push_str(p.get("text").and_then(Value::as_str)?)
            }
            _ => return None,
        }
    }
    Some(text)
}

fn message(item: &Map<String, Value>, loc: Loc) -> Result<Value, AttemptError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system")) => r,
        Some("developer") => "system",
        _ => {
            return Err(loc.err(
                ".role",
                "a message's `role` must be `user`, `assistant`, `system` or `developer`",
            ))
        }
    };
    let content = match item.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => content_parts(parts, loc)?,
        _ => {
            return Err(loc.err(
                ".content",
                "a message's `content` must be a string or an array of content parts",
            ))
        }
    };
    Ok(object([("role", role.into()), ("content", content)]))
}

fn content_parts(parts: &[Value], loc: Loc) -> Result<Value, AttemptError> {
    let mut out = Vec::with_capacity(parts.len());
    let mut only_text = true;
    for (j, part) in parts.iter().enumerate() {
        let at = |field: &str| format!(".content[{j}]{field}");
        let Value::Object(part) = part else {
            return Err(loc.err(&at(""), "each content part must be an object"));
        };
        let text_of = |key: &str| {
            part.get(key).and_then(Value::as_str).ok_or_else(|| {
                loc.err(
                    &at(&format!(".{key}")),
                    format!("this content part needs a string `{key}`"),
                )
            })
        };
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text") => {
                out.push(json!({"type": "text", "text": text_of("text")?}));
            }
            Some("refusal") => {
                only_text = false;
                out.push(json!({"type": "refusal", "refusal": text_of("refusal")?}));
            }
            Some("input_image") => {
                only_text = false;
                let Some(url) = non_null(part, "image_url") else {
                    return Err(loc.err(
                        &at(".image_url"),
                        "an `input_image` needs an `image_url` here: a target that speaks \
                         Chat Completions cannot read OpenAI file ids",
                    ));
                };
                let mut image = Map::new();
                image.insert("url".into(), url.clone());
                if let Some(detail) = non_null(part, "detail") {
                    image.insert("detail".into(), detail.clone());
                }
                out.push(object([
                    ("type", "image_url".into()),
                    ("image_url", Value::Object(image)),
                ]));
            }
            Some("input_file") => {
                only_text = false;
                let mut file = Map::new();
                for key in ["file_id", "file_data", "filename"] {
                    if let Some(v) = non_null(part, key) {
                        file.insert(key.into(), v.clone());
                    }
                }
                if !file.contains_key("file_id") && !file.contains_key("file_data") {
                    return Err(loc.err(
                        &at(""),
                        "an `input_file` needs a `file_id` or `file_data` here (a target that \
                         speaks Chat Completions cannot fetch a `file_url`)",
                    ));
                }
                out.push(object([
                    ("type", "file".into()),
                    ("file", Value::Object(file)),
                ]));
            }
            Some(other) => {
                return Err(loc.err(
                    &at(".type"),
                    format!("content part type `{other}` cannot be sent to this target"),
                ))
            }
            None => return Err(loc.err(&at(".type"), "each content part needs a `type`")),
        }
    }
    if only_text {
        // Plain text is what every chat server accepts, even for system messages.
        let text: String = out
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Ok(Value::String(text));
    }
    Ok(Value::Array(out))
}

/// Flat function tools → chat's nested ones; built-in tools are the client's 400.
fn tools(tools: Option<&Value>) -> Result<Vec<Value>, AttemptError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid("tools", "`tools` must be an array")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str);
        let Some(Value::Object(tool)) = Some(tool).filter(|_| kind == Some("function")) else {
            let message = match kind {
                Some(kind) => format!(
                    "tool type `{kind}` is run by OpenAI's own Responses API only; this target \
                     speaks Chat Completions, where only `function` tools exist"
                ),
                None => "each tool needs a string `type`".to_owned(),
            };
            return Err(invalid(format!("tools[{i}].type"), message));
        };
        let Some(name) = non_null(tool, "name").filter(|n| n.is_string()) else {
            return Err(invalid(
                format!("tools[{i}].name"),
                "a `function` tool needs a string `name`",
            ));
        };
        let mut function = Map::new();
        function.insert("name".into(), name.clone());
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = non_null(tool, key) {
                function.insert(key.into(), v.clone());
            }
        }
        out.push(object([
            ("type", "function".into()),
            ("function", Value::Object(function)),
        ]));
    }
    Ok(out)
}

fn tool_choice(choice: Option<&Value>) -> Result<Option<Value>, AttemptError> {
    let bad = || {
        invalid(
            "tool_choice",
            "`tool_choice` must be `none`, `auto`, `required` or {\"type\":\"function\",\"name\":…} \
             for a target that speaks Chat Completions",
        )
    };
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "none" | "auto" | "required") => {
            Ok(Some(Value::String(s.clone())))
        }
        Some(Value::Object(c)) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(Some(
                json!({"type": "function", "function": {"name": name}}),
            ))
        }
        Some(_) => Err(bad()),
    }
}

/// `text.format` → chat's `response_format` (none for plain text).
fn response_format(text: Option<&Value>) -> Result<Option<Value>, AttemptError> {
    let format = match text {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(t)) => match t.get("format") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(f)) => f,
            Some(_) => return Err(invalid("text.format", "`text.format` must be an object")),
        },
        Some(_) => return Err(invalid("text", "`text` must be an object")),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = non_null(format, key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(object([
                ("type", "json_schema".into()),
                ("json_schema", Value::Object(schema)),
            ])))
        }
        _ => Err(invalid(
            "text.format.type",
            "`text.format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureClass;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn chat(req: Value) -> Value {
        Value::Object(to_chat(&obj(req), &[]).unwrap())
    }

    fn param_of(req: Value, history: &[Value]) -> String {
        let e = to_chat(&obj(req), history).unwrap_err();
        assert_eq!((e.status, e.class), (400, FailureClass::Client));
        assert_eq!(e.kind, "invalid_request_error");
        e.param.unwrap()
    }

    #[test]
    fn the_wire_doc_fixture_becomes_a_chat_body_with_a_nested_tool() {
        let req = json!({"model":"gpt-4o-mini","input":"Weather in Paris?","tools":[{"type":"function","name":"wx","parameters":{"type":"object"},"strict":false}]});
        assert_eq!(
            chat(req),
            json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Weather in Paris?"}],
                "tools": [{"type": "function", "function": {"name": "wx", "parameters": {"type": "object"}, "strict": false}}],
            })
        );
    }

    #[test]
    fn instructions_lead_and_string_input_is_one_user_message() {
        let req = json!({"model": "m", "instructions": "Be brief.", "input": "Hi",
            "max_output_tokens": 50, "reasoning": {"effort": "low", "summary": "auto"},
            "temperature": 0.2, "top_p": 0.9, "user": "u1", "stream": true,
            "stream_options": {"include_obfuscation": false}, "metadata": {"a": "b"},
            "store": true, "previous_response_id": "resp_x", "include": ["reasoning.encrypted_content"],
            "truncation": "auto", "background": false, "prompt_cache_key": "k",
            "safety_identifier": "s", "service_tier": "auto", "text": {"format": {"type": "text"}, "verbosity": "low"},
            "parallel_tool_calls": false, "seed": 7});
        assert_eq!(
            chat(req),
            json!({
                "model": "m",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_completion_tokens": 50,
                "reasoning_effort": "low",
                "temperature": 0.2,
                "top_p": 0.9,
                "user": "u1",
                "stream": true,
                "stream_options": {"include_usage": true},
                // Unknown fields pass through.
                "seed": 7,
            })
        );
    }

    #[test]
    fn image_file_and_text_parts() {
        let req = json!({"model": "m", "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"},
                {"type": "input_file", "file_id": "file-1"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,BBB", "filename": "a.pdf"},
            ]},
            {"role": "developer", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}], "id": "msg_1", "status": "completed"},
        ]});
        assert_eq!(
            chat(req)["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,BBB", "filename": "a.pdf"}},
                ]},
                {"role": "system", "content": "ab"},
                {"role": "assistant", "content": "ok"},
            ])
        );
    }

    #[test]
    fn function_calls_round_trip_and_consecutive_calls_merge() {
        let req = json!({"model": "m", "input": [
            {"type": "message", "role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "wx", "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_2", "name": "wx", "arguments": {"city": "Rome"}},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": {"temp": 20}},
            {"type": "function_call", "call_id": "call_3", "name": "wx", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_3", "output": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        ]});
        assert_eq!(
            chat(req)["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Rome\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\":20}"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_3", "type": "function", "function": {"name": "wx", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_3", "content": "ab"},
            ])
        );
    }

    #[test]
    fn history_comes_after_instructions_and_before_new_input() {
        let history = [
            json!({"type": "message", "id": "msg_a", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}),
            json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "wx", "arguments": "{}", "status": "completed"}),
        ];
        let req = json!({"model": "m", "instructions": "sys", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "call_1", "output": "18C"}]});
        let out = to_chat(&obj(req), &history).unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            ])
        );
        assert!(!out.contains_key("previous_response_id"));
    }

    #[test]
    fn tool_choice_and_text_formats() {
        let tools = json!([{"type": "function", "name": "wx", "description": "d"}]);
        let out = chat(json!({"model": "m", "input": "x", "tools": tools,
            "tool_choice": {"type": "function", "name": "wx"}, "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true, "description": "dd"}}}));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "wx"}})
        );
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "wx", "description": "d"}}])
        );
        assert_eq!(
            out["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true, "description": "dd"}})
        );
        for choice in ["none", "auto", "required"] {
            let out =
                chat(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": choice}));
            assert_eq!(out["tool_choice"], choice);
        }
        let out =
            chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}));
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        // Without tools, chat refuses these; they mean nothing anyway.
        let out = chat(
            json!({"model": "m", "input": "x", "tools": [], "tool_choice": "auto", "parallel_tool_calls": true}),
        );
        assert!(out.get("tools").is_none());
        assert!(out.get("tool_choice").is_none());
        assert!(out.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn every_error_names_its_param() {
        let cases = [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": 3}), "input"),
            (
                json!({"model": "m", "input": "x", "instructions": 1}),
                "instructions",
            ),
            (
                json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"content": "no role or type"}]}),
                "input[0].type",
            ),
            (json!({"model": "m", "input": ["x"]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": 1}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"role": "user", "content": [{"type": "input_audio"}]}]}),
                "input[1].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
                "input[0].content[0].text",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
                "input[0].content[0].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c"}]}),
                "input[0].name",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
                "input[0].output",
            ),
            (json!({"model": "m", "input": "x", "tools": {}}), "tools"),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}),
                "tools[1].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"name": "f"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "function"}}),
                "tool_choice",
            ),
            (json!({"model": "m", "input": "x", "text": "json"}), "text"),
            (
                json!({"model": "m", "input": "x", "text": {"format": "json"}}),
                "text.format",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": "high"}),
                "reasoning",
            ),
        ];
        for (req, param) in cases {
            assert_eq!(param_of(req.clone(), &[]), param, "{req}");
        }
        // A bad stored item is blamed on previous_response_id.
        let p = param_of(
            json!({"model": "m", "input": "x"}),
            &[json!({"type": "function_call_output", "output": "x"})],
        );
        assert_eq!(p, "previous_response_id");
    }

    #[test]
    fn every_builtin_tool_is_refused_with_a_clear_message() {
        for kind in [
            "web_search",
            "web_search_preview",
            "file_search",
            "code_interpreter",
            "computer_use_preview",
            "image_generation",
            "mcp",
            "local_shell",
        ] {
            let req = json!({"model": "m", "input": "x", "tools": [{"type": kind}]});
            let e = to_chat(&obj(req), &[]).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("tools[0].type"));
            assert!(e.message.contains(kind), "{}", e.message);
            assert!(e.message.contains("OpenAI's own Responses API"));
        }
    }

    #[test]
    fn input_items_are_normalized_and_given_ids() {
        let items = input_items(&obj(json!({"input": "Hi"}))).unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            items[0]["content"],
            json!([{"type": "input_text", "text": "Hi"}])
        );
        assert_eq!(
            (&items[0]["type"], &items[0]["role"]),
            (&json!("message"), &json!("user"))
        );

        let items = input_items(&obj(json!({"input": [
            {"role": "assistant", "content": "before"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "id": "fc_keep", "call_id": "c", "output": "x"},
        ]})))
        .unwrap();
        assert_eq!(items[0]["type"], "message");
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            items[0]["content"],
            json!([{"type": "output_text", "text": "before"}])
        );
        assert!(items[1]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(items[2]["id"], "fc_keep");
        // Stored items replay into the same chat messages.
        let replayed = to_chat(&obj(json!({"input": []})), &items).unwrap();
        assert_eq!(
            replayed["messages"][0],
            json!({"role": "assistant", "content": "before", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );

        for bad in [json!({}), json!({"input": 1}), json!({"input": [1]})] {
            let e = input_items(&obj(bad)).unwrap_err();
            assert!(e.param.unwrap().starts_with("input"));
        }
    }
}
