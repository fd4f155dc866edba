//! OpenAI Responses API, for OpenAI (`…/v1/responses`) and Azure
//! (`…/openai/v1/responses`) accounts: request validation, the `response`
//! object (one text message, or one function call), its `event:`/`data:` SSE
//! sequence with `sequence_number`s, and the per-account [`ResponseStore`]
//! behind `previous_response_id`, retrieve, delete, input items and cancel.
//!
//! Every error of these endpoints is in the OpenAI envelope, Azure's too (Azure
//! passes the model API's errors through); fault injection still uses the
//! provider's envelope (see `server`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::state::Endpoint;
use super::stream::StreamPlan;
use super::util;
use super::wire::{self, Answer, ApiError, Ctx};

/// Responses kept per account; beyond it the oldest are dropped.
const MAX_STORED: usize = 10_000;

/// Default and largest `limit` of `input_items`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

const ITEM_TYPES: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
];
const ROLES: &[&str] = &["user", "assistant", "system", "developer"];
const INPUT_PARTS: &[&str] = &["input_text", "input_image", "input_file"];
const ASSISTANT_PARTS: &[&str] = &["output_text", "refusal"];

const SERVER_ERROR: &str =
    "The server had an error while processing your request. Sorry about that!";

#[derive(Serialize, Clone)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: CachedTokens,
    output_tokens: u64,
    output_tokens_details: ReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize, Clone)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize, Clone)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl Usage {
    fn new(input: u64, output: u64) -> Self {
        Usage {
            input_tokens: input,
            input_tokens_details: CachedTokens { cached_tokens: 0 },
            output_tokens: output,
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
            total_tokens: input + output,
        }
    }
}

#[derive(Serialize, Clone)]
struct OutputText {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    annotations: [(); 0],
}

impl OutputText {
    fn new(text: &str) -> Self {
        OutputText {
            kind: "output_text",
            text: text.to_owned(),
            annotations: [],
        }
    }
}

/// An `output[]` item.
#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputText>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
    },
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. } | Item::FunctionCall { id, .. } => id,
        }
    }

    /// Characters of text it adds to a conversation.
    fn chars(&self) -> usize {
        match self {
            Item::Message { content, .. } => content.iter().map(|p| p.text.chars().count()).sum(),
            Item::FunctionCall { arguments, .. } => arguments.chars().count(),
        }
    }

    /// The item as first announced by a stream (`output_item.added`).
    fn in_progress(&self) -> Item {
        match self {
            Item::Message { id, role, .. } => Item::Message {
                id: id.clone(),
                status: "in_progress",
                role,
                content: Vec::new(),
            },
            Item::FunctionCall {
                id, call_id, name, ..
            } => Item::FunctionCall {
                id: id.clone(),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: String::new(),
                status: "in_progress",
            },
        }
    }
}

#[derive(Serialize, Clone)]
struct ResponseError {
    code: &'static str,
    message: &'static str,
}

#[derive(Serialize, Clone)]
struct IncompleteDetails {
    reason: &'static str,
}

/// The `response` object, as created, streamed and retrieved.
#[derive(Serialize, Clone)]
struct Response {
    id: String,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<ResponseError>,
    incomplete_details: Option<IncompleteDetails>,
    instructions: Value,
    max_output_tokens: Option<u64>,
    metadata: Value,
    model: String,
    output: Vec<Item>,
    parallel_tool_calls: bool,
    previous_response_id: Option<String>,
    reasoning: Value,
    store: bool,
    temperature: Value,
    text: Value,
    tool_choice: Value,
    tools: Value,
    top_p: Value,
    truncation: Value,
    usage: Option<Usage>,
}

/// One stored response and the conversation it continued.
struct Stored {
    response: Response,
    /// The response named by `previous_response_id`: its conversation comes first.
    prior: Option<Arc<Stored>>,
    /// This request's input items, each with an `id`.
    items: Vec<Value>,
    /// Characters of text in the whole conversation: prior, items and output.
    chars: usize,
}

impl Stored {
    /// Input items: the prior conversation (inputs and outputs), oldest
    /// first, then this request's items.
    fn input_items(&self) -> Vec<Value> {
        let mut chain = Vec::new();
        let mut p = self.prior.as_deref();
        while let Some(s) = p {
            chain.push(s);
            p = s.prior.as_deref();
        }
        let mut out = Vec::new();
        for s in chain.iter().rev() {
            out.extend(s.items.iter().cloned());
            out.extend(
                s.response
                    .output
                    .iter()
                    .map(|i| serde_json::to_value(i).unwrap_or_default()),
            );
        }
        out.extend(self.items.iter().cloned());
        out
    }
}

