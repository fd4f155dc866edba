//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`; `batchEmbedContents` answer →
//! OpenAI embedding list. Shared with the stream: the finish-reason and usage mappings, and the
//! tool-call id minting.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::request::join_call_id;
use crate::providers::Usage;

/// `usageMetadata`; every counter optional (stream frames carry partial ones).
#[derive(Deserialize, Default, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl WireUsage {
    pub(super) fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_token_count.unwrap_or(0),
            // Thoughts are billed as output but counted outside `candidatesTokenCount`.
            completion_tokens: self
                .candidates_token_count
                .unwrap_or(0)
                .saturating_add(self.reasoning()),
            cached_tokens: self.cached_content_token_count.unwrap_or(0),
        }
    }

    fn reasoning(&self) -> u64 {
        self.thoughts_token_count.unwrap_or(0)
    }

    /// OpenAI's `usage` object.
    pub(super) fn to_openai(self) -> Value {
        let u = self.usage();
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning()},
        })
    }
}

/// The parts of a candidate llmux reads; everything else (thoughts, code execution…) is skipped.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct WirePart {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
    #[serde(default)]
    pub(super) function_call: Option<WireCall>,
    #[serde(default)]
    pub(super) thought_signature: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireCall {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) name: String,
    #[serde(default)]
    pub(super) args: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireContent {
    #[serde(default)]
    pub(super) parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCandidate {
    #[serde(default)]
    pub(super) content: Option<WireContent>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) index: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireResponse {
    #[serde(default)]
    pub(super) candidates: Option<Vec<WireCandidate>>,
    #[serde(default)]
    pub(super) prompt_feedback: Option<Value>,
    #[serde(default)]
    pub(super) usage_metadata: Option<WireUsage>,
    #[serde(default)]
    pub(super) model_version: Option<String>,
    #[serde(default)]
    pub(super) response_id: Option<String>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

impl WireResponse {
    /// `promptFeedback.blockReason`: the prompt itself was blocked (then no candidates).
    pub(super) fn blocked(&self) -> bool {
        self.prompt_feedback
            .as_ref()
            .and_then(|f| f.get("blockReason"))
            .is_some_and(|r| !r.is_null())
    }
}

/// Gemini `finishReason` → OpenAI `finish_reason`. `STOP` with a function call is `tool_calls`;
/// every safety-like stop is `content_filter`; anything else (`OTHER`, `MALFORMED_FUNCTION_CALL`,
/// reasons added later) is `stop`, the one value every client handles.
pub(super) fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "LANGUAGE" => {
            "content_filter"
        }
        r if r.starts_with("IMAGE_") => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// The id of the `n`th call of choice `choice` in the answer `response_id`: Gemini's own id when
/// it sent one, else minted (stable for a given answer), with the thought signature appended.
pub(super) fn call_id(
    response_id: &str,
    choice: u32,
    n: usize,
    call: &WireCall,
    signature: Option<&str>,
) -> String {
    let base = match call.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("call_{response_id}_{choice}_{n}"),
    };
    join_call_id(&base, signature)
}

/// An OpenAI `tool_calls[]` entry for a Gemini `functionCall`.
pub(super) fn tool_call(id: String, call: WireCall) -> Value {
    let args = call.args.unwrap_or_else(|| json!({}));
    json!({"id": id, "type": "function", "function": {"name": call.name, "arguments": args.to_string()}})
}

/// A response id usable inside minted ids (`[A-Za-z0-9_-]`), or a random one.
pub(super) fn safe_id(id: Option<&str>) -> String {
    match id.filter(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        Some(s) => super::truncate_utf8(s, 64).to_owned(),
        None => format!("{:016x}", rand::random::<u64>()),
    }
}

/// Gemini 2xx body → (OpenAI `chat.completion`, usage). `created` goes in `created`.
pub fn translate_response(body: &[u8], created: u64) -> Result<(Value, Usage), String> {
    let r: WireResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "upstream returned a malformed Gemini answer (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if r.candidates.is_none() && !r.blocked() {
        return Err("upstream returned a Gemini answer without candidates".into());
    }
    let rid = safe_id(r.response_id.as_deref());
    let mut choices = Vec::new();
    for (pos, cand) in r.candidates.unwrap_or_default().into_iter().enumerate() {
        let index = cand.index.unwrap_or(pos as u32);
        let mut text: Option<String> = None;
        let mut calls = Vec::new();
        for part in cand.content.unwrap_or_default().parts {
            if part.thought == Some(true) {
                continue;
            }
            if let Some(call) = part.function_call {
                let id = call_id(
                    &rid,
                    index,
                    calls.len(),
                    &call,
                    part.thought_signature.as_deref(),
                );
                calls.push(tool_call(id, call));
            } else if let Some(t) = part.text {
                text.get_or_insert_with(String::new).push_str(&t);
            }
        }
        let reason = finish_reason(
            cand.finish_reason.as_deref().unwrap_or("STOP"),
            !calls.is_empty(),
        );
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        message.insert("content".into(), text.map_or(Value::Null, Value::String));
        if !calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        choices.push(
            json!({"index": index, "message": message, "logprobs": null, "finish_reason": reason}),
        );
    }
    if choices.is_empty() {
        // A blocked prompt (or an empty list): one empty, filtered choice, as OpenAI reports one.
        choices.push(
            json!({"index": 0, "message": {"role": "assistant", "content": null},
            "logprobs": null, "finish_reason": "content_filter"}),
        );
    }
    let wire = r.usage_metadata.unwrap_or_default();
    let out = json!({
        "id": format!("chatcmpl-{rid}"),
        "object": "chat.completion",
        "created": created,
        "model": r.model_version.unwrap_or_default(),
        "choices": choices,
        "usage": wire.to_openai(),
    });
    Ok((out, wire.usage()))
}

