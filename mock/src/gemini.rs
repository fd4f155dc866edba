//! Google Gemini API (`…/v1beta/models/{m}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`, `GET …/v1beta/models`): the request checks Google makes (camelCase
//! fields, no unknown ones, roles `user`/`model`, function responses answering the previous
//! turn's calls, Gemini 3 thought signatures), the answers, and the CRLF `data:` stream with
//! no terminator.
//!
//! Replies: text (the account's reply), or, when `toolConfig.functionCallingConfig.mode` is
//! `ANY` and the last turn is not function responses, one `functionCall` of the first allowed
//! (or declared) function, with arguments filled from its schema and a `thoughtSignature`.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::stream::StreamPlan;
use super::util;
use super::wire::{self, Answer, ApiError, Ctx};

/// The signature the mock puts on a call and expects back (base64 of `mock-signature`).
pub const SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

const TOP_LEVEL: [&str; 7] = [
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];

const GENERATION_CONFIG: [&str; 17] = [
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
];

const PART: [&str; 10] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
];

/// Google's wording for an unknown field.
fn unknown(name: &str, at: &str) -> ApiError {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!(" at '{at}'")
    };
    ApiError::invalid(format!(
        "Invalid JSON payload received. Unknown name \"{name}\"{at}: Cannot find field."
    ))
}

fn only_known(o: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ApiError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(unknown(k, at)),
        None => Ok(()),
    }
}

/// Checks the `contents` the way Google does; returns the prompt's characters and whether the
/// last turn answers function calls.
fn check_contents(req: &Map<String, Value>, model: &str) -> Result<(usize, bool), ApiError> {
    let contents = match req.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(ApiError::invalid(
                "* GenerateContentRequest.contents: contents is not specified",
            ))
        }
    };
    let mut chars = 0;
    let mut prev_calls: Option<Vec<String>> = None;
    let mut last_is_response = false;
    for (i, c) in contents.iter().enumerate() {
        let at = format!("contents[{i}]");
        let c = c
            .as_object()
            .ok_or_else(|| ApiError::invalid(format!("Invalid value at '{at}'")))?;
        only_known(c, &["role", "parts"], &at)?;
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(ApiError::invalid(format!(
                "Please use a valid role: user, model. (got '{role}' at {at})"
            )));
        }
        let parts = match c.get("parts") {
            Some(Value::Array(p)) if !p.is_empty() => p,
            _ => {
                return Err(ApiError::invalid(format!(
                    "* GenerateContentRequest.{at}.parts: contents.parts must not be empty."
                )))
            }
        };
        let mut calls = Vec::new();
        let mut responses = Vec::new();
        for (j, p) in parts.iter().enumerate() {
            let pat = format!("{at}.parts[{j}]");
            let p = p
                .as_object()
                .ok_or_else(|| ApiError::invalid(format!("Invalid value at '{pat}'")))?;
            only_known(p, &PART, &pat)?;
            let data = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
            ]
            .iter()
            .filter(|k| p.contains_key(**k))
            .count();
            if data != 1 {
                return Err(ApiError::invalid(format!(
                    "* GenerateContentRequest.{pat}.data: required oneof field 'data' must have one initialized field"
                )));
            }
            chars += p.get("text").map_or(0, wire::content_chars);
            if let Some(inline) = p.get("inlineData") {
                let ok = inline.get("mimeType").and_then(Value::as_str).is_some()
                    && inline.get("data").and_then(Value::as_str).is_some();
                if !ok {
                    return Err(ApiError::invalid(format!(
                        "* GenerateContentRequest.{pat}.inline_data: mime_type and data are required"
                    )));
                }
            }
            if let Some(call) = p.get("functionCall") {
                if role != "model" {
                    return Err(ApiError::invalid(format!(
                        "functionCall is only valid in a model turn ({pat})"
                    )));
                }
                let name = call.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() || !call.get("args").is_none_or(Value::is_object) {
                    return Err(ApiError::invalid(format!(
                        "* GenerateContentRequest.{pat}.function_call.name: name is required and args must be an object"
                    )));
                }
                // Gemini 3 validates the first call of each step.
                if model.starts_with("gemini-3")
                    && calls.is_empty()
                    && p.get("thoughtSignature").and_then(Value::as_str).is_none()
                {
                    return Err(ApiError::invalid(format!(
                        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                        j + 1
                    )));
                }
                calls.push(name.to_owned());
            }
            if let Some(r) = p.get("functionResponse") {
                if role != "user" {
                    return Err(ApiError::invalid(format!(
                        "functionResponse is only valid in a user turn ({pat})"
                    )));
                }
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() || !r.get("response").is_some_and(Value::is_object) {
                    return Err(ApiError::invalid(format!(
                        "* GenerateContentRequest.{pat}.function_response: name and a response object are required"
                    )));
                }
                chars += r.get("response").map_or(0, |v| v.to_string().len());
                responses.push(name.to_owned());
            }
        }
        if !responses.is_empty() {
            let expected = prev_calls.take().unwrap_or_default();
            if expected.len() != responses.len() {
                return Err(ApiError::invalid(
                    "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
                ));
            }
            let want: HashSet<&String> = expected.iter().collect();
            if let Some(bad) = responses.iter().find(|n| !want.contains(n)) {
                return Err(ApiError::invalid(format!(
                    "functionResponse name `{bad}` matches no functionCall of the previous turn"
                )));
            }
        }
        last_is_response = !responses.is_empty();
        prev_calls = (!calls.is_empty()).then_some(calls);
    }
    Ok((chars, last_is_response))
}