impl Drop for Stored {
    /// Unlinks the chain iteratively: a long `previous_response_id` chain
    /// must not recurse once per link.
    fn drop(&mut self) {
        let mut next = self.prior.take();
        while let Some(arc) = next {
            next = Arc::into_inner(arc).and_then(|mut s| s.prior.take());
        }
    }
}

/// One account's stored responses (at most [`MAX_STORED`], oldest dropped).
#[derive(Default)]
pub struct ResponseStore {
    inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    by_id: HashMap<String, Arc<Stored>>,
    /// Ids in creation order.
    order: VecDeque<String>,
}

impl ResponseStore {
    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<Stored>> {
        self.lock().by_id.get(id).cloned()
    }

    fn insert(&self, s: Stored) {
        let id = s.response.id.clone();
        let evicted = {
            let mut inner = self.lock();
            let mut evicted = Vec::new();
            while inner.by_id.len() >= MAX_STORED {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                evicted.extend(inner.by_id.remove(&old));
            }
            inner.order.push_back(id.clone());
            inner.by_id.insert(id, Arc::new(s));
            evicted
        };
        // Freed outside the lock.
        drop(evicted);
    }

    fn remove(&self, id: &str) -> bool {
        let removed = {
            let mut inner = self.lock();
            let removed = inner.by_id.remove(id);
            if removed.is_some() {
                inner.order.retain(|x| x != id);
            }
            removed
        };
        removed.is_some()
    }
}

/// Serves one of the Responses endpoints; `id` is the path's response id.
pub fn handle(
    ctx: &Ctx,
    endpoint: Endpoint,
    id: Option<&str>,
    query: &str,
    body: &[u8],
    store: &ResponseStore,
) -> Result<Answer, ApiError> {
    serve(ctx, endpoint, id.unwrap_or_default(), query, body, store)
        .map_err(ApiError::openai_envelope)
}

fn serve(
    ctx: &Ctx,
    endpoint: Endpoint,
    id: &str,
    query: &str,
    body: &[u8],
    store: &ResponseStore,
) -> Result<Answer, ApiError> {
    match endpoint {
        Endpoint::Responses | Endpoint::AzureResponses => create(ctx, body, store),
        Endpoint::ResponsesGet | Endpoint::AzureResponsesGet => {
            let s = find(store, id)?;
            Ok(json_answer(&s.response))
        }
        Endpoint::ResponsesDelete | Endpoint::AzureResponsesDelete => {
            if !store.remove(id) {
                return Err(not_found(id));
            }
            Ok(json_answer(
                &json!({"id": id, "object": "response.deleted", "deleted": true}),
            ))
        }
        Endpoint::ResponsesInputItems | Endpoint::AzureResponsesInputItems => {
            let s = find(store, id)?;
            input_items(&s, query)
        }
        Endpoint::ResponsesCancel | Endpoint::AzureResponsesCancel => {
            find(store, id)?;
            Err(ApiError::invalid(
                "Only responses created with background=true can be cancelled.",
            ))
        }
        _ => Err(ApiError::status(404)),
    }
}

fn json_answer<T: Serialize>(v: &T) -> Answer {
    Answer::Json(serde_json::to_vec(v).unwrap_or_default())
}

fn not_found(id: &str) -> ApiError {
    ApiError::status(404)
        .message(format!("Response with id '{id}' not found."))
        .no_code()
}

fn find(store: &ResponseStore, id: &str) -> Result<Arc<Stored>, ApiError> {
    store.get(id).ok_or_else(|| not_found(id))
}

fn missing(param: String) -> ApiError {
    ApiError::invalid(format!("Missing required parameter: '{param}'."))
        .param(param)
        .code("missing_required_parameter")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid_type(param: String, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(format!(
        "Invalid type for '{param}': expected {expected}, but got {} instead.",
        type_name(got)
    ))
    .param(param)
    .code("invalid_type")
}

/// "Supported values are: 'a', 'b', and 'c'." (OpenAI's wording).
fn invalid_value(param: String, got: &str, supported: &[&str]) -> ApiError {
    let quoted: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
    let list = match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
        [] => String::new(),
    };
    ApiError::invalid(format!(
        "Invalid value: '{got}'. Supported values are: {list}."
    ))
    .param(param)
    .code("invalid_value")
}

