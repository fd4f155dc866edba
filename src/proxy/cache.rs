//! The response cache on the data path: looked up when the walk has chosen a leaf whose tree
//! says `cache`, before any permit is asked for (so a hit spends no budget and calls no
//! provider), and filled when that leaf answers. The key depends on the leaf's
//! `override_params`, so each leaf of a fallback is looked up when it is chosen.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{route, Prepared, Reply, Runtime};
use crate::cache::{key, semantic, Cache, Key, Status, Stored};
use crate::config::{CacheMode, CachePolicy, Leaf};
use crate::error::Error;
use crate::providers::{Answer, Body, Endpoint, Merged};
use crate::routing::estimate::Estimate;

/// What to store once the leaf answers.
pub struct Pending {
    pub cache: Arc<Cache>,
    pub status: Status,
    pub endpoint: Endpoint,
    pub key: Key,
    namespace: Option<Arc<str>>,
    max_age: Duration,
    /// The prompt's semantic scope and embedding, to index the answer by.
    semantic: Option<(Key, Vec<f32>)>,
}

pub enum Lookup {
    Hit(Arc<Stored>, Status),
    Miss(Pending),
}

/// A prompt embedded during this request (once, whichever leaf asks).
pub type Embedded = Option<(String, Option<Vec<f32>>)>;

/// Looks `req` up for `leaf`.
///
/// Boxed: the lookup (a Redis call, an embedding) must not grow the routing future that every
/// request carries, cached or not (measured: +1–2 µs of CPU per request when it did).
pub fn lookup<'a>(
    cache: &'a Arc<Cache>,
    runtime: &'a Arc<Runtime>,
    req: &'a Prepared,
    leaf: &'a Leaf,
    policy: CachePolicy,
    embedded: &'a mut Embedded,
) -> futures_util::future::LocalBoxFuture<'a, Result<Lookup, Error>> {
    Box::pin(lookup_inner(cache, runtime, req, leaf, policy, embedded))
}

async fn lookup_inner(
    cache: &Arc<Cache>,
    runtime: &Arc<Runtime>,
    req: &Prepared,
    leaf: &Leaf,
    policy: CachePolicy,
    embedded: &mut Embedded,
) -> Result<Lookup, Error> {
    let body = req
        .body
        .map()
        .map_err(|e| Error::invalid(e.message, None))?;
    let ns = req.cache_namespace.as_deref();
    let key = key::key(req.endpoint, ns, body, &leaf.override_params);
    let pending = |status, semantic| Pending {
        cache: cache.clone(),
        status,
        endpoint: req.endpoint,
        key,
        namespace: req.cache_namespace.clone(),
        max_age: policy.max_age,
        semantic,
    };
    if req.cache_force_refresh {
        return Ok(Lookup::Miss(pending(Status::Refresh, None)));
    }
    if let Some(s) = cache.get(&key, ns).await {
        return Ok(Lookup::Hit(s, Status::Hit));
    }
    if policy.mode != CacheMode::Semantic || req.endpoint != Endpoint::Chat {
        return Ok(Lookup::Miss(pending(Status::Miss, None)));
    }
    let merged;
    let view: &Map<String, Value> = if leaf.override_params.is_empty() {
        body
    } else {
        merged = Merged::new(&req.body, &leaf.override_params)
            .to_map()
            .map_err(|e| Error::invalid(e.message, None))?;
        &merged
    };
    let Some(text) = semantic::prompt(view) else {
        // Multi-turn, tools or non-text content: exact matching only.
        return Ok(Lookup::Miss(pending(Status::Miss, None)));
    };
    let vector = match embedded {
        Some((t, v)) if *t == text => v.clone(),
        _ => {
            let v = embed(runtime, &text, req).await;
            *embedded = Some((text, v.clone()));
            v
        }
    };
    let Some(vector) = vector else {
        return Ok(Lookup::Miss(pending(Status::SemanticMiss, None)));
    };
    let scope = key::scope(req.endpoint, ns, body, &leaf.override_params);
    if let Some((near, _)) = cache
        .semantic
        .nearest(&scope, vector.clone(), policy.similarity)
    {
        if let Some(s) = cache.get(&near, ns).await {
            return Ok(Lookup::Hit(s, Status::SemanticHit));
        }
    }
    Ok(Lookup::Miss(pending(
        Status::SemanticMiss,
        Some((scope, vector)),
    )))
}

/// The embedding of `text` from `[cache] embeddings_virtual_key`, through llmux's own routing
/// to that key (its budget, breaker and retries apply). `None` when it fails: the request is
/// then a semantic miss and its answer is not indexed.
async fn embed(runtime: &Arc<Runtime>, text: &str, req: &Prepared) -> Option<Vec<f32>> {
    let settings = &runtime.config.cache;
    let vk = settings.embeddings_virtual_key.as_deref()?;
    let tree = runtime.config.direct_tree(vk)?.clone();
    let body = json!({"model": settings.embeddings_model, "input": text}).to_string();
    let embed_req = Prepared {
        trace_id: req.trace_id.clone(),
        endpoint: Endpoint::Embeddings,
        estimate: Estimate::of(None, body.len()),
        body: Body::new(body.into()),
        model: Some(settings.embeddings_model.as_str().into()),
        stream: false,
        include_usage: false,
        idle_timeout: req.idle_timeout,
        metadata: None,
        cache_namespace: None,
        cache_force_refresh: false,
        turn: None,
        pinned: None,
        otel: req.otel.clone(),
    };
    // Boxed: routing the embedding is a nested route (never cached itself: a direct tree has
    // no `cache`).
    let served = Box::pin(route(
        runtime.clone(),
        tree,
        &embed_req,
        &super::Services::default(),
    ))
    .await;
    let answer = match served {
        Ok(s) => match s.reply {
            Reply::Full(a) => a,
            _ => return None,
        },
        Err(e) => {
            tracing::warn!(trace_id = %req.trace_id, error = %e.error,
                "semantic cache: embedding the prompt failed; treated as a miss");
            return None;
        }
    };
    let v: Value = serde_json::from_slice(&answer.body).ok()?;
    let vector: Vec<f32> = v
        .pointer("/data/0/embedding")?
        .as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect::<Option<_>>()?;
    (!vector.is_empty()).then_some(vector)
}

impl Pending {
    /// Stores a complete, successful answer: in memory at once (the next request may be a
    /// hit), in Redis in the background.
    pub fn store(self, body: bytes::Bytes, model: Option<String>, usage: crate::providers::Usage) {
        let stored = Stored::new(body, model, usage, self.namespace.clone(), self.max_age);
        let Some(stored) = self.cache.put_local(self.key, stored) else {
            return;
        };
        if let Some((scope, vector)) = self.semantic {
            self.cache
                .semantic
                .insert(scope, vector, self.key, self.namespace.clone());
        }
        if self.cache.is_shared() {
            let (cache, key) = (self.cache, self.key);
            actix_web::rt::spawn(async move { cache.share(key, stored).await });
        }
    }

    /// Stores a full answer if it is a success.
    pub fn store_answer(self, answer: &Answer) {
        if (200..300).contains(&answer.status) {
            self.store(answer.body.clone(), answer.model.clone(), answer.usage);
        }
    }
}
