//! OpenAI and Azure OpenAI endpoints: chat completions (JSON and SSE, with the
//! Azure `prompt_filter_results` preamble), legacy text completions,
//! embeddings (float or base64) and the models list.

use serde::Serialize;
use serde_json::Value;

use super::route::Provider;
use super::stream::StreamPlan;
use super::util;
use super::wire::{self, Answer, ApiError, Ctx};

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    completion_tokens_details: ReasoningTokens,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl Usage {
    fn new(prompt: u64, completion: u64) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: CachedTokens { cached_tokens: 0 },
            completion_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct Severity {
    filtered: bool,
    severity: &'static str,
}

const SAFE: Severity = Severity {
    filtered: false,
    severity: "safe",
};

#[derive(Serialize)]
struct FilterResults {
    hate: Severity,
    self_harm: Severity,
    sexual: Severity,
    violence: Severity,
}

const ALL_SAFE: FilterResults = FilterResults {
    hate: SAFE,
    self_harm: SAFE,
    sexual: SAFE,
    violence: SAFE,
};

#[derive(Serialize)]
struct PromptFilterResult {
    prompt_index: u32,
    content_filter_results: FilterResults,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice<'a>; 1],
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_filter_results: Option<[PromptFilterResult; 1]>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<FilterResults>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent without `include_usage`, `null` on normal chunks with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct AzurePreamble {
    choices: [(); 0],
    created: u64,
    id: &'static str,
    model: &'static str,
    object: &'static str,
    prompt_filter_results: [PromptFilterResult; 1],
}

fn sse_data<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    // Serializing these plain structs cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    out
}

const DONE: &[u8] = b"data: [DONE]\n\n";

fn max_tokens(req: &Value) -> Option<u64> {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
}

/// The response `model`: Azure reports the deployment, OpenAI echoes the
/// request's model.
fn response_model<'a>(ctx: &Ctx<'a>, req: &'a Value) -> Result<&'a str, ApiError> {
    if ctx.provider == Provider::Azure {
        return Ok(ctx.deployment.unwrap_or_default());
    }
    req.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("you must provide a model parameter"))
}

/// `POST …/chat/completions` (OpenAI and Azure).
pub fn chat(ctx: &Ctx, body: &[u8]) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let model = response_model(ctx, &req)?;
    let messages = match req.get("messages") {
        Some(Value::Array(m)) => m,
        _ => {
            return Err(ApiError::invalid("Missing required parameter: 'messages'.")
                .param("messages")
                .code("missing_required_parameter"))
        }
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        )
        .param("messages")
        .code("empty_array"));
    }
    let chars: usize = messages
        .iter()
        .map(|m| m.get("content").map_or(0, wire::content_chars))
        .sum();
    let prompt_tokens = util::prompt_tokens(chars);
    let full = ctx.reply_text();
    let (reply, cut) = wire::apply_max_tokens(&full, max_tokens(&req));
    let finish_reason = if cut { "length" } else { "stop" };
    let completion_tokens = util::word_count(reply);
    let id = format!("chatcmpl-mock{:x}", ctx.seq);
    let created = util::unix_now();
    let azure = ctx.provider == Provider::Azure;

    if !wire::bool_field(&req, "stream") {
        let body = ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model,
            choices: [ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: reply,
                    refusal: None,
                },
                logprobs: None,
                finish_reason,
                content_filter_results: azure.then_some(ALL_SAFE),
            }],
            usage: Usage::new(prompt_tokens, completion_tokens),
            prompt_filter_results: azure.then_some([PromptFilterResult {
                prompt_index: 0,
                content_filter_results: ALL_SAFE,
            }]),
        };
        return Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()));
    }

    let include_usage = wire::include_usage(&req);
    let chunk = |delta: Delta, finish_reason: Option<&'static str>| {
        sse_data(&ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: include_usage.then_some(None),
        })
    };
    let mut head = Vec::with_capacity(2);
    if azure {
        head.push(sse_data(&AzurePreamble {
            choices: [],
            created: 0,
            id: "",
            model: "",
            object: "",
            prompt_filter_results: [PromptFilterResult {
                prompt_index: 0,
                content_filter_results: ALL_SAFE,
            }],
        }));
    }
    head.push(chunk(
        Delta {
            role: Some("assistant"),
            content: Some(""),
        },
        None,
    ));
    let content = util::split_even(reply, ctx.stream_chunks())
        .into_iter()
        .map(|piece| {
            chunk(
                Delta {
                    role: None,
                    content: Some(piece),
                },
                None,
            )
        })
        .collect();
    let mut tail = vec![chunk(Delta::default(), Some(finish_reason))];
    if include_usage {
        tail.push(sse_data(&ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: Vec::new(),
            usage: Some(Some(Usage::new(prompt_tokens, completion_tokens))),
        }));
    }
    tail.push(DONE.to_vec());
    Ok(Answer::Stream(StreamPlan {
        head,
        content,
        tail,
        error_event: wire::openai_error_event(ctx, 500),
    }))
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [TextChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<SimpleUsage>>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct SimpleUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct UsageOnly<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: SimpleUsage,
}