/// A required string field of an input item.
fn require_str<'v>(
    obj: &'v Map<String, Value>,
    param: String,
    key: &str,
) -> Result<&'v str, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(missing(param)),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(invalid_type(param, "a string", v)),
    }
}

/// Validates a `message` item and gives a string `content` its part form.
fn normalize_message(i: usize, item: &mut Map<String, Value>) -> Result<(), ApiError> {
    let role = require_str(item, format!("input[{i}].role"), "role")?.to_owned();
    if !ROLES.contains(&role.as_str()) {
        return Err(invalid_value(format!("input[{i}].role"), &role, ROLES));
    }
    let (text_part, allowed) = if role == "assistant" {
        ("output_text", ASSISTANT_PARTS)
    } else {
        ("input_text", INPUT_PARTS)
    };
    let content = match item.get("content") {
        None | Some(Value::Null) => return Err(missing(format!("input[{i}].content"))),
        Some(Value::String(s)) => {
            let mut part = json!({"type": text_part, "text": s});
            if text_part == "output_text" {
                part["annotations"] = json!([]);
            }
            Value::Array(vec![part])
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let param = || format!("input[{i}].content[{j}]");
                let Value::Object(p) = part else {
                    return Err(invalid_type(param(), "an object", part));
                };
                let kind = require_str(p, format!("{}.type", param()), "type")?;
                if !allowed.contains(&kind) {
                    return Err(invalid_value(param(), kind, allowed));
                }
                if matches!(kind, "input_text" | "output_text") {
                    require_str(p, format!("{}.text", param()), "text")?;
                }
            }
            Value::Array(parts.clone())
        }
        Some(v) => {
            return Err(invalid_type(
                format!("input[{i}].content"),
                "one of a string or array of input content items",
                v,
            ))
        }
    };
    item.insert("content".into(), content);
    item.entry("status").or_insert_with(|| "completed".into());
    Ok(())
}

/// Validates input item `i` and returns it with its `type` and an `id`.
fn input_item(i: usize, v: &Value, seq: u64) -> Result<Value, ApiError> {
    let at = |field: &str| format!("input[{i}].{field}");
    let Value::Object(obj) = v else {
        return Err(invalid_type(format!("input[{i}]"), "an object", v));
    };
    let mut item = obj.clone();
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None if obj.contains_key("role") => "message",
        None | Some(Value::Null) => return Err(missing(at("type"))),
        Some(other) => return Err(invalid_type(at("type"), "a string", other)),
    };
    let prefix = match kind {
        "message" => {
            normalize_message(i, &mut item)?;
            "msg"
        }
        "function_call" => {
            for key in ["call_id", "name", "arguments"] {
                require_str(obj, at(key), key)?;
            }
            "fc"
        }
        "function_call_output" => {
            require_str(obj, at("call_id"), "call_id")?;
            match obj.get("output") {
                None | Some(Value::Null) => return Err(missing(at("output"))),
                Some(Value::String(_) | Value::Array(_)) => {}
                Some(v) => {
                    return Err(invalid_type(
                        at("output"),
                        "one of a string or array of output content items",
                        v,
                    ))
                }
            }
            "fco"
        }
        "reasoning" => {
            if let Some(v) = obj.get("summary").filter(|v| !v.is_array()) {
                return Err(invalid_type(at("summary"), "an array", v));
            }
            "rs"
        }
        other => return Err(invalid_value(at("type"), other, ITEM_TYPES)),
    };
    item.insert("type".into(), kind.into());
    item.entry("id")
        .or_insert_with(|| format!("{prefix}_mock{seq:x}_{i}").into());
    Ok(Value::Object(item))
}

/// Characters of text an input item adds to the conversation.
fn item_chars(item: &Value) -> usize {
    let field = match item.get("type").and_then(Value::as_str) {
        Some("function_call") => "arguments",
        Some("function_call_output") => "output",
        Some("reasoning") => "summary",
        _ => "content",
    };
    item.get(field).map_or(0, wire::content_chars)
}

/// An optional field that must be of one JSON type when present and not null.
fn optional<'v>(
    req: &'v Value,
    key: &str,
    expected: &str,
    ok: fn(&Value) -> bool,
) -> Result<Option<&'v Value>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if ok(v) => Ok(Some(v)),
        Some(v) => Err(invalid_type(key.to_owned(), expected, v)),
    }
}

