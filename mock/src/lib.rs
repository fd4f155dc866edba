//! `llmux` mock LLM provider: one HTTP server that speaks the OpenAI, Azure
//! OpenAI, Anthropic, Gemini (also on Vertex AI's URLs, behind its OAuth2 token
//! endpoint) and Bedrock Converse wire formats, poses as many provider accounts (the
//! path prefix before the API path is the account), injects latency and
//! failures per account, and records per-account statistics.
//!
//! A crate of its own (the workspace member `mock/`), independent of `llmux`: the
//! `llmux-mock` binary (`src/main.rs`) for the quick start and the benchmarks, and this
//! library for llmux's integration tests (a dev-dependency).
//!
//! This module owns the public API ([`MockServer`], [`serve`], [`Behavior`],
//! [`AccountStats`]). Submodules:
//! - `route`: path → endpoint / provider / account;
//! - `server`: actix server, catch-all handler, fault injection, control API;
//! - `openai`, `anthropic`, `gemini`: the endpoint bodies of each wire format;
//! - `bedrock`: Converse / ConverseStream, SigV4-checked by `sigv4` (an
//!   implementation independent of llmux's), streamed as binary frames by
//!   `eventstream`;
//! - `vertex`: Vertex AI's publisher URLs, its token endpoint (RS256 JWT-bearer
//!   grants checked against the test key) and the bearer check;
//! - `responses`: the OpenAI Responses API (OpenAI and Azure accounts) and
//!   each account's store of responses (`previous_response_id`, retrieve);
//! - `wire`: shared request context, error envelopes, headers;
//! - `stream`: timed SSE bodies and stream failure modes;
//! - `state`: behaviors, lock-free per-account counters, per-account
//!   response stores;
//! - `util`: base64, embeddings, token estimates, time formatting.
//!
//! Control API (not under an account): `GET /_mock/stats[?account=A]`,
//! `GET|POST /_mock/behavior` (`{"account": "A" | "*", ...Behavior}`),
//! `POST /_mock/reset`.

mod anthropic;
mod bedrock;
mod eventstream;
mod gemini;
mod openai;
mod responses;
mod route;
mod server;
pub mod sigv4;
mod state;
mod stream;
mod util;
mod vertex;
mod wire;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use serde::{Deserialize, Serialize};

use state::Shared;

/// The credentials the mock's Bedrock accounts accept (SigV4 keys, a session, an API key).
pub use bedrock::keys as bedrock_keys;

/// How an account's requests are answered. Unset fields mean "normal".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// Delay before response headers.
    pub latency_ms: u64,
    /// 0..1 probability that a request fails (per `fail_mode`).
    pub fail_rate: f64,
    /// Status of failing requests; 500 when 0.
    pub fail_status: u16,
    /// If non-empty, failing requests pick uniformly among these.
    pub fail_statuses: Vec<u16>,
    /// Sent as `retry-after` and `retry-after-ms` on 429s (Gemini: as the body's
    /// `RetryInfo.retryDelay`).
    pub retry_after_s: Option<u64>,
    /// How a failing request fails.
    pub fail_mode: FailMode,
    /// Every request gets this status (error body in the wire format);
    /// values below 400 are ignored.
    pub always_status: Option<u16>,
    /// Number of content chunks in a stream (5 when 0).
    pub stream_chunks: usize,
    /// Delay before each content chunk of a stream.
    pub chunk_interval_ms: u64,
    /// After N content chunks, fail the stream per `stream_fail_mode`.
    pub stream_fail_after: Option<usize>,
    pub stream_fail_mode: StreamFailMode,
    /// Content to answer with (default `"Hello from mock <account>"`).
    pub reply: Option<String>,
    /// Bytes of padding added to the content (a space then `x`s).
    pub response_padding: usize,
    /// Vertex: lifetime of the access tokens the token endpoint issues (3600 when absent).
    pub token_expires_in_s: Option<u64>,
    /// Vertex: the token endpoint answers this status (>= 400) instead of a token.
    pub token_status: Option<u16>,
}

