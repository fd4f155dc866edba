//! Google Vertex AI (`provider = "vertex"`): the [`Vertex`] [`Provider`] serving Gemini models
//! (`publishers/google`) and Anthropic's Claude models (`publishers/anthropic`) of one Google
//! Cloud project and location, with an OAuth2 service-account token ([`token`]).
//!
//! This module owns the Vertex URLs ([`urls`], [`publisher_url`]), the choice of publisher by
//! model id (ids starting with `claude` are Anthropic's) and the Anthropic-on-Vertex body (the
//! Messages body without `model`, plus `anthropic_version`). Everything else is reused: the
//! bodies, answers, streams and errors are exactly those of [`super::gemini`] and
//! [`super::anthropic`]. The answer and error of a call are told apart by their shape
//! (Anthropic's carry a top-level `type`; Google's, including Vertex's own errors on Claude
//! calls such as an unknown model, do not), the stream by the requested model.
//!
//! What llmux cannot do with Vertex (the README's provider table):
//! - Embeddings and `/v1/completions`: refused by [`Vertex::supports`] (Vertex embeds with
//!   `:predict` and its own instance shapes, which llmux does not translate); the Responses API
//!   is served by llmux's translation to chat.
//! - Active health checks (`health_check_interval_ms` is a config error): Vertex has no cheap
//!   authenticated call; health follows real requests.
//! - Publishers other than Google and Anthropic (Llama, Mistral… on Vertex's OpenAI-compatible
//!   endpoint), Anthropic betas (`anthropic-beta`), workload identity / metadata-server and
//!   user credentials (only service-account key files).
//! - Everything each translation refuses or drops (see the gemini and anthropic modules).

pub mod token;

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::stream::Framing;
use super::{Answer, AttemptError, Endpoint, FailureClass, Merged, Provider, Upstream, Urls};
use crate::config::gcp::VertexSpec;

pub use token::TokenSource;

/// The `anthropic_version` Vertex's Anthropic publisher requires in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The 400 a request that cannot be sent gets.
fn invalid(message: impl Into<String>, param: &str) -> AttemptError {
    let mut e = AttemptError::new(400, FailureClass::Client, "invalid_request_error", message);
    e.param = Some(param.to_owned());
    e
}

/// The target's `…/v1/projects/{p}/locations/{l}/publishers` base, to which each request adds
/// `{publisher}/models/{model}:{verb}`. `base_url` (no trailing slash) is the location's host
/// unless the config overrides it.
pub fn urls(base_url: &str, v: &VertexSpec) -> Result<Urls, String> {
    let base = Urls::parse(&format!(
        "{base_url}/v1/projects/{}/locations/{}/publishers",
        v.project, v.location
    ))?;
    if base.cannot_be_a_base() {
        return Err(format!("`{base_url}` cannot carry a path"));
    }
    Ok(Urls {
        endpoints: [Some(base.clone()), None, None, None],
        // Never asked: vertex targets refuse `health_check_interval_ms`.
        health: base,
    })
}

/// `{base}/{publisher}/models/{model}:{verb}`: a clone and pushed segments, no parse per
/// request. [`model_id`] has limited the model to characters a segment carries as they are.
pub fn publisher_url(
    base: &reqwest::Url,
    publisher: &str,
    model: &str,
    verb: &str,
) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty()
            .push(publisher)
            .push("models")
            .push(&format!("{model}:{verb}"));
    }
    url
}

/// The request's model (after `override_params`), checked to be one plain path segment:
/// `[A-Za-z0-9._@-]` (Claude ids on Vertex carry `@`, e.g. `claude-sonnet-4@20250514`).
pub fn model_id(model: Option<&Value>) -> Result<&str, AttemptError> {
    let Some(Value::String(model)) = model else {
        return Err(invalid(
            "`model` is required and must be a string (a Vertex model id)",
            "model",
        ));
    };
    if !super::is_model_segment(model, b"@") {
        return Err(invalid(
            "`model` must be a Vertex model id such as `gemini-2.5-flash` or \
             `claude-sonnet-4@20250514` (letters, digits, `.`, `_`, `-`, `@`)",
            "model",
        ));
    }
    Ok(model)
}

/// Whether the model is Anthropic's (served by `publishers/anthropic`).
pub fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

