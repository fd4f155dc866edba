//! OpenAI chat / embeddings request → Gemini `generateContent` / `batchEmbedContents` body.
//!
//! Choices (see also the module list in `mod.rs`):
//! - `system`/`developer` messages, wherever they are, become `systemInstruction` parts in
//!   order; `assistant` → role `model`; consecutive `tool` messages become one `user` turn of
//!   `functionResponse{name, id, response:{content}}` parts (Gemini pairs a turn of calls with
//!   one turn of responses); the name comes from the earlier assistant `tool_calls` entry with
//!   that id, else the message's `name`, else the call at the same position in the last
//!   assistant turn (for clients that rewrite ids).
//! - Images: data URLs → `inlineData`; http(s) URLs → `fileData{mimeType, fileUri}` when the
//!   type can be guessed from the extension (png, jpeg, webp, gif, heic, heif) or the URL is a
//!   Gemini Files API URI; any other URL is a 400 asking for a data URL (Gemini needs a type).
//! - Tool `parameters` and `response_format` schemas go as `parametersJsonSchema` /
//!   `responseJsonSchema` unchanged (they accept JSON Schema, unlike the OpenAPI-subset
//!   `parameters`), except that a top-level `$schema` is dropped; `strict` is dropped.
//! - Gemini 3 rejects replayed function calls without their `thoughtSignature`: the signature
//!   comes back out of the tool-call id (see [`split_call_id`]); history from elsewhere gets
//!   Google's documented placeholder `skip_thought_signature_validator` on the first call of a
//!   turn, for `gemini-3*` models only.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::invalid;
use crate::providers::AttemptError;

/// Separates a minted tool-call id from the thought signature it carries. Only
/// `[A-Za-z0-9_-]` so the id stays valid for providers that restrict ids (Anthropic).
pub(super) const SIGNATURE_MARK: &str = "__ts__";

/// Google's placeholder for a function call whose signature is unknown (foreign history).
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// A tool-call id → (the id Gemini sees, the thought signature it carried, if any).
pub(super) fn split_call_id(id: &str) -> (&str, Option<String>) {
    match id.split_once(SIGNATURE_MARK) {
        Some((base, sig)) if !sig.is_empty() => (base, Some(base64url_to_std(sig))),
        _ => (id, None),
    }
}

/// The id llmux hands clients for a call: `base`, plus the signature when there is one.
pub(super) fn join_call_id(base: &str, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        Some(sig) => format!("{base}{SIGNATURE_MARK}{}", std_to_base64url(sig)),
        None => base.to_owned(),
    }
}

// Signatures are standard base64; ids want `[A-Za-z0-9_-]`: the URL-safe alphabet without
// padding maps one to one and back.
fn std_to_base64url(s: &str) -> String {
    s.trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

fn base64url_to_std(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

fn non_null<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

/// OpenAI chat body (overrides applied) → Gemini `generateContent` body for `model`.
pub fn translate_request(body: &Map<String, Value>, model: &str) -> Result<Value, AttemptError> {
    reject_unsupported(body)?;
    let gemini3 = model.starts_with("gemini-3");
    let (system, contents) = translate_messages(body.get("messages"), gemini3)?;
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = translate_tools(body)? {
        out.insert("tools".into(), tools);
        if let Some(config) = translate_tool_choice(body)? {
            out.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": config }),
            );
        }
    }
    let config = generation_config(body, gemini3)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

fn reject_unsupported(body: &Map<String, Value>) -> Result<(), AttemptError> {
    for key in ["logprobs", "top_logprobs"] {
        match non_null(body, key) {
            None | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(invalid(
                    format!("`{key}` is not supported for Gemini targets"),
                    key,
                ))
            }
        }
    }
    if non_null(body, "audio").is_some()
        || body
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x != "text"))
    {
        return Err(invalid(
            "audio output is not supported for Gemini targets",
            "modalities",
        ));
    }
    if non_null(body, "functions").is_some() || non_null(body, "function_call").is_some() {
        return Err(invalid(
            "the legacy `functions`/`function_call` are not translated for Gemini targets; use `tools`/`tool_choice`",
            "functions",
        ));
    }
    Ok(())
}

