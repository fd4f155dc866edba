//! OpenAI and OpenAI-compatible servers (vLLM, Together, Groq, Ollama…): the body passes
//! through with overrides applied, `Authorization: Bearer`. Also the OpenAI error envelope,
//! which Azure shares.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::stream::Framing;
use super::{Answer, AttemptError, Endpoint, Merged, Provider, Upstream, Urls, Usage};

/// OpenAI's wire format. `compatible`: an OpenAI-compatible server, which may not know
/// `stream_options`, so llmux never asks it for stream usage itself; OpenAI proper is asked
/// whenever the client did not ask (usage feeds logs, cost and token budgets).
pub struct OpenAi {
    pub compatible: bool,
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        if self.compatible {
            "openai-compatible"
        } else {
            "openai"
        }
    }

    fn asks_usage(&self) -> bool {
        !self.compatible
    }

    fn urls(&self, base_url: &str, _: Option<&str>, _: Option<&str>) -> Result<Urls, String> {
        urls(base_url)
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        build(client, spec, endpoint, body)
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("authorization", format!("Bearer {key}")))
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        parse_error(status, body)
    }

    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        answer(endpoint, status, body)
    }

    fn framing(&self, include_usage: bool, _model: &str) -> Framing {
        // The usage chunk llmux asked for itself is not the client's to see.
        Framing::OpenAi {
            drop_usage_chunk: self.asks_usage() && !include_usage,
        }
    }
}

fn urls(base_url: &str) -> Result<Urls, String> {
    Urls::every_endpoint(
        |e| format!("{base_url}{}", e.openai_path()),
        &format!("{base_url}/models"),
    )
}

fn build(
    client: &reqwest::Client,
    spec: &Upstream,
    endpoint: Endpoint,
    body: &Merged<'_>,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let Some(url) = spec.urls.endpoint(endpoint) else {
        unreachable!("OpenAI-shaped targets have every endpoint")
    };
    Ok(spec.with_credential(body.attach(client.post(url.clone()))?))
}

/// Map keys matched as raw bytes. serde_json reads a `&str` key by checking its UTF-8 (~100
/// instructions a key, a fifth of reading a typical answer); read as bytes it only scans for
/// the closing quote. The probe compares a few ASCII names, and passes the body on as it came.
trait Keys: Sized {
    fn of(key: &[u8]) -> Self;
}

/// A key the caller does not look at.
impl Keys for () {
    fn of(_: &[u8]) {}
}

struct Key<K>(K);

impl<'de, K: Keys> Deserialize<'de> for Key<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(std::marker::PhantomData<K>);
        impl<K: Keys> serde::de::Visitor<'_> for V<K> {
            type Value = Key<K>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Key<K>, E> {
                Ok(Key(K::of(v)))
            }
            // Deserializers without raw keys (a parsed `Value`) hand over text.
            fn visit_str<E>(self, v: &str) -> Result<Key<K>, E> {
                Ok(Key(K::of(v.as_bytes())))
            }
        }
        d.deserialize_bytes(V(std::marker::PhantomData))
    }
}

/// What [`answer`] reads of a 2xx body. As in any JSON map, the last of a repeated key counts.
#[derive(Default)]
struct Probe {
    model: Option<String>,
    usage: Option<UsageProbe>,
    /// Chat and completions answers.
    choices: Option<Objects>,
    /// Embeddings answers.
    data: Option<Objects>,
    /// Responses API answers.
    output: Option<Objects>,
}

enum ProbeKey {
    Model,
    Usage,
    Choices,
    Data,
    Output,
    Other,
}

