//! A second, independent SigV4 implementation (`hmac` + `sha2`, written from the algorithm's
//! description, not from llmux's `aws-sigv4` path) that the mock checks every signed Bedrock
//! request with: canonical request (path segments encoded twice), string to sign, derived key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// RFC 3986 encoding of everything but the unreserved characters.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI of a raw (as sent, already percent-encoded) path: each segment encoded
/// once more, so `%3A` becomes `%253A`.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".into();
    }
    raw_path
        .split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a request signs: method, raw path and query, (lowercase name, value) of each signed
/// header in the SignedHeaders order, and the body.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Signed<'_> {
    pub fn canonical_request(&self) -> String {
        let mut headers = String::new();
        let mut names = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            headers.push_str(&format!("{name}:{value}\n"));
            names.push(name.as_str());
        }
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            canonical_uri(self.path),
            canonical_query(self.query),
            headers,
            names.join(";"),
            sha256_hex(self.body)
        )
    }

    /// The hex signature for `secret` at `amz_date` (`YYYYMMDDTHHMMSSZ`) in `region`/`service`.
    pub fn signature(&self, secret: &str, amz_date: &str, region: &str, service: &str) -> String {
        let date = &amz_date[..amz_date.len().min(8)];
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(self.canonical_request().as_bytes())
        );
        let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k = hmac(&k, region.as_bytes());
        let k = hmac(&k, service.as_bytes());
        let k = hmac(&k, b"aws4_request");
        hex(&hmac(&k, to_sign.as_bytes()))
    }
}

/// An `Authorization` header for `signed` (for tests that sign requests to the mock by hand).
pub fn authorization(
    signed: &Signed<'_>,
    access_key_id: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
) -> String {
    let names: Vec<&str> = signed.headers.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{}/{region}/bedrock/aws4_request, \
         SignedHeaders={}, Signature={}",
        &amz_date[..amz_date.len().min(8)],
        names.join(";"),
        signed.signature(secret, amz_date, region, "bedrock")
    )
}

/// The `x-amz-date` of a unix time.
pub fn amz_date(unix: u64) -> String {
    let t = super::util::rfc3339(unix);
    // 2025-01-01T00:00:00Z -> 20250101T000000Z
    t.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, PartialEq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

pub fn parse_authorization(v: &str) -> Option<Authorization<'_>> {
    let rest = v.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => cred = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => sig = Some(v),
            _ => return None,
        }
    }
    let mut c = cred?.split('/');
    let a = Authorization {
        access_key_id: c.next()?,
        date: c.next()?,
        region: c.next()?,
        service: c.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: sig?,
    };
    (c.next()? == "aws4_request" && c.next().is_none()).then_some(a)
}

/// Seconds since the epoch of an `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
pub fn amz_date_secs(s: &str) -> Option<u64> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of wire-formats-2 §3.
    #[test]
    fn the_documented_vector() {
        let s = Signed {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            query: "",
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "host".into(),
                    "bedrock-runtime.us-east-1.amazonaws.com".into(),
                ),
                ("x-amz-date".into(), "20250101T000000Z".into()),
            ],
            body: br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#,
        };
        assert!(s
            .canonical_request()
            .starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"));
        assert_eq!(
            s.signature(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20250101T000000Z",
                "us-east-1",
                "bedrock"
            ),
            "db14fde81dd9dc90455352ed1921f98b151795af03aacc8312c89b08b8d50a36"
        );
    }

    #[test]
    fn authorization_and_dates_parse() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert!(parse_authorization("Bearer x").is_none());
        assert_eq!(amz_date_secs("20250101T000000Z"), Some(1_735_689_600));
        assert_eq!(amz_date_secs("19700101T000001Z"), Some(1));
        assert_eq!(amz_date_secs("2025-01-01"), None);
        assert_eq!(amz_date(1_735_689_600), "20250101T000000Z");
    }
}
