//! The bundled mock provider, tested over real HTTP: every endpoint in each provider's wire
//! format, behaviours (statuses, Retry-After, timeouts, resets, stream failures) and the
//! control API. The router's tests rely on all of it.

mod anthropic;
mod bedrock;
mod behavior;
mod common;
mod control;
mod gemini;
mod openai;
mod responses;
