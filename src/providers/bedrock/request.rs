//! OpenAI chat request → Converse request body (`messages`, `system`, `inferenceConfig`,
//! `toolConfig`, and Bedrock-native fields passed through). Every refusal is the client's 400
//! naming the parameter.

use serde_json::{json, Map, Value};

use super::{invalid, object};
use crate::providers::AttemptError;

/// Bedrock-native top-level fields a leaf's `override_params` (or the client) may set; they go
/// upstream as given.
const NATIVE: [&str; 5] = [
    "additionalModelRequestFields",
    "guardrailConfig",
    "performanceConfig",
    "requestMetadata",
    "promptVariables",
];

/// Converse needs a `toolConfig` whenever the history holds tool blocks, but has no "none"
/// choice: with `tool_choice: "none"` (or no tools) the only tool offered is this one.
const STUB_TOOL: &str = "llmux_no_tool";

/// The text of an OpenAI content (a string, or parts of which the text ones count).
fn text_parts(content: &Value, param: &str) -> Result<Vec<String>, AttemptError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) != Some("image_url"))
            .map(|p| match (p.get("text"), p.get("refusal")) {
                (Some(Value::String(t)), _) | (_, Some(Value::String(t))) => Ok(t.clone()),
                _ => Err(invalid("content parts must be text here", param)),
            })
            .collect(),
        _ => Err(invalid(
            "content must be a string or an array of parts",
            param,
        )),
    }
}

/// `data:image/png;base64,…` → a Converse image block.
fn image_block(url: &str, param: &str) -> Result<Value, AttemptError> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(invalid(
            "Bedrock takes images inline only: send the image as a base64 data: URL \
             (data:image/png;base64,…), not an http(s) URL",
            param,
        ));
    };
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("malformed data: URL", param))?;
    let mime = meta
        .strip_suffix(";base64")
        .ok_or_else(|| invalid("image data: URLs must be base64", param))?;
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(invalid(
                format!("Bedrock takes png, jpeg, gif and webp images, not `{other}`"),
                param,
            ))
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// A user message's content → Converse blocks.
fn user_blocks(content: &Value, param: &str) -> Result<Vec<Value>, AttemptError> {
    let Value::Array(parts) = content else {
        return Ok(text_parts(content, param)?
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|t| json!({ "text": t }))
            .collect());
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let param = format!("{param}[{i}]");
        match p.get("type").and_then(Value::as_str) {
            Some("text") => match p.get("text") {
                Some(Value::String(t)) if t.is_empty() => {}
                Some(Value::String(t)) => out.push(json!({ "text": t })),
                _ => return Err(invalid("a text part needs `text`", &param)),
            },
            Some("image_url") => {
                let url = p
                    .pointer("/image_url/url")
                    .or_else(|| p.get("image_url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("an image_url part needs `image_url.url`", &param))?;
                out.push(image_block(url, &param)?);
            }
            other => {
                return Err(invalid(
                    format!(
                        "content part type `{}` is not supported by provider bedrock",
                        other.unwrap_or("(none)")
                    ),
                    &param,
                ))
            }
        }
    }
    Ok(out)
}

/// An assistant message → text and `toolUse` blocks (tool call ids pass through).
fn assistant_blocks(m: &Map<String, Value>, param: &str) -> Result<Vec<Value>, AttemptError> {
    let mut out: Vec<Value> = text_parts(m.get("content").unwrap_or(&Value::Null), param)?
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| json!({ "text": t }))
        .collect();
    match m.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, c) in calls.iter().enumerate() {
                let param = format!("{param}.tool_calls[{i}]");
                let s = |p: &str| c.pointer(p).and_then(Value::as_str);
                let (Some(id), Some(name)) = (s("/id"), s("/function/name")) else {
                    return Err(invalid(
                        "a tool call needs `id` and `function.name`",
                        &param,
                    ));
                };
                let args = s("/function/arguments").unwrap_or("{}");
                let input: Value = if args.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(args).map_err(|_| {
                        invalid("`function.arguments` must be a JSON object", &param)
                    })?
                };
                if !input.is_object() {
                    return Err(invalid(
                        "`function.arguments` must be a JSON object",
                        &param,
                    ));
                }
                out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
            }
        }
        Some(_) => return Err(invalid("`tool_calls` must be an array", param)),
    }
    Ok(out)
}

/// `{role:"tool"}` → a `toolResult` block (of a user turn).
fn tool_result(m: &Map<String, Value>, param: &str) -> Result<Value, AttemptError> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a tool message needs `tool_call_id`", param))?;
    let text = text_parts(m.get("content").unwrap_or(&Value::Null), param)?.concat();
    Ok(json!({"toolResult": {"toolUseId": id, "content": [{"text": text}]}}))
}

