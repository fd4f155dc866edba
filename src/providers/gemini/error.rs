//! Google error bodies (`{"error":{"code","message","status","details":[…]}}`) → OpenAI errors,
//! and the `google.rpc.RetryInfo` `retryDelay` of a 429 → the attempt's retry hint.

use std::time::Duration;

use serde_json::Value;

use super::{truncate_utf8, MAX_ECHO_BYTES};
use crate::providers::{AttemptError, FailureClass};

/// A Gemini error answer (any status, any body) in OpenAI terms. The class follows the status
/// the client sees; `retry_after` holds the body's uncapped `retryDelay` (the caller caps it
/// with the target's `max_retry_after`, as it does a `Retry-After` header).
///
/// Google says "bad key" with 400 `INVALID_ARGUMENT` + reason `API_KEY_INVALID`: that becomes
/// a 401 `invalid_api_key`, which OpenAI SDKs raise as an authentication error.
#[must_use]
pub fn translate_error(status: u16, body: &[u8]) -> AttemptError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // Streamed (non-SSE) answers wrap everything in an array, errors included.
    let parsed = match parsed {
        Some(Value::Array(mut items)) if !items.is_empty() => Some(items.swap_remove(0)),
        other => other,
    };
    let detail = parsed.as_ref().and_then(|v| v.get("error"));
    let mut status = if (400..600).contains(&status) {
        status
    } else {
        502
    };
    let google_status = detail
        .and_then(|d| d.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let details = detail
        .and_then(|d| d.get("details"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let key_invalid = details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
    if key_invalid && status == 400 {
        status = 401;
    }
    let (kind, code) = match (google_status, status) {
        (_, 401) | ("UNAUTHENTICATED", _) => ("authentication_error", Some("invalid_api_key")),
        ("PERMISSION_DENIED", _) | (_, 403) => ("permission_error", Some("permission_denied")),
        ("NOT_FOUND", _) | (_, 404) => ("not_found_error", Some("model_not_found")),
        ("RESOURCE_EXHAUSTED", _) | (_, 429) => ("rate_limit_error", Some("rate_limit_exceeded")),
        ("DEADLINE_EXCEEDED", _) | (_, 408 | 504) => ("timeout_error", Some("timeout")),
        ("UNAVAILABLE", _) | (_, 503) => ("server_error", Some("overloaded")),
        (_, 500..) => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let message = match detail
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
    {
        Some(m) if !m.is_empty() => truncate_utf8(m, MAX_ECHO_BYTES).to_owned(),
        _ => generic_message(status, body),
    };
    let mut err = AttemptError::new(status, AttemptError::class_of(status), kind, message);
    err.code = code.map(str::to_owned);
    if err.class == FailureClass::RateLimited {
        err.retry_after = retry_delay(details);
    }
    err
}

/// The `retryDelay` of the first `google.rpc.RetryInfo` in `details` (a protobuf Duration in
/// JSON: seconds with up to nine decimals, then `s`, e.g. `"58s"`, `"1.5s"`).
#[must_use]
pub fn retry_delay(details: &[Value]) -> Option<Duration> {
    let delay = details.iter().find_map(|d| {
        let t = d.get("@type").and_then(Value::as_str)?;
        t.ends_with("google.rpc.RetryInfo")
            .then(|| d.get("retryDelay").and_then(Value::as_str))
            .flatten()
    })?;
    let s = delay.trim().strip_suffix('s')?;
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate: a hint of a billion years is capped by the caller anyway.
    let secs = whole.parse::<u64>().unwrap_or(u64::MAX);
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().unwrap_or(0) * 10u32.pow(9 - frac.len() as u32)
    };
    Some(Duration::new(secs, nanos))
}

fn generic_message(status: u16, body: &[u8]) -> String {
    crate::providers::generic_error_message("Gemini", status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn google(code: u16, status: &str, details: Value) -> Vec<u8> {
        json!({"error": {"code": code, "message": format!("{status} happened"), "status": status, "details": details}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_doc_429_carries_its_retry_delay() {
        let body = br#"{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"58s"}]}}"#;
        let e = translate_error(429, body);
        assert_eq!(e.status, 429);
        assert_eq!(e.class, FailureClass::RateLimited);
        assert_eq!(e.kind, "rate_limit_error");
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.message, "You exceeded your current quota");
        assert_eq!(e.retry_after, Some(Duration::from_secs(58)));
    }

    #[test]
    fn statuses_map_to_openai_classes() {
        let cases = [
            (
                400,
                "INVALID_ARGUMENT",
                400,
                FailureClass::Client,
                "invalid_request_error",
            ),
            (
                400,
                "FAILED_PRECONDITION",
                400,
                FailureClass::Client,
                "invalid_request_error",
            ),
            (
                401,
                "UNAUTHENTICATED",
                401,
                FailureClass::Client,
                "authentication_error",
            ),
            (
                403,
                "PERMISSION_DENIED",
                403,
                FailureClass::Client,
                "permission_error",
            ),
            (
                404,
                "NOT_FOUND",
                404,
                FailureClass::Client,
                "not_found_error",
            ),
            (
                429,
                "RESOURCE_EXHAUSTED",
                429,
                FailureClass::RateLimited,
                "rate_limit_error",
            ),
            (500, "INTERNAL", 500, FailureClass::Server, "server_error"),
            (
                503,
                "UNAVAILABLE",
                503,
                FailureClass::Server,
                "server_error",
            ),
            (
                504,
                "DEADLINE_EXCEEDED",
                504,
                FailureClass::Server,
                "timeout_error",
            ),
        ];
        for (code, status, want, class, kind) in cases {
            let e = translate_error(code, &google(code, status, json!([])));
            assert_eq!(
                (e.status, e.class, e.kind.as_str()),
                (want, class, kind),
                "{status}"
            );
            assert_eq!(e.message, format!("{status} happened"));
            assert_eq!(e.retry_after, None);
        }
    }

    #[test]
    fn a_bad_key_is_an_authentication_error() {
        let body = google(
            400,
            "INVALID_ARGUMENT",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]),
        );
        let e = translate_error(400, &body);
        assert_eq!((e.status, e.kind.as_str()), (401, "authentication_error"));
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
    }

    #[test]
    fn retry_delays_parse_like_protobuf_durations() {
        let d = |s: &str| {
            retry_delay(&[
                json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": s}),
            ])
        };
        assert_eq!(d("58s"), Some(Duration::from_secs(58)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("0.000000001s"), Some(Duration::from_nanos(1)));
        assert_eq!(
            d("99999999999999999999999s"),
            Some(Duration::new(u64::MAX, 0))
        );
        for bad in ["", "s", "58", "-1s", "1.s5", "1.0000000001s", "abc", "1e3s"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert_eq!(retry_delay(&[json!({"retryDelay": "5s"})]), None);
    }

    #[test]
    fn garbage_and_arrays() {
        let e = translate_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.status, 502);
        assert!(e.message.contains("bad gateway"));
        let e = translate_error(200, b"");
        assert_eq!((e.status, e.class), (502, FailureClass::Server));
        let arr = format!(
            "[{}]",
            String::from_utf8(google(503, "UNAVAILABLE", json!([]))).unwrap()
        );
        let e = translate_error(503, arr.as_bytes());
        assert_eq!(e.message, "UNAVAILABLE happened");
        // A RetryInfo on a non-429 is not a rate limit.
        let e = translate_error(
            503,
            &google(
                503,
                "UNAVAILABLE",
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}]),
            ),
        );
        assert_eq!(e.retry_after, None);
    }
}
