//! Validation of a client's request body in one streaming pass: the JSON is checked whole, and
//! only what routing needs is kept (model, stream flags, the completion budget, the shape of
//! `messages`). Nothing of the content is copied: an OpenAI-shaped target without overrides
//! gets the client's bytes as they came, and a map is parsed later only where a leaf needs one
//! ([`crate::providers::Body`]). Every value is decoded as a map parse would decode it (numbers
//! in range, escapes valid), so the probe accepts exactly the bodies a full parse accepts. Keys
//! repeat as in a JSON map: the last one counts.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::Error;
use crate::providers::Endpoint;

/// What routing needs of a validated request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Shared with the request log's entry (one copy per request).
    pub model: Option<Arc<str>>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub completion: Option<u64>,
}

/// The JSON type of a value, with what the checks need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Null,
    Bool(bool),
    U64(u64),
    Number,
    /// The text only where it is kept (`model`).
    Str(Option<Arc<str>>),
    Array {
        len: usize,
        /// The first element that is not an object with a string `role`.
        first_without_role: Option<usize>,
    },
    Object {
        string_role: bool,
        include_usage: Option<bool>,
    },
}

struct ShapeSeed {
    keep_str: bool,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = Shape;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Shape, E> {
        Ok(Shape::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Shape, E> {
        Ok(Shape::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Shape, E> {
        Ok(u64::try_from(v).map_or(Shape::Number, Shape::U64))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Number)
    }
    fn visit_str<E>(self, v: &str) -> Result<Shape, E> {
        Ok(Shape::Str(self.keep_str.then(|| v.into())))
    }
    fn visit_string<E>(self, v: String) -> Result<Shape, E> {
        Ok(Shape::Str(self.keep_str.then(|| v.into())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let (mut len, mut first_without_role) = (0, None);
        while let Some(item) = seq.next_element_seed(ShapeSeed { keep_str: false })? {
            let ok = matches!(
                item,
                Shape::Object {
                    string_role: true,
                    ..
                }
            );
            if !ok && first_without_role.is_none() {
                first_without_role = Some(len);
            }
            len += 1;
        }
        Ok(Shape::Array {
            len,
            first_without_role,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let (mut string_role, mut include_usage) = (false, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Role => {
                    string_role = matches!(
                        map.next_value_seed(ShapeSeed { keep_str: false })?,
                        Shape::Str(_)
                    );
                }
                Key::IncludeUsage => {
                    include_usage = match map.next_value_seed(ShapeSeed { keep_str: false })? {
                        Shape::Bool(b) => Some(b),
                        _ => None,
                    };
                }
                _ => {
                    map.next_value_seed(ShapeSeed { keep_str: false })?;
                }
            }
        }
        Ok(Shape::Object {
            string_role,
            include_usage,
        })
    }
}

/// The keys the checks look at, compared without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    MaxOutputTokens,
    N,
    Messages,
    Prompt,
    Input,
    Role,
    IncludeUsage,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "model" => Key::Model,
                    "stream" => Key::Stream,
                    "stream_options" => Key::StreamOptions,
                    "max_tokens" => Key::MaxTokens,
                    "max_completion_tokens" => Key::MaxCompletionTokens,
                    "max_output_tokens" => Key::MaxOutputTokens,
                    "n" => Key::N,
                    "messages" => Key::Messages,
                    "prompt" => Key::Prompt,
                    "input" => Key::Input,
                    "role" => Key::Role,
                    "include_usage" => Key::IncludeUsage,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// The top-level fields, as JSON maps keep them (the last of a repeated key).
#[derive(Default)]
struct Fields {
    model: Option<Shape>,
    stream: Option<Shape>,
    stream_options: Option<Shape>,
    max_tokens: Option<Shape>,
    max_completion_tokens: Option<Shape>,
    max_output_tokens: Option<Shape>,
    n: Option<Shape>,
    messages: Option<Shape>,
    prompt: Option<Shape>,
    input: Option<Shape>,
}

/// `Err(true)`: the body is JSON but not an object.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Option<Fields>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Fields>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Model => &mut f.model,
                Key::Stream => &mut f.stream,
                Key::StreamOptions => &mut f.stream_options,
                Key::MaxTokens => &mut f.max_tokens,
                Key::MaxCompletionTokens => &mut f.max_completion_tokens,
                Key::MaxOutputTokens => &mut f.max_output_tokens,
                Key::N => &mut f.n,
                Key::Messages => &mut f.messages,
                Key::Prompt => &mut f.prompt,
                Key::Input => &mut f.input,
                _ => {
                    map.next_value_seed(ShapeSeed { keep_str: false })?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(ShapeSeed {
                keep_str: key == Key::Model,
            })?);
        }
        Ok(Some(f))
    }
    // Any other JSON value is valid JSON, but not a request.
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq
            .next_element_seed(ShapeSeed { keep_str: false })?
            .is_some()
        {}
        Ok(None)
    }
}

/// Parses and type-checks the body. Deep validation is the provider's job; this catches what
/// would otherwise be forwarded as garbage or break routing.
pub fn parse_body(endpoint: Endpoint, raw: &[u8], max_messages: usize) -> Result<Parsed, Error> {
    let invalid_json = |e: &dyn fmt::Display| Error::InvalidRequest {
        message: format!("request body is not valid JSON: {e}"),
        param: None,
        code: Some("invalid_json"),
    };
    // One UTF-8 check of the whole body (a word at a time over ASCII), then a reader that
    // trusts it: reading from bytes, serde_json checks each string on its own, ~90
    // instructions a string. Escapes are still checked as a full parse checks them.
    let text = std::str::from_utf8(raw)
        .map_err(|e| invalid_json(&format_args!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_any(Top).map_err(|e| invalid_json(&e))?;
    de.end().map_err(|e| invalid_json(&e))?;
    let Some(f) = fields else {
        return Err(Error::invalid("request body must be a JSON object", None));
    };
    let wrong =
        |param: &str, what: &str| Error::invalid(format!("`{param}` must be {what}"), Some(param));
    let model = match f.model {
        None => None,
        Some(Shape::Str(m)) => m,
        Some(_) => return Err(wrong("model", "a string")),
    };
    let stream = match f.stream {
        None | Some(Shape::Null) => false,
        Some(Shape::Bool(b)) => b,
        Some(_) => return Err(wrong("stream", "a boolean")),
    };
    let budget = |name: &str, v: &Option<Shape>| match v {
        None | Some(Shape::Null) => Ok(None),
        Some(Shape::U64(n)) => Ok(Some(*n)),
        Some(_) => Err(wrong(name, "a non-negative integer")),
    };
    let max_tokens = budget("max_tokens", &f.max_tokens)?;
    let max_completion_tokens = budget("max_completion_tokens", &f.max_completion_tokens)?;
    let max_output_tokens = budget("max_output_tokens", &f.max_output_tokens)?;
    budget("n", &f.n)?;
    match endpoint {
        Endpoint::Chat => {
            let Some(Shape::Array {
                len,
                first_without_role,
            }) = f.messages
            else {
                return Err(wrong("messages", "a non-empty array of messages"));
            };
            if len == 0 {
                return Err(wrong("messages", "a non-empty array of messages"));
            }
            if len > max_messages {
                return Err(Error::invalid(
                    format!("too many messages: {len} (limit {max_messages})"),
                    Some("messages"),
                ));
            }
            if let Some(i) = first_without_role {
                return Err(Error::invalid(
                    format!("messages[{i}] must be an object with a string `role`"),
                    Some(&format!("messages[{i}].role")),
                ));
            }
        }
        Endpoint::Completions => {
            if f.prompt.is_none() {
                return Err(wrong("prompt", "given"));
            }
        }
        Endpoint::Embeddings => match f.input {
            Some(Shape::Str(_)) | Some(Shape::Array { .. }) => {}
            _ => return Err(wrong("input", "a string or an array")),
        },
        Endpoint::Responses => match f.input {
            Some(Shape::Array { len, .. }) if len > max_messages => {
                return Err(Error::invalid(
                    format!("too many input items: {len} (limit {max_messages})"),
                    Some("input"),
                ))
            }
            Some(Shape::Str(_)) | Some(Shape::Array { .. }) => {}
            _ => return Err(wrong("input", "a string or an array of items")),
        },
    }
    let include_usage = matches!(
        f.stream_options,
        Some(Shape::Object {
            include_usage: Some(true),
            ..
        })
    );
    Ok(Parsed {
        model,
        stream,
        include_usage,
        completion: max_output_tokens.or(max_completion_tokens).or(max_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The checks as they were made on a parsed map: the probe must agree with them on every
    /// input, valid or not.
    fn reference(endpoint: Endpoint, raw: &[u8], max: usize) -> Result<Parsed, String> {
        let v: Value = serde_json::from_slice(raw).map_err(|_| "invalid_json".to_owned())?;
        let Value::Object(b) = v else {
            return Err("not an object".into());
        };
        let err = |p: &str| Err(p.to_owned());
        let model = match b.get("model") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return err("model"),
        };
        let stream = match b.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(s)) => *s,
            Some(_) => return err("stream"),
        };
        for k in [
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "n",
        ] {
            if let Some(v) = b.get(k) {
                if !(v.is_u64() || v.is_null()) {
                    return err(k);
                }
            }
        }
        match endpoint {
            Endpoint::Chat => match b.get("messages") {
                Some(Value::Array(m)) if !m.is_empty() => {
                    if m.len() > max {
                        return err("messages");
                    }
                    if let Some(i) = m
                        .iter()
                        .position(|m| !m.get("role").is_some_and(Value::is_string))
                    {
                        return Err(format!("messages[{i}].role"));
                    }
                }
                _ => return err("messages"),
            },
            Endpoint::Completions if b.get("prompt").is_none() => return err("prompt"),
            Endpoint::Responses
                if b.get("input")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.len() > max) =>
            {
                return err("input")
            }
            Endpoint::Embeddings | Endpoint::Responses
                if !matches!(b.get("input"), Some(Value::String(_) | Value::Array(_))) =>
            {
                return err("input")
            }
            _ => {}
        }
        let completion = ["max_output_tokens", "max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| b.get(*k).and_then(Value::as_u64));
        Ok(Parsed {
            model: model.map(Into::into),
            stream,
            include_usage: b
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                == Some(true),
            completion,
        })
    }

    fn probe(endpoint: Endpoint, raw: &[u8], max: usize) -> Result<Parsed, String> {
        parse_body(endpoint, raw, max).map_err(|e| match e {
            Error::InvalidRequest {
                code: Some("invalid_json"),
                ..
            } => "invalid_json".to_owned(),
            Error::InvalidRequest { param: Some(p), .. } => p,
            Error::InvalidRequest { param: None, .. } => "not an object".to_owned(),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn the_probe_agrees_with_checks_on_a_parsed_map() {
        let cases: &[&str] = &[
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":9}"#,
            r#"{"model":"m","model":"n","messages":[{"role":"a","role":5}]}"#,
            r#"{"model":5,"messages":[{"role":"user"}]}"#,
            r#"{"model":null,"messages":[{"role":"user"}]}"#,
            r#"{"messages":[{"role":"user"}],"stream":null,"max_tokens":null,"n":-1}"#,
            r#"{"messages":[{"role":"user"}],"max_tokens":1.5}"#,
            r#"{"messages":[{"role":"user"}],"max_completion_tokens":3,"max_tokens":9}"#,
            r#"{"messages":[]}"#,
            r#"{"messages":{}}"#,
            r#"{"messages":[{"role":"user"},"x",{"content":"y"}]}"#,
            r#"{"messages":[{"role":"u"},{"role":"u"},{"role":"u"}]}"#,
            r#"{"messages":[{"role":"u"}],"stream":"yes"}"#,
            r#"{"messages":[{"role":"u"}],"stream_options":{"include_usage":"true"}}"#,
            r#"{"prompt":null}"#,
            r#"{"prompt":"p","input":"i"}"#,
            r#"{"input":["a",1]}"#,
            r#"{"input":3}"#,
            r#"{"x":"\u00e9\n","messages":[{"role":"\u0075ser"}]}"#,
            r#"{"x":1e400}"#,
            r#"{"x":{"y":[1e400]}}"#,
            r#"{"x":"\ud800","messages":[{"role":"u"}]}"#,
            r#"{"x":"\ud83d\ude00","messages":[{"role":"u"}]}"#,
            r#"[1,2]"#,
            r#""str""#,
            r#"{"a":1} x"#,
            r#"{"a":1,}"#,
            "",
            "nul",
        ];
        // Not UTF-8: in a value, a key, a nested string; a sequence cut short; an overlong
        // encoding; a surrogate encoded directly.
        let bytes: &[&[u8]] = &[
            b"{\"model\":\"\xff\",\"messages\":[{\"role\":\"u\"}]}",
            b"{\"mo\xc3del\":\"m\",\"messages\":[{\"role\":\"u\"}]}",
            b"{\"messages\":[{\"role\":\"u\",\"content\":\"caf\xc3\"}]}",
            b"{\"messages\":[{\"role\":\"u\"}],\"x\":\"\xe2\x82\"}",
            b"{\"messages\":[{\"role\":\"u\"}],\"x\":\"\xc0\xaf\"}",
            b"{\"messages\":[{\"role\":\"u\"}],\"x\":\"\xed\xa0\x80\"}",
            b"{\"messages\":[{\"role\":\"u\",\"content\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}]}",
        ];
        for raw in cases
            .iter()
            .map(|c| c.as_bytes())
            .chain(bytes.iter().copied())
        {
            for endpoint in [
                Endpoint::Chat,
                Endpoint::Completions,
                Endpoint::Embeddings,
                Endpoint::Responses,
            ] {
                assert_eq!(
                    probe(endpoint, raw, 2),
                    reference(endpoint, raw, 2),
                    "{endpoint:?} {}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }
}