/// The chat messages → (`system`, `messages`), consecutive turns of one role merged (Converse
/// wants user and assistant to alternate; several tool results make one user turn).
fn messages(body: &Map<String, Value>) -> Result<(Vec<Value>, Vec<Value>, bool), AttemptError> {
    let Some(Value::Array(msgs)) = body.get("messages") else {
        return Err(invalid("`messages` must be a non-empty array", "messages"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut tool_blocks = false;
    for (i, m) in msgs.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Some(m) = m.as_object() else {
            return Err(invalid("each message must be an object", &param));
        };
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                for t in text_parts(content, &param)? {
                    if !t.is_empty() {
                        system.push(json!({ "text": t }));
                    }
                }
                continue;
            }
            Some("user") => ("user", user_blocks(content, &param)?),
            Some("assistant") => {
                let b = assistant_blocks(m, &param)?;
                tool_blocks |= b.iter().any(|b| b.get("toolUse").is_some());
                ("assistant", b)
            }
            Some("tool") => {
                tool_blocks = true;
                ("user", vec![tool_result(m, &param)?])
            }
            other => {
                return Err(invalid(
                    format!(
                        "role `{}` is not supported by provider bedrock",
                        other.unwrap_or("(none)")
                    ),
                    format!("{param}.role"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(invalid(
            "Bedrock needs at least one user or assistant message with content",
            "messages",
        ));
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| object([("role", json!(role)), ("content", Value::Array(content))]))
        .collect();
    Ok((system, turns, tool_blocks))
}

/// `tools` + `tool_choice` → `toolConfig` (or none).
fn tool_config(body: &Map<String, Value>, history: bool) -> Result<Option<Value>, AttemptError> {
    let mut specs = Vec::new();
    match body.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (i, t) in tools.iter().enumerate() {
                let param = format!("tools[{i}]");
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(invalid("Bedrock takes function tools only", &param));
                }
                let f = t.get("function").unwrap_or(&Value::Null);
                let Some(name) = f.get("name").and_then(Value::as_str) else {
                    return Err(invalid("a function tool needs `function.name`", &param));
                };
                let schema = match f.get("parameters") {
                    Some(p @ Value::Object(_)) => p.clone(),
                    _ => json!({"type": "object", "properties": {}}),
                };
                let mut spec = json!({"name": name, "inputSchema": {"json": schema}});
                if let Some(d) = f.get("description").and_then(Value::as_str) {
                    spec["description"] = json!(d);
                }
                specs.push(json!({ "toolSpec": spec }));
            }
        }
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    }
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" => {
                specs.clear();
                None
            }
            _ => {
                return Err(invalid(
                    "tool_choice must be auto, required, none or a named function",
                    "tool_choice",
                ))
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({"tool": {"name": name}})),
            None => {
                return Err(invalid(
                    "a named tool_choice needs `function.name`",
                    "tool_choice",
                ))
            }
        },
    };
    if specs.is_empty() {
        if !history {
            return Ok(None);
        }
        specs.push(json!({"toolSpec": {
            "name": STUB_TOOL,
            "description": "Placeholder: no tool may be called in this turn. Never call it.",
            "inputSchema": {"json": {"type": "object", "properties": {}}},
        }}));
        return Ok(Some(json!({ "tools": specs })));
    }
    let mut cfg = json!({ "tools": specs });
    if let Some(c) = choice {
        cfg["toolChoice"] = c;
    }
    Ok(Some(cfg))
}

fn number(body: &Map<String, Value>, key: &str) -> Result<Option<Value>, AttemptError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(_) => Err(invalid(format!("`{key}` must be a number"), key)),
    }
}

/// `max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop` → `inferenceConfig`.
fn inference_config(body: &Map<String, Value>) -> Result<Option<Value>, AttemptError> {
    let mut cfg = Map::new();
    let max = match number(body, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => number(body, "max_tokens")?,
    };
    if let Some(v) = max {
        if v.as_u64().is_none_or(|n| n == 0) {
            return Err(invalid(
                "max_tokens must be a positive integer",
                "max_tokens",
            ));
        }
        cfg.insert("maxTokens".into(), v);
    }
    if let Some(v) = number(body, "temperature")? {
        cfg.insert("temperature".into(), v);
    }
    if let Some(v) = number(body, "top_p")? {
        cfg.insert("topP".into(), v);
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            cfg.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            cfg.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(invalid("`stop` must be a string or strings", "stop")),
    }
    Ok((!cfg.is_empty()).then_some(Value::Object(cfg)))
}

