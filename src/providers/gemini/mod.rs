//! Google's Gemini API (`generativelanguage.googleapis.com`, `provider = "gemini"`): the
//! [`Gemini`] [`Provider`] and the translation between OpenAI Chat Completions / Embeddings
//! (what clients speak to llmux) and Gemini's `generateContent`, `streamGenerateContent` and
//! `batchEmbedContents` (what the upstream speaks).
//!
//! This module owns the URLs (the model is a path segment, so each request's URL is built from
//! the target's `…/v1beta/models` base, see [`model_url`]) and the credentials (`x-goog-api-key`,
//! never the query string). Submodules own the shapes: `request.rs` (chat → Gemini body),
//! `response.rs` (Gemini answer → `chat.completion`, embeddings both ways), `error.rs` (Google
//! error bodies → OpenAI errors, `RetryInfo.retryDelay` → the attempt's hint) and `stream.rs`
//! (`data:` frames → `chat.completion.chunk`s). No I/O here; nothing panics on client or
//! upstream input.
//!
//! What llmux cannot do with Gemini (the README's provider table):
//! - `/v1/completions` (Gemini has no text-completion API): refused by [`Gemini::supports`];
//!   the Responses API is served by llmux's translation to chat (`responses_api = "chat"`).
//! - `logprobs`, audio output (`modalities`/`audio`), non-function tools (web search, custom
//!   tools) and token-array embedding inputs: refused with a 400.
//! - Dropped silently: every parameter not translated (the body is rebuilt from the known
//!   ones), e.g. `user`, `safety_identifier`, `metadata`, `store`, `service_tier`,
//!   `prompt_cache_key`, `parallel_tool_calls`, `logit_bias`, `prediction`, `verbosity`,
//!   `web_search_options`, zero penalties (Gemini refuses penalties on models without them),
//!   `encoding_format` (embeddings come back as float arrays, which the OpenAI SDKs accept
//!   even when they asked for base64). Embeddings report no token usage (Gemini gives none).
//! - Translated beyond the basics: `reasoning_effort` → `thinkingConfig` (a budget for 2.5, a
//!   level for 3), `top_k`, `seed`, non-zero penalties, `input_audio` (wav/mp3) and data-URL
//!   `file` parts → `inlineData`.
//! - Tool-call ids: Gemini often sends none, so llmux mints `call_<responseId>_<choice>_<n>`;
//!   a Gemini 3 `thoughtSignature` travels inside the id (`…__ts__<base64url>`), so a client
//!   that replays the id replays the signature. Ids go upstream as `functionCall.id` /
//!   `functionResponse.id` without the signature suffix. Such ids are longer than OpenAI's own
//!   (a fallback of that history to an OpenAI target may meet its id length limit).
//!   Signatures on text parts are not carried (Google makes returning those optional).

mod error;
mod request;
mod response;
mod stream;

use bytes::Bytes;
use serde_json::Value;

use super::stream::Framing;
use super::{truncate_utf8, MAX_ECHO_BYTES};

/// The 400 a request that cannot be translated gets.
fn invalid(message: impl Into<String>, param: impl Into<String>) -> AttemptError {
    AttemptError::invalid(message, param)
}
use super::{Answer, AttemptError, Endpoint, FailureClass, Merged, Provider, Upstream, Urls};

pub use error::{retry_delay, translate_error};
pub use request::{translate_embeddings, translate_request};
pub use response::{translate_embeddings_response, translate_response};
pub use stream::{sse_data_lines, StreamOutput, StreamTranslator};

/// The Gemini model id of a request, checked to be one plain path segment. `models/` (the
/// resource name Google's own listings use) is accepted and stripped. Anything that could
/// change the URL's meaning (`/`, `..`, `:`, `?`, `%`, spaces…) is the client's 400: only
/// `[A-Za-z0-9._-]` is ever put in the path.
pub fn model_id(model: Option<&Value>) -> Result<&str, AttemptError> {
    let bad = |why: &str| invalid(format!("`model` {why}"), "model");
    let model = match model {
        Some(Value::String(m)) => m.strip_prefix("models/").unwrap_or(m),
        _ => {
            return Err(bad(
                "is required and must be a string (the Gemini model id)",
            ))
        }
    };
    if !super::is_model_segment(model, b"") {
        return Err(bad(
            "must be a Gemini model id such as `gemini-2.5-flash` (letters, digits, `.`, `_`, `-`)",
        ));
    }
    Ok(model)
}

/// `{base}/{model}:{verb}` for the target's `…/v1beta/models` base URL. A clone and one pushed
/// segment: no parse per request. `push` percent-encodes the segment; [`model_id`] has already
/// limited it to characters that need none.
pub fn model_url(base: &reqwest::Url, model: &str, verb: &str) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty().push(&format!("{model}:{verb}"));
    }
    url
}