/// Validates everything but `contents`; returns the declared function names and the forced
/// choice (`ANY`) if any.
fn check_rest(req: &Map<String, Value>) -> Result<(Vec<Value>, Option<Vec<String>>), ApiError> {
    only_known(req, &TOP_LEVEL, "")?;
    if let Some(g) = req.get("generationConfig") {
        let g = g
            .as_object()
            .ok_or_else(|| ApiError::invalid("Invalid value at 'generation_config'"))?;
        only_known(g, &GENERATION_CONFIG, "generation_config")?;
        if g.contains_key("responseSchema") && g.contains_key("responseJsonSchema") {
            return Err(ApiError::invalid(
                "responseSchema and responseJsonSchema are mutually exclusive",
            ));
        }
    }
    if let Some(s) = req.get("systemInstruction") {
        let ok = s
            .get("parts")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty() && p.iter().all(|x| x.get("text").is_some()));
        if !ok {
            return Err(ApiError::invalid(
                "* GenerateContentRequest.system_instruction.parts: must hold text parts",
            ));
        }
    }
    let mut decls = Vec::new();
    for t in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = t
            .as_object()
            .ok_or_else(|| ApiError::invalid("Invalid value at 'tools'"))?;
        only_known(
            t,
            &[
                "functionDeclarations",
                "googleSearch",
                "codeExecution",
                "urlContext",
            ],
            "tools[0]",
        )?;
        for d in t
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let o = d
                .as_object()
                .ok_or_else(|| ApiError::invalid("Invalid function declaration"))?;
            only_known(
                o,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
                "tools[0].function_declarations[0]",
            )?;
            if o.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::invalid(
                    "* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty.",
                ));
            }
            if o.contains_key("parameters") && o.contains_key("parametersJsonSchema") {
                return Err(ApiError::invalid(
                    "parameters and parametersJsonSchema are mutually exclusive",
                ));
            }
            decls.push(d.clone());
        }
    }
    let forced = match req
        .get("toolConfig")
        .and_then(|t| t.get("functionCallingConfig"))
    {
        None => None,
        Some(c) => {
            let mode = c.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
            if !matches!(mode, "AUTO" | "ANY" | "NONE" | "VALIDATED") {
                return Err(ApiError::invalid(format!(
                    "Invalid value at 'tool_config.function_calling_config.mode' ({mode})"
                )));
            }
            let names: Vec<String> = c
                .get("allowedFunctionNames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            if !names.is_empty() && mode != "ANY" {
                return Err(ApiError::invalid(
                    "allowed_function_names may only be set when mode is ANY",
                ));
            }
            (mode == "ANY").then_some(names)
        }
    };
    Ok((decls, forced))
}

/// Arguments for a forced call, from the declaration's schema.
fn args_for(decl: &Value) -> Value {
    let schema = decl
        .get("parametersJsonSchema")
        .or_else(|| decl.get("parameters"));
    let mut args = Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (k, p) in props {
            let v = match p.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("Paris"),
            };
            args.insert(k.clone(), v);
        }
    }
    Value::Object(args)
}

fn usage(prompt: u64, output: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": output,
           "totalTokenCount": prompt + output})
}

fn frame(v: &Value) -> Vec<u8> {
    // Google ends its SSE lines with CRLF.
    format!("data: {v}\r\n\r\n").into_bytes()
}