fn generation_config(
    body: &Map<String, Value>,
    gemini3: bool,
) -> Result<Map<String, Value>, AttemptError> {
    let mut c = Map::new();
    let number = |key: &str| -> Result<Option<Value>, AttemptError> {
        match non_null(body, key) {
            None => Ok(None),
            Some(v) if v.is_number() => Ok(Some(v.clone())),
            Some(_) => Err(invalid(format!("`{key}` must be a number"), key)),
        }
    };
    let positive = |key: &str| -> Result<Option<u64>, AttemptError> {
        match non_null(body, key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(invalid(format!("`{key}` must be a positive integer"), key)),
            },
        }
    };
    if let Some(n) = positive("max_completion_tokens")?.or(positive("max_tokens")?) {
        c.insert("maxOutputTokens".into(), n.into());
    }
    if let Some(n) = positive("n")? {
        if n != 1 {
            c.insert("candidateCount".into(), n.into());
        }
    }
    for (openai, gemini) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = number(openai)? {
            c.insert(gemini.into(), v);
        }
    }
    // Gemini rejects penalties on models that lack them; SDKs often send explicit zeros.
    for (openai, gemini) in [
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = number(openai)?.filter(|v| v.as_f64() != Some(0.0)) {
            c.insert(gemini.into(), v);
        }
    }
    if let Some(v) = non_null(body, "top_k") {
        let k = v
            .as_u64()
            .ok_or_else(|| invalid("`top_k` must be a positive integer", "top_k"))?;
        c.insert("topK".into(), k.into());
    }
    if let Some(v) = non_null(body, "seed") {
        let s = v
            .as_i64()
            .ok_or_else(|| invalid("`seed` must be an integer", "seed"))?;
        c.insert("seed".into(), s.into());
    }
    match non_null(body, "stop") {
        None => {}
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            c.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        Some(_) => {
            return Err(invalid(
                "`stop` must be a string or an array of strings",
                "stop",
            ))
        }
    }
    if let Some(format) = non_null(body, "response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                c.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                let schema = format
                    .pointer("/json_schema/schema")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| {
                        invalid(
                            "`response_format.json_schema.schema` must be an object",
                            "response_format",
                        )
                    })?;
                c.insert("responseMimeType".into(), "application/json".into());
                c.insert("responseJsonSchema".into(), clean_schema(schema));
            }
            _ => {
                return Err(invalid(
                    "`response_format.type` must be text, json_object or json_schema",
                    "response_format",
                ))
            }
        }
    }
    if let Some(effort) = non_null(body, "reasoning_effort") {
        let effort = effort.as_str().unwrap_or_default();
        // Gemini 3 takes a level; 2.5 a token budget (Google's own OpenAI-compatible mapping).
        let thinking = match (gemini3, effort) {
            (true, "minimal" | "low") => json!({"thinkingLevel": "low"}),
            (true, "medium" | "high" | "xhigh") => json!({"thinkingLevel": "high"}),
            (false, "none" | "minimal") => json!({"thinkingBudget": 0}),
            (false, "low") => json!({"thinkingBudget": 1024}),
            (false, "medium") => json!({"thinkingBudget": 8192}),
            (false, "high" | "xhigh") => json!({"thinkingBudget": 24576}),
            _ => {
                return Err(invalid(
                    format!(
                        "`reasoning_effort` `{effort}` has no Gemini equivalent for this model"
                    ),
                    "reasoning_effort",
                ))
            }
        };
        c.insert("thinkingConfig".into(), thinking);
    }
    Ok(c)
}

/// A JSON schema as Gemini's `*JsonSchema` fields take it: without the `$schema` keyword.
fn clean_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("$schema");
    }
    s
}

