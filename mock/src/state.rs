//! Shared server state: per-account behaviors, per-account counters and
//! per-account stores of Responses API responses.
//!
//! The hot path touches only `DashMap` reads (sharded read locks), atomics, and
//! one never-blocking `try_lock` slot for "last request" bookkeeping. Snapshots
//! ([`AccountStats`]) are built on demand from those counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use dashmap::DashMap;

use super::responses::ResponseStore;
use super::{AccountStats, Behavior};

/// Which API a request hit; the name is the key in `by_endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    AzureChatCompletions,
    Messages,
    Embeddings,
    AzureEmbeddings,
    Completions,
    AzureCompletions,
    Models,
    /// `POST …/responses`.
    Responses,
    AzureResponses,
    /// `GET …/responses/{id}`.
    ResponsesGet,
    AzureResponsesGet,
    /// `DELETE …/responses/{id}`.
    ResponsesDelete,
    AzureResponsesDelete,
    /// `GET …/responses/{id}/input_items`.
    ResponsesInputItems,
    AzureResponsesInputItems,
    /// `POST …/responses/{id}/cancel`.
    ResponsesCancel,
    AzureResponsesCancel,
    /// Gemini `…/models/{m}:generateContent`, `:streamGenerateContent`,
    /// `:batchEmbedContents`, and `GET …/v1beta/models`.
    GeminiGenerate,
    GeminiStream,
    GeminiEmbed,
    GeminiModels,
    /// Bedrock `POST …/model/{id}/converse` and `…/converse-stream`.
    Converse,
    ConverseStream,
    /// Vertex AI: Gemini `…/publishers/google/models/{m}:generateContent` and
    /// `:streamGenerateContent`, Anthropic `…/publishers/anthropic/models/{m}:rawPredict` and
    /// `:streamRawPredict`, and the OAuth2 token endpoint `POST <account>/token`.
    VertexGenerate,
    VertexStream,
    VertexRawPredict,
    VertexStreamRawPredict,
    VertexToken,
    NotFound,
}

impl Endpoint {
    pub const ALL: [Endpoint; 30] = [
        Endpoint::ChatCompletions,
        Endpoint::AzureChatCompletions,
        Endpoint::Messages,
        Endpoint::Embeddings,
        Endpoint::AzureEmbeddings,
        Endpoint::Completions,
        Endpoint::AzureCompletions,
        Endpoint::Models,
        Endpoint::Responses,
        Endpoint::AzureResponses,
        Endpoint::ResponsesGet,
        Endpoint::AzureResponsesGet,
        Endpoint::ResponsesDelete,
        Endpoint::AzureResponsesDelete,
        Endpoint::ResponsesInputItems,
        Endpoint::AzureResponsesInputItems,
        Endpoint::ResponsesCancel,
        Endpoint::AzureResponsesCancel,
        Endpoint::GeminiGenerate,
        Endpoint::GeminiStream,
        Endpoint::GeminiEmbed,
        Endpoint::GeminiModels,
        Endpoint::Converse,
        Endpoint::ConverseStream,
        Endpoint::VertexGenerate,
        Endpoint::VertexStream,
        Endpoint::VertexRawPredict,
        Endpoint::VertexStreamRawPredict,
        Endpoint::VertexToken,
        Endpoint::NotFound,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::AzureChatCompletions => "azure_chat_completions",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::AzureEmbeddings => "azure_embeddings",
            Endpoint::Completions => "completions",
            Endpoint::AzureCompletions => "azure_completions",
            Endpoint::Models => "models",
            Endpoint::Responses => "responses",
            Endpoint::AzureResponses => "azure_responses",
            Endpoint::ResponsesGet => "responses_get",
            Endpoint::AzureResponsesGet => "azure_responses_get",
            Endpoint::ResponsesDelete => "responses_delete",
            Endpoint::AzureResponsesDelete => "azure_responses_delete",
            Endpoint::ResponsesInputItems => "responses_input_items",
            Endpoint::AzureResponsesInputItems => "azure_responses_input_items",
            Endpoint::ResponsesCancel => "responses_cancel",
            Endpoint::AzureResponsesCancel => "azure_responses_cancel",
            Endpoint::GeminiGenerate => "gemini_generate",
            Endpoint::GeminiStream => "gemini_stream",
            Endpoint::GeminiEmbed => "gemini_embed",
            Endpoint::GeminiModels => "gemini_models",
            Endpoint::Converse => "converse",
            Endpoint::ConverseStream => "converse_stream",
            Endpoint::VertexGenerate => "vertex_generate",
            Endpoint::VertexStream => "vertex_stream",
            Endpoint::VertexRawPredict => "vertex_raw_predict",
            Endpoint::VertexStreamRawPredict => "vertex_stream_raw_predict",
            Endpoint::VertexToken => "vertex_token",
            Endpoint::NotFound => "not_found",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The most recent request of an account, kept raw; converted on snapshot.
struct LastRequest {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

const STATUS_SLOTS: usize = 1000;

/// Lock-free counters of one account.
pub struct AccountCounters {
    requests: AtomicU64,
    by_endpoint: [AtomicU64; Endpoint::ALL.len()],
    statuses: Box<[AtomicU64]>,
    client_disconnects: AtomicU64,
    last: Mutex<Option<Arc<LastRequest>>>,
}

impl AccountCounters {
    fn new() -> Self {
        AccountCounters {
            requests: AtomicU64::new(0),
            by_endpoint: Default::default(),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            client_disconnects: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    pub fn record_request(&self, ep: Endpoint, path: &str, headers: &HeaderMap, body: &Bytes) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.by_endpoint[ep.index()].fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(LastRequest {
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        });
        // Never block the hot path: if another request is storing its own
        // "last request" right now, that one is as recent as this one.
        if let Ok(mut slot) = self.last.try_lock() {
            *slot = Some(last);
        }
    }

    pub fn record_status(&self, status: u16) {
        if let Some(c) = self.statuses.get(status as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_disconnect(&self) {
        self.client_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> AccountStats {
        let by_endpoint = Endpoint::ALL
            .iter()
            .filter_map(|ep| {
                let n = self.by_endpoint[ep.index()].load(Ordering::Relaxed);
                (n > 0).then(|| (ep.name().to_owned(), n))
            })
            .collect();
        let statuses = self
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(code, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((code as u16, n))
            })
            .collect();
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut stats = AccountStats {
            requests: self.requests.load(Ordering::Relaxed),
            by_endpoint,
            statuses,
            client_disconnects: self.client_disconnects.load(Ordering::Relaxed),
            ..AccountStats::default()
        };
        if let Some(last) = last {
            stats.last_path = last.path.clone();
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            for (name, value) in last.headers.iter() {
                let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            stats.last_headers = headers;
            stats.last_body = if last.body.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&last.body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&last.body).into_owned())
                }))
            };
        }
        stats
    }
}

/// Everything the handlers and the [`super::MockServer`] handle share.
pub struct Shared {
    initial_default: Behavior,
    behaviors: DashMap<String, Arc<Behavior>>,
    accounts: DashMap<String, Arc<AccountCounters>>,
    responses: DashMap<String, Arc<ResponseStore>>,
    seq: AtomicU64,
    /// Vertex access tokens issued by the token endpoint (never reset).
    pub vertex_tokens: super::vertex::Tokens,
}

pub const DEFAULT_ACCOUNT: &str = "*";

impl Shared {
    pub fn new(default: Behavior) -> Self {
        let s = Shared {
            initial_default: default,
            behaviors: DashMap::new(),
            accounts: DashMap::new(),
            responses: DashMap::new(),
            seq: AtomicU64::new(1),
            vertex_tokens: Default::default(),
        };
        s.behaviors.insert(
            DEFAULT_ACCOUNT.to_owned(),
            Arc::new(s.initial_default.clone()),
        );
        s
    }

