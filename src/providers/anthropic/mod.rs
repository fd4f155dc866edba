//! Translation between the OpenAI Chat Completions wire format (what clients speak to llmux) and
//! Anthropic's Messages API (what the upstream speaks).
//!
//! This module owns every Anthropic-specific shape: request bodies (`request.rs`,
//! [`translate_request`]), non-streaming responses (`response.rs`, [`translate_response`]), error
//! bodies (`error.rs`, [`translate_error`]) and the SSE event stream (`stream.rs`,
//! [`StreamTranslator`]); and the [`Anthropic`] [`Provider`] that wires them into llmux. It does
//! no I/O: callers hand it parsed or raw bodies and SSE events, and send what it returns. Nothing
//! here panics on upstream or client input; every malformed input becomes an error value.

mod error;
mod request;
mod response;
mod stream;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::stream::Framing;
use super::{truncate_utf8, MAX_ECHO_BYTES};
use super::{
    Answer, AttemptError, Endpoint, FailureClass, Merged, Provider, Upstream, Urls, Usage,
};
use bytes::Bytes;
pub use error::translate_error;
pub use request::translate_request;
pub use response::translate_response;
pub use stream::{StreamOutput, StreamTranslator};

/// Error from translating a client request: becomes an OpenAI-shaped 400 `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// Builds a JSON object by moving the given values in. `json!` would serialize its operands by
/// reference, cloning every string and subtree handed to it.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain structs and `Value`s cannot fail (all map keys are strings); should it
    // ever, an empty object is a safer output than a panic on the hot path.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

