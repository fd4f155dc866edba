//! llmux: a self-hosted LLM router. Applications speak the OpenAI API to it; it spreads their
//! requests over provider accounts following Portkey-style strategy trees, and keeps them
//! alive when a provider is rate-limited or down.

pub mod actors;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod error;
pub mod http;
pub mod memory;
pub mod providers;
pub mod proxy;
pub mod requestlog;
pub mod routing;
pub mod telemetry;