/// The Converse body for an OpenAI chat body (with the leaf's overrides already laid over it).
pub fn translate_request(body: &Map<String, Value>) -> Result<Value, AttemptError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid("Bedrock returns one choice: n must be 1", "n"));
    }
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(invalid("Bedrock returns no logprobs", "logprobs"));
    }
    if let Some(t) = body
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
    {
        if t != "text" {
            return Err(invalid(
                format!("response_format `{t}` is not supported by provider bedrock"),
                "response_format",
            ));
        }
    }
    let (system, turns, history) = messages(body)?;
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    if let Some(c) = inference_config(body)? {
        out.insert("inferenceConfig".into(), c);
    }
    if let Some(c) = tool_config(body, history)? {
        out.insert("toolConfig".into(), c);
    }
    if let Some(k) = body.get("top_k").filter(|v| v.is_number()) {
        let extra = out
            .entry("additionalModelRequestFields")
            .or_insert_with(|| json!({}));
        extra["top_k"] = k.clone();
    }
    for key in NATIVE {
        if let Some(v) = body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn tr(v: Value) -> Value {
        translate_request(&obj(v)).unwrap()
    }

    /// The request of wire-formats-2 §4, verbatim, from its OpenAI counterpart.
    #[test]
    fn doc_request() {
        let out = tr(json!({"model": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "wx", "parameters": {"type": "object"}}}]}));
        let want: Value = serde_json::from_str(r#"{"messages":[{"role":"user","content":[{"text":"Weather in Paris?"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"wx","inputSchema":{"json":{"type":"object"}}}}]}}"#).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn system_developer_images_and_config() {
        let png = "iVBORw0KGgo=";
        let out = tr(
            json!({"model": "m", "max_completion_tokens": 100, "max_tokens": 5,
            "temperature": 0.5, "top_p": 0.9, "stop": "END", "top_k": 40,
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]},
            ]}),
        );
        assert_eq!(
            out["system"],
            json!([{"text": "Be terse."}, {"text": "No emoji."}])
        );
        assert_eq!(
            out["messages"][0]["content"][1],
            json!({"image": {"format": "png", "source": {"bytes": png}}})
        );
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
        );
        assert_eq!(out["additionalModelRequestFields"], json!({"top_k": 40}));
        let e = translate_request(&obj(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})))
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("data: URL"), "{}", e.message);
    }

    #[test]
    fn tool_round_trip_merges_turns() {
        let out = tr(json!({"model": "m", "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "wx", "description": "Weather", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks"},
        ]}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{out}");
        assert_eq!(
            m[1]["content"][1],
            json!({"toolUse": {"toolUseId": "call_2", "name": "wx", "input": {"city": "Rome"}}})
        );
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"],
            json!([{"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
                   {"toolResult": {"toolUseId": "call_2", "content": [{"text": "21C"}]}},
                   {"text": "Thanks"}])
        );
        assert_eq!(out["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(
            out["toolConfig"]["tools"][0]["toolSpec"]["description"],
            "Weather"
        );
    }

    #[test]
    fn tool_choice_variants() {
        let tools = json!([{"type": "function", "function": {"name": "wx"}}]);
        let user = json!([{"role": "user", "content": "hi"}]);
        let cfg = |choice: Value, messages: &Value| {
            tr(json!({"messages": messages, "tools": tools, "tool_choice": choice}))["toolConfig"]
                .clone()
        };
        assert_eq!(cfg(json!("auto"), &user)["toolChoice"], json!({"auto": {}}));
        assert_eq!(
            cfg(
                json!({"type": "function", "function": {"name": "wx"}}),
                &user
            )["toolChoice"],
            json!({"tool": {"name": "wx"}})
        );
        // none: no toolConfig at all…
        assert_eq!(cfg(json!("none"), &user), Value::Null);
        // …unless the history has tool blocks, which Converse refuses without one.
        let history = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "wx", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok"},
        ]);
        let c = cfg(json!("none"), &history);
        assert_eq!(c["tools"][0]["toolSpec"]["name"], STUB_TOOL, "{c}");
        assert!(c.get("toolChoice").is_none());
    }

    #[test]
    fn refusals_name_the_parameter() {
        for (body, param) in [
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
            ),
            (
                json!({"messages": [{"role": "function", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "stop": 3}),
                "stop",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0]",
            ),
        ] {
            let e = translate_request(&obj(body)).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{}",
                e.message
            );
        }
    }
}
