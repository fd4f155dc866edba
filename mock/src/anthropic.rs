//! Anthropic Messages API (`POST …/v1/messages`): request validation, the
//! `message` JSON response and the full `event:`/`data:` SSE sequence. Replies are text, or,
//! when `tool_choice` forces a tool (`any` or `tool`), one `tool_use` block calling it with
//! `{"city": "Paris"}` (streamed as `input_json_delta` fragments).

use actix_web::http::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::stream::StreamPlan;
use super::util;
use super::wire::{self, Answer, ApiError, Ctx};

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl Usage {
    fn new(input: u64, output: u64) -> Self {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        }
    }
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Message<'a, C: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: C,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Message<'a, [(); 0]>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: TextBlock<'a>,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextBlock<'a>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: OutputUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

fn event<T: Serialize>(name: &str, v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    out
}

const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// `POST …/v1/messages`.
pub fn messages(ctx: &Ctx, headers: &HeaderMap, body: &[u8]) -> Result<Answer, ApiError> {
    if !headers.contains_key("anthropic-version") && !headers.contains_key("authorization") {
        return Err(ApiError::invalid("anthropic-version: header is required"));
    }
    let req = wire::parse_object(body)?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("model: Field required"))?;
    let max_tokens = match req.get("max_tokens") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ApiError::invalid("max_tokens: Input should be a valid integer"))?,
        None => return Err(ApiError::invalid("max_tokens: Field required")),
    };
    let messages = match req.get("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(ApiError::invalid("messages: Field required")),
    };
    let mut chars = req.get("system").map_or(0, wire::content_chars);
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                return Err(ApiError::invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )))
            }
        }
        chars += m.get("content").map_or(0, wire::content_chars);
    }
    let input_tokens = util::prompt_tokens(chars);
    if let Some(name) = forced_tool(&req) {
        return Ok(tool_use(ctx, &req, model, &name, input_tokens));
    }
    let full = ctx.reply_text();
    let (reply, cut) = wire::apply_max_tokens(&full, Some(max_tokens));
    let stop_reason = if cut { "max_tokens" } else { "end_turn" };
    let output_tokens = util::word_count(reply);
    let id = format!("msg_mock{:016x}", ctx.seq);

    if !wire::bool_field(&req, "stream") {
        let body = Message {
            id: &id,
            kind: "message",
            role: "assistant",
            model,
            content: [TextBlock {
                kind: "text",
                text: reply,
            }],
            stop_reason: Some(stop_reason),
            stop_sequence: None,
            usage: Usage::new(input_tokens, output_tokens),
        };
        return Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()));
    }

    let head = vec![
        event(
            "message_start",
            &MessageStart {
                kind: "message_start",
                message: Message {
                    id: &id,
                    kind: "message",
                    role: "assistant",
                    model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: Usage::new(input_tokens, 1),
                },
            },
        ),
        event(
            "content_block_start",
            &BlockStart {
                kind: "content_block_start",
                index: 0,
                content_block: TextBlock {
                    kind: "text",
                    text: "",
                },
            },
        ),
        PING.to_vec(),
    ];
    let content = util::split_even(reply, ctx.stream_chunks())
        .into_iter()
        .map(|piece| {
            event(
                "content_block_delta",
                &BlockDelta {
                    kind: "content_block_delta",
                    index: 0,
                    delta: TextBlock {
                        kind: "text_delta",
                        text: piece,
                    },
                },
            )
        })
        .collect();
    let tail = vec![
        event(
            "content_block_stop",
            &BlockStop {
                kind: "content_block_stop",
                index: 0,
            },
        ),
        event(
            "message_delta",
            &MessageDelta {
                kind: "message_delta",
                delta: StopDelta {
                    stop_reason,
                    stop_sequence: None,
                },
                usage: OutputUsage { output_tokens },
            },
        ),
        MESSAGE_STOP.to_vec(),
    ];
    Ok(Answer::Stream(StreamPlan {
        head,
        content,
        tail,
        error_event: wire::anthropic_error_event(529),
    }))
}

/// The tool `tool_choice` forces: the named one, or the first of `tools` for `any`.
fn forced_tool(req: &Value) -> Option<String> {
    let choice = req.get("tool_choice")?;
    let first = || {
        req.get("tools")?
            .as_array()?
            .first()?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    };
    match choice.get("type").and_then(Value::as_str)? {
        "tool" => choice
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        "any" => first(),
        _ => None,
    }
}

/// One `tool_use` block calling `name`, whole or streamed.
fn tool_use(ctx: &Ctx, req: &Value, model: &str, name: &str, input_tokens: u64) -> Answer {
    let id = format!("msg_mock{:016x}", ctx.seq);
    let call = format!("toolu_mock{:016x}", ctx.seq);
    let usage = Usage::new(input_tokens, 12);
    if !wire::bool_field(req, "stream") {
        let body = serde_json::json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": call, "name": name, "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": usage,
        });
        return Answer::Json(serde_json::to_vec(&body).unwrap_or_default());
    }
    let head = vec![
        event(
            "message_start",
            &serde_json::json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": Usage::new(input_tokens, 1)}}),
        ),
        event(
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": 0, "content_block":
                {"type": "tool_use", "id": call, "name": name, "input": {}}}),
        ),
    ];
    let content = ["{\"city\": ", "\"Paris\"}"]
        .into_iter()
        .map(|part| {
            event(
                "content_block_delta",
                &serde_json::json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
            )
        })
        .collect();
    let tail = vec![
        event(
            "content_block_stop",
            &BlockStop {
                kind: "content_block_stop",
                index: 0,
            },
        ),
        event(
            "message_delta",
            &serde_json::json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 12}}),
        ),
        MESSAGE_STOP.to_vec(),
    ];
    Answer::Stream(StreamPlan {
        head,
        content,
        tail,
        error_event: wire::anthropic_error_event(529),
    })
}