/// Name of the function to call, if the answer is a function call: the
/// request has a function tool, `tool_choice` is not `"none"` and this
/// request's items hold no `function_call_output`. A `tool_choice` naming a
/// function picks it; otherwise the first function tool.
fn call_name(tools: &[Value], tool_choice: Option<&Value>, items: &[Value]) -> Option<String> {
    let first = tools
        .iter()
        .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))?
        .get("name")?
        .as_str()?;
    if items
        .iter()
        .any(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
    {
        return None;
    }
    match tool_choice {
        Some(Value::String(s)) if s == "none" => None,
        Some(c @ Value::Object(_)) if c.get("type").and_then(Value::as_str) == Some("function") => {
            Some(
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(first)
                    .to_owned(),
            )
        }
        _ => Some(first.to_owned()),
    }
}

/// `POST …/responses`.
fn create(ctx: &Ctx, body: &[u8], store: &ResponseStore) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let model = match req.get("model") {
        None | Some(Value::Null) => return Err(missing("model".into())),
        Some(Value::String(m)) => m.clone(),
        Some(v) => return Err(invalid_type("model".into(), "a string", v)),
    };
    let seq = ctx.seq;
    let items: Vec<Value> = match req.get("input") {
        None | Some(Value::Null) => return Err(missing("input".into())),
        Some(Value::String(s)) => vec![json!({
            "id": format!("msg_mock{seq:x}_0"),
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": s}],
        })],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| input_item(i, v, seq))
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(invalid_type(
                "input".into(),
                "one of a string or array of input items",
                v,
            ))
        }
    };
    let instructions = optional(&req, "instructions", "a string", Value::is_string)?;
    let tools: &[Value] = match optional(&req, "tools", "an array", Value::is_array)? {
        Some(Value::Array(t)) => t,
        _ => &[],
    };
    for (i, tool) in tools.iter().enumerate() {
        let Value::Object(t) = tool else {
            return Err(invalid_type(format!("tools[{i}]"), "an object", tool));
        };
        if require_str(t, format!("tools[{i}].type"), "type")? == "function" {
            require_str(t, format!("tools[{i}].name"), "name")?;
        }
    }
    let tool_choice = req.get("tool_choice").filter(|v| !v.is_null());
    let max_output_tokens =
        optional(&req, "max_output_tokens", "an integer", Value::is_u64)?.and_then(Value::as_u64);
    let store_it = optional(&req, "store", "a boolean", Value::is_boolean)?
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let parallel_tool_calls =
        optional(&req, "parallel_tool_calls", "a boolean", Value::is_boolean)?
            .and_then(Value::as_bool)
            .unwrap_or(true);
    let previous_response_id =
        optional(&req, "previous_response_id", "a string", Value::is_string)?
            .and_then(Value::as_str);
    let prior = match previous_response_id {
        Some(prev) => Some(store.get(prev).ok_or_else(|| {
            ApiError::invalid(format!("Previous response with id '{prev}' not found."))
                .param("previous_response_id")
                .code("previous_response_not_found")
        })?),
        None => None,
    };

    let items_chars: usize = items.iter().map(item_chars).sum();
    let prior_chars = prior.as_ref().map_or(0, |p| p.chars);
    let instructions_chars = instructions.map_or(0, wire::content_chars);
    let input_tokens = util::prompt_tokens(instructions_chars + prior_chars + items_chars);

    let full = ctx.reply_text();
    let (item, cut) = match call_name(tools, tool_choice, &items) {
        Some(name) => (
            Item::FunctionCall {
                id: format!("fc_mock{seq:x}"),
                call_id: format!("call_mock{seq:x}"),
                name,
                arguments: "{}".into(),
                status: "completed",
            },
            false,
        ),
        None => {
            let (text, cut) = wire::apply_max_tokens(&full, max_output_tokens);
            (
                Item::Message {
                    id: format!("msg_mock{seq:x}"),
                    status: if cut { "incomplete" } else { "completed" },
                    role: "assistant",
                    content: vec![OutputText::new(text)],
                },
                cut,
            )
        }
    };
    let output_tokens = match &item {
        Item::Message { content, .. } => content.iter().map(|p| util::word_count(&p.text)).sum(),
        Item::FunctionCall { arguments, .. } => util::word_count(arguments),
    };
    let output_chars = item.chars();
    let echo = |key: &str, default: Value| req.get(key).cloned().unwrap_or(default);
    let response = Response {
        id: format!("resp_mock{seq:x}"),
        object: "response",
        created_at: util::unix_now(),
        status: if cut { "incomplete" } else { "completed" },
        background: wire::bool_field(&req, "background"),
        error: None,
        incomplete_details: cut.then_some(IncompleteDetails {
            reason: "max_output_tokens",
        }),
        instructions: instructions.cloned().unwrap_or(Value::Null),
        max_output_tokens,
        metadata: echo("metadata", json!({})),
        model,
        output: vec![item],
        parallel_tool_calls,
        previous_response_id: previous_response_id.map(str::to_owned),
        reasoning: echo("reasoning", json!({"effort": null, "summary": null})),
        store: store_it,
        temperature: echo("temperature", json!(1.0)),
        text: echo("text", json!({"format": {"type": "text"}})),
        tool_choice: tool_choice.cloned().unwrap_or_else(|| "auto".into()),
        tools: Value::Array(tools.to_vec()),
        top_p: echo("top_p", json!(1.0)),
        truncation: echo("truncation", "disabled".into()),
        usage: Some(Usage::new(input_tokens, output_tokens)),
    };

    let stream = wire::bool_field(&req, "stream");
    // A stream set to fail never completes: its response is stored as failed.
    let fails = stream && ctx.behavior.stream_fail_after.is_some();
    if store_it {
        let stored = if fails {
            Response {
                status: "failed",
                error: Some(ResponseError {
                    code: "server_error",
                    message: SERVER_ERROR,
                }),
                incomplete_details: None,
                output: Vec::new(),
                usage: None,
                ..response.clone()
            }
        } else {
            response.clone()
        };
        let chars = prior_chars + items_chars + if fails { 0 } else { output_chars };
        store.insert(Stored {
            response: stored,
            prior,
            items,
            chars,
        });
    }
    if stream {
        Ok(Answer::Stream(stream_plan(ctx, &response)))
    } else {
        Ok(json_answer(&response))
    }
}

