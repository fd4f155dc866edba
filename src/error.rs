//! The one error type of the request path and its one mapping to OpenAI-shaped HTTP errors
//! (`{"error":{"message","type","param","code"}}`). Every way a request can fail ends here, so
//! every client sees the same envelope with the right status.

use std::time::Duration;

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

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

    fn kind(&self) -> &str {
        match self {
            Error::InvalidRequest { .. }
            | Error::PayloadTooLarge { .. }
            | Error::HeadersTooLarge { .. }
            | Error::UnknownConfig(_)
            | Error::InvalidConfig { .. }
            | Error::UnknownVirtualKey(_)
            | Error::NoConfig
            | Error::NotFound(_)
            | Error::ClientTimeout(_) => "invalid_request_error",
            Error::Unauthorized(_) => "authentication_error",
            Error::NoCapacity { .. } => "rate_limit_error",
            Error::Upstream { kind, .. } => kind,
            Error::ShuttingDown | Error::Internal(_) => "server_error",
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { code, .. } => *code,
            Error::PayloadTooLarge { .. } => Some("request_too_large"),
            Error::HeadersTooLarge { .. } => Some("headers_too_large"),
            Error::Unauthorized(_) => Some("invalid_api_key"),
            Error::UnknownConfig(_) | Error::InvalidConfig { .. } => Some("invalid_config"),
            Error::UnknownVirtualKey(_) => Some("invalid_virtual_key"),
            Error::NoConfig => Some("no_config"),
            Error::NoCapacity { .. } => Some("rate_limit_exceeded"),
            Error::Upstream { code, .. } => code.as_deref(),
            Error::NotFound(_) => Some("not_found"),
            Error::ClientTimeout(_) => Some("body_timeout"),
            Error::ShuttingDown => Some("shutting_down"),
            Error::Internal(_) => None,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { param, .. } | Error::Upstream { param, .. } => param.as_deref(),
            Error::InvalidConfig { .. } | Error::UnknownConfig(_) => Some("x-portkey-config"),
            Error::UnknownVirtualKey(_) => Some("x-portkey-virtual-key"),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::NoCapacity { retry_after } => Some(*retry_after),
            Error::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The OpenAI error envelope for this error.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": self.param(),
            "code": self.code(),
        }})
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::InvalidRequest { .. }
            | Error::UnknownConfig(_)
            | Error::InvalidConfig { .. }
            | Error::UnknownVirtualKey(_)
            | Error::NoConfig => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NoCapacity { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if let Some(d) = self.retry_after() {
            // Whole seconds, rounded up: a client that waits exactly this long must succeed.
            let secs = d.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.insert_header((RETRY_AFTER, v));
            }
        }
        if matches!(self, Error::Unauthorized(_)) {
            resp.insert_header(("www-authenticate", "Bearer"));
        }
        resp.json(self.body())
    }
}