fn translate_tools(body: &Map<String, Value>) -> Result<Option<Value>, AttemptError> {
    let tools = match non_null(body, "tools") {
        None => return Ok(None),
        Some(Value::Array(t)) if t.is_empty() => return Ok(None),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    };
    let mut decls = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(
                "only `function` tools can be used with Gemini targets",
                param,
            ));
        }
        let f = tool.get("function").and_then(Value::as_object);
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("a function tool needs a `name`", param.clone()))?;
        let mut d = Map::new();
        d.insert("name".into(), name.into());
        if let Some(desc) = f.and_then(|f| f.get("description")).and_then(Value::as_str) {
            d.insert("description".into(), desc.into());
        }
        match f.and_then(|f| f.get("parameters")) {
            None | Some(Value::Null) => {}
            Some(p @ Value::Object(_)) => {
                d.insert("parametersJsonSchema".into(), clean_schema(p));
            }
            Some(_) => {
                return Err(invalid(
                    "`parameters` must be a JSON schema object",
                    format!("{param}.function.parameters"),
                ))
            }
        }
        decls.push(Value::Object(d));
    }
    Ok(Some(json!([{ "functionDeclarations": decls }])))
}

fn translate_tool_choice(body: &Map<String, Value>) -> Result<Option<Value>, AttemptError> {
    let bad = || invalid("`tool_choice` is not valid", "tool_choice");
    Ok(match non_null(body, "tool_choice") {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => return Err(bad()),
        }),
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                Some(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
            }
            Some("allowed_tools") => {
                let a = o.get("allowed_tools").ok_or_else(bad)?;
                let names: Vec<&str> = a
                    .get("tools")
                    .and_then(Value::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .collect();
                let mode = match a.get("mode").and_then(Value::as_str) {
                    Some("required") => "ANY",
                    _ => "AUTO",
                };
                // AUTO cannot restrict names; only ANY takes `allowedFunctionNames`.
                Some(if mode == "ANY" {
                    json!({"mode": mode, "allowedFunctionNames": names})
                } else {
                    json!({"mode": mode})
                })
            }
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    })
}

/// The text of a `content` that may be a string or an array of text parts.
fn text_of(content: Option<&Value>, param: &str) -> Result<String, AttemptError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        out.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    // A refusal replayed in history is the model's own text.
                    Some("refusal") => {
                        out.push_str(p.get("refusal").and_then(Value::as_str).unwrap_or(""))
                    }
                    _ => {
                        return Err(invalid(
                            format!("`{param}` may only hold text parts here"),
                            param,
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid(
            format!("`{param}` must be a string or an array of parts"),
            param,
        )),
    }
}