    /// A fresh id number, unique within this server.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn counters(&self, account: &str) -> Arc<AccountCounters> {
        if let Some(c) = self.accounts.get(account) {
            return c.clone();
        }
        self.accounts
            .entry(account.to_owned())
            .or_insert_with(|| Arc::new(AccountCounters::new()))
            .clone()
    }

    /// The account's stored Responses API responses.
    pub fn responses(&self, account: &str) -> Arc<ResponseStore> {
        if let Some(r) = self.responses.get(account) {
            return r.clone();
        }
        self.responses
            .entry(account.to_owned())
            .or_default()
            .clone()
    }

    /// The account's behavior, else the default (`"*"`).
    pub fn behavior(&self, account: &str) -> Arc<Behavior> {
        if let Some(b) = self.behaviors.get(account) {
            return b.clone();
        }
        self.behaviors
            .get(DEFAULT_ACCOUNT)
            .map(|b| b.clone())
            .unwrap_or_else(|| Arc::new(self.initial_default.clone()))
    }

    pub fn set_behavior(&self, account: &str, b: Behavior) {
        self.behaviors.insert(account.to_owned(), Arc::new(b));
    }

    pub fn behaviors(&self) -> BTreeMap<String, Behavior> {
        self.behaviors
            .iter()
            .map(|e| (e.key().clone(), (**e.value()).clone()))
            .collect()
    }

    pub fn stats(&self, account: &str) -> AccountStats {
        self.accounts
            .get(account)
            .map(|c| c.snapshot())
            .unwrap_or_default()
    }

    pub fn all_stats(&self) -> BTreeMap<String, AccountStats> {
        self.accounts
            .iter()
            .map(|e| (e.key().clone(), e.value().snapshot()))
            .collect()
    }

    /// Forgets all counters, stored responses and per-account behaviors; the
    /// default behavior goes back to the one the server was started with.
    pub fn reset(&self) {
        self.accounts.clear();
        self.responses.clear();
        self.behaviors.clear();
        self.behaviors.insert(
            DEFAULT_ACCOUNT.to_owned(),
            Arc::new(self.initial_default.clone()),
        );
    }
}

/// Counts a client disconnect when dropped while still armed: it lives in the
/// handler future and then in the response body stream, so dropping either
/// before the response finished (actix does that when the peer goes away)
/// is observed.
pub struct DisconnectGuard {
    counters: Option<Arc<AccountCounters>>,
}

impl DisconnectGuard {
    pub fn new(counters: Arc<AccountCounters>) -> Self {
        DisconnectGuard {
            counters: Some(counters),
        }
    }

    /// The response is complete (or ends on purpose): nothing to count.
    pub fn disarm(&mut self) {
        self.counters = None;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if let Some(c) = self.counters.take() {
            c.record_disconnect();
        }
    }
}
