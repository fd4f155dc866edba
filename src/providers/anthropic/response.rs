//! Anthropic message -> OpenAI chat.completion.

use super::*;

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
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u64>,
}

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`. Unknown or missing reasons become
/// "stop": the turn did end, and OpenAI clients know no other value to expect.
pub(super) fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
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

pub(super) fn usage_from(wire: &WireUsage) -> Usage {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