/// Every stream event: `type` and `sequence_number`, then its payload.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    response: &'a Response,
}

#[derive(Serialize)]
struct ItemBody<'a> {
    output_index: u32,
    item: &'a Item,
}

#[derive(Serialize)]
struct PartBody<'a> {
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    part: &'a OutputText,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct TextDone<'a> {
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    text: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    item_id: &'a str,
    output_index: u32,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgsDone<'a> {
    item_id: &'a str,
    output_index: u32,
    arguments: &'a str,
}

#[derive(Serialize)]
struct StreamError {
    code: &'static str,
    message: &'static str,
    param: Option<()>,
}

/// Numbers the frames of one stream.
struct Frames {
    next: u64,
}

impl Frames {
    fn frame<T: Serialize>(&mut self, kind: &'static str, body: &T) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serializing these plain structs cannot fail.
        let _ = serde_json::to_writer(
            &mut out,
            &Event {
                kind,
                sequence_number: self.next,
                body,
            },
        );
        out.extend_from_slice(b"\n\n");
        self.next += 1;
        out
    }
}

/// The SSE frames of `response` (one output item): content frames are the
/// text deltas (`stream_chunks` of them) or the one arguments delta.
fn stream_plan(ctx: &Ctx, response: &Response) -> StreamPlan {
    let mut f = Frames { next: 0 };
    let start = Response {
        status: "in_progress",
        incomplete_details: None,
        output: Vec::new(),
        usage: None,
        ..response.clone()
    };
    let mut head = vec![
        f.frame("response.created", &ResponseBody { response: &start }),
        f.frame("response.in_progress", &ResponseBody { response: &start }),
    ];
    let mut content = Vec::new();
    let mut tail = Vec::new();
    for (index, item) in response.output.iter().enumerate() {
        let output_index = index as u32;
        let item_id = item.id();
        head.push(f.frame(
            "response.output_item.added",
            &ItemBody {
                output_index,
                item: &item.in_progress(),
            },
        ));
        match item {
            Item::Message { content: parts, .. } => {
                let text = parts.first().map_or("", |p| p.text.as_str());
                let (empty, done) = (OutputText::new(""), OutputText::new(text));
                let part = |part| PartBody {
                    item_id,
                    output_index,
                    content_index: 0,
                    part,
                };
                head.push(f.frame("response.content_part.added", &part(&empty)));
                for delta in util::split_even(text, ctx.stream_chunks()) {
                    content.push(f.frame(
                        "response.output_text.delta",
                        &TextDelta {
                            item_id,
                            output_index,
                            content_index: 0,
                            delta,
                            logprobs: [],
                        },
                    ));
                }
                tail.push(f.frame(
                    "response.output_text.done",
                    &TextDone {
                        item_id,
                        output_index,
                        content_index: 0,
                        text,
                        logprobs: [],
                    },
                ));
                tail.push(f.frame("response.content_part.done", &part(&done)));
            }
            Item::FunctionCall { arguments, .. } => {
                content.push(f.frame(
                    "response.function_call_arguments.delta",
                    &ArgsDelta {
                        item_id,
                        output_index,
                        delta: arguments,
                    },
                ));
                tail.push(f.frame(
                    "response.function_call_arguments.done",
                    &ArgsDone {
                        item_id,
                        output_index,
                        arguments,
                    },
                ));
            }
        }
        tail.push(f.frame(
            "response.output_item.done",
            &ItemBody { output_index, item },
        ));
    }
    let last = if response.status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    tail.push(f.frame(last, &ResponseBody { response }));
    // The error event takes the number of the first frame it replaces.
    let fail_at = ctx
        .behavior
        .stream_fail_after
        .map_or(content.len(), |n| n.min(content.len()));
    let mut at = Frames {
        next: (head.len() + fail_at) as u64,
    };
    let error_event = at.frame(
        "error",
        &StreamError {
            code: "server_error",
            message: SERVER_ERROR,
            param: None,
        },
    );
    StreamPlan {
        head,
        content,
        tail,
        error_event,
    }
}

