//! Amazon Bedrock Converse (`POST …/model/{modelId}/converse` and `/converse-stream`):
//! authentication (every SigV4 signature verified with the mock's own `sigv4` module, or a
//! Bedrock API key as `Authorization: Bearer`), request validation as Converse does it, the JSON
//! answer and the binary event-stream answer (`eventstream`), and AWS-shaped errors
//! (`x-amzn-errortype` + `{"message"}`).

use actix_web::http::header::HeaderMap;
use serde_json::{json, Value};

use super::eventstream;
use super::sigv4::{self, Signed};
use super::stream::StreamPlan;
use super::util;
use super::wire::{self, Answer, ApiError, Ctx};

/// The credentials the mock accepts (its "IAM"): tests configure llmux with these.
pub mod keys {
    /// Long-term keys.
    pub const ACCESS_KEY_ID: &str = "AKIAMOCKBEDROCK00001";
    pub const SECRET_ACCESS_KEY: &str = "mock/Bedrock+Secret/Key00000000000000001";
    /// Temporary keys: valid only with their session token (`x-amz-security-token`, signed).
    pub const SESSION_ACCESS_KEY_ID: &str = "ASIAMOCKBEDROCK00002";
    pub const SESSION_SECRET_ACCESS_KEY: &str = "mock/Session+Secret/Key0000000000000002";
    pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEMOCK/session+token==";
    /// A Bedrock API key (`Authorization: Bearer`).
    pub const API_KEY: &str = "ABSKmockbedrockapikey0003";
}

/// (secret, required session token) of a known access key id.
fn lookup(access_key_id: &str) -> Option<(&'static str, Option<&'static str>)> {
    match access_key_id {
        keys::ACCESS_KEY_ID => Some((keys::SECRET_ACCESS_KEY, None)),
        keys::SESSION_ACCESS_KEY_ID => {
            Some((keys::SESSION_SECRET_ACCESS_KEY, Some(keys::SESSION_TOKEN)))
        }
        _ => None,
    }
}

