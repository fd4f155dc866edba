//! OpenAI and OpenAI-compatible servers (vLLM, Together, Groq, Ollama…): the body passes
//! through with overrides applied, `Authorization: Bearer`. Also the OpenAI error envelope,
//! which Azure shares.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{Answer, AttemptError, Endpoint, FailureClass, Merged, Usage};
use crate::config::TargetSpec;

pub fn build(
    client: &reqwest::Client,
    spec: &TargetSpec,
    endpoint: Endpoint,
    body: &Merged<'_>,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let Some(url) = spec.urls.endpoint(endpoint) else {
        unreachable!("OpenAI-shaped targets have every endpoint")
    };
    let mut req = body.attach(client.post(url.clone()));
    if let Some(key) = &spec.api_key {
        req = req.bearer_auth(key.expose());
    }
    Ok(req)
}

#[derive(Deserialize)]
struct Probe {
    model: Option<String>,
    usage: Option<UsageProbe>,
}

#[derive(Deserialize, Default)]
pub(crate) struct UsageProbe {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: u64,
}

impl UsageProbe {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
        }
    }
}

/// A 2xx OpenAI-shaped body passes through byte for byte; only model and usage are read.
pub fn answer(status: u16, body: Bytes) -> Result<Answer, AttemptError> {
    let probe: Probe = serde_json::from_slice(&body).map_err(|e| {
        AttemptError::new(
            502,
            FailureClass::Server,
            "server_error",
            format!("upstream returned a body that is not valid JSON: {e}"),
        )
    })?;
    Ok(Answer {
        status,
        usage: probe.usage.map(|u| u.usage()).unwrap_or_default(),
        model: probe.model,
        body,
    })
}

/// Reads an OpenAI/Azure error body (`{"error":{...}}`), tolerating anything.
pub fn parse_error(status: u16, body: &[u8]) -> AttemptError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("error").is_some() => error_from_value(status, &v),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream returned HTTP {status}")
            } else {
                format!("upstream returned HTTP {status}: {text}")
            };
            AttemptError::new(
                status,
                AttemptError::class_of(status),
                default_type(status),
                message,
            )
        }
    }
}

/// Builds an attempt error from an OpenAI-shaped `{"error":{...}}` value.
pub fn error_from_value(status: u16, v: &Value) -> AttemptError {
    let e = v.get("error").unwrap_or(v);
    let s = |k: &str| -> Option<String> {
        match e.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut err = AttemptError::new(
        status,
        AttemptError::class_of(status),
        s("type").as_deref().unwrap_or(default_type(status)),
        s("message").unwrap_or_else(|| format!("upstream returned HTTP {status}")),
    );
    err.code = s("code");
    err.param = s("param");
    err
}

fn default_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}