/// How a failing request fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Answer with the failure status and the provider's error body.
    #[default]
    Status,
    /// Sleep for an hour; never answer.
    Timeout,
    /// Drop the TCP connection (RST) without any response.
    Reset,
}

/// How a stream fails after `stream_fail_after` content chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFailMode {
    /// Close the connection mid-stream, without the chunked terminator.
    #[default]
    Drop,
    /// Send the provider's error event, then end the body.
    ErrorEvent,
    /// End the body cleanly but without `[DONE]` / `message_stop`.
    NoTerminator,
}

/// Snapshot of one account's counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountStats {
    pub requests: u64,
    /// Keys: `chat_completions`, `azure_chat_completions`, `messages`,
    /// `embeddings`, `azure_embeddings`, `completions`, `azure_completions`,
    /// `models`, `not_found`, `gemini_generate`, `gemini_stream`, `gemini_embed`,
    /// `gemini_models`, and for the Responses API (`azure_` prefixed
    /// on Azure's `…/openai/v1/responses…` paths): `responses` (create),
    /// `responses_get`, `responses_delete`, `responses_input_items`,
    /// `responses_cancel`, `azure_responses`, `azure_responses_get`,
    /// `azure_responses_delete`, `azure_responses_input_items`,
    /// `azure_responses_cancel`; Bedrock's `converse`, `converse_stream`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Response statuses sent (resets and hangs send none).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests whose client hung up before the response (stream) ended.
    pub client_disconnects: u64,
    pub last_headers: BTreeMap<String, String>,
    pub last_body: Option<serde_json::Value>,
    /// Path and query of the last request.
    pub last_path: String,
}

/// A mock server running on its own thread and actix System.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<ServerHandle>,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts on `addr` (use "127.0.0.1:0" for an ephemeral port) with one
    /// worker; returns once the socket is listening.
    pub fn start(addr: &str, default: Behavior) -> io::Result<MockServer> {
        Self::start_with_workers(addr, default, 1)
    }

    pub fn start_with_workers(
        addr: &str,
        default: Behavior,
        workers: usize,
    ) -> io::Result<MockServer> {
        let shared = Arc::new(Shared::new(default));
        let (tx, rx) = mpsc::channel();
        let addr = addr.to_owned();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("llmux-mock".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    match server::build(&addr, thread_shared, workers, false) {
                        Ok((srv, bound)) => {
                            let _ = tx.send(Ok((bound, srv.handle())));
                            if let Err(e) = srv.await {
                                tracing::error!("llmux-mock server error: {e}");
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
            })?;
        match rx.recv() {
            Ok(Ok((addr, handle))) => Ok(MockServer {
                addr,
                shared,
                handle: Some(handle),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("llmux-mock server thread died"))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT/<account>`, or `http://IP:PORT` for account "".
    pub fn url(&self, account: &str) -> String {
        let account = account.trim_matches('/');
        if account.is_empty() {
            format!("http://{}", self.addr)
        } else {
            format!("http://{}/{account}", self.addr)
        }
    }

    /// Sets an account's behavior; "*" sets the default for all accounts.
    pub fn set_behavior(&self, account: &str, b: Behavior) {
        self.shared.set_behavior(account, b);
    }

    pub fn stats(&self, account: &str) -> AccountStats {
        self.shared.stats(account)
    }

    /// Clears all counters, stored responses and per-account behaviors, and
    /// restores the default behavior given at start.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The stop command is sent eagerly; the returned future only
            // waits for completion, which joining the thread does too.
            drop(handle.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the server on the current actix System (used by the binary) until
/// it is stopped by SIGINT/SIGTERM. Prints `llmux-mock listening on ADDR`
/// to stdout once bound.
pub async fn serve(addr: &str, default: Behavior, workers: usize) -> io::Result<()> {
    let (srv, bound) = server::build(addr, Arc::new(Shared::new(default)), workers, true)?;
    println!("llmux-mock listening on {bound}");
    tracing::info!(%bound, "llmux-mock listening");
    srv.await
}
