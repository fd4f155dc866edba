//! Gateway authentication: clients present a key as `Authorization: Bearer` (OpenAI SDKs) or
//! `x-portkey-api-key` (Portkey SDKs). Keys are kept only as SHA-256 digests and compared in
//! constant time.

use actix_web::http::header::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{sha256, AuthKey};

/// The keys a request presents: `Authorization: Bearer` and `x-portkey-api-key`. Both are
/// considered because the Portkey SDK sends its key in the latter and a placeholder bearer.
pub fn presented(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let bearer = headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
        .map(|v| v[7..].trim());
    let portkey = headers
        .get(&super::names::API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    bearer.into_iter().chain(portkey).filter(|k| !k.is_empty())
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
}

/// Checks the request's presented keys against `keys`: `Ok(None)` when no keys are configured,
/// `Ok(Some(key))` for the matching key.
pub fn authenticate<'a>(
    keys: &'a [AuthKey],
    headers: &HeaderMap,
) -> Result<Option<&'a AuthKey>, Refused> {
    if keys.is_empty() {
        return Ok(None);
    }
    let mut any = false;
    for key in presented(headers) {
        any = true;
        if let Some(name) = check(keys, key) {
            return Ok(Some(name));
        }
    }
    Err(if any {
        Refused::Invalid
    } else {
        Refused::Missing
    })
}

/// The key that matches, checking every key so timing does not reveal which.
pub fn check<'a>(keys: &'a [AuthKey], presented: &str) -> Option<&'a AuthKey> {
    let digest = sha256(presented.as_bytes());
    let mut found = None;
    for k in keys {
        if bool::from(k.sha256.ct_eq(&digest)) {
            found = Some(k);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_sha256_hex;

    #[test]
    fn hex_roundtrip_and_check() {
        let d = sha256(b"secret");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_sha256_hex(&hex), Some(d));
        assert_eq!(parse_sha256_hex("zz"), None);
        let keys = vec![AuthKey {
            name: "a".into(),
            sha256: d,
            scope: Default::default(),
            metadata: None,
            limits: Default::default(),
        }];
        assert_eq!(check(&keys, "secret").map(|k| k.name.as_str()), Some("a"));
        assert!(check(&keys, "secreT").is_none());
    }
}
