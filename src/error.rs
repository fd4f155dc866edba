//! The one error type of the request path. Every way a request can fail ends as one of these;
//! [`crate::http::error`] maps them to OpenAI-shaped HTTP errors in one place.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client sent something we cannot serve (bad JSON, wrong types, unsupported option).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("unknown config id `{0}`: no [configs.{0}] in config.toml")]
    UnknownConfig(String),
    #[error("invalid x-portkey-config at `{path}`: {message}")]
    InvalidConfig { path: String, message: String },
    #[error("unknown virtual key `{0}` in x-portkey-virtual-key")]
    UnknownVirtualKey(String),
    #[error("no config selected: send x-portkey-config or x-portkey-virtual-key, or set server.default_config")]
    NoConfig,
    /// Every target that could take the request is out of budget or cooling down.
    #[error("all targets are rate-limited or cooling down; retry after {}s", retry_after.as_secs().max(1))]
    NoCapacity { retry_after: Duration },
    /// Every attempt failed; carries the last upstream error (already stripped of secrets).
    #[error("{message}")]
    Upstream {
        status: u16,
        message: String,
        kind: String,
        code: Option<String>,
        param: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("request body not received within {} ms", .0.as_millis())]
    ClientTimeout(Duration),
    #[error("not found: {0}")]
    NotFound(String),
    /// The gateway key's own limit (rate, concurrency or spend budget) refuses the request.
    #[error("{message}")]
    KeyLimit {
        message: String,
        /// `insufficient_quota` for a spent budget (as OpenAI says of an exhausted quota),
        /// `rate_limit_exceeded`, or `concurrency_limit_exceeded`.
        code: &'static str,
        retry_after: Option<Duration>,
    },
    /// The gateway key may not reach what the request names (its `[auth]` scope).
    #[error("{0}")]
    Forbidden(String),
    /// The request names state only an account that cannot serve it any more knows (a
    /// `previous_response_id` of a removed virtual key).
    #[error("{0}")]
    Conflict(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Error {
        Error::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
            code: None,
        }
    }
}