/// Messages → (systemInstruction parts, contents).
fn translate_messages(
    messages: Option<&Value>,
    gemini3: bool,
) -> Result<(Vec<Value>, Vec<Value>), AttemptError> {
    let messages = match messages {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(invalid("`messages` must be a non-empty array", "messages")),
    };
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::with_capacity(messages.len());
    // tool_call_id → function name, from the assistant turns seen so far; and the names of
    // the last assistant turn's calls in order, for clients that rewrite ids.
    let mut calls: HashMap<String, String> = HashMap::new();
    let mut last_calls: Vec<String> = Vec::new();
    let mut response_pos = 0;
    // Whether the last content is a turn of function responses (to merge consecutive ones).
    let mut in_responses = false;
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("every message needs a `role`", param.clone()))?;
        let content = m.get("content");
        let was_responses = std::mem::replace(&mut in_responses, false);
        match role {
            "system" | "developer" => {
                let text = text_of(content, &format!("{param}.content"))?;
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
            }
            "user" => {
                let parts = user_parts(content, &param)?;
                contents.push(json!({"role": "user", "parts": parts}));
            }
            "assistant" => {
                let mut parts = Vec::new();
                let text = text_of(content, &format!("{param}.content"))?;
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
                let tool_calls = match m.get("tool_calls") {
                    None | Some(Value::Null) => &[][..],
                    Some(Value::Array(a)) => a.as_slice(),
                    Some(_) => {
                        return Err(invalid(
                            "`tool_calls` must be an array",
                            format!("{param}.tool_calls"),
                        ))
                    }
                };
                let mut signed = false;
                let first_call = parts.len();
                last_calls.clear();
                for (j, call) in tool_calls.iter().enumerate() {
                    let cparam = format!("{param}.tool_calls[{j}]");
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("a tool call needs an `id`", cparam.clone()))?;
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| {
                            invalid("a tool call needs a function name", cparam.clone())
                        })?;
                    let args = match call.pointer("/function/arguments") {
                        None | Some(Value::Null) => json!({}),
                        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                            Ok(v @ Value::Object(_)) => v,
                            _ => {
                                return Err(invalid(
                                    "tool call `arguments` must be a JSON object",
                                    format!("{cparam}.function.arguments"),
                                ))
                            }
                        },
                        Some(_) => {
                            return Err(invalid(
                                "tool call `arguments` must be a string",
                                format!("{cparam}.function.arguments"),
                            ))
                        }
                    };
                    let (base, signature) = split_call_id(id);
                    calls.insert(id.to_owned(), name.to_owned());
                    last_calls.push(name.to_owned());
                    let mut part =
                        json!({"functionCall": {"name": name, "args": args, "id": base}});
                    if let Some(sig) = signature {
                        signed = true;
                        part["thoughtSignature"] = Value::String(sig);
                    }
                    parts.push(part);
                }
                if gemini3 && !signed && parts.len() > first_call {
                    parts[first_call]["thoughtSignature"] = Value::from(SKIP_SIGNATURE);
                }
                // An assistant turn with nothing in it: Gemini rejects empty parts.
                if !parts.is_empty() {
                    contents.push(json!({"role": "model", "parts": parts}));
                }
            }
            "tool" | "function" => {
                let id = m.get("tool_call_id").and_then(Value::as_str);
                response_pos = if was_responses { response_pos + 1 } else { 0 };
                // By id; else the message's own `name`; else the call at the same position
                // in the last assistant turn (clients that rewrite ids keep the order).
                let fallback = || {
                    m.get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| last_calls.get(response_pos).cloned())
                };
                let name = match (role, id) {
                    ("tool", Some(id)) => {
                        calls.get(id).cloned().or_else(fallback).ok_or_else(|| {
                            invalid(
                                format!(
                                    "`tool_call_id` `{}` matches no earlier assistant tool call",
                                    super::truncate_utf8(id, 64)
                                ),
                                format!("{param}.tool_call_id"),
                            )
                        })?
                    }
                    ("function", _) => m
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            invalid("a function message needs a `name`", param.clone())
                        })?,
                    _ => {
                        return Err(invalid(
                            "a tool message needs a `tool_call_id`",
                            format!("{param}.tool_call_id"),
                        ))
                    }
                };
                let text = text_of(content, &format!("{param}.content"))?;
                let mut response = json!({"name": name, "response": {"content": text}});
                if let Some(id) = id {
                    response["id"] = Value::from(split_call_id(id).0);
                }
                let part = json!({ "functionResponse": response });
                match contents.last_mut().and_then(|c| c["parts"].as_array_mut()) {
                    Some(parts) if was_responses => parts.push(part),
                    _ => contents.push(json!({"role": "user", "parts": [part]})),
                }
                in_responses = true;
            }
            other => {
                return Err(invalid(
                    format!(
                        "role `{}` is not supported",
                        super::truncate_utf8(other, 32)
                    ),
                    format!("{param}.role"),
                ))
            }
        }
    }
    if contents.is_empty() {
        return Err(invalid(
            "Gemini needs at least one user or assistant message besides the system prompt",
            "messages",
        ));
    }
    Ok((system, contents))
}

fn user_parts(content: Option<&Value>, param: &str) -> Result<Vec<Value>, AttemptError> {
    let cparam = format!("{param}.content");
    match content {
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(j, p)| user_part(p, &format!("{cparam}[{j}]")))
            .collect(),
        _ => Err(invalid(
            "user `content` must be a string or a non-empty array of parts",
            cparam,
        )),
    }
}

