//! Amazon Bedrock's Converse API (`provider = "bedrock"`): the [`Bedrock`] [`Provider`] and
//! the translation between OpenAI Chat Completions (what clients speak to llmux) and Converse /
//! ConverseStream (what the upstream speaks).
//!
//! Submodules own one shape each: `request.rs` (chat body → Converse body), `response.rs`
//! (Converse answer → `chat.completion`), `error.rs` (`x-amzn-errortype` + `{"message"}` →
//! OpenAI error), `stream.rs` (the binary `application/vnd.amazon.eventstream` body → events →
//! `chat.completion.chunk`s) and `sign.rs` (SigV4 with `aws-sigv4`). No I/O here: the shared
//! code in [`super`] sends and reads.
//!
//! What Bedrock cannot do through llmux: embeddings and text completions (`supports`), images
//! by http(s) URL (Converse takes bytes only), `n > 1`, logprobs, `response_format` other than
//! text, and active health checks (see `config::bedrock`).

mod error;
mod request;
mod response;
mod sign;
pub mod stream;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::stream::Framing;
use super::{truncate_utf8, MAX_ECHO_BYTES};

/// The 400 a request that cannot be translated gets.
fn invalid(message: impl Into<String>, param: impl Into<String>) -> AttemptError {
    AttemptError::invalid(message, param)
}
use super::{Answer, AttemptError, Endpoint, FailureClass, Merged, Provider, Upstream, Urls};

pub use error::translate_error;
pub use request::translate_request;
pub use response::translate_response;
pub use sign::{sign, SIGNING_NAME};
pub use stream::StreamTranslator;

/// Percent-encodes a model id as one path segment: everything but RFC 3986 unreserved
/// characters, so `:` → `%3A` and `/` (ARNs) → `%2F`, as the AWS SDKs send it.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The model id a Converse URL names (`…/model/{id}/converse[-stream]`), decoded.
fn model_of(url: &reqwest::Url) -> Option<String> {
    let mut segs = url.path_segments()?.rev();
    let _op = segs.next()?;
    let id = segs.next()?;
    let bytes = id.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// Amazon Bedrock Converse: chat (and Responses, translated to chat by llmux) only.
pub struct Bedrock;

impl Provider for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        // Converse is chat only; Bedrock's embeddings models use InvokeModel with per-model
        // bodies, which llmux does not speak.
        matches!(endpoint, Endpoint::Chat | Endpoint::Responses)
    }

    /// Only the `…/model` prefix is known at load: the model id (one path segment) and the
    /// operation are appended per request. The health URL is never used (no active check).
    fn urls(&self, base_url: &str, _: Option<&str>, _: Option<&str>) -> Result<Urls, String> {
        Ok(Urls {
            endpoints: [
                Some(Urls::parse(&format!("{base_url}/model"))?),
                None,
                None,
                None,
            ],
            health: Urls::parse(base_url)?,
        })
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let (Some(prefix), true) = (spec.urls.endpoint(Endpoint::Chat), self.supports(endpoint))
        else {
            return Err(AttemptError::new(
                400,
                FailureClass::Client,
                "invalid_request_error",
                format!(
                    "the {} endpoint is not supported by provider bedrock (target {})",
                    endpoint.openai_path(),
                    spec.name
                ),
            ));
        };
        let map = body.to_map()?;
        let model = match map.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => {
                return Err(invalid(
                    "bedrock needs `model` to name a Bedrock model id, inference profile or \
                     ARN (e.g. via the leaf's override_params)",
                    "model",
                ))
            }
        };
        let stream = matches!(map.get("stream"), Some(Value::Bool(true)));
        let op = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        let mut url = prefix.clone();
        // set_path keeps the %XX escapes of the encoded id as they are.
        url.set_path(&format!("{}/{}/{op}", prefix.path(), encode_segment(model)));
        let translated = translate_request(&map)?;
        let bytes = serde_json::to_vec(&translated).map_err(|e| {
            AttemptError::new(500, FailureClass::Server, "server_error", e.to_string())
        })?;
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if stream {
            req = req.header(
                reqwest::header::ACCEPT,
                "application/vnd.amazon.eventstream",
            );
        }
        let account = spec.bedrock.as_ref();
        match account.and_then(|a| a.sigv4.as_ref().map(|k| (a, k))) {
            Some((a, keys)) => {
                let headers = sign(keys, &a.region, &url, &bytes, std::time::SystemTime::now())
                    .map_err(|e| {
                        AttemptError::new(
                            500,
                            FailureClass::Server,
                            "server_error",
                            format!("cannot sign the request for target {}: {e}", spec.name),
                        )
                    })?;
                for (name, value) in headers {
                    req = req.header(name, value);
                }
            }
            None => {
                if let Some(key) = &spec.api_key {
                    req = req.bearer_auth(key.expose());
                }
            }
        }
        Ok(req.body(bytes))
    }

    fn health(&self, _: &Upstream, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        // Never called: config refuses health_check_interval_ms for bedrock keys.
        req
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        translate_error(status, None, body)
    }

    fn classify(
        &self,
        spec: &crate::config::TargetSpec,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> AttemptError {
        let kind = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        let mut e = translate_error(status, kind, body);
        if e.status == 401 {
            // Say which account's keys to fix; never the keys themselves.
            let how = match spec.bedrock.as_ref().and_then(|b| b.sigv4.as_ref()) {
                Some(k) if k.session_token.is_some() => "its AWS keys and session token",
                Some(_) => "its AWS access key id and secret",
                None => "its Bedrock API key",
            };
            e.message = format!(
                "bedrock target `{}` was refused ({how}): {}",
                spec.name, e.message
            );
        }
        e
    }

    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        self.answer_from(endpoint, status, None, body)
    }

    fn answer_at(
        &self,
        endpoint: Endpoint,
        status: u16,
        url: Option<&reqwest::Url>,
        body: Bytes,
    ) -> Result<Answer, AttemptError> {
        self.answer_from(endpoint, status, url.and_then(model_of), body)
    }

    fn answer_reads_url(&self) -> bool {
        true
    }

    fn framing(&self, include_usage: bool, model: &str) -> Framing {
        let created = crate::clock::unix_ms() / 1000;
        Framing::Bedrock(Box::new(StreamTranslator::new(
            include_usage,
            created,
            model,
        )))
    }
}

