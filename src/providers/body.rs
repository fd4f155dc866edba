//! The client's request body on its way upstream: the bytes as sent, a leaf's `override_params`
//! laid over them (overrides win per top-level key, as in Portkey), and llmux's own request
//! for usage on streams. The bytes go upstream untouched when nothing is laid over them; when
//! every laid-over key is absent from the body they are spliced in front of the client's own
//! keys; only a body that has one of those keys is parsed into a map and re-serialized.

use std::fmt;
use std::sync::LazyLock;

use bytes::Bytes;
use reqwest::header::HeaderValue;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::{AttemptError, FailureClass};

/// The key llmux lays over a stream's body to be told its usage.
const STREAM_OPTIONS: &str = "stream_options";
static ASK_USAGE: LazyLock<Value> = LazyLock::new(|| serde_json::json!({"include_usage": true}));

/// A client's request body: the bytes as sent, and the JSON map parsed from them only when a
/// translation or an override of a key the body has needs it. The front has validated it with
/// a streaming probe that allocates nothing for the content.
pub struct Body {
    raw: Bytes,
    map: std::cell::OnceCell<Result<Map<String, Value>, String>>,
}

impl Body {
    pub fn new(raw: Bytes) -> Body {
        Body {
            raw,
            map: std::cell::OnceCell::new(),
        }
    }

    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The body as a JSON map, parsed on first use. The front has validated it as an object;
    /// a body its probe accepts but a full parse does not (e.g. a lone UTF-16 surrogate in a
    /// string) is the client's 400.
    pub fn map(&self) -> Result<&Map<String, Value>, AttemptError> {
        let parsed = self
            .map
            .get_or_init(|| match serde_json::from_slice::<Value>(&self.raw) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err("request body must be a JSON object".to_owned()),
                Err(e) => Err(format!("request body is not valid JSON: {e}")),
            });
        parsed.as_ref().map_err(|e| {
            let mut err = AttemptError::new(
                400,
                FailureClass::Client,
                "invalid_request_error",
                e.clone(),
            );
            err.code = Some("invalid_json".into());
            err
        })
    }
}

/// The request body with a leaf's `override_params` laid over it (overrides win per key, as
/// in Portkey), and with `ask_usage`, `stream_options: {"include_usage": true}` over both.
pub struct Merged<'a> {
    pub body: &'a Body,
    pub overrides: &'a Map<String, Value>,
    /// Set on a stream whose client did not ask for usage, to a target that only reports it
    /// when asked: llmux needs it for budgets and the request log. A flag rather than a key in
    /// a copy of `overrides`, so no request clones its leaf's map.
    pub ask_usage: bool,
}