fn user_part(p: &Value, param: &str) -> Result<Value, AttemptError> {
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({ "text": p.get("text").and_then(Value::as_str).unwrap_or("") })),
        Some("image_url") => {
            let url = match p.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(o) => o.get("url").and_then(Value::as_str).unwrap_or(""),
                None => "",
            };
            media_part(url, &format!("{param}.image_url.url"))
        }
        Some("input_audio") => {
            let data = p.pointer("/input_audio/data").and_then(Value::as_str);
            let format = p.pointer("/input_audio/format").and_then(Value::as_str);
            match (data, format) {
                (Some(d), Some(f @ ("wav" | "mp3"))) if !d.is_empty() => {
                    Ok(json!({"inlineData": {"mimeType": format!("audio/{f}"), "data": d}}))
                }
                _ => Err(invalid(
                    "`input_audio` needs base64 `data` and a `format` of wav or mp3",
                    param,
                )),
            }
        }
        Some("file") => match p.pointer("/file/file_data").and_then(Value::as_str) {
            Some(data) => media_part(data, &format!("{param}.file.file_data")),
            None => Err(invalid(
                "Gemini targets take files as `file_data` data URLs, not `file_id`",
                param,
            )),
        },
        _ => Err(invalid(
            "content parts must be text, image_url, input_audio or file",
            param,
        )),
    }
}

/// A data URL → `inlineData`; an http(s) URL → `fileData` when its type is known.
fn media_part(url: &str, param: &str) -> Result<Value, AttemptError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (head, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("not a valid data URL", param))?;
        let mime = head
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("data URLs must be base64", param))?;
        let mime = mime.split(';').next().unwrap_or_default();
        if mime.is_empty() || data.is_empty() {
            return Err(invalid("not a valid data URL", param));
        }
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(
            "must be an http(s) URL or a base64 data URL",
            param,
        ));
    }
    // Files uploaded to Gemini's Files API: Google knows their type.
    if url.contains("generativelanguage.googleapis.com/") && url.contains("/files/") {
        return Ok(json!({"fileData": {"fileUri": url}}));
    }
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => {
            return Err(invalid(
                "Gemini needs the media type of a URL image and it cannot be told from this URL's extension; send the image as a base64 data URL",
                param,
            ))
        }
    };
    Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}}))
}