impl Keys for ProbeKey {
    fn of(key: &[u8]) -> Self {
        match key {
            b"model" => ProbeKey::Model,
            b"usage" => ProbeKey::Usage,
            b"choices" => ProbeKey::Choices,
            b"data" => ProbeKey::Data,
            b"output" => ProbeKey::Output,
            _ => ProbeKey::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an answer object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Probe, A::Error> {
                let mut p = Probe::default();
                while let Some(Key(k)) = m.next_key::<Key<ProbeKey>>()? {
                    match k {
                        ProbeKey::Model => p.model = m.next_value()?,
                        ProbeKey::Usage => p.usage = m.next_value()?,
                        ProbeKey::Choices => p.choices = m.next_value()?,
                        ProbeKey::Data => p.data = m.next_value()?,
                        ProbeKey::Output => p.output = m.next_value()?,
                        ProbeKey::Other => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// An array whose items are all objects, checked without collecting them (no allocation on
/// the hot path).
struct Objects;

impl<'de> Deserialize<'de> for Objects {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Objects;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Objects, A::Error> {
                while a.next_element::<AnObject>()?.is_some() {}
                Ok(Objects)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Any JSON object, contents skipped: enough to tell an answer from `[1, 2]` or `null`.
struct AnObject;

impl<'de> Deserialize<'de> for AnObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<AnObject, A::Error> {
                while m.next_entry::<Key<()>, serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// Chat/completions usage, or the Responses API's under its own names (`input_tokens`…).
/// Counts must be non-negative integers where present.
#[derive(Default)]
pub(crate) struct UsageProbe {
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
}

enum UsageKey {
    Prompt,
    Completion,
    PromptDetails,
    Cached,
    Other,
}

impl Keys for UsageKey {
    fn of(key: &[u8]) -> Self {
        match key {
            b"prompt_tokens" | b"input_tokens" => UsageKey::Prompt,
            b"completion_tokens" | b"output_tokens" => UsageKey::Completion,
            b"prompt_tokens_details" | b"input_tokens_details" => UsageKey::PromptDetails,
            b"cached_tokens" => UsageKey::Cached,
            _ => UsageKey::Other,
        }
    }
}

impl<'de> Deserialize<'de> for UsageProbe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `details`: reading `prompt_tokens_details`, where only `cached_tokens` counts.
        struct V {
            details: bool,
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UsageProbe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<UsageProbe, A::Error> {
                let mut u = UsageProbe::default();
                while let Some(Key(k)) = m.next_key::<Key<UsageKey>>()? {
                    match k {
                        UsageKey::Prompt if !self.details => u.prompt_tokens = m.next_value()?,
                        UsageKey::Completion if !self.details => {
                            u.completion_tokens = m.next_value()?
                        }
                        UsageKey::PromptDetails if !self.details => {
                            u.cached_tokens = m
                                .next_value_seed(Details)?
                                .map_or(0, |d: UsageProbe| d.cached_tokens);
                        }
                        UsageKey::Cached if self.details => u.cached_tokens = m.next_value()?,
                        _ => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(u)
            }
        }
        /// `prompt_tokens_details`: an object, or `null`.
        struct Details;
        impl<'de> serde::de::DeserializeSeed<'de> for Details {
            type Value = Option<UsageProbe>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_option(self)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Details {
            type Value = Option<UsageProbe>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a usage details object")
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_map(V { details: true }).map(Some)
            }
        }
        d.deserialize_map(V { details: false })
    }
}

impl UsageProbe {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
        }
    }
}

/// A 2xx OpenAI-shaped body passes through byte for byte; only model and usage are read, and
/// just enough of the shape to know it is an answer for `endpoint` (`choices` of objects for
/// chat and completions, `data` of objects for embeddings). Anything else — `{}`, `[]`, an
/// error object with a 200, truncated JSON — is a failed attempt (502), so the tree can fall
/// back instead of handing the client something its SDK cannot parse.
pub fn answer(endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
    let invalid = |why: String| {
        AttemptError::bad_upstream(
            "invalid_upstream_response",
            format!("upstream returned HTTP {status} with {why}"),
        )
    };
    // Objects only: serde would also read a struct from a JSON array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("a body that is not a JSON object".into()));
    }
    let probe: Probe = serde_json::from_slice(&body).map_err(|e| {
        // The position only: serde's message may quote upstream content.
        invalid(format!(
            "a body that is not a valid answer (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let (field, items) = match endpoint {
        Endpoint::Chat | Endpoint::Completions => ("choices", probe.choices.is_some()),
        Endpoint::Embeddings => ("data", probe.data.is_some()),
        Endpoint::Responses => ("output", probe.output.is_some()),
    };
    if !items {
        return Err(invalid(format!(
            "no `{field}` array: not a {} answer",
            endpoint.openai_path()
        )));
    }
    Ok(Answer {
        status,
        usage: probe.usage.map(|u| u.usage()).unwrap_or_default(),
        model: probe.model,
        body,
    })
}

/// Reads an OpenAI/Azure error body (`{"error":{...}}`), tolerating anything.
pub fn parse_error(status: u16, body: &[u8]) -> AttemptError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("error").is_some() => error_from_value(status, &v),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream returned HTTP {status}")
            } else {
                format!("upstream returned HTTP {status}: {text}")
            };
            AttemptError::new(
                status,
                AttemptError::class_of(status),
                default_type(status),
                message,
            )
        }
    }
}

/// Builds an attempt error from an OpenAI-shaped `{"error":{...}}` value.
pub fn error_from_value(status: u16, v: &Value) -> AttemptError {
    let e = v.get("error").unwrap_or(v);
    let s = |k: &str| -> Option<String> {
        match e.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut err = AttemptError::new(
        status,
        AttemptError::class_of(status),
        s("type").as_deref().unwrap_or(default_type(status)),
        s("message").unwrap_or_else(|| format!("upstream returned HTTP {status}")),
    );
    err.code = s("code");
    err.param = s("param");
    err
}

fn default_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureClass;

    fn check(endpoint: Endpoint, body: &str) -> Result<Answer, AttemptError> {
        answer(endpoint, 200, Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn real_answers_pass_through() {
        let chat = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let a = check(Endpoint::Chat, chat).unwrap();
        assert_eq!(&a.body[..], chat.as_bytes());
        assert_eq!(a.model.as_deref(), Some("m"));
        assert_eq!(a.usage.prompt_tokens, 3);
        assert!(check(Endpoint::Completions, r#" {"choices":[{"text":"x"}]}"#).is_ok());
        assert!(check(Endpoint::Chat, r#"{"choices":[]}"#).is_ok());
        assert!(check(Endpoint::Embeddings, r#"{"data":[{"embedding":[0.1]}]}"#).is_ok());
    }

    #[test]
    fn usage_is_read_under_both_namings() {
        let usage = |body: &str| check(Endpoint::Chat, body).unwrap().usage;
        let u = usage(
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":5},"completion_tokens_details":{"cached_tokens":7}}}"#,
        );
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (9, 4, 5)
        );
        let u = check(
            Endpoint::Responses,
            r#"{"output":[],"usage":{"input_tokens":8,"output_tokens":3,"input_tokens_details":{"cached_tokens":2}}}"#,
        )
        .unwrap()
        .usage;
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (8, 3, 2)
        );
        // `cached_tokens` counts only inside the prompt's details; absent or null parts are 0.
        let u = usage(r#"{"choices":[],"usage":{"cached_tokens":6,"prompt_tokens_details":null}}"#);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (0, 0, 0)
        );
        assert_eq!(usage(r#"{"choices":[],"usage":null}"#), Usage::default());
        // As in any JSON map, the last of a repeated key counts.
        let u = usage(r#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#);
        assert_eq!(u.prompt_tokens, 2);
        // Escapes in keys are decoded before keys are compared.
        let u = usage(r#"{"choices":[],"usage":{"prompt\u005ftokens":3}}"#);
        assert_eq!(u.prompt_tokens, 3);
    }

    #[test]
    fn garbage_200s_are_failed_attempts() {
        for (endpoint, body) in [
            (Endpoint::Chat, "{}"),
            (Endpoint::Chat, "[]"),
            (Endpoint::Chat, "[null, null]"),
            (Endpoint::Chat, "not json"),
            (Endpoint::Chat, ""),
            (Endpoint::Chat, "null"),
            (Endpoint::Chat, r#"{"choices":[{"message":{"content":"tru"#),
            (Endpoint::Chat, r#"{"choices":{}}"#),
            (Endpoint::Chat, r#"{"choices":null}"#),
            (Endpoint::Chat, r#"{"choices":[1,"sk-secret-in-body"]}"#),
            (Endpoint::Chat, r#"{"data":[{}]}"#),
            (Endpoint::Chat, r#"{"error":{"message":"oops"}}"#),
            (Endpoint::Completions, "{}"),
            (Endpoint::Embeddings, r#"{"choices":[{}]}"#),
            (Endpoint::Embeddings, r#"{"data":"x"}"#),
            (
                Endpoint::Chat,
                r#"{"choices":[],"usage":{"prompt_tokens":-1}}"#,
            ),
            (
                Endpoint::Chat,
                r#"{"choices":[],"usage":{"prompt_tokens":null}}"#,
            ),
            (
                Endpoint::Chat,
                r#"{"choices":[],"usage":{"prompt_tokens_details":[]}}"#,
            ),
            (Endpoint::Chat, r#"{"choices":[],"usage":7}"#),
            (Endpoint::Chat, r#"{"choices":[{"a\u12":1}]}"#),
            (Endpoint::Chat, r#"{"choices":[{"a":"x"}],"b":"\q"}"#),
        ] {
            let e = check(endpoint, body).expect_err(body);
            assert_eq!(e.status, 502, "{body}");
            assert_eq!(e.class, FailureClass::Server, "{body}");
            assert_eq!(e.kind, "server_error");
            assert_eq!(e.code.as_deref(), Some("invalid_upstream_response"));
            assert!(!e.message.contains("sk-secret"), "{}", e.message);
        }
    }
}