/// Anthropic's Messages API: chat only, every body translated both ways.
pub struct Anthropic;

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        // Responses are translated to chat by llmux (`providers::responses`).
        matches!(endpoint, Endpoint::Chat | Endpoint::Responses)
    }

    fn urls(&self, base_url: &str, _: Option<&str>, _: Option<&str>) -> Result<Urls, String> {
        Ok(Urls {
            endpoints: [
                Some(Urls::parse(&format!("{base_url}/v1/messages"))?),
                None,
                None,
                None,
            ],
            health: Urls::parse(&format!("{base_url}/v1/models"))?,
        })
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let Some(url) = spec
            .urls
            .endpoint(endpoint)
            .filter(|_| self.supports(endpoint))
        else {
            return Err(AttemptError::new(
                400,
                FailureClass::Client,
                "invalid_request_error",
                format!(
                    "the {} endpoint is not supported by provider anthropic (target {})",
                    endpoint.openai_path(),
                    spec.name
                ),
            ));
        };
        let translated =
            translate_request(&body.to_map()?, spec.default_max_tokens).map_err(|e| {
                let mut err = AttemptError::new(
                    400,
                    FailureClass::Client,
                    "invalid_request_error",
                    e.message,
                );
                err.param = e.param;
                err
            })?;
        let req = client
            .post(url.clone())
            .header("anthropic-version", &spec.anthropic_version)
            .json(&translated);
        Ok(spec.with_credential(req))
    }

    fn health(&self, spec: &Upstream, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        spec.with_credential(req.header("anthropic-version", &spec.anthropic_version))
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("x-api-key", key.to_owned()))
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        let (status, v) = translate_error(status, body);
        super::openai::error_from_value(status, &v)
    }

    fn answer(&self, _: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        let created = crate::clock::unix_ms() / 1000;
        let (v, usage) = translate_response(&body, created).map_err(|e| {
            AttemptError::new(
                502,
                FailureClass::Server,
                "server_error",
                format!("bad answer from anthropic: {}", e.message),
            )
        })?;
        let model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        Answer::translated(status, &v, usage, model)
    }

    fn framing(&self, include_usage: bool, model: &str) -> Framing {
        let created = crate::clock::unix_ms() / 1000;
        Framing::Anthropic(Box::new(StreamTranslator::new(
            include_usage,
            created,
            model,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::error::tests::anthropic_error;
    use super::request::tests::obj;
    use super::stream::tests::{replay, DOC_STREAM};
    use super::*;

    /// xorshift64*: deterministic garbage without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| (self.next() >> 56) as u8).collect()
        }
    }

    fn weird_values() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(1.5e300),
            json!(u64::MAX),
            json!(""),
            json!("data:"),
            json!("data:;base64,"),
            json!("é"),
            json!([]),
            json!([null, 1, "x", {}]),
            json!({}),
            json!({"type": "function", "function": {"name": "f"}}),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:\u{e9};base64,\u{e9}"}}]}]),
            json!([{"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "\u{0}"}}]}]),
        ]
    }

    #[test]
    fn translate_request_never_panics_on_wrong_types() {
        let keys = [
            "model",
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "temperature",
            "top_p",
            "top_k",
            "user",
            "safety_identifier",
            "stream",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "n",
            "logprobs",
            "response_format",
            "stream_options",
        ];
        let valid = obj(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "r"}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}]
        }));
        for key in keys {
            for value in weird_values() {
                let mut body = valid.clone();
                body.insert(key.to_owned(), value);
                let _ = translate_request(&body, 1);
                let _ = translate_request(&body, 0);
                let _ = translate_request(&body, u64::MAX);
            }
        }
        // Wrong types inside each message field too.
        for (i, field) in [
            (1, "content"),
            (1, "role"),
            (2, "tool_calls"),
            (2, "content"),
            (3, "tool_call_id"),
            (3, "content"),
        ] {
            for value in weird_values() {
                let mut body = valid.clone();
                if let Some(msg) = body
                    .get_mut("messages")
                    .and_then(|m| m.get_mut(i))
                    .and_then(Value::as_object_mut)
                {
                    msg.insert(field.to_owned(), value);
                }
                let _ = translate_request(&body, 1);
            }
        }
        let _ = translate_request(&Map::new(), 1);
    }

    #[test]
    fn response_error_and_stream_never_panic_on_garbage() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let samples: Vec<Vec<u8>> = {
            let mut v: Vec<Vec<u8>> = (0..300)
                .map(|i| {
                    let len = (rng.next() % 300) as usize + i % 3;
                    rng.bytes(len)
                })
                .collect();
            // Every prefix of valid documents: truncated upstream bodies are common.
            for doc in DOC_STREAM.iter().map(|(_, d)| d.as_bytes()).chain([
                br#"{"id":"m","type":"message","model":"c","content":[{"type":"tool_use","id":"t","name":"n","input":{"a":[1]}}],"usage":{"input_tokens":1}}"#.as_slice(),
                anthropic_error("rate_limit_error", "slow").as_slice(),
            ]) {
                v.extend((0..doc.len()).map(|n| doc[..n].to_vec()));
            }
            v
        };
        let events = [
            "",
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
            "ping",
            "nonsense",
        ];
        for sample in &samples {
            let _ = translate_response(sample, u64::MAX);
            for status in [0, 200, 400, 429, 500, 529, u16::MAX] {
                let (_, v) = translate_error(status, sample);
                assert!(v["error"]["message"].is_string());
            }
            let text = String::from_utf8_lossy(sample);
            for event in events {
                let mut t = StreamTranslator::new(true, 0, "m");
                let mut out = Vec::new();
                t.on_event(event, &text, &mut out);
                let _ = (t.usage(), t.finish_reason(), t.has_content());
            }
        }
        // Huge counters must saturate instead of overflowing.
        let body = json!({"id": "m", "type": "message", "model": "c", "content": [],
                          "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "output_tokens": u64::MAX}});
        let (out, usage) = translate_response(body.to_string().as_bytes(), 0).expect("valid");
        assert_eq!(usage.prompt_tokens, u64::MAX);
        assert_eq!(out["usage"]["total_tokens"], u64::MAX);
        let mut t = StreamTranslator::new(true, 0, "m");
        let start = json!({"type": "message_start", "message": {"id": "x", "usage": {"input_tokens": u64::MAX, "cache_creation_input_tokens": 5, "output_tokens": u64::MAX}}}).to_string();
        let out = replay(&mut t, &[("message_start", &start), ("message_stop", "")]);
        assert_eq!(out.last(), Some(&StreamOutput::Done));
    }
}
