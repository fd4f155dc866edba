//! Anthropic error body -> OpenAI error object.

use super::*;

/// Anthropic error response (any status, any body — may be non-JSON or empty) -> (HTTP status to return to the client, OpenAI error object `{"error":{"message","type","param","code"}}`).
///
/// 529 (Anthropic "overloaded") becomes 503, which OpenAI clients know to retry. A status that is
/// not an error status at all (a 2xx carrying an error body, or garbage) becomes 502: the
/// upstream misbehaved and the client must not read it as success.
#[must_use]
pub fn translate_error(status: u16, body: &[u8]) -> (u16, Value) {
    let client_status = match status {
        529 => 503,
        400..=599 => status,
        _ => 502,
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let detail = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_object);
    let error = match detail {
        Some(detail) => {
            let kind = detail
                .get("type")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| kind_for_status(status));
            let message = match detail.get("message").and_then(Value::as_str) {
                Some(m) if !m.is_empty() => Cow::Borrowed(truncate_utf8(m, MAX_ECHO_BYTES)),
                _ => Cow::Owned(format!("Anthropic returned HTTP {status}")),
            };
            openai_error(kind, &message)
        }
        None => openai_error(kind_for_status(status), &generic_message(status, body)),
    };
    (client_status, error)
}

/// The Anthropic error type a status implies, for bodies that do not say.
fn kind_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Anthropic error type -> (OpenAI `type`, OpenAI `code`). Client-side types keep Anthropic's
/// name (more precise than OpenAI's) and gain the `code` OpenAI SDKs and dashboards key on;
/// server-side failures collapse into OpenAI's `server_error`.
fn openai_kind(kind: &str) -> (&str, Option<&'static str>) {
    match kind {
        "authentication_error" => (kind, Some("invalid_api_key")),
        "permission_error" => (kind, Some("permission_denied")),
        "not_found_error" => (kind, Some("model_not_found")),
        "rate_limit_error" => (kind, Some("rate_limit_exceeded")),
        "billing_error" => (kind, Some("insufficient_quota")),
        "request_too_large" => ("invalid_request_error", Some("request_too_large")),
        "overloaded_error" => ("server_error", Some("overloaded")),
        "timeout_error" => ("server_error", Some("timeout")),
        "api_error" => ("server_error", None),
        _ => (kind, None),
    }
}

pub(super) fn openai_error(anthropic_kind: &str, message: &str) -> Value {
    let (kind, code) = openai_kind(truncate_utf8(anthropic_kind, 64));
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

fn generic_message(status: u16, body: &[u8]) -> String {
    crate::providers::generic_error_message("Anthropic", status, body)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::providers::anthropic) fn anthropic_error(kind: &str, message: &str) -> Vec<u8> {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn error_types_map_to_openai() {
        let cases = [
            (
                400,
                "invalid_request_error",
                400,
                "invalid_request_error",
                Value::Null,
            ),
            (
                401,
                "authentication_error",
                401,
                "authentication_error",
                json!("invalid_api_key"),
            ),
            (
                402,
                "billing_error",
                402,
                "billing_error",
                json!("insufficient_quota"),
            ),
            (
                403,
                "permission_error",
                403,
                "permission_error",
                json!("permission_denied"),
            ),
            (
                404,
                "not_found_error",
                404,
                "not_found_error",
                json!("model_not_found"),
            ),
            (
                413,
                "request_too_large",
                413,
                "invalid_request_error",
                json!("request_too_large"),
            ),
            (
                429,
                "rate_limit_error",
                429,
                "rate_limit_error",
                json!("rate_limit_exceeded"),
            ),
            (500, "api_error", 500, "server_error", Value::Null),
            (504, "timeout_error", 504, "server_error", json!("timeout")),
            (
                529,
                "overloaded_error",
                503,
                "server_error",
                json!("overloaded"),
            ),
            (418, "teapot_error", 418, "teapot_error", Value::Null),
        ];
        for (status, kind, want_status, want_type, want_code) in cases {
            let (s, v) = translate_error(status, &anthropic_error(kind, "boom"));
            assert_eq!(s, want_status, "{kind}");
            assert_eq!(
                v,
                json!({"error": {"message": "boom", "type": want_type, "param": null, "code": want_code}}),
                "{kind}"
            );
        }
    }

    #[test]
    fn non_json_and_odd_error_bodies_get_generic_messages() {
        let (s, v) = translate_error(502, b"<html>Bad Gateway</html>");
        assert_eq!(s, 502);
        assert_eq!(
            v["error"]["message"],
            "Anthropic returned HTTP 502: <html>Bad Gateway</html>"
        );
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["param"], Value::Null);

        let (s, v) = translate_error(529, b"");
        assert_eq!(s, 503);
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 529");
        assert_eq!(v["error"]["code"], "overloaded");

        let (_, v) = translate_error(429, b"slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");

        let (_, v) = translate_error(401, br#"{"error":{"message":"bad key"}}"#);
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "bad key");

        let (_, v) = translate_error(400, br#"{"error":{"type":"invalid_request_error"}}"#);
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 400");

        let (_, v) = translate_error(400, br#"{"error":"plain"}"#);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Anthropic returned HTTP 400")));
    }

    #[test]
    fn raw_body_echo_is_bounded() {
        let big = "é".repeat(2000);
        let (_, v) = translate_error(500, big.as_bytes());
        let message = v["error"]["message"].as_str().expect("message");
        let echoed = message.trim_start_matches("Anthropic returned HTTP 500: ");
        assert!(echoed.len() <= MAX_ECHO_BYTES && !echoed.is_empty());

        let (_, v) = translate_error(500, &anthropic_error("api_error", &"x".repeat(10_000)));
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() <= MAX_ECHO_BYTES));

        let (_, v) = translate_error(500, b"\xff\xfe\xfd");
        assert_eq!(v["error"]["message"], "Anthropic returned HTTP 500");
    }

    #[test]
    fn non_error_statuses_become_bad_gateway() {
        for status in [0, 200, 302, 600, u16::MAX] {
            let (s, v) = translate_error(status, b"{}");
            assert_eq!(s, 502, "{status}");
            assert!(v["error"]["message"].is_string());
        }
        let (s, v) = translate_error(200, &anthropic_error("overloaded_error", "Overloaded"));
        assert_eq!(s, 502);
        assert_eq!(v["error"]["code"], "overloaded");
    }
}
