//! Wire-format plumbing shared by every endpoint: the per-request context,
//! provider error envelopes (OpenAI, Azure OpenAI, Anthropic), rate-limit and
//! request-id headers, the reply text, and request-body helpers.

use std::borrow::Cow;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;
use serde_json::Value;

use super::route::Provider;
use super::stream::StreamPlan;
use super::util;
use super::Behavior;

/// What a successful endpoint handler produces.
pub enum Answer {
    Json(Vec<u8>),
    Stream(StreamPlan),
}

/// What a handler needs to know besides the request body.
pub struct Ctx<'a> {
    pub provider: Provider,
    pub account: &'a str,
    pub behavior: &'a Behavior,
    /// Unique number of this request (ids and request-id headers).
    pub seq: u64,
    /// Azure `api-version` query parameter.
    pub api_version: Option<&'a str>,
    /// Azure deployment name.
    pub deployment: Option<&'a str>,
    /// Azure operation name used in 429 messages.
    pub operation: &'static str,
}

impl Ctx<'_> {
    pub fn request_id(&self) -> String {
        format!("req_mock{:016x}", self.seq)
    }

    /// Response content: `reply` or "Hello from mock <account>", plus padding.
    pub fn reply_text(&self) -> String {
        let b = self.behavior;
        let mut s = match &b.reply {
            Some(r) => String::with_capacity(r.len() + b.response_padding),
            None => String::with_capacity(16 + self.account.len() + b.response_padding),
        };
        match &b.reply {
            Some(r) => s.push_str(r),
            None if self.account.is_empty() => s.push_str("Hello from mock"),
            None => {
                s.push_str("Hello from mock ");
                s.push_str(self.account);
            }
        }
        if b.response_padding > 0 {
            s.push(' ');
            s.extend(std::iter::repeat_n('x', b.response_padding - 1));
        }
        s
    }

    /// Number of content chunks in a stream.
    pub fn stream_chunks(&self) -> usize {
        if self.behavior.stream_chunks == 0 {
            5
        } else {
            self.behavior.stream_chunks
        }
    }

    /// A JSON 200 response with this provider's standard headers.
    pub fn json_ok(&self, body: Vec<u8>) -> HttpResponse {
        let mut b = HttpResponse::Ok();
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        self.success_headers(&mut b);
        b.body(body)
    }

    /// A `text/event-stream` 200 builder with this provider's headers.
    pub fn sse_ok(&self) -> HttpResponseBuilder {
        let mut b = HttpResponse::Ok();
        let kind = match self.provider {
            Provider::Bedrock => "application/vnd.amazon.eventstream",
            _ => "text/event-stream",
        };
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static(kind)))
            .insert_header((
                HeaderName::from_static("cache-control"),
                HeaderValue::from_static("no-cache"),
            ));
        self.success_headers(&mut b);
        b
    }

    fn request_id_header(&self, b: &mut HttpResponseBuilder) {
        let name = match self.provider {
            Provider::Anthropic => "request-id",
            // Google sends no request id header.
            Provider::Gemini => return,
            Provider::Bedrock => "x-amzn-requestid",
            _ => "x-request-id",
        };
        if let Ok(v) = HeaderValue::from_str(&self.request_id()) {
            b.insert_header((HeaderName::from_static(name), v));
        }
    }

    fn success_headers(&self, b: &mut HttpResponseBuilder) {
        self.request_id_header(b);
        match self.provider {
            Provider::OpenAi => {
                for (k, v) in OPENAI_RATELIMIT_OK {
                    b.insert_header((HeaderName::from_static(k), HeaderValue::from_static(v)));
                }
            }
            Provider::Azure => {
                for (k, v) in AZURE_RATELIMIT_OK {
                    b.insert_header((HeaderName::from_static(k), HeaderValue::from_static(v)));
                }
            }
            Provider::Anthropic => anthropic_ratelimit(b, 1, false),
            Provider::Gemini => {}
            Provider::Bedrock => {}
        }
    }
}

const OPENAI_RATELIMIT_OK: [(&str, &str); 6] = [
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-limit-tokens", "30000000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "29999000"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-reset-tokens", "2ms"),
];

const AZURE_RATELIMIT_OK: [(&str, &str); 2] = [
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "29999000"),
];

const ANTHROPIC_RATELIMIT: [([&str; 3], &str, &str); 4] = [
    (
        [
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ],
        "4000",
        "3999",
    ),
    (
        [
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ],
        "2000000",
        "1999000",
    ),
    (
        [
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
        ],
        "1600000",
        "1599000",
    ),
    (
        [
            "anthropic-ratelimit-output-tokens-limit",
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
        ],
        "400000",
        "399000",
    ),
];

