//! Bedrock error answers (`x-amzn-errortype: <Name>[:…]` plus `{"message":"…"}`) and stream
//! exception frames → OpenAI errors. The error type decides the status the client sees; the
//! HTTP status decides only when the type is absent or unknown (a proxy's 413, say).

use serde_json::Value;

use super::{truncate_utf8, MAX_ECHO_BYTES};
use crate::providers::{AttemptError, FailureClass};

/// (status, OpenAI type, OpenAI code) for an AWS error name, in either the header's
/// PascalCase or the stream's camelCase.
fn mapping(name: &str) -> Option<(u16, &'static str, Option<&'static str>)> {
    let m = match name.to_ascii_lowercase().as_str() {
        "validationexception" | "serializationexception" => (400, "invalid_request_error", None),
        // Bad or expired credentials: OpenAI SDKs expect 401 (AuthenticationError) for those.
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception"
        | "invalidclienttokenid" => (401, "authentication_error", Some("invalid_api_key")),
        // Valid credentials without the IAM right (or model access): a permission problem.
        "accessdeniedexception" => (403, "permission_error", Some("permission_denied")),
        "resourcenotfoundexception" => (404, "not_found_error", Some("model_not_found")),
        "modeltimeoutexception" => (408, "timeout_error", Some("timeout")),
        // The model failed, not the request: 502 so the router counts it against the target
        // and may fall back (Bedrock's own 424 would read as the client's fault).
        "modelerrorexception" | "modelstreamerrorexception" => {
            (502, "server_error", Some("model_error"))
        }
        "throttlingexception" | "modelnotreadyexception" | "servicequotaexceededexception" => {
            (429, "rate_limit_error", Some("rate_limit_exceeded"))
        }
        "internalserverexception" => (500, "server_error", None),
        "serviceunavailableexception" => (503, "server_error", Some("overloaded")),
        _ => return None,
    };
    Some(m)
}

fn type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The upstream's message, bounded: AWS signature errors append the canonical request after a
/// blank line, which is no use to a client and may carry header values.
fn message_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)?;
    let m = m.split("\n\n").next().unwrap_or(m).trim();
    (!m.is_empty()).then(|| truncate_utf8(m, MAX_ECHO_BYTES).to_owned())
}

/// A 4xx/5xx Bedrock answer in OpenAI terms. `errortype` is the `x-amzn-errortype` header.
pub fn translate_error(status: u16, errortype: Option<&str>, body: &[u8]) -> AttemptError {
    let name = errortype
        .map(|t| t.split(':').next().unwrap_or(t).trim())
        .filter(|t| !t.is_empty());
    let (status, kind, code) = match name.and_then(mapping) {
        Some(m) => m,
        None => {
            let status = if (400..600).contains(&status) {
                status
            } else {
                502
            };
            (status, type_for_status(status), None)
        }
    };
    let message = match (message_of(body), name) {
        (Some(m), _) => m,
        (None, Some(n)) => format!("Bedrock returned HTTP {status} ({})", truncate_utf8(n, 64)),
        (None, None) => format!("Bedrock returned HTTP {status}"),
    };
    let mut e = AttemptError::new(status, AttemptError::class_of(status), kind, message);
    e.code = code.map(str::to_owned);
    e
}

/// A `:message-type: exception` (or `error`) frame inside a 200 stream. Such a failure is the
/// upstream's, not the request's: only a throttling keeps its rate-limited class (so the target
/// cools down); everything else is a server failure.
pub fn stream_exception(name: &str, payload: &str) -> AttemptError {
    let mut e = translate_error(502, Some(name), payload.as_bytes());
    if e.class != FailureClass::RateLimited {
        e.class = FailureClass::Server;
    }
    if e.message.starts_with("Bedrock returned HTTP") {
        e.message = format!("Bedrock stream failed: {}", truncate_utf8(name, 64));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(m: &str) -> Vec<u8> {
        serde_json::json!({ "message": m }).to_string().into_bytes()
    }

    #[test]
    fn error_types_decide_the_status() {
        let cases = [
            ("ValidationException", 400, 400, FailureClass::Client),
            ("AccessDeniedException", 403, 403, FailureClass::Client),
            (
                "UnrecognizedClientException",
                403,
                401,
                FailureClass::Client,
            ),
            ("InvalidSignatureException", 403, 401, FailureClass::Client),
            ("ResourceNotFoundException", 404, 404, FailureClass::Client),
            ("ModelTimeoutException", 408, 408, FailureClass::Timeout),
            ("ModelErrorException", 424, 502, FailureClass::Server),
            ("ThrottlingException", 429, 429, FailureClass::RateLimited),
            (
                "ModelNotReadyException",
                429,
                429,
                FailureClass::RateLimited,
            ),
            ("InternalServerException", 500, 500, FailureClass::Server),
            (
                "ServiceUnavailableException",
                503,
                503,
                FailureClass::Server,
            ),
        ];
        for (name, upstream, want, class) in cases {
            let header = format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/");
            let e = translate_error(upstream, Some(&header), &body("the reason"));
            assert_eq!((e.status, e.class), (want, class), "{name}");
            assert_eq!(e.message, "the reason", "{name}");
        }
        let e = translate_error(400, Some("ValidationException"), &body("Malformed input"));
        assert_eq!(e.kind, "invalid_request_error");
        let e = translate_error(429, Some("ThrottlingException"), b"");
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(e.message.contains("ThrottlingException"), "{}", e.message);
    }

    #[test]
    fn without_a_known_type_the_status_decides() {
        let e = translate_error(413, None, b"<html>too large</html>");
        assert_eq!((e.status, e.kind.as_str()), (413, "invalid_request_error"));
        let e = translate_error(200, Some("Nonsense"), b"");
        assert_eq!((e.status, e.class), (502, FailureClass::Server));
    }

    #[test]
    fn signature_details_are_cut() {
        let m = "The request signature we calculated does not match.\n\nThe Canonical String \
                 for this request should have been\n'POST\n/model/x/converse\n\nx-amz-security-token:SECRET'";
        let e = translate_error(403, Some("InvalidSignatureException"), &body(m));
        assert_eq!(
            e.message,
            "The request signature we calculated does not match."
        );
    }

    #[test]
    fn stream_exceptions() {
        let e = stream_exception("throttlingException", r#"{"message":"Too many tokens"}"#);
        assert_eq!((e.status, e.class), (429, FailureClass::RateLimited));
        assert_eq!(e.message, "Too many tokens");
        let e = stream_exception("validationException", "{}");
        assert_eq!(e.class, FailureClass::Server);
        let e = stream_exception("modelStreamErrorException", "not json");
        assert_eq!((e.status, e.class), (502, FailureClass::Server));
        assert!(e.message.contains("modelStreamErrorException"));
    }
}