impl Bedrock {
    fn answer_from(
        &self,
        _: Endpoint,
        status: u16,
        model: Option<String>,
        body: Bytes,
    ) -> Result<Answer, AttemptError> {
        let created = crate::clock::unix_ms() / 1000;
        let model = model.unwrap_or_else(|| "bedrock".to_owned());
        let (v, usage) = translate_response(&body, created, &model)?;
        Answer::translated(status, &v, usage, Some(model))
    }
}

/// A fresh OpenAI-style id: Converse answers carry none (only the `x-amzn-requestid` header).
fn new_id() -> String {
    format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32)
}

/// Moves the given values into a JSON object (`json!` would clone each operand).
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_ids_are_one_path_segment() {
        assert_eq!(
            encode_segment("anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1%3A0"
        );
        let arn = "arn:aws:bedrock:us-east-1:123:inference-profile/us.x";
        let enc = encode_segment(arn);
        assert!(!enc.contains('/') && enc.contains("%2F"), "{enc}");
        let mut url = reqwest::Url::parse("http://h:1/acct/model").unwrap();
        url.set_path(&format!("{}/{enc}/converse", url.path()));
        assert!(
            url.as_str().ends_with(
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/converse"
            ),
            "{url}"
        );
        assert_eq!(model_of(&url).as_deref(), Some(arn));
    }

    /// xorshift64*: deterministic garbage without a dependency.
    fn garbage(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut x = seed;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        (0..n)
            .map(|_| {
                let len = (next() % 200) as usize;
                (0..len).map(|_| (next() >> 56) as u8).collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn nothing_panics_on_garbage() {
        let valid = br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"},{"toolUse":{"toolUseId":"t","name":"n","input":{"a":[1]}}}]}},"stopReason":"tool_use","usage":{"inputTokens":1}}"#;
        let mut samples = garbage(0x9E37_79B9_7F4A_7C15, 300);
        samples.extend((0..valid.len()).map(|n| valid[..n].to_vec()));
        let names = [
            "messageStart",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
            "throttlingException",
            "",
        ];
        for sample in &samples {
            let _ = translate_response(sample, u64::MAX, "m");
            for status in [0, 200, 400, 403, 429, 500, u16::MAX] {
                let e = translate_error(status, Some("ValidationException:x"), sample);
                assert!((400..600).contains(&e.status));
                let _ = translate_error(status, None, sample);
            }
            let text = String::from_utf8_lossy(sample);
            for kind in ["event", "exception", "error", stream::END] {
                for name in names {
                    let mut t = StreamTranslator::new(true, 0, "m");
                    let mut out = Vec::new();
                    t.on_event(kind, name, &text, &mut out);
                    let _ = (t.usage(), t.has_content());
                }
            }
            // Garbage as a binary body, in one piece and split.
            for split in [1, 7, sample.len().max(1)] {
                let chunks: Vec<Result<Bytes, reqwest::Error>> = sample
                    .chunks(split)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let events: Vec<_> = futures_util::StreamExt::collect(stream::events(
                    futures_util::stream::iter(chunks),
                    1 << 20,
                ))
                .await;
                assert!(events.len() <= sample.len() / 16 + 1);
            }
        }
        let weird = [
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5e300),
            json!(""),
            json!("data:"),
            json!([null, 1, "x", {}]),
            json!({}),
        ];
        let base = json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        for key in [
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "temperature",
            "top_p",
            "top_k",
            "tools",
            "tool_choice",
            "n",
            "response_format",
        ] {
            for w in &weird {
                let mut b = base.as_object().unwrap().clone();
                b.insert(key.into(), w.clone());
                let _ = translate_request(&b);
                for i in 0..4 {
                    for field in ["content", "role", "tool_calls", "tool_call_id"] {
                        let mut b = base.as_object().unwrap().clone();
                        b["messages"][i][field] = w.clone();
                        let _ = translate_request(&b);
                    }
                }
            }
        }
    }
}
