//! What llmux remembers of Responses API conversations, keyed by response id:
//!
//! - **Affinity**: which virtual key produced each response. A response id only means
//!   something to the account that made it, so a follow-up (`previous_response_id`) and
//!   `GET`/`DELETE /v1/responses/{id}` must reach that account, whatever a tree's weights say.
//! - **Conversations** of targets that only speak chat (llmux translates their Responses): the
//!   items of every turn so far, so `previous_response_id` chains and retrieval work there too,
//!   and the response object itself. `store: false` keeps nothing.
//!
//! Memory is the first tier (`moka`, bounded by bytes, entries expire after [`TTL`]); with
//! `[cluster]` every record is also written to Redis with the same expiry, and a memory miss
//! asks Redis, so any replica routes a follow-up to the right account.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache as Moka;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::Cluster;

/// How long a response id is remembered (OpenAI keeps stored responses for 30 days).
pub const TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Memory for records (affinity entries are ~100 bytes; conversations as large as they are).
pub const MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Largest conversation kept for one response (its items and the response object).
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// The Redis kind of records (see [`Cluster::kv_get`]).
const KIND: &str = "responses";

/// One response id's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The virtual key that produced it.
    pub target: String,
    /// For translated targets (nothing is remembered for `store: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
}

/// A translated response as llmux keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    /// The response object, as `GET /v1/responses/{id}` returns it.
    pub response: Value,
    /// The items this request brought (what `input_items` lists).
    pub input: Vec<Value>,
    /// Every item of the conversation up to and including this response's output: what a
    /// follow-up's translation replays before its own input.
    pub items: Vec<Value>,
}

impl Record {
    fn weight(&self) -> u32 {
        let bytes = 64
            + self.target.len()
            + self.stored.as_ref().map_or(0, |s| {
                serde_json::to_vec(s).map_or(MAX_RECORD_BYTES, |v| v.len())
            });
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

pub struct Conversations {
    memory: Moka<String, Arc<Record>>,
    cluster: Option<Arc<Cluster>>,
}

impl Conversations {
    pub fn new(cluster: Option<Arc<Cluster>>) -> Conversations {
        Conversations {
            memory: Moka::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|k: &String, v: &Arc<Record>| v.weight().saturating_add(k.len() as u32))
                .time_to_live(TTL)
                .build(),
            cluster,
        }
    }

    /// The record of `id`: from memory, else from Redis (then kept in memory too).
    pub async fn get(&self, id: &str) -> Option<Arc<Record>> {
        if let Some(r) = self.memory.get(id) {
            return Some(r);
        }
        let raw = self.cluster.as_ref()?.kv_get(KIND, id).await?;
        let record: Record = serde_json::from_slice(&raw).ok()?;
        let record = Arc::new(record);
        self.memory.insert(id.to_owned(), record.clone());
        Some(record)
    }

    /// Remembers `id`. A conversation larger than [`MAX_RECORD_BYTES`] keeps only its
    /// affinity (a follow-up to it then fails clearly rather than losing its history).
    pub fn put(&self, id: String, mut record: Record) {
        if record.weight() as usize > MAX_RECORD_BYTES {
            record.stored = None;
        }
        let record = Arc::new(record);
        self.memory.insert(id.clone(), record.clone());
        if let Some(cluster) = self.cluster.clone() {
            actix_web::rt::spawn(async move {
                if let Ok(v) = serde_json::to_vec(&*record) {
                    cluster.kv_set(KIND, &id, &v, TTL).await;
                }
            });
        }
    }

    /// Forgets `id` here and in Redis.
    pub async fn delete(&self, id: &str) {
        self.memory.invalidate(id);
        if let Some(cluster) = &self.cluster {
            cluster.kv_delete(KIND, id).await;
        }
    }
}

/// Whether `id` may be a response id: what a client may send as one (it becomes part of a
/// Redis key and an upstream URL path).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_and_ids_are_checked() {
        let r = Record {
            target: "openai-main".into(),
            stored: Some(Stored {
                response: json!({"id": "resp_1"}),
                input: vec![json!({"type": "message"})],
                items: vec![json!({"type": "message"}), json!({"type": "function_call"})],
            }),
        };
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let affinity: Record = serde_json::from_str(r#"{"target":"a"}"#).unwrap();
        assert_eq!(affinity.stored, None);
        assert!(valid_id("resp_0123abc-X"));
        for bad in ["", "a/b", "../x", "a b", "a?b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[actix_web::test]
    async fn put_get_delete_and_oversized_conversations_keep_only_affinity() {
        let c = Conversations::new(None);
        c.put(
            "resp_a".into(),
            Record {
                target: "t".into(),
                stored: None,
            },
        );
        assert_eq!(c.get("resp_a").await.unwrap().target, "t");
        let huge = Record {
            target: "t".into(),
            stored: Some(Stored {
                response: json!({"x": "y".repeat(MAX_RECORD_BYTES)}),
                input: vec![],
                items: vec![],
            }),
        };
        c.put("resp_b".into(), huge);
        let b = c.get("resp_b").await.unwrap();
        assert_eq!((b.target.as_str(), b.stored.is_none()), ("t", true));
        c.delete("resp_a").await;
        assert!(c.get("resp_a").await.is_none());
    }
}
