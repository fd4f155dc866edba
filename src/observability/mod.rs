//! What operators see of llmux at work: logs and Prometheus metrics ([`telemetry`]), and the
//! in-memory request log with per-request prices ([`requestlog`]).

pub mod otel;
pub mod requestlog;
pub mod telemetry;
pub mod usage;