/// Characters in `input`/`prompt`: a string, strings, or token arrays (each
/// token counted as four characters so it estimates as one token).
fn input_texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_array) => {
            items.iter().map(|t| t.to_string()).collect()
        }
        Value::Array(_) => vec![v.to_string()],
        _ => Vec::new(),
    }
}

fn input_tokens(v: &Value) -> u64 {
    match v {
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            items.len() as u64
        }
        Value::Array(items) if items.iter().all(Value::is_array) && !items.is_empty() => items
            .iter()
            .map(|t| t.as_array().map_or(0, |a| a.len() as u64))
            .sum(),
        _ => util::prompt_tokens(input_texts(v).iter().map(|s| s.chars().count()).sum()),
    }
}

/// `POST …/completions` (legacy text completions).
pub fn completions(ctx: &Ctx, body: &[u8]) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let model = response_model(ctx, &req)?;
    let Some(prompt) = req.get("prompt") else {
        return Err(ApiError::invalid("Missing required parameter: 'prompt'.")
            .param("prompt")
            .code("missing_required_parameter"));
    };
    let prompt_tokens = input_tokens(prompt);
    let full = ctx.reply_text();
    let (reply, cut) = wire::apply_max_tokens(&full, max_tokens(&req));
    let finish_reason = if cut { "length" } else { "stop" };
    let completion_tokens = util::word_count(reply);
    let id = format!("cmpl-mock{:x}", ctx.seq);
    let created = util::unix_now();
    let usage = || SimpleUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };

    if !wire::bool_field(&req, "stream") {
        let body = TextCompletion {
            id: &id,
            object: "text_completion",
            created,
            model,
            choices: [TextChoice {
                text: reply,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason),
            }],
            usage: Some(Some(usage())),
        };
        return Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()));
    }
    let include_usage = wire::include_usage(&req);
    let chunk = |text: &str, finish_reason: Option<&'static str>| {
        sse_data(&TextCompletion {
            id: &id,
            object: "text_completion",
            created,
            model,
            choices: [TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason,
            }],
            usage: include_usage.then_some(None),
        })
    };
    let content = util::split_even(reply, ctx.stream_chunks())
        .into_iter()
        .map(|piece| chunk(piece, None))
        .collect();
    let mut tail = vec![chunk("", Some(finish_reason))];
    if include_usage {
        tail.push(sse_data(&UsageOnly {
            id: &id,
            object: "text_completion",
            created,
            model,
            choices: [],
            usage: usage(),
        }));
    }
    tail.push(DONE.to_vec());
    Ok(Answer::Stream(StreamPlan {
        head: Vec::new(),
        content,
        tail,
        error_event: wire::openai_error_event(ctx, 500),
    }))
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingData,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingData {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST …/embeddings`: one deterministic vector per input (see `util::embedding_for`).
pub fn embeddings(ctx: &Ctx, body: &[u8]) -> Result<Answer, ApiError> {
    let req = wire::parse_object(body)?;
    let model = response_model(ctx, &req)?;
    let input = match req.get("input") {
        Some(v @ (Value::String(_) | Value::Array(_))) => v,
        _ => {
            return Err(ApiError::invalid("Missing required parameter: 'input'.")
                .param("input")
                .code("missing_required_parameter"))
        }
    };
    let texts = match input {
        // A single token array is one input.
        Value::Array(items) if items.iter().all(Value::is_number) => vec![input.to_string()],
        _ => input_texts(input),
    };
    if texts.is_empty() {
        return Err(ApiError::invalid("'input' must not be empty.").param("input"));
    }
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = util::embedding_for(text);
            EmbeddingItem {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingData::Base64(util::embedding_base64(&v))
                } else {
                    EmbeddingData::Floats(v.to_vec())
                },
            }
        })
        .collect();
    let tokens = input_tokens(input);
    let body = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()))
}

const MODELS: [&str; 5] = [
    "gpt-4o",
    "gpt-4o-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
];

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: &'static str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct AnthropicModelList {
    data: Vec<AnthropicModel>,
    has_more: bool,
    first_id: &'static str,
    last_id: &'static str,
}

#[derive(Serialize)]
struct AnthropicModel {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'static str,
    display_name: &'static str,
    created_at: &'static str,
}

/// `GET …/models`: OpenAI shape, or Anthropic's when `anthropic-version` was sent.
pub fn models(anthropic: bool) -> Vec<u8> {
    if anthropic {
        let data = MODELS
            .iter()
            .filter(|m| m.starts_with("claude"))
            .map(|id| AnthropicModel {
                kind: "model",
                id,
                display_name: id,
                created_at: "2025-09-29T00:00:00Z",
            })
            .collect();
        return serde_json::to_vec(&AnthropicModelList {
            data,
            has_more: false,
            first_id: "claude-sonnet-4-5",
            last_id: "claude-haiku-4-5",
        })
        .unwrap_or_default();
    }
    let data = MODELS
        .iter()
        .map(|id| ModelEntry {
            id,
            object: "model",
            created: 1_715_367_049,
            owned_by: "system",
        })
        .collect();
    serde_json::to_vec(&ModelList {
        object: "list",
        data,
    })
    .unwrap_or_default()
}
