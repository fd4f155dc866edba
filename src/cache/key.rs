//! What makes two requests the same for the cache: a SHA-256 over the endpoint (or, with
//! `x-portkey-cache-namespace`, the namespace instead) and the effective request, meaning the
//! client's body with the leaf's `override_params` laid over it, minus the fields that do not
//! change the answer (`stream`, `stream_options`, `user`). Keys are canonical: objects serialize
//! with sorted keys (serde_json's map is ordered), so key order and whitespace in the client's
//! JSON do not matter. The gateway key and every header but the namespace stay out of it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::providers::Endpoint;

/// A cache key: SHA-256 of the canonical effective request.
pub type Key = [u8; 32];

/// Fields left out of the key: they shape the transport, not the answer.
const IGNORED: [&str; 3] = ["stream", "stream_options", "user"];

/// The key of `body` with `overrides` laid over it, for `endpoint` or `namespace`.
pub fn key(
    endpoint: Endpoint,
    namespace: Option<&str>,
    body: &Map<String, Value>,
    overrides: &Map<String, Value>,
) -> Key {
    digest(endpoint, namespace, &effective(body, overrides), b"exact")
}

/// The semantic scope of a request: its key with the last user message's content left out, so
/// that only requests equal in everything else (model, system prompt, parameters, namespace)
/// are compared by the meaning of that message.
pub fn scope(
    endpoint: Endpoint,
    namespace: Option<&str>,
    body: &Map<String, Value>,
    overrides: &Map<String, Value>,
) -> Key {
    let mut m = effective(body, overrides);
    let mut messages = m.get("messages").and_then(|v| v.as_array()).cloned();
    if let Some(last) = messages.as_mut().and_then(|ms| {
        ms.iter_mut()
            .rev()
            .find(|msg| msg.get("role").and_then(Value::as_str) == Some("user"))
    }) {
        if let Some(o) = last.as_object_mut() {
            o.remove("content");
        }
    }
    let messages = messages.map(Value::Array);
    if let Some(ms) = &messages {
        m.insert("messages", ms);
    }
    digest(endpoint, namespace, &m, b"scope")
}

fn effective<'a>(
    body: &'a Map<String, Value>,
    overrides: &'a Map<String, Value>,
) -> BTreeMap<&'a str, &'a Value> {
    let mut m: BTreeMap<&str, &Value> = body.iter().map(|(k, v)| (k.as_str(), v)).collect();
    m.extend(overrides.iter().map(|(k, v)| (k.as_str(), v)));
    for k in IGNORED {
        m.remove(k);
    }
    m
}

fn digest(
    endpoint: Endpoint,
    namespace: Option<&str>,
    m: &BTreeMap<&str, &Value>,
    kind: &[u8],
) -> Key {
    let mut h = Sha256::new();
    h.update(b"llmux-cache-v1\0");
    h.update(kind);
    h.update(b"\0");
    match namespace {
        // A namespace partitions alone (as Portkey's): the endpoint is not part of the key.
        Some(ns) => {
            h.update(b"ns\0");
            h.update((ns.len() as u64).to_le_bytes());
            h.update(ns.as_bytes());
        }
        None => {
            h.update(b"ep\0");
            h.update(endpoint.gateway_path().as_bytes());
        }
    }
    h.update(b"\0");
    // Serializing a map of JSON values cannot fail.
    let _ = serde_json::to_writer(&mut HashWriter(&mut h), m);
    h.finalize().into()
}

/// `io::Write` into a hasher, so the canonical JSON is hashed without being buffered.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lowercase hex of a key, for Redis and logs.
pub fn hex(k: &Key) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn keys_ignore_order_transport_fields_and_see_overrides() {
        let none = Map::new();
        let a = map(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}),
        );
        let b = map(
            json!({"temperature": 0.5, "stream": true, "stream_options": {"include_usage": true},
            "user": "u1", "messages": [{"content": "hi", "role": "user"}], "model": "m"}),
        );
        let k = key(Endpoint::Chat, None, &a, &none);
        assert_eq!(k, key(Endpoint::Chat, None, &b, &none));
        // A different endpoint, param or override is a different key.
        assert_ne!(k, key(Endpoint::Completions, None, &a, &none));
        let mut c = a.clone();
        c.insert("temperature".into(), json!(0.7));
        assert_ne!(k, key(Endpoint::Chat, None, &c, &none));
        let o = map(json!({"model": "other"}));
        assert_ne!(k, key(Endpoint::Chat, None, &a, &o));
        // An override equal to what the client sent changes nothing.
        assert_eq!(
            k,
            key(Endpoint::Chat, None, &a, &map(json!({"model": "m"})))
        );
        // A namespace partitions, and replaces the endpoint.
        let n = key(Endpoint::Chat, Some("team-a"), &a, &none);
        assert_ne!(k, n);
        assert_ne!(n, key(Endpoint::Chat, Some("team-b"), &a, &none));
        assert_eq!(n, key(Endpoint::Completions, Some("team-a"), &a, &none));
        assert_eq!(hex(&k).len(), 64);
    }

    #[test]
    fn the_scope_leaves_out_only_the_last_user_message() {
        let none = Map::new();
        let q = |text: &str, system: &str| {
            map(json!({"model": "m", "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": text}]}))
        };
        let s = scope(
            Endpoint::Chat,
            None,
            &q("what is the capital of France", "be brief"),
            &none,
        );
        assert_eq!(
            s,
            scope(
                Endpoint::Chat,
                None,
                &q("capital of france?", "be brief"),
                &none
            )
        );
        assert_ne!(
            s,
            scope(
                Endpoint::Chat,
                None,
                &q("capital of france?", "be long"),
                &none
            )
        );
        assert_ne!(
            s,
            key(
                Endpoint::Chat,
                None,
                &q("capital of france?", "be brief"),
                &none
            )
        );
        let mut other_model = q("x", "be brief");
        other_model.insert("model".into(), json!("m2"));
        assert_ne!(s, scope(Endpoint::Chat, None, &other_model, &none));
    }
}