/// `POST …/models/{model}:generateContent` and `:streamGenerateContent`.
pub fn generate(ctx: &Ctx, model: &str, body: &[u8], stream: bool) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let req = req.as_object().cloned().unwrap_or_default();
    let (decls, forced) = check_rest(&req)?;
    let (mut chars, answered) = check_contents(&req, model)?;
    chars += req
        .get("systemInstruction")
        .map_or(0, |s| wire::content_chars(&s["parts"]));
    let config = req.get("generationConfig");
    let max = config
        .and_then(|g| g.get("maxOutputTokens"))
        .and_then(Value::as_u64);
    let n = config
        .and_then(|g| g.get("candidateCount"))
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 8);
    let prompt = util::prompt_tokens(chars);
    let id = format!("mock{:016x}", ctx.seq);

    let call = match forced {
        Some(names) if !answered => {
            let decl = match names.first() {
                Some(name) => decls.iter().find(|d| d["name"] == name.as_str()),
                None => decls.first(),
            };
            let decl = decl
                .ok_or_else(|| ApiError::invalid("mode ANY needs a declared function to call"))?;
            Some(
                json!({"functionCall": {"name": decl["name"], "args": args_for(decl)},
                        "thoughtSignature": SIGNATURE}),
            )
        }
        _ => None,
    };
    let full = ctx.reply_text();
    let (reply, cut) = wire::apply_max_tokens(&full, max);
    let reason = if cut { "MAX_TOKENS" } else { "STOP" };
    let output = if call.is_some() {
        5
    } else {
        util::word_count(reply)
    };
    let candidate = |i: u64, parts: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": i});
        if let Some(f) = finish {
            c["finishReason"] = f.into();
        }
        c
    };

    if !stream {
        let parts = match &call {
            Some(c) => json!([c]),
            None => json!([{ "text": reply }]),
        };
        let cands: Vec<Value> = (0..n)
            .map(|i| candidate(i, parts.clone(), Some(reason)))
            .collect();
        let body = json!({"candidates": cands, "usageMetadata": usage(prompt, output * n),
                          "modelVersion": model, "responseId": id});
        return Ok(Answer::Json(body.to_string().into_bytes()));
    }

    let with_meta = |cands: Vec<Value>, usage: Option<Value>| {
        let mut v = json!({"candidates": cands, "modelVersion": model, "responseId": id});
        if let Some(u) = usage {
            v["usageMetadata"] = u;
        }
        frame(&v)
    };
    let content: Vec<Vec<u8>> = match &call {
        Some(c) => vec![with_meta(vec![candidate(0, json!([c]), None)], None)],
        None => util::split_even(reply, ctx.stream_chunks())
            .into_iter()
            .map(|piece| {
                let cands = (0..n)
                    .map(|i| candidate(i, json!([{ "text": piece }]), None))
                    .collect();
                with_meta(cands, Some(usage(prompt, 0)))
            })
            .collect(),
    };
    let last = (0..n)
        .map(|i| candidate(i, json!([{ "text": "" }]), Some(reason)))
        .collect();
    let tail = vec![with_meta(last, Some(usage(prompt, output * n)))];
    Ok(Answer::Stream(StreamPlan {
        head: Vec::new(),
        content,
        tail,
        // Mid-stream errors come as bare, pretty-printed JSON.
        error_event: serde_json::to_string_pretty(&error_value(ctx, 500, None))
            .unwrap_or_default()
            .into_bytes(),
    }))
}

/// `POST …/models/{model}:batchEmbedContents`.
pub fn batch_embed(model: &str, body: &[u8]) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let req = req.as_object().cloned().unwrap_or_default();
    only_known(&req, &["requests"], "")?;
    let requests = match req.get("requests") {
        Some(Value::Array(r)) if !r.is_empty() => r,
        _ => {
            return Err(ApiError::invalid(
                "* BatchEmbedContentsRequest.requests: requests is not specified",
            ))
        }
    };
    let want = format!("models/{model}");
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let o = r
            .as_object()
            .ok_or_else(|| ApiError::invalid(format!("Invalid value at 'requests[{i}]'")))?;
        only_known(
            o,
            &[
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            ],
            &format!("requests[{i}]"),
        )?;
        let m = o.get("model").and_then(Value::as_str).unwrap_or("");
        if m != want {
            return Err(ApiError::invalid(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: Model names should start with `models/` and match the model in the URL ({want}); got `{m}`"
            )));
        }
        let text = o
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.get("text").and_then(Value::as_str))
                    .collect::<String>()
            })
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "* BatchEmbedContentsRequest.requests[{i}].content: content is not specified"
                ))
            })?;
        let mut v = util::embedding_for(&text).to_vec();
        if let Some(d) = o.get("outputDimensionality").and_then(Value::as_u64) {
            v.truncate(d as usize);
        }
        out.push(json!({ "values": v }));
    }
    Ok(Answer::Json(
        json!({ "embeddings": out }).to_string().into_bytes(),
    ))
}

/// `GET …/v1beta/models`.
pub fn models() -> Vec<u8> {
    let models: Vec<Value> = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-embedding-001"]
        .iter()
        .map(|m| json!({"name": format!("models/{m}"), "displayName": m, "inputTokenLimit": 1_048_576,
            "supportedGenerationMethods": if m.contains("embedding") { json!(["embedContent", "batchEmbedContents"]) } else { json!(["generateContent", "countTokens"]) }}))
        .collect();
    json!({ "models": models }).to_string().into_bytes()
}

/// Google's status name for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// The `{"error":{code,message,status,details}}` value; a 429 carries `RetryInfo` when the
/// behavior hints a wait (Google sends no `Retry-After` header).
pub fn error_value(ctx: &Ctx, status: u16, message: Option<&str>) -> Value {
    let default = match status {
        400 => "Request contains an invalid argument.",
        401 => "Request had invalid authentication credentials.",
        403 => "The caller does not have permission",
        404 => "models/unknown is not found for API version v1beta, or is not supported for generateContent.",
        429 => "You exceeded your current quota, please check your plan and billing details.",
        503 => "The model is overloaded. Please try again later.",
        500..=599 => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        _ => "Request failed.",
    };
    let mut details = Vec::new();
    if status == 429 {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}));
        if let Some(s) = ctx.behavior.retry_after_s {
            details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{s}s")}));
        }
    }
    let mut e = json!({"code": status, "message": message.unwrap_or(default), "status": status_name(status)});
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    json!({ "error": e })
}