/// The AWS error of a failure status the behaviors ask for: (HTTP status, `x-amzn-errortype`,
/// message). Bedrock has no 401: bad credentials are a 403 `UnrecognizedClientException`.
pub fn error_parts(status: u16) -> (u16, Option<&'static str>, &'static str) {
    match status {
        400 => (
            400,
            Some("ValidationException"),
            "Malformed input request, please reformat your input and try again.",
        ),
        401 => (
            403,
            Some("UnrecognizedClientException"),
            "The security token included in the request is invalid.",
        ),
        403 => (
            403,
            Some("AccessDeniedException"),
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            404,
            Some("ResourceNotFoundException"),
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        408 => (
            408,
            Some("ModelTimeoutException"),
            "Model has timed out in processing the request. Try your request again.",
        ),
        424 => (
            424,
            Some("ModelErrorException"),
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        429 => (
            429,
            Some("ThrottlingException"),
            "Too many requests, please wait before trying again.",
        ),
        503 => (
            503,
            Some("ServiceUnavailableException"),
            "Bedrock is unable to process your request.",
        ),
        s @ 500..=599 => (
            s,
            Some("InternalServerException"),
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        // A front-end answer (payload too large, …): no AWS error type.
        s => (s, None, "Request failed."),
    }
}

fn denied(kind: &'static str, message: String) -> ApiError {
    ApiError::status(403).code(kind).message(message)
}

/// Checks the request's credentials like AWS: a valid Bedrock API key, or a SigV4 signature
/// over the request as received (raw path, signed headers, body) by a known key.
pub fn authenticate(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let unrecognized = || {
        denied(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        )
    };
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(denied(
            "UnrecognizedClientException",
            "Missing Authentication Token".into(),
        ));
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return if token == keys::API_KEY {
            Ok(())
        } else {
            Err(unrecognized())
        };
    }
    let invalid_sig = |detail: String| {
        denied(
            "InvalidSignatureException",
            format!(
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details.{detail}"
            ),
        )
    };
    let Some(a) = sigv4::parse_authorization(auth) else {
        return Err(denied("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.".into()));
    };
    let Some((secret, token)) = lookup(a.access_key_id) else {
        return Err(unrecognized());
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if token.is_some() && header("x-amz-security-token") != token {
        return Err(unrecognized());
    }
    if token.is_some() && !a.signed_headers.contains(&"x-amz-security-token") {
        return Err(invalid_sig(" (x-amz-security-token is not signed)".into()));
    }
    for needed in ["host", "x-amz-date"] {
        if !a.signed_headers.contains(&needed) {
            return Err(invalid_sig(format!(" ({needed} is not signed)")));
        }
    }
    let amz_date = header("x-amz-date").unwrap_or_default();
    let Some(at) = sigv4::amz_date_secs(amz_date) else {
        return Err(invalid_sig(" (bad x-amz-date)".into()));
    };
    if a.service != "bedrock" || !amz_date.starts_with(a.date) {
        return Err(invalid_sig(" (credential scope)".into()));
    }
    if util::unix_now().abs_diff(at) > 15 * 60 {
        return Err(invalid_sig(" (Signature expired)".into()));
    }
    let signed = Signed {
        method,
        path,
        query,
        headers: a
            .signed_headers
            .iter()
            .map(|n| ((*n).to_owned(), header(n).unwrap_or_default().to_owned()))
            .collect(),
        body,
    };
    if signed.signature(secret, amz_date, a.region, a.service) != a.signature {
        // As AWS does, the canonical request follows (llmux must not pass it on).
        return Err(invalid_sig(format!(
            "\n\nThe Canonical String for this request should have been\n'{}'\n",
            signed.canonical_request()
        )));
    }
    Ok(())
}

const TOP_LEVEL: [&str; 11] = [
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "outputConfig",
];

const BLOCKS: [&str; 8] = [
    "text",
    "image",
    "document",
    "toolUse",
    "toolResult",
    "reasoningContent",
    "cachePoint",
    "video",
];

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::invalid(m.into())
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Converse's own checks, with its messages; returns the tool the answer should call, if any.
fn validate(req: &Value) -> Result<Option<String>, ApiError> {
    let obj = req
        .as_object()
        .ok_or_else(|| invalid("Malformed input request"))?;
    if let Some(k) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(invalid(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again.")));
    }
    let msgs = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.")),
    };
    let mut tool_blocks = false;
    for (i, m) in msgs.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        match m.get("role").and_then(Value::as_str) {
            Some(r) if r == want => {}
            Some("user" | "assistant") => return Err(invalid("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")),
            _ => return Err(invalid(format!("messages.{i}.role: must be user or assistant"))),
        }
        let Some(Value::Array(content)) = m
            .get("content")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        else {
            return Err(invalid(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")));
        };
        for (j, b) in content.iter().enumerate() {
            let keys: Vec<&String> = b
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            if keys.len() != 1 || !BLOCKS.contains(&keys[0].as_str()) {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}: a content block must have exactly one member"
                )));
            }
            if let Some(t) = b.get("text") {
                if t.as_str().is_none_or(|t| t.trim().is_empty()) {
                    return Err(invalid(format!("The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again.")));
                }
            }
            if let Some(img) = b.get("image") {
                let format_ok = matches!(
                    img.get("format").and_then(Value::as_str),
                    Some("png" | "jpeg" | "gif" | "webp")
                );
                if !format_ok || !img.pointer("/source/bytes").is_some_and(Value::is_string) {
                    return Err(invalid(format!(
                        "messages.{i}.content.{j}.image: needs format and source.bytes"
                    )));
                }
            }
            if b.get("toolUse").is_some() || b.get("toolResult").is_some() {
                tool_blocks = true;
                let role_ok = (b.get("toolUse").is_some() && want == "assistant")
                    || (b.get("toolResult").is_some() && want == "user");
                if !role_ok {
                    return Err(invalid(format!("messages.{i}.content.{j}: toolUse belongs to assistant turns, toolResult to user turns")));
                }
            }
        }
    }
    if msgs.len() % 2 == 0 {
        // Converse answers the last user turn (assistant prefill aside, which the mock does not do).
        return Err(invalid("A conversation must end with a user message. Try again with a conversation that ends with a user message."));
    }
    if let Some(sys) = obj.get("system") {
        let ok = sys.as_array().is_some_and(|a| {
            a.iter().all(|b| {
                b.get("text").is_some_and(Value::is_string) || b.get("cachePoint").is_some()
            })
        });
        if !ok {
            return Err(invalid("system: must be a list of {text} blocks"));
        }
    }
    if let Some(cfg) = obj.get("inferenceConfig") {
        let bad = |k: &str, ok: fn(&Value) -> bool| cfg.get(k).is_some_and(|v| !ok(v));
        if bad("maxTokens", |v| v.as_u64().is_some_and(|n| n >= 1))
            || bad("temperature", |v| {
                v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
            })
            || bad("topP", |v| {
                v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
            })
            || bad("stopSequences", |v| {
                v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            })
        {
            return Err(invalid(
                "inferenceConfig: a value is out of range or of the wrong type",
            ));
        }
    }
    let Some(tc) = obj.get("toolConfig") else {
        if tool_blocks {
            return Err(invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks."));
        }
        return Ok(None);
    };
    let tools = match tc.get("tools") {
        Some(Value::Array(t)) if !t.is_empty() => t,
        _ => return Err(invalid("toolConfig.tools: must contain at least one tool")),
    };
    let mut names = Vec::new();
    for t in tools {
        let name = t
            .pointer("/toolSpec/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !valid_name(name)
            || !t
                .pointer("/toolSpec/inputSchema/json")
                .is_some_and(Value::is_object)
        {
            return Err(invalid(
                "toolConfig.tools: each toolSpec needs a valid name and inputSchema.json",
            ));
        }
        names.push(name.to_owned());
    }
    Ok(match tc.get("toolChoice") {
        None => None,
        Some(c) if c.get("auto").is_some() => None,
        Some(c) if c.get("any").is_some() => names.first().cloned(),
        Some(c) => match c.pointer("/tool/name").and_then(Value::as_str) {
            Some(n) if names.iter().any(|x| x == n) => Some(n.to_owned()),
            _ => {
                return Err(invalid(
                    "toolConfig.toolChoice: must be auto, any or a named tool of the list",
                ))
            }
        },
    })
}

/// The padding field AWS adds to stream payloads (clients ignore it).
fn padded(mut v: Value, seq: u64) -> Vec<u8> {
    v["p"] =
        json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"[..(seq % 20) as usize + 1]);
    v.to_string().into_bytes()
}

/// `POST …/model/{modelId}/converse[-stream]`.
pub fn converse(ctx: &Ctx, body: &[u8], stream: bool) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let tool = validate(&req)?;
    let chars = req.get("system").map_or(0, wire::content_chars)
        + req.get("messages").map_or(0, wire::content_chars);
    let input_tokens = util::prompt_tokens(chars);
    let full = ctx.reply_text();
    let max = req
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let (reply, cut) = wire::apply_max_tokens(&full, max);
    let output_tokens = util::word_count(reply).max(1);
    let usage = json!({"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens});
    let tool_id = format!("tooluse_mock{:016x}", ctx.seq);
    let args = r#"{"city":"Paris"}"#;
    let stop = match (&tool, cut) {
        (Some(_), _) => "tool_use",
        (None, true) => "max_tokens",
        (None, false) => "end_turn",
    };
    if !stream {
        let content = match &tool {
            Some(name) => {
                json!([{"toolUse": {"toolUseId": tool_id, "name": name, "input": {"city": "Paris"}}}])
            }
            None => json!([{ "text": reply }]),
        };
        let out = json!({"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 1}});
        return Ok(Answer::Json(out.to_string().into_bytes()));
    }
    let seq = ctx.seq;
    let head = vec![eventstream::event(
        "messageStart",
        &padded(json!({"role": "assistant"}), seq),
    )];
    let content: Vec<Vec<u8>> = match &tool {
        Some(name) => {
            let (a, b) = args.split_at(args.len() / 2);
            vec![
                eventstream::event(
                    "contentBlockStart",
                    &padded(
                        json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": tool_id, "name": name}}}),
                        seq,
                    ),
                ),
                eventstream::event(
                    "contentBlockDelta",
                    &padded(
                        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": a}}}),
                        seq,
                    ),
                ),
                eventstream::event(
                    "contentBlockDelta",
                    &padded(
                        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": b}}}),
                        seq,
                    ),
                ),
            ]
        }
        None => util::split_even(reply, ctx.stream_chunks())
            .into_iter()
            .map(|piece| {
                eventstream::event(
                    "contentBlockDelta",
                    &padded(
                        json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                        seq,
                    ),
                )
            })
            .collect(),
    };
    let tail = vec![
        eventstream::event(
            "contentBlockStop",
            &padded(json!({"contentBlockIndex": 0}), seq),
        ),
        eventstream::event("messageStop", &padded(json!({"stopReason": stop}), seq)),
        eventstream::event(
            "metadata",
            &padded(json!({"usage": usage, "metrics": {"latencyMs": 1}}), seq),
        ),
    ];
    Ok(Answer::Stream(StreamPlan {
        head,
        content,
        tail,
        error_event: eventstream::exception(
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ),
    }))
}

/// The AWS error body: `{"message": …}`.
pub fn error_body(e: &ApiError) -> Vec<u8> {
    let (_, _, default) = error_parts(e.status);
    json!({ "message": e.message.as_deref().unwrap_or(default) })
        .to_string()
        .into_bytes()
}

/// An error answer as Bedrock sends it: the type in `x-amzn-errortype` (with the service
/// namespace after a colon, as AWS adds it), the message in the body; no `retry-after`.
pub fn render_error(e: &ApiError, ctx: &Ctx) -> actix_web::HttpResponse {
    use actix_web::http::StatusCode;
    let (status, kind, _) = error_parts(e.status);
    let kind = e.code.flatten().or(kind);
    let mut b = actix_web::HttpResponse::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    b.insert_header(("content-type", "application/json"))
        .insert_header(("x-amzn-requestid", ctx.request_id()));
    if let Some(k) = kind {
        b.insert_header((
            "x-amzn-errortype",
            format!("{k}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        ));
    }
    b.body(error_body(e))
}
