//! The HTTP front: the OpenAI API listener ([`api`]) and the admin listener ([`admin`]), with
//! the state their handlers share.

pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod error;
pub mod metadata;
pub mod names;
pub mod responses;

use std::sync::Arc;

use actix::Addr;

use crate::actors::supervisor::{Current, ReloadFile, ReloadReport, Supervisor};
use crate::config::Tree;
use crate::observability::requestlog::RequestLog;

pub struct AppState {
    /// The supervisor (reloads).
    pub supervisor: Addr<Supervisor>,
    pub current: Current,
    pub log: Arc<RequestLog>,
    /// Compiled inline configs by their JSON text, tagged with the runtime generation;
    /// bounded by bytes and cleared on every reload.
    pub inline: InlineCache,
    pub reload: Arc<crate::actors::reload::ReloadStatus>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The response cache (kept across reloads).
    pub cache: Arc<crate::cache::Cache>,
    /// Responses API state: response id → account, translated conversations.
    pub conversations: Arc<crate::conversation::Conversations>,
    /// Per gateway key limits (kept across reloads).
    pub tenancy: Arc<crate::tenancy::Tenancy>,
    /// Fires when the shutdown grace period ends: open streams and requests still routing end.
    pub grace_end: crate::proxy::Grace,
}

impl AppState {
    /// Re-reads the config file and swaps it in through the supervisor
    /// ([`ReloadFile`]); on success also empties the inline-config cache (its trees were
    /// compiled against the old config). SIGHUP and `POST /admin/reload` both come here.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let result = match self.supervisor.send(ReloadFile).await {
            Ok(r) => r,
            Err(e) => Err(format!("the supervisor is gone: {e}")),
        };
        if result.is_ok() {
            self.inline.clear();
        }
        result
    }
}

/// Total weight (header bytes + estimated compiled bytes) the inline-config cache holds.
pub const INLINE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

pub type InlineCache = quick_cache::sync::Cache<String, (u64, Arc<Tree>), InlineWeight>;

/// Weighs a cached inline config by its header text plus its compiled tree.
#[derive(Clone)]
pub struct InlineWeight;

impl quick_cache::Weighter<String, (u64, Arc<Tree>)> for InlineWeight {
    fn weight(&self, key: &String, val: &(u64, Arc<Tree>)) -> u64 {
        (key.len() + val.1.approx_bytes) as u64
    }
}

pub fn inline_cache() -> InlineCache {
    // Four shards of 2 MiB: an entry may weigh up to about one shard, which covers the
    // default `server.max_inline_config_bytes` (1 MiB) plus a 64 KB header; heavier ones are
    // compiled per request rather than cached.
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(256)
        .weight_capacity(INLINE_CACHE_BYTES)
        .shards(4)
        .build()
        .expect("static cache options are valid");
    quick_cache::sync::Cache::with_options(
        options,
        InlineWeight,
        Default::default(),
        Default::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_cache_is_bounded_by_bytes_and_keeps_typical_configs() {
        let cache = inline_cache();
        let tree = Arc::new(crate::config::tree::direct("a", 0));
        // 64 headers of 256 KB each would be 16 MiB unbounded.
        for i in 0..64 {
            let key = format!("{{\"n\":{i}}}{}", " ".repeat(256 * 1024));
            cache.insert(key, (1, tree.clone()));
        }
        assert!(cache.weight() <= INLINE_CACHE_BYTES, "{}", cache.weight());
        // An ordinary config, and one near the default compiled-size bound, are kept.
        cache.insert("{}".into(), (1, tree.clone()));
        assert!(cache.get("{}").is_some());
        let big = "x".repeat(1024 * 1024 + 64 * 1024);
        cache.insert(big.clone(), (1, tree.clone()));
        assert!(cache.get(big.as_str()).is_some());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