/// Google's Gemini API: chat (streamed or not) and embeddings, every body translated.
pub struct Gemini;

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        // Responses are translated to chat by llmux (`providers::responses`).
        matches!(
            endpoint,
            Endpoint::Chat | Endpoint::Embeddings | Endpoint::Responses
        )
    }

    fn urls(&self, base_url: &str, _: Option<&str>, _: Option<&str>) -> Result<Urls, String> {
        let models = Urls::parse(&format!("{base_url}/v1beta/models"))?;
        if models.cannot_be_a_base() {
            return Err(format!("`{base_url}` cannot carry a path"));
        }
        Ok(Urls {
            endpoints: [Some(models.clone()), None, Some(models.clone()), None],
            health: models,
        })
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let Some(base) = spec.urls.endpoint(endpoint) else {
            return Err(AttemptError::new(
                400,
                FailureClass::Client,
                "invalid_request_error",
                format!(
                    "the {} endpoint is not supported by provider gemini (target {})",
                    endpoint.openai_path(),
                    spec.name
                ),
            ));
        };
        let map = body.to_map()?;
        let model = model_id(map.get("model"))?;
        let (url, translated) = if endpoint == Endpoint::Embeddings {
            (
                model_url(base, model, "batchEmbedContents"),
                translate_embeddings(&map, model)?,
            )
        } else {
            let stream = match map.get("stream") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("`stream` must be a boolean", "stream")),
            };
            let translated = translate_request(&map, model)?;
            let url = if stream {
                let mut u = model_url(base, model, "streamGenerateContent");
                u.set_query(Some("alt=sse"));
                u
            } else {
                model_url(base, model, "generateContent")
            };
            (url, translated)
        };
        Ok(spec.with_credential(client.post(url).json(&translated)))
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("x-goog-api-key", key.to_owned()))
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        translate_error(status, body)
    }

    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        let bad = |why: String| AttemptError::bad_upstream("bad_upstream_answer", why);
        let (v, usage) = if endpoint == Endpoint::Embeddings {
            translate_embeddings_response(&body).map_err(bad)?
        } else {
            translate_response(&body, crate::clock::unix_ms() / 1000).map_err(bad)?
        };
        let model = v
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        Answer::translated(status, &v, usage, model)
    }

    fn framing(&self, include_usage: bool, model: &str) -> Framing {
        let created = crate::clock::unix_ms() / 1000;
        Framing::Gemini(Box::new(StreamTranslator::new(
            include_usage,
            created,
            model,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every prefix of real documents plus wrong-typed fields: translation never panics.
    #[test]
    fn nothing_panics_on_hostile_input() {
        let docs = [
            r#"{"responseId":"r","modelVersion":"m","candidates":[{"content":{"role":"model","parts":[{"text":"a"},{"functionCall":{"name":"f","args":{"x":[1]}},"thoughtSignature":"c2ln"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":18446744073709551615,"candidatesTokenCount":18446744073709551615,"thoughtsTokenCount":18446744073709551615}}"#,
            r#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#,
            r#"{"embeddings":[{"values":[1,2]}]}"#,
            r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#,
        ];
        for doc in docs {
            for n in 0..=doc.len() {
                let b = &doc.as_bytes()[..n];
                let _ = translate_response(b, u64::MAX);
                let _ = translate_embeddings_response(b);
                for status in [0, 200, 400, 429, 503, u16::MAX] {
                    let e = translate_error(status, b);
                    assert!(!e.message.is_empty());
                }
                let mut t = StreamTranslator::new(true, 0, "m");
                let mut out = Vec::new();
                t.on_data(&String::from_utf8_lossy(b), &mut out);
                t.on_data(&String::from_utf8_lossy(b), &mut out);
                t.end(&mut out);
            }
        }
        // Huge counters saturate.
        let (v, u) = translate_response(docs[0].as_bytes(), 0).unwrap();
        assert_eq!(u.completion_tokens, u64::MAX);
        assert_eq!(v["usage"]["total_tokens"], u64::MAX);

        let weird = [
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5e300),
            json!(""),
            json!("data:"),
            json!([]),
            json!([null, 1, "x", {}]),
            json!({}),
            json!({"type": "function", "function": {"name": 5}}),
            json!([{"role": "assistant", "tool_calls": [{"id": "x__ts__", "function": {"name": "f", "arguments": "\u{0}"}}]}]),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:;base64,"}}]}]),
        ];
        let valid = json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        let keys = [
            "messages",
            "tools",
            "tool_choice",
            "stop",
            "n",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "response_format",
            "reasoning_effort",
            "logprobs",
            "modalities",
            "stream",
            "input",
            "dimensions",
            "presence_penalty",
        ];
        for key in keys {
            for w in &weird {
                let mut body = request::tests::obj(valid.clone());
                body.insert(key.to_owned(), w.clone());
                let _ = translate_request(&body, "gemini-3-pro");
                let _ = translate_embeddings(&body, "e");
            }
        }
    }

    /// JSON shaped like what the translators read: Gemini and OpenAI keys among the noise.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z_:/. ]{0,10}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            Just("candidates"),
            Just("content"),
            Just("parts"),
            Just("text"),
            Just("functionCall"),
            Just("name"),
            Just("args"),
            Just("finishReason"),
            Just("index"),
            Just("usageMetadata"),
            Just("error"),
            Just("code"),
            Just("details"),
            Just("retryDelay"),
            Just("@type"),
            Just("role"),
            Just("messages"),
            Just("tool_calls"),
            Just("function"),
            Just("arguments"),
            Just("tools"),
            Just("tool_choice"),
            Just("embeddings"),
            Just("values"),
            Just("id"),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        #[test]
        fn translations_never_panic(v in json_value(), status in 0u16..1000) {
            let bytes = serde_json::to_vec(&v).unwrap();
            let _ = translate_response(&bytes, 0);
            let _ = translate_embeddings_response(&bytes);
            let e = translate_error(status, &bytes);
            proptest::prop_assert!((400..600).contains(&e.status) && !e.message.is_empty());
            let mut t = StreamTranslator::new(true, 0, "m");
            let mut out = Vec::new();
            t.on_data(&v.to_string(), &mut out);
            t.end(&mut out);
            for o in out {
                if let StreamOutput::Chunk(c) = o {
                    serde_json::from_str::<Value>(&c).expect("every chunk is JSON");
                }
            }
            if let Value::Object(m) = v {
                if let Err(e) = translate_request(&m, "gemini-3-pro") {
                    proptest::prop_assert_eq!(e.status, 400);
                }
                let _ = translate_embeddings(&m, "e");
            }
        }
    }

    #[test]
    fn reasoning_effort_maps_per_generation() {
        let body = |effort: &str| {
            request::tests::obj(
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}),
            )
        };
        let cfg = |model: &str, effort: &str| {
            translate_request(&body(effort), model)
                .map(|v| v["generationConfig"]["thinkingConfig"].clone())
        };
        assert_eq!(
            cfg("gemini-2.5-flash", "low").unwrap(),
            json!({"thinkingBudget": 1024})
        );
        assert_eq!(
            cfg("gemini-2.5-flash", "none").unwrap(),
            json!({"thinkingBudget": 0})
        );
        assert_eq!(
            cfg("gemini-3-pro-preview", "high").unwrap(),
            json!({"thinkingLevel": "high"})
        );
        assert!(cfg("gemini-3-pro-preview", "none").is_err());
        assert!(cfg("gemini-2.5-flash", "bogus").is_err());
    }

    #[test]
    fn model_ids_are_one_plain_segment() {
        assert_eq!(
            model_id(Some(&json!("gemini-2.5-flash"))).unwrap(),
            "gemini-2.5-flash"
        );
        assert_eq!(
            model_id(Some(&json!("models/gemini-2.5-pro"))).unwrap(),
            "gemini-2.5-pro"
        );
        for bad in [
            json!(""),
            json!(".."),
            json!("."),
            json!("../files"),
            json!("a/b"),
            json!("models/../x"),
            json!("gemini:generateContent?key=x"),
            json!("a%2Fb"),
            json!("a b"),
            json!("gémini"),
            json!(5),
            Value::Null,
        ] {
            let e = model_id(Some(&bad)).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("model")),
                "{bad}"
            );
        }
        assert!(model_id(None).is_err());
    }

    #[test]
    fn urls_put_the_model_in_the_path_and_never_a_key_in_the_query() {
        let urls = Gemini.urls("http://127.0.0.1:9/acct", None, None).unwrap();
        let base = urls.endpoint(Endpoint::Chat).unwrap();
        assert_eq!(
            model_url(base, "gemini-2.5-flash", "generateContent").as_str(),
            "http://127.0.0.1:9/acct/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            urls.health.as_str(),
            "http://127.0.0.1:9/acct/v1beta/models"
        );
        assert!(urls.endpoint(Endpoint::Completions).is_none());
        assert!(urls.endpoint(Endpoint::Responses).is_none());
        assert!(!Gemini.supports(Endpoint::Completions));
        assert!(Gemini.supports(Endpoint::Responses));
    }
}