#[derive(Deserialize)]
struct WireEmbeddings {
    embeddings: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    values: Vec<f64>,
}

/// `batchEmbedContents` answer → OpenAI embedding list. Gemini reports no model and no token
/// count here: `model` is empty (the proxy logs the requested one) and usage is zero.
pub fn translate_embeddings_response(body: &[u8]) -> Result<(Value, Usage), String> {
    let r: WireEmbeddings = serde_json::from_slice(body)
        .map_err(|_| "upstream returned a malformed Gemini embeddings answer".to_owned())?;
    let data: Vec<Value> = r
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e.values}))
        .collect();
    let out = json!({"object": "list", "data": data, "model": "",
        "usage": {"prompt_tokens": 0, "total_tokens": 0}});
    Ok((out, Usage::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doc_response_translates_exactly() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"wx","args":{"city":"Paris"}},"thoughtSignature":"c2ln"}]},"finishReason":"STOP","index":0}],
 "usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":5,"thoughtsTokenCount":12,"totalTokenCount":47}}"#;
        let (out, usage) = translate_response(body, 1_735_689_600).unwrap();
        let id = out["id"]
            .as_str()
            .unwrap()
            .strip_prefix("chatcmpl-")
            .unwrap()
            .to_owned();
        assert_eq!(
            out,
            json!({
                "id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": 1_735_689_600u64, "model": "",
                "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": null,
                    "tool_calls": [{"id": format!("call_{id}_0_0__ts__c2ln"), "type": "function",
                        "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 17, "total_tokens": 47,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 12}}
            })
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 30,
                completion_tokens: 17,
                cached_tokens: 0
            }
        );
    }

    #[test]
    fn text_ids_thoughts_and_cache() {
        let body = json!({"responseId": "abc", "modelVersion": "gemini-2.5-flash",
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "thinking", "thought": true}, {"text": "18"}, {"text": "C."}]}, "finishReason": "STOP", "index": 0},
                {"content": {"role": "model", "parts": [{"text": "cut"}]}, "finishReason": "MAX_TOKENS", "index": 1},
                {"content": {"role": "model", "parts": [{"functionCall": {"id": "g1", "name": "f"}}]}, "finishReason": "STOP", "index": 2}],
            "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 4}});
        let (out, usage) = translate_response(body.to_string().as_bytes(), 1).unwrap();
        assert_eq!(out["id"], "chatcmpl-abc");
        assert_eq!(out["model"], "gemini-2.5-flash");
        assert_eq!(out["choices"][0]["message"]["content"], "18C.");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["choices"][1]["finish_reason"], "length");
        assert_eq!(out["choices"][2]["message"]["tool_calls"][0]["id"], "g1");
        assert_eq!(
            out["choices"][2]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 60);
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 4,
                cached_tokens: 60
            }
        );
    }

    #[test]
    fn filters_and_blocked_prompts() {
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
        ] {
            assert_eq!(finish_reason(r, false), "content_filter");
            assert_eq!(finish_reason(r, true), "content_filter");
        }
        assert_eq!(finish_reason("MALFORMED_FUNCTION_CALL", false), "stop");
        let body = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7}}"#;
        let (out, _) = translate_response(body, 1).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert!(out["choices"][0]["message"]["content"].is_null());
        assert!(translate_response(b"{}", 1).is_err());
        assert!(translate_response(b"not json", 1).is_err());
        assert!(translate_response(
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{}}]}}]}"#,
            1
        )
        .is_err());
    }

    #[test]
    fn embeddings_answers() {
        let (out, _) = translate_embeddings_response(
            br#"{"embeddings":[{"values":[0.5,-1]},{"values":[2]}]}"#,
        )
        .unwrap();
        assert_eq!(out["object"], "list");
        assert_eq!(
            out["data"][1],
            json!({"object": "embedding", "index": 1, "embedding": [2.0]})
        );
        assert!(translate_embeddings_response(b"{\"embedding\":{}}").is_err());
    }
}