impl<'a> Merged<'a> {
    /// The body and a leaf's overrides, without llmux's own keys.
    pub fn new(body: &'a Body, overrides: &'a Map<String, Value>) -> Merged<'a> {
        Merged {
            body,
            overrides,
            ask_usage: false,
        }
    }

    /// The keys laid over the body, each once, with the value that wins.
    fn laid_over(&self) -> impl Iterator<Item = (&str, &Value)> + Clone {
        let ask = self.ask_usage;
        self.overrides
            .iter()
            .filter(move |(k, _)| !(ask && k.as_str() == STREAM_OPTIONS))
            .map(|(k, v)| (k.as_str(), v))
            .chain(ask.then(|| (STREAM_OPTIONS, &*ASK_USAGE)))
    }

    fn over(&self, key: &str) -> Option<&Value> {
        if self.ask_usage && key == STREAM_OPTIONS {
            return Some(&ASK_USAGE);
        }
        self.overrides.get(key)
    }

    /// An OpenAI-shaped JSON body on `req`. With nothing to lay over it, the client's bytes
    /// go upstream as they came; with only keys the body lacks, those are spliced in front of
    /// its bytes (no parse, no re-serialization of the client's content).
    pub fn attach(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let json = |req: reqwest::RequestBuilder, bytes: Bytes| {
            req.header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(bytes)
        };
        if self.overrides.is_empty() && !self.ask_usage {
            return Ok(json(req, self.body.raw().clone()));
        }
        if let Some(spliced) = self.spliced() {
            return Ok(json(req, spliced));
        }
        Ok(req.json(&Overlay {
            body: self.body.map()?,
            merged: self,
        }))
    }

    /// The client's bytes with the laid-over keys written after its opening brace, when the
    /// body is one JSON object that has none of them at its top level; else `None` (the map
    /// path decides). Equal as JSON to the map path's answer: no key repeats.
    fn spliced(&self) -> Option<Bytes> {
        let raw = self.body.raw();
        let keys = self.laid_over();
        let mut de = serde_json::Deserializer::from_slice(raw);
        let scan = TopKeys {
            wanted: keys.clone(),
        };
        let has_keys = match de.deserialize_map(scan) {
            Ok(Some(has_keys)) => has_keys,
            // A laid-over key is there, or the body is not one object: the map path.
            Ok(None) | Err(_) => return None,
        };
        de.end().ok()?;
        let brace = raw.iter().position(|&b| b == b'{')?;
        let mut out = Vec::with_capacity(raw.len() + 64);
        out.push(b'{');
        let mut wrote = false;
        for (k, v) in keys {
            if wrote {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, k).ok()?;
            out.push(b':');
            serde_json::to_writer(&mut out, v).ok()?;
            wrote = true;
        }
        if wrote && has_keys {
            out.push(b',');
        }
        out.extend_from_slice(&raw[brace + 1..]);
        Some(out.into())
    }

    /// An owned merged map, for translations that rebuild the body anyway.
    pub fn to_map(&self) -> Result<Map<String, Value>, AttemptError> {
        let mut m = self.body.map()?.clone();
        for (k, v) in self.laid_over() {
            m.insert(k.to_owned(), v.clone());
        }
        Ok(m)
    }
}

/// A parsed body and what is laid over it, serialized as one map without copying either.
struct Overlay<'a> {
    body: &'a Map<String, Value>,
    merged: &'a Merged<'a>,
}

impl Serialize for Overlay<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let extra = self
            .merged
            .laid_over()
            .filter(|(k, _)| !self.body.contains_key(*k))
            .count();
        let mut m = s.serialize_map(Some(self.body.len() + extra))?;
        for (k, v) in self.body {
            m.serialize_entry(k, self.merged.over(k).unwrap_or(v))?;
        }
        for (k, v) in self.merged.laid_over() {
            if !self.body.contains_key(k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// One pass over a body's top-level keys, values skipped: `Some(has_any_key)` when none of
/// `wanted` is among them, `None` as soon as one is. Allocates nothing (a key with escapes is
/// decoded into the deserializer's scratch buffer).
struct TopKeys<I> {
    wanted: I,
}

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a Value)> + Clone> Visitor<'de> for TopKeys<I> {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<bool>, A::Error> {
        let mut any = false;
        while let Some(hit) = map.next_key_seed(KeyHit(self.wanted.clone()))? {
            if hit {
                // Stopping here leaves the map unfinished, which the deserializer reports as
                // an error: either way the caller takes the map path.
                return Ok(None);
            }
            map.next_value::<IgnoredAny>()?;
            any = true;
        }
        Ok(Some(any))
    }
}

