//! Converse answer (`{output:{message}, stopReason, usage}`) → OpenAI `chat.completion`, and
//! the stop-reason and usage mappings the stream shares.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{new_id, object};
use crate::providers::{AttemptError, Usage};

/// Converse usage counters. Cache reads and writes are counted outside `inputTokens` (as
/// litellm reads them), so the OpenAI prompt is their sum.
#[derive(Deserialize, Default, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(self.cache_write_input_tokens.unwrap_or(0)),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
        }
    }
}

/// The OpenAI `usage` object.
pub(super) fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// `stopReason` → `finish_reason`; `Err` for the `malformed_*` reasons, where the model produced
/// nothing usable: the attempt fails (502) and the router may fall back.
pub(super) fn finish_reason(stop: Option<&str>) -> Result<&'static str, AttemptError> {
    Ok(match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        Some(r @ ("malformed_model_output" | "malformed_tool_use")) => {
            return Err(AttemptError::bad_upstream(
                r,
                format!("Bedrock stopped with {r}: the model's output was unusable"),
            ))
        }
        // end_turn, stop_sequence, and reasons newer than this list: the turn did end.
        _ => "stop",
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAnswer {
    output: WireOutput,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireOutput {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// A 2xx Converse body → (`chat.completion`, usage). `model` is the id the request named
/// (Converse answers do not repeat it). A body that is not an answer is a 502.
pub fn translate_response(
    body: &[u8],
    created: u64,
    model: &str,
) -> Result<(Value, Usage), AttemptError> {
    let a: WireAnswer = serde_json::from_slice(body).map_err(|e| {
        // Position only: serde's message may quote the upstream body.
        AttemptError::bad_upstream(
            "invalid_upstream_response",
            format!(
                "upstream returned a malformed Converse answer (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let finish = finish_reason(a.stop_reason.as_deref())?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in &a.output.message.content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            let s = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or_default();
            let input = u.get("input").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": s("toolUseId"),
                "type": "function",
                "function": {"name": s("name"), "arguments": input.to_string()},
            }));
        }
        // reasoningContent, citations, images…: nothing an OpenAI chat answer carries.
    }
    let usage = a.usage.usage();
    let mut message = object([
        ("role", json!("assistant")),
        (
            "content",
            if text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            },
        ),
        ("refusal", Value::Null),
    ]);
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = object([
        ("id", Value::String(new_id())),
        ("object", json!("chat.completion")),
        ("created", json!(created)),
        ("model", json!(model)),
        (
            "choices",
            json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]),
        ),
        ("usage", usage_json(usage)),
    ]);
    Ok((out, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer of wire-formats-2 §4, verbatim.
    const DOC_ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"tooluse_1","name":"wx","input":{"city":"Paris"}}}]}},
 "stopReason":"tool_use","usage":{"inputTokens":50,"outputTokens":20,"totalTokens":70},"metrics":{"latencyMs":412}}"#;

    #[test]
    fn doc_answer() {
        let model = "anthropic.claude-3-haiku-20240307-v1:0";
        let (v, usage) = translate_response(DOC_ANSWER.as_bytes(), 7, model).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], model);
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(c["message"]["content"], Value::Null);
        assert_eq!(
            c["message"]["tool_calls"],
            json!([{"id": "tooluse_1", "type": "function",
                    "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 50,
                completion_tokens: 20,
                cached_tokens: 0
            }
        );
        assert_eq!(v["usage"]["total_tokens"], 70);
    }

    #[test]
    fn text_cache_and_stop_reasons() {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}, {"text": " there"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 10, "outputTokens": 2, "totalTokens": 42, "cacheReadInputTokens": 20, "cacheWriteInputTokens": 10}});
        let (v, u) = translate_response(body.to_string().as_bytes(), 0, "m").unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!((u.prompt_tokens, u.cached_tokens), (40, 20));
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
        for (stop, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("model_context_window_exceeded", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(stop)).unwrap(), want);
        }
        let e = finish_reason(Some("malformed_tool_use")).unwrap_err();
        assert_eq!(e.status, 502);
        assert!(translate_response(b"{\"nope\":1}", 0, "m").is_err());
        assert!(translate_response(b"not json", 0, "m").is_err());
    }
}
