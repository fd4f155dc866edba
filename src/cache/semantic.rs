//! Semantic matching: embeddings of earlier prompts, searched by brute-force cosine within a
//! request's scope (the same effective request but for its last user message: same model,
//! system prompt, parameters and namespace), so a paraphrase can reuse an answer while a
//! different system prompt or temperature never does. Bounded: at most `max_entries` vectors
//! in all, the oldest dropped first. At that bound (10,000 by default) a search compares only
//! the vectors of one scope, so its cost is that scope's size × dimensions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::key::Key;

struct Item {
    id: u64,
    /// Unit length, so a dot product is the cosine.
    vector: Box<[f32]>,
    /// The exact key the answer is stored under.
    key: Key,
    namespace: Option<Arc<str>>,
}

#[derive(Default)]
struct Inner {
    by_scope: HashMap<Key, Vec<Item>>,
    /// Insertion order, for dropping the oldest: (scope, id).
    order: VecDeque<(Key, u64)>,
    next_id: u64,
}

pub struct Index {
    inner: Mutex<Inner>,
    max_entries: usize,
}

/// A vector scaled to unit length; `None` for an empty, zero or non-finite one.
fn unit(mut v: Vec<f32>) -> Option<Box<[f32]>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v.into_boxed_slice())
}

impl Index {
    pub fn new(max_entries: usize) -> Index {
        Index {
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored prompt of `scope` nearest to `v`, if its cosine is at least `threshold`.
    pub fn nearest(&self, scope: &Key, v: Vec<f32>, threshold: f32) -> Option<(Key, f32)> {
        let v = unit(v)?;
        let inner = self.lock();
        inner
            .by_scope
            .get(scope)?
            .iter()
            .filter(|item| item.vector.len() == v.len())
            .map(|item| {
                let cos: f32 = item.vector.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                (item.key, cos)
            })
            .filter(|(_, cos)| *cos >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    pub fn insert(&self, scope: Key, v: Vec<f32>, key: Key, namespace: Option<Arc<str>>) {
        let Some(vector) = unit(v) else {
            return;
        };
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.by_scope.entry(scope).or_default().push(Item {
            id,
            vector,
            key,
            namespace,
        });
        inner.order.push_back((scope, id));
        while inner.order.len() > self.max_entries {
            let Some((scope, id)) = inner.order.pop_front() else {
                break;
            };
            remove(&mut inner.by_scope, &scope, |item| item.id == id);
        }
    }

    /// Forgets every prompt, or those of one namespace (`Some("")` is no namespace).
    pub fn clear(&self, namespace: Option<&str>) {
        let mut inner = self.lock();
        match namespace {
            None => *inner = Inner::default(),
            Some(ns) => {
                let matches = |item: &Item| item.namespace.as_deref().unwrap_or("") == ns;
                let scopes: Vec<Key> = inner.by_scope.keys().copied().collect();
                for scope in scopes {
                    remove(&mut inner.by_scope, &scope, matches);
                }
                let Inner {
                    by_scope, order, ..
                } = &mut *inner;
                order.retain(|(scope, id)| {
                    by_scope
                        .get(scope)
                        .is_some_and(|items| items.iter().any(|i| i.id == *id))
                });
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn remove(by_scope: &mut HashMap<Key, Vec<Item>>, scope: &Key, gone: impl Fn(&Item) -> bool) {
    if let Some(items) = by_scope.get_mut(scope) {
        items.retain(|i| !gone(i));
        if items.is_empty() {
            by_scope.remove(scope);
        }
    }
}

/// The text a semantic lookup embeds: the one user message of a chat request, when it is the
/// conversation's only user turn and nothing but text and system/developer messages surround
/// it. Multi-turn conversations and tools are left to exact matching: a paraphrase there
/// rarely means the same thing (stale answers in such cases are a known complaint with
/// semantic caches).
pub fn prompt(body: &Map<String, Value>) -> Option<String> {
    if ["tools", "functions", "tool_choice", "function_call"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
    {
        return None;
    }
    let messages = body.get("messages")?.as_array()?;
    let mut user = None;
    for m in messages {
        match m.get("role").and_then(Value::as_str)? {
            "system" | "developer" => {}
            "user" if user.is_none() => user = Some(m),
            _ => return None,
        }
    }
    let text = match user?.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                text.push_str(p.get("text")?.as_str()?);
                text.push('\n');
            }
            text
        }
        _ => return None,
    };
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(b: u8) -> Key {
        [b; 32]
    }

    #[test]
    fn nearest_within_scope_above_threshold_only() {
        let ix = Index::new(10);
        ix.insert(k(1), vec![1.0, 0.0, 0.0], k(10), None);
        ix.insert(k(1), vec![0.0, 1.0, 0.0], k(11), None);
        ix.insert(k(2), vec![1.0, 0.0, 0.0], k(20), None);
        // Scaled vectors compare by direction.
        let (key, cos) = ix.nearest(&k(1), vec![3.0, 0.3, 0.0], 0.9).unwrap();
        assert_eq!(key, k(10));
        assert!(cos > 0.99);
        assert!(ix.nearest(&k(1), vec![1.0, 1.0, 0.0], 0.9).is_none());
        assert!(ix.nearest(&k(3), vec![1.0, 0.0, 0.0], 0.5).is_none());
        // Different dimensions, zero and NaN vectors never match.
        assert!(ix.nearest(&k(1), vec![1.0, 0.0], 0.1).is_none());
        assert!(ix.nearest(&k(1), vec![0.0, 0.0, 0.0], -1.0).is_none());
        assert!(ix.nearest(&k(1), vec![f32::NAN, 0.0, 0.0], -1.0).is_none());
    }

    #[test]
    fn bounded_oldest_first_and_cleared_by_namespace() {
        let ix = Index::new(3);
        for i in 0..5u8 {
            ix.insert(k(1), vec![1.0, f32::from(i)], k(i), Some("a".into()));
        }
        assert_eq!(ix.len(), 3);
        // The first two are gone: the nearest to (1, 0) is now (1, 2).
        assert_eq!(ix.nearest(&k(1), vec![1.0, 0.0], -1.0).unwrap().0, k(2));
        ix.insert(k(2), vec![1.0, 0.0], k(9), None);
        assert_eq!(ix.len(), 3);
        ix.clear(Some("a"));
        assert_eq!(ix.len(), 1);
        assert!(ix.nearest(&k(1), vec![1.0, 0.0], -1.0).is_none());
        assert!(ix.nearest(&k(2), vec![1.0, 0.0], 0.9).is_some());
        ix.clear(Some(""));
        assert!(ix.is_empty());
    }

    #[test]
    fn only_single_turn_text_prompts_are_embedded() {
        let m = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            prompt(&m(
                json!({"messages": [{"role": "system", "content": "brief"},
                {"role": "user", "content": " What is the capital of France? "}]})
            )),
            Some("What is the capital of France?".into())
        );
        assert_eq!(
            prompt(&m(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}))),
            Some("a\nb".into())
        );
        for v in [
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}]}),
            json!({"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            json!({"messages": [{"role": "user", "content": "  "}]}),
            json!({"messages": [{"role": "system", "content": "only"}]}),
            json!({"prompt": "completions are exact-only"}),
        ] {
            assert_eq!(prompt(&m(v.clone())), None, "{v}");
        }
    }
}