/// A key, read only to say whether it is one of the wanted ones.
struct KeyHit<I>(I);

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a Value)>> DeserializeSeed<'de> for KeyHit<I> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a Value)>> Visitor<'de> for KeyHit<I> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(mut self, key: &str) -> Result<bool, E> {
        Ok(self.0.any(|(k, _)| k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    /// What goes upstream, as JSON, and whether it was spliced.
    fn sent(raw: &'static str, over: &Map<String, Value>, ask_usage: bool) -> (Value, bool) {
        let body = Body::new(Bytes::from_static(raw.as_bytes()));
        let merged = Merged {
            body: &body,
            overrides: over,
            ask_usage,
        };
        let req = merged
            .attach(reqwest::Client::new().post("http://127.0.0.1:9/x"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(req.headers()["content-type"], "application/json");
        let bytes = req.body().unwrap().as_bytes().unwrap().to_vec();
        let spliced = merged.spliced().is_some();
        // The map path's answer, for comparison.
        let overlay = serde_json::to_value(Overlay {
            body: body.map().unwrap(),
            merged: &merged,
        })
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, overlay, "{}", String::from_utf8_lossy(&bytes));
        (v, spliced)
    }

    #[test]
    fn nothing_laid_over_sends_the_clients_bytes() {
        let body = Body::new(Bytes::from_static(b" {\"model\" : \"a\"} "));
        let req = Merged::new(&body, &Map::new())
            .attach(reqwest::Client::new().post("http://127.0.0.1:9/x"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            req.body().unwrap().as_bytes(),
            Some(&b" {\"model\" : \"a\"} "[..])
        );
        assert!(body.map.get().is_none(), "no map was parsed");
    }

    #[test]
    fn absent_keys_are_spliced_in_front_without_a_parse() {
        let over = map(r#"{"max_tokens":5,"user":"q\"x"}"#);
        let (v, spliced) = sent(
            r#" {"model":"a","messages":[{"role":"user","content":"hi"}]}"#,
            &over,
            false,
        );
        assert!(spliced);
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["user"], "q\"x");
        assert_eq!(v["model"], "a");
        // The same bytes, exactly: the overrides, then the client's text after its brace.
        let body = Body::new(Bytes::from_static(br#"{ "model":"a"}"#));
        let m = Merged::new(&body, &over);
        assert_eq!(
            &m.spliced().unwrap()[..],
            br#"{"max_tokens":5,"user":"q\"x", "model":"a"}"#
        );
        assert!(body.map.get().is_none(), "no map was parsed");
    }

    #[test]
    fn an_empty_object_gets_the_keys_without_a_dangling_comma() {
        let (v, spliced) = sent(" { \n } ", &map(r#"{"model":"b"}"#), true);
        assert!(spliced);
        assert_eq!(
            v,
            serde_json::json!({"model": "b", "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn a_key_the_body_has_takes_the_map_path_and_the_override_wins() {
        let over = map(r#"{"model":"b","max_tokens":5}"#);
        let (v, spliced) = sent(r#"{"model":"a","messages":[]}"#, &over, false);
        assert!(!spliced);
        assert_eq!(v["model"], "b");
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["messages"], serde_json::json!([]));
        // Written with an escape, the key is still the same key.
        let (v, spliced) = sent(r#"{"mod\u0065l":"a"}"#, &over, false);
        assert!(!spliced);
        assert_eq!(v["model"], "b");
        // A key repeated in the body: every copy gives way to the override.
        let (v, spliced) = sent(r#"{"x":1,"x":2}"#, &map(r#"{"x":3}"#), false);
        assert!(!spliced);
        assert_eq!(v["x"], 3);
    }

    #[test]
    fn asking_for_usage_replaces_the_clients_stream_options_and_the_leafs() {
        let (v, spliced) = sent(r#"{"stream":true}"#, &Map::new(), true);
        assert!(spliced);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        let (v, spliced) = sent(
            r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
            &map(r#"{"temperature":0}"#),
            true,
        );
        assert!(!spliced);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        assert_eq!(v["temperature"], 0);
        let over = map(r#"{"stream_options":{"include_usage":false}}"#);
        let (v, _) = sent(r#"{"stream":true}"#, &over, true);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        let body = Body::new(Bytes::from_static(b"{}"));
        let m = Merged {
            body: &body,
            overrides: &over,
            ask_usage: true,
        };
        assert_eq!(m.laid_over().count(), 1, "one stream_options, llmux's");
        assert_eq!(m.to_map().unwrap()["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_body_deeper_than_a_map_parse_allows_is_spliced_as_written() {
        // serde_json skips nested values without recursing, so the scan passes a body deeper
        // than its map parse's limit (128): it goes upstream as the client wrote it, as it
        // does with nothing laid over, where the map path would have refused it.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000));
        let body = Body::new(Bytes::from(deep.clone()));
        assert!(body.map().is_err(), "too deep for the map path");
        let over = map(r#"{"max_tokens":5}"#);
        let spliced = Merged::new(&body, &over).spliced().expect("spliced");
        assert_eq!(
            &spliced[..],
            format!("{{\"max_tokens\":5,{}", &deep[1..]).as_bytes()
        );
    }

    #[test]
    fn merged_overrides_win_in_the_owned_map() {
        let body = Body::new(Bytes::from_static(br#"{"model":"a","messages":[]}"#));
        let over = map(r#"{"model":"b","max_tokens":5}"#);
        let v = Value::Object(Merged::new(&body, &over).to_map().unwrap());
        assert_eq!(v["model"], "b");
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["messages"], serde_json::json!([]));
    }

    #[test]
    fn a_body_the_full_parse_refuses_is_the_clients_400() {
        // serde_json skips a lone surrogate when ignoring a string but refuses it in a map.
        let body = Body::new(Bytes::from_static(br#"{"x":"\ud800"}"#));
        let e = body.map().unwrap_err();
        assert_eq!((e.status, e.class), (400, FailureClass::Client));
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
        // With a key laid over the map path refuses it too; spliced, it would go upstream as
        // the client wrote it, as with no overrides.
        let over = map(r#"{"x":1}"#);
        let m = Merged::new(&body, &over);
        assert!(m.spliced().is_none());
        assert_eq!(
            m.attach(reqwest::Client::new().post("http://127.0.0.1:9/x"))
                .unwrap_err()
                .status,
            400
        );
    }
    /// Bodies written as clients write them (keys in any order, repeated, escaped, spaced out),
    /// with any overrides: what goes upstream is always the map path's JSON, and the splice is
    /// refused exactly when a laid-over key is in the body.
    mod generated {
        use super::*;
        use proptest::prelude::*;

        const KEYS: [&str; 6] = [
            "model",
            "stream_options",
            "messages",
            "x",
            "m\\u006fdel",
            "q\\\"k",
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("1".to_owned()),
                Just("null".to_owned()),
                Just("\"s \\\" }{,\"".to_owned()),
                Just("{\"include_usage\":false}".to_owned()),
                Just("[ {\"a\": [ ] } ]".to_owned()),
            ]
        }

        fn spaces() -> impl Strategy<Value = &'static str> {
            prop_oneof![Just(""), Just(" "), Just("\n\t ")]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..Default::default() })]

            #[test]
            fn splicing_equals_the_map_path(
                members in prop::collection::vec((0..KEYS.len(), value(), spaces()), 0..6),
                over in prop::collection::btree_map(0..4usize, value(), 0..3),
                ask_usage: bool,
                lead in spaces(),
            ) {
                let mut raw = format!("{lead}{{");
                for (i, (k, v, sp)) in members.iter().enumerate() {
                    if i > 0 {
                        raw.push(',');
                    }
                    raw.push_str(&format!("{sp}\"{}\"{sp}:{sp}{v}{sp}", KEYS[*k]));
                }
                raw.push_str(&format!("}}{lead}"));
                let over: Map<String, Value> = over
                    .into_iter()
                    .map(|(k, v)| (["model", "stream_options", "y", "x"][k].to_owned(), serde_json::from_str(&v).unwrap()))
                    .collect();
                let body = Body::new(Bytes::from(raw.clone()));
                let merged = Merged { body: &body, overrides: &over, ask_usage };
                let parsed = body.map().unwrap();
                let expected = serde_json::to_value(Overlay { body: parsed, merged: &merged }).unwrap();
                let clash = merged.laid_over().any(|(k, _)| parsed.contains_key(k));
                match merged.spliced() {
                    Some(bytes) => {
                        prop_assert!(!clash, "{raw}");
                        let got: Value = serde_json::from_slice(&bytes).unwrap();
                        prop_assert_eq!(got, expected, "{}", raw);
                    }
                    None => prop_assert!(clash, "{raw}"),
                }
            }
        }
    }
}