/// The Anthropic-on-Vertex body: the Messages translation without `model` (it is in the URL)
/// and with Vertex's `anthropic_version`; `stream` stays as translated.
pub fn anthropic_body(mut messages: Value) -> Value {
    if let Some(o) = messages.as_object_mut() {
        o.remove("model");
        o.insert("anthropic_version".into(), ANTHROPIC_VERSION.into());
    }
    messages
}

/// Whether a body is Anthropic's (an answer or an error): it names its `type` at the top.
fn anthropic_shaped(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Probe<'_>>(body)
        .ok()
        .and_then(|p| p.kind)
        .is_some_and(|k| k == "message" || k == "error")
}

/// Google Vertex AI: chat (streamed or not) with Gemini and Claude models.
pub struct Vertex;

impl Provider for Vertex {
    fn name(&self) -> &'static str {
        "vertex"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        // Responses are translated to chat by llmux (`providers::responses`).
        matches!(endpoint, Endpoint::Chat | Endpoint::Responses)
    }

    /// Unused: a Vertex URL needs the project and location, so [`super::Upstream::new`] calls
    /// [`urls`] with the target's [`VertexSpec`].
    fn urls(&self, _: &str, _: Option<&str>, _: Option<&str>) -> Result<Urls, String> {
        Err("provider vertex needs project and location".into())
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let Some(base) = spec
            .urls
            .endpoint(endpoint)
            .filter(|_| self.supports(endpoint))
        else {
            return Err(invalid(
                format!(
                    "the {} endpoint is not supported by provider vertex (target {})",
                    endpoint.openai_path(),
                    spec.name
                ),
                "model",
            ));
        };
        let map = body.to_map()?;
        let model = model_id(map.get("model"))?;
        let stream = match map.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("`stream` must be a boolean", "stream")),
        };
        let (url, translated) = if is_claude(model) {
            let messages = super::anthropic::translate_request(&map, spec.default_max_tokens)
                .map_err(|e| {
                    let mut err = invalid(e.message, "");
                    err.param = e.param;
                    err
                })?;
            let verb = if stream {
                "streamRawPredict"
            } else {
                "rawPredict"
            };
            (
                publisher_url(base, "anthropic", model, verb),
                anthropic_body(messages),
            )
        } else {
            let translated = super::gemini::translate_request(&map, model)?;
            let url = if stream {
                let mut u = publisher_url(base, "google", model, "streamGenerateContent");
                u.set_query(Some("alt=sse"));
                u
            } else {
                publisher_url(base, "google", model, "generateContent")
            };
            (url, translated)
        };
        // The bearer token is added by `providers::authorize`, after this (sync) step.
        Ok(client.post(url).json(&translated))
    }

    fn health(&self, _: &Upstream, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        if anthropic_shaped(body) {
            super::anthropic::Anthropic.error(status, body)
        } else {
            super::gemini::Gemini.error(status, body)
        }
    }

    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        if anthropic_shaped(&body) {
            super::anthropic::Anthropic.answer(endpoint, status, body)
        } else {
            super::gemini::Gemini.answer(endpoint, status, body)
        }
    }

    fn framing(&self, include_usage: bool, model: &str) -> Framing {
        if is_claude(model) {
            super::anthropic::Anthropic.framing(include_usage, model)
        } else {
            super::gemini::Gemini.framing(include_usage, model)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(location: &str) -> VertexSpec {
        VertexSpec {
            project: "proj-1".into(),
            location: location.into(),
            credentials: crate::config::gcp::ServiceAccount::parse(
                include_str!("../../../tests/fixtures/vertex-sa.json"),
                std::path::Path::new("sa.json"),
            )
            .unwrap(),
        }
    }

    fn config(location: &str) -> std::sync::Arc<crate::config::TargetSpec> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.vx]\nprovider = \"vertex\"\n\
             project = \"proj-1\"\nlocation = \"{location}\"\n\
             credentials_file = \"tests/fixtures/vertex-sa.json\"\n"
        );
        let c = crate::config::Config::parse(&text, &dir.join("c.toml"), &|_| None).unwrap();
        c.targets[0].clone()
    }

    #[test]
    fn urls_follow_the_location() {
        let regional = Upstream::new(config("us-east5")).unwrap();
        let base = regional.urls.endpoint(Endpoint::Chat).unwrap();
        assert_eq!(
            publisher_url(base, "google", "gemini-2.5-flash", "generateContent").as_str(),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        let global = Upstream::new(config("global")).unwrap();
        let base = global.urls.endpoint(Endpoint::Chat).unwrap();
        assert_eq!(
            publisher_url(base, "anthropic", "claude-sonnet-4@20250514", "streamRawPredict")
                .as_str(),
            "https://aiplatform.googleapis.com/v1/projects/proj-1/locations/global/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
        );
        // A base_url override (the mock) keeps its path prefix.
        let u = urls("http://127.0.0.1:9/acct", &spec("us-east5")).unwrap();
        assert_eq!(
            u.endpoint(Endpoint::Chat).unwrap().as_str(),
            "http://127.0.0.1:9/acct/v1/projects/proj-1/locations/us-east5/publishers"
        );
        assert!(u.endpoint(Endpoint::Embeddings).is_none());
        assert!(!Vertex.supports(Endpoint::Embeddings) && !Vertex.supports(Endpoint::Completions));
        assert!(global.oauth.is_some());
    }

    #[test]
    fn model_ids_are_one_plain_segment() {
        for ok in [
            "gemini-2.5-flash",
            "claude-sonnet-4@20250514",
            "claude-3-5-haiku@20241022",
        ] {
            assert_eq!(model_id(Some(&json!(ok))).unwrap(), ok);
        }
        for bad in [
            json!(""),
            json!(".."),
            json!("a/b"),
            json!("../../x"),
            json!("m:rawPredict"),
            json!("m?x=1"),
            json!("a%2F"),
            json!("a b"),
            json!(5),
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

    fn built(model: &str, stream: bool) -> (String, Value) {
        let up = Upstream::new(config("us-east5")).unwrap();
        let body = super::super::Body::new(Bytes::from(
            json!({"model": "placeholder", "stream": stream,
                   "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]})
            .to_string(),
        ));
        let over = serde_json::Map::from_iter([("model".to_owned(), json!(model))]);
        let merged = Merged::new(&body, &over);
        let req = Vertex
            .build(&reqwest::Client::new(), &up, Endpoint::Chat, &merged)
            .unwrap()
            .build()
            .unwrap();
        assert!(req.headers().get("authorization").is_none());
        let v = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        (req.url().to_string(), v)
    }

    #[test]
    fn claude_on_vertex_has_no_model_and_vertex_anthropic_version() {
        let (url, v) = built("claude-sonnet-4@20250514", true);
        assert!(
            url.ends_with("/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"),
            "{url}"
        );
        assert!(v.get("model").is_none(), "{v}");
        assert_eq!(v["anthropic_version"], ANTHROPIC_VERSION);
        assert_eq!(v["stream"], true);
        assert_eq!(v["system"], "s");
        assert_eq!(v["messages"][0]["role"], "user");
        let (url, _) = built("claude-sonnet-4@20250514", false);
        assert!(url.ends_with(":rawPredict"), "{url}");
    }

    #[test]
    fn gemini_on_vertex_is_geminis_body() {
        let (url, v) = built("gemini-2.5-flash", true);
        assert!(
            url.ends_with(
                "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            ),
            "{url}"
        );
        assert_eq!(v["contents"][0]["parts"][0]["text"], "hi");
        assert_eq!(v["systemInstruction"]["parts"][0]["text"], "s");
        let (url, _) = built("gemini-2.5-flash", false);
        assert!(url.ends_with(":generateContent"), "{url}");
    }

    #[test]
    fn answers_and_errors_are_told_apart_by_shape() {
        let claude = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;
        let a = Vertex
            .answer(Endpoint::Chat, 200, Bytes::from_static(claude))
            .unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        let gemini = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"yo"}]},"finishReason":"STOP","index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r"}"#;
        let a = Vertex
            .answer(Endpoint::Chat, 200, Bytes::from_static(gemini))
            .unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "yo");
        let e = Vertex.error(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(e.status, 429);
        assert!(e.message.contains("slow down"));
        let e = Vertex.error(
            404,
            br#"{"error":{"code":404,"message":"Publisher model not found","status":"NOT_FOUND"}}"#,
        );
        assert!(
            e.message.contains("Publisher model not found"),
            "{}",
            e.message
        );
    }
}
