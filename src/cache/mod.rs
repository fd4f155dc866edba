//! The response cache (Portkey's `cache = { mode, max_age }`): answers stored by a hash of the
//! effective request ([`key`]), served again without a provider call or any budget.
//!
//! - **Memory** is the first tier: a `moka` cache bounded by bytes (`[cache] max_bytes`), each
//!   entry expiring after its own `max_age`.
//! - **Redis** (with `[cluster]`) is the shared tier: every stored answer is also written there
//!   with a Redis TTL, and a memory miss asks Redis before it counts as a miss, so replicas
//!   share answers. Redis being away only makes the cache replica-local.
//! - **Semantic** matching ([`semantic`]) maps a paraphrased prompt to the exact key of an
//!   earlier answer; the embedding itself is fetched by the data path (`proxy`), through
//!   llmux's own provider path.
//! - **Streams** ([`sse`]): a streamed miss is recorded while relayed and stored once complete;
//!   a hit for a streaming client is replayed as a well-formed SSE stream.

pub mod key;
pub mod semantic;
pub mod sse;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache as Moka;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::unix_ms;
use crate::cluster::Cluster;
use crate::config::CacheSettings;
use crate::providers::Usage;

pub use key::Key;

/// A stored answer: the non-streamed OpenAI JSON, with what the request log needs.
#[derive(Debug)]
pub struct Stored {
    pub body: Bytes,
    pub model: Option<String>,
    pub usage: Usage,
    namespace: Option<Arc<str>>,
    /// Unix ms when it expires (so a copy read from Redis expires when the original does).
    expires_unix_ms: u64,
}

impl Stored {
    pub fn new(
        body: Bytes,
        model: Option<String>,
        usage: Usage,
        namespace: Option<Arc<str>>,
        max_age: Duration,
    ) -> Stored {
        Stored {
            body,
            model,
            usage,
            namespace,
            expires_unix_ms: unix_ms().saturating_add(max_age.as_millis() as u64),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.expires_unix_ms.saturating_sub(unix_ms()))
    }

    /// The Redis value: a JSON header line, then the body.
    fn encode(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "model": self.model,
            "usage": [self.usage.prompt_tokens, self.usage.completion_tokens, self.usage.cached_tokens],
            "expires": self.expires_unix_ms,
        });
        let mut v = header.to_string().into_bytes();
        v.push(b'\n');
        v.extend_from_slice(&self.body);
        v
    }

    fn decode(raw: &[u8], namespace: Option<Arc<str>>) -> Option<Stored> {
        let nl = raw.iter().position(|b| *b == b'\n')?;
        let header: serde_json::Value = serde_json::from_slice(&raw[..nl]).ok()?;
        let usage = header.get("usage")?.as_array()?;
        let n = |i: usize| usage.get(i).and_then(serde_json::Value::as_u64);
        Some(Stored {
            body: Bytes::copy_from_slice(&raw[nl + 1..]),
            model: header
                .get("model")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            usage: Usage {
                prompt_tokens: n(0)?,
                completion_tokens: n(1)?,
                cached_tokens: n(2)?,
            },
            namespace,
            expires_unix_ms: header.get("expires")?.as_u64()?,
        })
    }
}

/// What the cache did for one request: the `x-portkey-cache-status` header and the log's
/// `cache` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "hit")]
    Hit,
    #[serde(rename = "semantic_hit")]
    SemanticHit,
    #[serde(rename = "miss")]
    Miss,
    #[serde(rename = "semantic_miss")]
    SemanticMiss,
    /// `x-portkey-cache-force-refresh`: not looked up; the answer overwrites.
    #[serde(rename = "refresh")]
    Refresh,
    #[serde(rename = "disabled")]
    Disabled,
}

impl Status {
    pub fn header(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::SemanticHit => "SEMANTIC HIT",
            Status::Miss => "MISS",
            Status::SemanticMiss => "SEMANTIC MISS",
            Status::Refresh => "REFRESH",
            Status::Disabled => "DISABLED",
        }
    }

    pub fn is_hit(self) -> bool {
        matches!(self, Status::Hit | Status::SemanticHit)
    }

    /// The request log's and the metrics' name for it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::SemanticHit => "semantic_hit",
            Status::Miss => "miss",
            Status::SemanticMiss => "semantic_miss",
            Status::Refresh => "refresh",
            Status::Disabled => "disabled",
        }
    }
}