/// `GET …/responses/{id}/input_items?order=&limit=&after=`.
fn input_items(s: &Stored, query: &str) -> Result<Answer, ApiError> {
    let mut items = s.input_items();
    match wire::query_param(query, "order") {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => return Err(invalid_value("order".into(), other, &["asc", "desc"])),
    }
    let limit = match wire::query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid 'limit': expected an integer between 1 and {MAX_LIMIT}, but got '{l}' instead."
                ))
                .param("limit")
                .code("invalid_value"))
            }
        },
    };
    let start = match wire::query_param(query, "after") {
        None => 0,
        Some(after) => items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
            .map_or(items.len(), |p| p + 1),
    };
    let rest = &items[start..];
    let data = &rest[..rest.len().min(limit)];
    let id_of = |i: Option<&Value>| i.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json_answer(&json!({
        "object": "list",
        "data": data,
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": rest.len() > data.len(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, prior: Option<Arc<Stored>>) -> Stored {
        Stored {
            response: Response {
                id: id.to_owned(),
                object: "response",
                created_at: 0,
                status: "completed",
                background: false,
                error: None,
                incomplete_details: None,
                instructions: Value::Null,
                max_output_tokens: None,
                metadata: json!({}),
                model: "m".into(),
                output: vec![Item::Message {
                    id: format!("msg_{id}"),
                    status: "completed",
                    role: "assistant",
                    content: vec![OutputText::new("hi")],
                }],
                parallel_tool_calls: true,
                previous_response_id: None,
                reasoning: Value::Null,
                store: true,
                temperature: Value::Null,
                text: Value::Null,
                tool_choice: Value::Null,
                tools: json!([]),
                top_p: Value::Null,
                truncation: Value::Null,
                usage: None,
            },
            prior,
            items: vec![json!({"id": format!("in_{id}"), "type": "message"})],
            chars: 0,
        }
    }

    #[test]
    fn store_is_bounded_oldest_first() {
        let store = ResponseStore::default();
        for i in 0..=MAX_STORED {
            store.insert(stored(&format!("r{i}"), None));
        }
        assert!(store.get("r0").is_none());
        assert!(store.get("r1").is_some());
        assert!(store.get(&format!("r{MAX_STORED}")).is_some());
        assert_eq!(store.lock().by_id.len(), MAX_STORED);
        assert!(store.remove("r1"));
        assert!(!store.remove("r1"));
        assert_eq!(store.lock().order.len(), MAX_STORED - 1);
    }

    #[test]
    fn conversation_walks_the_chain_and_drops_without_recursion() {
        let mut last = Arc::new(stored("r0", None));
        for i in 1..200_000 {
            last = Arc::new(stored(&format!("r{i}"), Some(last)));
        }
        let third = stored(
            "x",
            Some(Arc::new(stored("b", Some(Arc::new(stored("a", None)))))),
        );
        let ids: Vec<Value> = third
            .input_items()
            .iter()
            .map(|i| i["id"].clone())
            .collect();
        assert_eq!(ids, ["in_a", "msg_a", "in_b", "msg_b", "in_x"]);
        drop(last);
    }
}
