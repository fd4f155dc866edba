//! The one mapping of [`Error`] to HTTP: status, the OpenAI error envelope
//! (`{"error":{"message","type","param","code"}}`), `Retry-After` and `WWW-Authenticate`.
//! Every client sees the same envelope with the right status, whatever failed.

use std::time::Duration;

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::Error;

/// The envelope's fields of an error.
trait Envelope {
    fn kind(&self) -> &str;
    fn code(&self) -> Option<&str>;
    fn param(&self) -> Option<&str>;
    fn retry_after(&self) -> Option<Duration>;
}

impl Envelope for Error {
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
            | Error::Conflict(_)
            | Error::ClientTimeout(_) => "invalid_request_error",
            Error::Unauthorized(_) => "authentication_error",
            Error::Forbidden(_) => "permission_error",
            Error::NoCapacity { .. } => "rate_limit_error",
            Error::KeyLimit { code, .. } if *code == "insufficient_quota" => "insufficient_quota",
            Error::KeyLimit { .. } => "rate_limit_error",
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
            Error::KeyLimit { code, .. } => Some(code),
            Error::Upstream { code, .. } => code.as_deref(),
            Error::NotFound(_) => Some("not_found"),
            Error::Conflict(_) => Some("conflict"),
            Error::Forbidden(_) => Some("forbidden"),
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
            Error::KeyLimit { retry_after, .. } => *retry_after,
            Error::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The OpenAI error envelope of `e`.
pub fn envelope(e: &Error) -> serde_json::Value {
    json!({"error": {
        "message": e.to_string(),
        "type": e.kind(),
        "param": e.param(),
        "code": e.code(),
    }})
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
            Error::NoCapacity { .. } | Error::KeyLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
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
        resp.json(envelope(self))
    }
}