/// For `/admin/cache` and the status page.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    /// Hits over lookups (refreshes are no lookups).
    pub hit_rate: Option<f64>,
    pub stored: u64,
    /// Answers not stored for being larger than `max_entry_bytes`.
    pub too_large: u64,
    pub semantic_prompts: usize,
    pub shared: bool,
}

/// What `DELETE /admin/cache` removed.
#[derive(Debug, Clone, Serialize)]
pub struct Cleared {
    pub memory: u64,
    /// `null`: no Redis, or it could not be reached.
    pub redis: Option<u64>,
}

pub struct Cache {
    memory: Moka<Key, Arc<Stored>>,
    cluster: Option<Arc<Cluster>>,
    pub semantic: semantic::Index,
    max_bytes: u64,
    max_entry_bytes: usize,
    hits: AtomicU64,
    semantic_hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    too_large: AtomicU64,
}

/// Each entry lives for its own `max_age`.
struct ByMaxAge;

impl moka::Expiry<Key, Arc<Stored>> for ByMaxAge {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Stored>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

/// The Redis kind of a namespace's answers (`cache:-` without one): hashed, so no client
/// string reaches a key or a pattern.
fn scope(namespace: Option<&str>) -> String {
    match namespace {
        None => "cache:-".into(),
        Some(ns) => {
            let hex: String = Sha256::digest(ns.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("cache:{hex}")
        }
    }
}

impl Cache {
    pub fn new(settings: &CacheSettings, cluster: Option<Arc<Cluster>>) -> Cache {
        let memory = Moka::builder()
            .max_capacity(settings.max_bytes)
            // Body, model and the key with the entry's bookkeeping.
            .weigher(|_k: &Key, v: &Arc<Stored>| {
                let bytes = v.body.len() + v.model.as_ref().map_or(0, String::len) + 32 + 160;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(ByMaxAge)
            .build();
        Cache {
            memory,
            cluster,
            semantic: semantic::Index::new(settings.semantic_max_entries),
            max_bytes: settings.max_bytes,
            max_entry_bytes: settings.max_entry_bytes,
            hits: AtomicU64::new(0),
            semantic_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        }
    }

    /// The answer stored under `key`: from memory, else from Redis (then kept in memory too).
    pub async fn get(&self, key: &Key, namespace: Option<&str>) -> Option<Arc<Stored>> {
        if let Some(s) = self.memory.get(key) {
            return Some(s);
        }
        let cluster = self.cluster.as_ref()?;
        let raw = cluster.kv_get(&scope(namespace), &key::hex(key)).await?;
        let stored = Arc::new(Stored::decode(&raw, namespace.map(Arc::from))?);
        if stored.ttl().is_zero() {
            return None;
        }
        self.memory.insert(*key, stored.clone());
        Some(stored)
    }

    /// Stores an answer in memory; `None` (not stored) when it is larger than
    /// `max_entry_bytes`. With a cluster, [`Cache::share`] then writes it to Redis.
    pub fn put_local(&self, key: Key, stored: Stored) -> Option<Arc<Stored>> {
        if stored.body.len() > self.max_entry_bytes {
            self.too_large.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let stored = Arc::new(stored);
        self.memory.insert(key, stored.clone());
        self.stored.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("llmux_cache_stored_total").increment(1);
        self.publish_size();
        Some(stored)
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    pub fn is_shared(&self) -> bool {
        self.cluster.is_some()
    }

    /// Writes a stored answer to Redis, for the other replicas.
    pub async fn share(&self, key: Key, stored: Arc<Stored>) {
        if let Some(cluster) = &self.cluster {
            cluster
                .kv_set(
                    &scope(stored.namespace.as_deref()),
                    &key::hex(&key),
                    &stored.encode(),
                    stored.ttl(),
                )
                .await;
        }
    }

    /// Stores an answer in memory and, with a cluster, in Redis.
    pub async fn put(&self, key: Key, stored: Stored) {
        if let Some(stored) = self.put_local(key, stored) {
            self.share(key, stored).await;
        }
    }

    /// Counts one request's cache outcome.
    pub fn record(&self, status: Status) {
        let counter = match status {
            Status::Hit => &self.hits,
            Status::SemanticHit => &self.semantic_hits,
            Status::Miss | Status::SemanticMiss => &self.misses,
            Status::Refresh | Status::Disabled => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("llmux_cache_lookups_total", "result" => status.name()).increment(1);
    }

    fn publish_size(&self) {
        metrics::gauge!("llmux_cache_bytes").set(self.memory.weighted_size() as f64);
        metrics::gauge!("llmux_cache_entries").set(self.memory.entry_count() as f64);
    }

    /// Empties the cache, or one namespace of it (`Some("")`: answers stored without one).
    pub async fn clear(&self, namespace: Option<&str>) -> Cleared {
        let gone: Vec<Key> = self
            .memory
            .iter()
            .filter(|(_, v)| namespace.is_none_or(|ns| v.namespace.as_deref().unwrap_or("") == ns))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.memory.invalidate(k);
        }
        let memory = gone.len() as u64;
        self.semantic.clear(namespace);
        let redis = match &self.cluster {
            None => None,
            Some(c) => {
                let pattern = match namespace {
                    None => "cache:*".to_owned(),
                    Some("") => scope(None),
                    Some(ns) => scope(Some(ns)),
                };
                c.kv_clear(&pattern).await
            }
        };
        self.publish_size();
        Cleared { memory, redis }
    }

    pub fn stats(&self) -> CacheStats {
        self.memory.run_pending_tasks();
        let hits = self.hits.load(Ordering::Relaxed);
        let semantic_hits = self.semantic_hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let lookups = hits + semantic_hits + misses;
        CacheStats {
            entries: self.memory.entry_count(),
            bytes: self.memory.weighted_size(),
            max_bytes: self.max_bytes,
            hits,
            semantic_hits,
            misses,
            hit_rate: (lookups > 0).then(|| (hits + semantic_hits) as f64 / lookups as f64),
            stored: self.stored.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            semantic_prompts: self.semantic.len(),
            shared: self.cluster.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_bytes: u64) -> CacheSettings {
        CacheSettings {
            max_bytes,
            max_entry_bytes: 64 * 1024,
            ..CacheSettings::default()
        }
    }

    fn answer(n: usize, ns: Option<&str>, max_age: Duration) -> Stored {
        Stored::new(
            Bytes::from(vec![b'x'; n]),
            Some("m".into()),
            Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                cached_tokens: 1,
            },
            ns.map(Arc::from),
            max_age,
        )
    }

    #[tokio::test]
    async fn stores_gets_bounds_and_clears_by_namespace() {
        let c = Cache::new(&settings(1024 * 1024), None);
        let day = Duration::from_secs(86_400);
        c.put([1; 32], answer(10, None, day)).await;
        c.put([2; 32], answer(10, Some("a"), day)).await;
        c.put([3; 32], answer(10, Some("b"), day)).await;
        c.put([4; 32], answer(100 * 1024, None, day)).await;
        let s = c.stats();
        assert_eq!((s.entries, s.stored, s.too_large), (3, 3, 1));
        assert_eq!(
            c.get(&[1; 32], None).await.unwrap().usage.completion_tokens,
            4
        );
        assert!(c.get(&[4; 32], None).await.is_none());
        let cleared = c.clear(Some("a")).await;
        assert_eq!(cleared.memory, 1);
        assert!(c.get(&[2; 32], Some("a")).await.is_none());
        assert!(c.get(&[3; 32], Some("b")).await.is_some());
        assert!(c.get(&[1; 32], None).await.is_some());
        c.clear(None).await;
        assert_eq!(c.stats().entries, 0);
    }

    #[tokio::test]
    async fn memory_stays_within_max_bytes() {
        let max = 1024 * 1024;
        let c = Cache::new(&settings(max), None);
        for i in 0..400u32 {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            c.put(k, answer(16 * 1024, None, Duration::from_secs(60)))
                .await;
        }
        let s = c.stats();
        assert!(s.bytes <= max, "{} > {max}", s.bytes);
        assert!(s.entries < 400 && s.entries > 10, "{}", s.entries);
    }

    #[test]
    fn redis_values_round_trip_and_garbage_is_a_miss() {
        let s = answer(5, None, Duration::from_secs(30));
        let d = Stored::decode(&s.encode(), None).unwrap();
        assert_eq!(
            (d.body, d.model, d.usage),
            (s.body.clone(), s.model.clone(), s.usage)
        );
        assert_eq!(d.expires_unix_ms, s.expires_unix_ms);
        for bad in [
            &b""[..],
            b"no newline",
            b"{}\nbody",
            b"{\"usage\":[1,2]}\nx",
        ] {
            assert!(Stored::decode(bad, None).is_none());
        }
    }
}