/// `anthropic-ratelimit-*` headers; `reset` is an RFC 3339 time.
fn anthropic_ratelimit(b: &mut HttpResponseBuilder, reset_in_s: u64, exhausted: bool) {
    let reset = util::rfc3339(util::unix_now() + reset_in_s);
    let reset = HeaderValue::from_str(&reset).unwrap_or(HeaderValue::from_static(""));
    for ([limit_name, remaining_name, reset_name], limit, remaining) in ANTHROPIC_RATELIMIT {
        let remaining = if exhausted { "0" } else { remaining };
        b.insert_header((
            HeaderName::from_static(limit_name),
            HeaderValue::from_static(limit),
        ))
        .insert_header((
            HeaderName::from_static(remaining_name),
            HeaderValue::from_static(remaining),
        ))
        .insert_header((HeaderName::from_static(reset_name), reset.clone()));
    }
}

/// An error answer, rendered in the envelope of the request's provider.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: Option<Cow<'static, str>>,
    pub param: Option<Cow<'static, str>>,
    /// Overrides the OpenAI `code` / Azure `code`; `Some(None)` forces an
    /// OpenAI `"code": null`.
    pub code: Option<Option<&'static str>>,
    /// Rendered in the OpenAI envelope even for Azure (errors of a model API
    /// that Azure passes through, such as the Responses API's).
    pub openai_envelope: bool,
}

impl ApiError {
    pub fn status(status: u16) -> Self {
        ApiError {
            status,
            message: None,
            param: None,
            code: None,
            openai_envelope: false,
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::status(400).message(message)
    }

    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(Some(code));
        self
    }

    /// `"code": null` instead of the status's default code.
    pub fn no_code(mut self) -> Self {
        self.code = Some(None);
        self
    }

    pub fn openai_envelope(mut self) -> Self {
        self.openai_envelope = true;
        self
    }

    pub fn render(&self, ctx: &Ctx) -> HttpResponse {
        if ctx.provider == Provider::Bedrock {
            return super::bedrock::render_error(self, ctx);
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut b = HttpResponse::build(status);
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        ctx.request_id_header(&mut b);
        let retry_after = ctx.behavior.retry_after_s;
        // Google hints the wait in the body (`RetryInfo`), never in a header.
        if self.status == 429 && ctx.provider != Provider::Gemini {
            if let Some(s) = retry_after {
                b.insert_header((HeaderName::from_static("retry-after"), s))
                    .insert_header((
                        HeaderName::from_static("retry-after-ms"),
                        s.saturating_mul(1000),
                    ));
            }
            match ctx.provider {
                Provider::OpenAi | Provider::Azure => {
                    b.insert_header((
                        HeaderName::from_static("x-ratelimit-remaining-requests"),
                        HeaderValue::from_static("0"),
                    ));
                    if ctx.provider == Provider::OpenAi {
                        b.insert_header((
                            HeaderName::from_static("x-ratelimit-limit-requests"),
                            HeaderValue::from_static("10000"),
                        ));
                        let reset = format!("{}s", retry_after.unwrap_or(1));
                        if let Ok(v) = HeaderValue::from_str(&reset) {
                            b.insert_header((
                                HeaderName::from_static("x-ratelimit-reset-requests"),
                                v,
                            ));
                        }
                    }
                }
                Provider::Anthropic => anthropic_ratelimit(&mut b, retry_after.unwrap_or(1), true),
                Provider::Gemini => {}
                Provider::Bedrock => {}
            }
        }
        b.body(self.body(ctx))
    }

    pub fn body(&self, ctx: &Ctx) -> Vec<u8> {
        match ctx.provider {
            _ if self.openai_envelope => openai_error_body(self, ctx),
            Provider::OpenAi => openai_error_body(self, ctx),
            Provider::Azure => azure_error_body(self, ctx),
            Provider::Anthropic => anthropic_error_body(self, ctx),
            Provider::Gemini => {
                super::gemini::error_value(ctx, self.status, self.message.as_deref())
                    .to_string()
                    .into_bytes()
            }
            Provider::Bedrock => super::bedrock::error_body(self),
        }
    }
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorInner<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// (type, code, message) of an OpenAI error for a status.
fn openai_defaults(
    status: u16,
    ctx: &Ctx,
) -> (&'static str, Option<&'static str>, Cow<'static, str>) {
    match status {
        400 => ("invalid_request_error", None, "Invalid request.".into()),
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.".into(),
        ),
        403 => (
            "invalid_request_error",
            None,
            "You are not allowed to access this resource.".into(),
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.".into(),
        ),
        408 => (
            "invalid_request_error",
            Some("timeout"),
            "Request timed out.".into(),
        ),
        413 => ("invalid_request_error", None, "Request too large.".into()),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            format!(
                "Rate limit reached for requests (mock account '{}'). Please try again in {}s.",
                ctx.account,
                ctx.behavior.retry_after_s.unwrap_or(1)
            )
            .into(),
        ),
        500 => (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!".into(),
        ),
        502 => ("server_error", None, "Bad gateway.".into()),
        503 => (
            "server_error",
            None,
            "The server is overloaded or not ready yet.".into(),
        ),
        504 => ("server_error", None, "Gateway timeout.".into()),
        s if s >= 500 => ("server_error", None, "The server had an error.".into()),
        _ => ("invalid_request_error", None, "Request failed.".into()),
    }
}

