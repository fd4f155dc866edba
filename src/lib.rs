//! llmux: a self-hosted LLM router. Applications speak the OpenAI API to it; it spreads their
//! requests over provider accounts following Portkey-style strategy trees, and keeps them
//! alive when a provider is rate-limited or down.
//!
//! Modules, lowest layer first; each imports only modules listed before it (checked by
//! `tests/layering.rs`):
//! - [`clock`], [`error`]: process clocks; the request path's one error type.
//! - [`config`]: the config file, raw → validated → compiled trees; pure data.
//! - [`providers`]: the wire formats, one [`providers::Provider`] per kind.
//! - [`routing`]: the pure, seedable tree walk and token estimates.
//! - [`cluster`]: budgets and cooldowns shared through Redis.
//! - [`observability`]: logging, metrics, the request log and pricing.
//! - [`cache`]: the response cache (memory, Redis, semantic matching, SSE record/replay).
//! - [`conversation`]: Responses API state: response id → account, translated conversations.
//! - [`tenancy`]: per gateway key limits: rates, concurrency, spend budgets.
//! - [`actors`]: the target actors (gate, budgets, breaker, health) and the supervisor.
//! - [`proxy`]: the data path of one request: attempts, retries, fallback, the client stream.
//! - [`http`]: the OpenAI front, the admin API, authentication, the HTTP error mapping.
//! - [`app`]: the daemon's life cycle: start, reload, shutdown, memory policy.

pub mod actors;
pub mod app;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conversation;
pub mod error;
pub mod http;
pub mod observability;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod tenancy;