/// OpenAI embeddings body → `batchEmbedContents` body for `model`: one request per input.
pub fn translate_embeddings(body: &Map<String, Value>, model: &str) -> Result<Value, AttemptError> {
    let bad = || {
        invalid(
            "`input` must be a string or an array of strings for Gemini targets (token arrays are not supported)",
            "input",
        )
    };
    let inputs: Vec<&str> = match body.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let dims = match non_null(body, "dimensions") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| *d > 0)
                .ok_or_else(|| invalid("`dimensions` must be a positive integer", "dimensions"))?,
        ),
    };
    let name = format!("models/{model}");
    let requests: Vec<Value> = inputs
        .into_iter()
        .map(|text| {
            let mut r = json!({"model": name, "content": {"parts": [{"text": text}]}});
            if let Some(d) = dims {
                r["outputDimensionality"] = d.into();
            }
            r
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::providers::gemini) fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn tr(v: Value) -> Value {
        translate_request(&obj(v), "gemini-2.5-flash").expect("translates")
    }

    fn err(v: Value) -> AttemptError {
        translate_request(&obj(v), "gemini-2.5-flash").expect_err("refused")
    }

    #[test]
    fn the_doc_request_translates_exactly() {
        let out = tr(json!({"model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "wx"}}]}));
        let want: Value = serde_json::from_str(
            r#"{"contents":[{"role":"user","parts":[{"text":"Weather in Paris?"}]}],"tools":[{"functionDeclarations":[{"name":"wx"}]}]}"#,
        )
        .unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn system_roles_images_and_config() {
        let out = tr(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "No emojis."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.JPG?s=1"}},
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ], "max_tokens": 10, "max_completion_tokens": 20, "n": 2, "stop": "END",
           "temperature": 0.5, "top_p": 0.9, "seed": 7, "presence_penalty": 0, "user": "u1",
           "parallel_tool_calls": true, "stream_options": {"include_usage": true},
           "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
                "schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false}}}}));
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "Be terse."}, {"text": "No emojis."}]})
        );
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [
                    {"text": "What is this?"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat.JPG?s=1"}}]},
                {"role": "model", "parts": [{"text": "A cat."}]},
                {"role": "user", "parts": [{"text": "Sure?"}]},
            ])
        );
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 20, "candidateCount": 2, "temperature": 0.5, "topP": 0.9,
                   "seed": 7, "stopSequences": ["END"], "responseMimeType": "application/json",
                   "responseJsonSchema": {"type": "object", "additionalProperties": false}})
        );
        assert!(out.get("toolConfig").is_none());
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["contents", "generationConfig", "systemInstruction"]);
    }

    #[test]
    fn tool_round_trip_maps_ids_names_and_signatures() {
        let signed = join_call_id("call_r1_0_0", Some("c2ln+/=="));
        assert_eq!(signed, "call_r1_0_0__ts__c2ln-_");
        assert_eq!(
            split_call_id(&signed),
            ("call_r1_0_0", Some("c2ln+/==".to_owned()))
        );
        let out = tr(json!({"model": "m",
        "tools": [{"type": "function", "function": {"name": "wx", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "now"}}],
        "tool_choice": {"type": "function", "function": {"name": "wx"}},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": signed, "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_x", "type": "function", "function": {"name": "now", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_x", "content": "noon"},
            {"role": "tool", "tool_call_id": signed, "content": [{"type": "text", "text": "18C"}]},
            {"role": "user", "content": "Thanks"},
        ]}));
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "wx", "description": "Weather", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now"}]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["wx"]}})
        );
        assert_eq!(
            out["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "wx", "args": {"city": "Paris"}, "id": "call_r1_0_0"}, "thoughtSignature": "c2ln+/=="},
                    {"functionCall": {"name": "now", "args": {}, "id": "call_x"}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "now", "response": {"content": "noon"}, "id": "call_x"}},
                    {"functionResponse": {"name": "wx", "response": {"content": "18C"}, "id": "call_r1_0_0"}}]},
                {"role": "user", "parts": [{"text": "Thanks"}]},
            ])
        );
    }

    #[test]
    fn rewritten_ids_fall_back_to_the_call_order() {
        let out = tr(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "zz1", "content": "1"},
            {"role": "tool", "tool_call_id": "zz2", "content": "2"},
        ]}));
        let parts = &out["contents"][2]["parts"];
        assert_eq!(parts[0]["functionResponse"]["name"], "f");
        assert_eq!(parts[1]["functionResponse"]["name"], "g");
    }

    #[test]
    fn tool_choices() {
        let with = |choice: Value| {
            tr(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}),
            )["toolConfig"]["functionCallingConfig"]
                .clone()
        };
        assert_eq!(with(json!("auto")), json!({"mode": "AUTO"}));
        assert_eq!(with(json!("none")), json!({"mode": "NONE"}));
        assert_eq!(with(json!("required")), json!({"mode": "ANY"}));
        assert_eq!(
            with(
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}})
            ),
            json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
        );
        // Without tools a tool_choice means nothing and is dropped.
        let out = tr(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
        );
        assert!(out.get("toolConfig").is_none());
    }

    #[test]
    fn gemini3_foreign_history_gets_the_placeholder_signature() {
        let body = obj(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "b"},
        ]}));
        let out = translate_request(&body, "gemini-3-pro-preview").unwrap();
        let parts = &out["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(parts[1].get("thoughtSignature").is_none());
        let out = translate_request(&body, "gemini-2.5-flash").unwrap();
        assert!(out["contents"][1]["parts"][0]
            .get("thoughtSignature")
            .is_none());
    }

    #[test]
    fn refusals_are_clean_400s() {
        let base = |extra: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        for (extra, param) in [
            (json!({"logprobs": true}), "logprobs"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0]"),
            (json!({"stop": 5}), "stop"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "system", "content": "only"}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/pic"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format",
            ),
        ] {
            let e = err(base(extra.clone()));
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{extra}: {}",
                e.message
            );
        }
    }

    #[test]
    fn embeddings_requests() {
        let out = translate_embeddings(
            &obj(json!({"model": "gemini-embedding-001", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"})),
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8}]})
        );
        for bad in [json!([1, 2]), json!([]), json!(null), json!([[1]])] {
            assert!(translate_embeddings(&obj(json!({"input": bad})), "e").is_err());
        }
    }
}