fn openai_error_body(e: &ApiError, ctx: &Ctx) -> Vec<u8> {
    let (kind, code, msg) = openai_defaults(e.status, ctx);
    let message = e.message.as_deref().unwrap_or(&msg);
    serde_json::to_vec(&OpenAiError {
        error: OpenAiErrorInner {
            message,
            kind,
            param: e.param.as_deref(),
            code: e.code.unwrap_or(code),
        },
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct AzureError<'a> {
    error: AzureErrorInner<'a>,
}

#[derive(Serialize)]
struct AzureErrorInner<'a> {
    code: &'a str,
    message: &'a str,
}

fn azure_error_body(e: &ApiError, ctx: &Ctx) -> Vec<u8> {
    let status = e.status.to_string();
    let (code, msg): (&str, Cow<'static, str>) = match e.status {
        401 => (
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.".into(),
        ),
        404 => (
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.".into(),
        ),
        429 => (
            &status,
            format!(
                "Requests to the {} Operation under Azure OpenAI API version {} have exceeded token rate limit of your current S0 pricing tier. Please retry after {} seconds.",
                ctx.operation,
                ctx.api_version.unwrap_or("2024-10-21"),
                ctx.behavior.retry_after_s.unwrap_or(1)
            )
            .into(),
        ),
        500 => (&status, "The server had an error processing your request.".into()),
        503 => (
            &status,
            "The service is temporarily unable to process your request. Please try again later.".into(),
        ),
        _ => (&status, openai_defaults(e.status, ctx).2),
    };
    let message = e.message.as_deref().unwrap_or(&msg);
    serde_json::to_vec(&AzureError {
        error: AzureErrorInner {
            code: e.code.flatten().unwrap_or(code),
            message,
        },
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorInner<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

#[derive(Serialize)]
struct AnthropicErrorInner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// (type, default message) of an Anthropic error for a status.
pub fn anthropic_error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Invalid request."),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => ("billing_error", "Your credit balance is too low."),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit. Please try again later.",
        ),
        504 => ("timeout_error", "Request timed out."),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "Request failed."),
    }
}

fn anthropic_error_body(e: &ApiError, ctx: &Ctx) -> Vec<u8> {
    let (kind, msg) = anthropic_error_kind(e.status);
    serde_json::to_vec(&AnthropicError {
        kind: "error",
        error: AnthropicErrorInner {
            kind,
            message: e.message.as_deref().unwrap_or(msg),
        },
        request_id: Some(ctx.request_id()),
    })
    .unwrap_or_default()
}

/// The Anthropic `event: error` SSE frame for a failing stream.
pub fn anthropic_error_event(status: u16) -> Vec<u8> {
    let (kind, message) = anthropic_error_kind(status);
    let json = serde_json::to_string(&AnthropicError {
        kind: "error",
        error: AnthropicErrorInner { kind, message },
        request_id: None,
    })
    .unwrap_or_default();
    format!("event: error\ndata: {json}\n\n").into_bytes()
}

/// The OpenAI/Azure `data: {"error":…}` SSE frame for a failing stream.
pub fn openai_error_event(ctx: &Ctx, status: u16) -> Vec<u8> {
    let body = ApiError::status(status).body(ctx);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    out
}

/// The raw value of `key` in a query string (no percent-decoding).
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Parses a JSON object body or yields the provider's 400.
pub fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::invalid(format!(
            "We could not parse the JSON body of your request. ({e})"
        ))),
    }
}

/// Characters of text in a message `content` (string, or parts/blocks with
/// `text`, recursing into nested `content` such as Anthropic tool results).
pub fn content_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(content_chars).sum(),
        Value::Object(o) => {
            let text = o.get("text").map_or(0, content_chars);
            let nested = o.get("content").map_or(0, content_chars);
            text + nested
        }
        _ => 0,
    }
}

pub fn bool_field(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub fn include_usage(v: &Value) -> bool {
    v.get("stream_options")
        .map(|o| bool_field(o, "include_usage"))
        .unwrap_or(false)
}

/// Reply text truncated to `max_tokens` words when it is longer; returns the
/// text and whether it was cut.
pub fn apply_max_tokens(reply: &str, max_tokens: Option<u64>) -> (&str, bool) {
    match max_tokens {
        Some(n) if util::word_count(reply) > n => (util::truncate_words(reply, n), true),
        _ => (reply, false),
    }
}
