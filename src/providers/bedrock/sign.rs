//! SigV4 for Bedrock requests, with the `aws-sigv4` crate: the headers (`authorization`,
//! `x-amz-date`, and `x-amz-security-token` for session credentials) that sign one request's
//! final URL and body. Signed over `host`, `content-type` and `x-amz-date` (the SDKs' set, minus
//! the optional payload hash header).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{self, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use crate::config::AwsKeys;

/// The service name in the signature's scope (the runtime host is `bedrock-runtime`).
pub const SIGNING_NAME: &str = "bedrock";

/// The headers to add to a `POST` of `body` (as JSON) to `url`, signed at `time`. The URL's
/// path is sent as it is (model ids already percent-encoded); the signer encodes it once more
/// for the canonical request, as SigV4 wants for every service but S3.
pub fn sign(
    keys: &AwsKeys,
    region: &str,
    url: &reqwest::Url,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    let identity = Credentials::new(
        keys.access_key_id.expose(),
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "llmux-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "POST",
        url.as_str(),
        std::iter::once(("content-type", "application/json")),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _signature) = http_request::sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys(token: Option<&str>) -> AwsKeys {
        AwsKeys {
            access_key_id: Secret::new("AKIDEXAMPLE"),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
        }
    }

    fn at_2025() -> SystemTime {
        // 2025-01-01T00:00:00Z
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_600)
    }

    /// The vector of wire-formats-2 §3 (botocore and an independent HMAC agree on it).
    #[test]
    fn the_documented_vector() {
        let url = reqwest::Url::parse(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        )
        .unwrap();
        let body = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#;
        let h = sign(&keys(None), "us-east-1", &url, body, at_2025()).unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20250101T000000Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=db14fde81dd9dc90455352ed1921f98b151795af03aacc8312c89b08b8d50a36"
            )
        );
        assert_eq!(get("x-amz-security-token"), None);
    }

    #[test]
    fn session_tokens_are_sent_and_signed() {
        let url = reqwest::Url::parse("http://127.0.0.1:9/acct/model/m/converse").unwrap();
        let h = sign(&keys(Some("tok/en+=")), "eu-west-1", &url, b"{}", at_2025()).unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-security-token"), Some("tok/en+="));
        let auth = get("authorization").unwrap();
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
    }
}
