//! Request metadata: `x-portkey-metadata`, a JSON object of string values that Portkey SDKs send
//! from `metadata={...}` (`_user` is its reserved key for the end user). It is bounded, recorded
//! on the request-log entry and filterable on `/admin/requests?metadata.KEY=VALUE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use serde_json::Value;

use crate::error::Error;

pub const HEADER: &str = "x-portkey-metadata";
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
pub const MAX_KEYS: usize = 64;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_VALUE_BYTES: usize = 512;

/// A request's metadata, keys sorted.
pub type Metadata = Arc<BTreeMap<String, String>>;

fn invalid(message: String) -> Error {
    Error::InvalidRequest {
        message: format!("invalid {HEADER}: {message}"),
        param: Some(HEADER.to_owned()),
        code: Some("invalid_metadata"),
    }
}

/// The request's metadata: `None` without the header; a 400 naming the problem when it is not
/// a JSON object of strings within the limits.
pub fn parse(raw: Option<&HeaderValue>) -> Result<Option<Metadata>, Error> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.len() > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "{} bytes, over the limit of {MAX_HEADER_BYTES}",
            raw.len()
        )));
    }
    let v: Value =
        serde_json::from_slice(raw.as_bytes()).map_err(|e| invalid(format!("not JSON ({e})")))?;
    let Value::Object(map) = v else {
        return Err(invalid("must be a JSON object of string values".into()));
    };
    if map.len() > MAX_KEYS {
        return Err(invalid(format!(
            "{} keys, over the limit of {MAX_KEYS}",
            map.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if k.len() > MAX_KEY_BYTES {
            return Err(invalid(format!(
                "a key of {} bytes, over the limit of {MAX_KEY_BYTES}",
                k.len()
            )));
        }
        let Value::String(s) = v else {
            return Err(invalid(format!("the value of `{k}` must be a string")));
        };
        if s.len() > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "the value of `{k}` has {} bytes, over the limit of {MAX_VALUE_BYTES}",
                s.len()
            )));
        }
        out.insert(k, s);
    }
    Ok(Some(Arc::new(out)))
}

/// The `metadata.KEY=VALUE` pairs of an admin query string.
pub fn filters(query: &str) -> Vec<(String, String)> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata.")?.to_owned(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderMap;

    fn parse_map(h: &HeaderMap) -> Result<Option<Metadata>, Error> {
        parse(h.get(&crate::http::names::METADATA))
    }
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static(HEADER),
            HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    fn message(v: &str) -> String {
        parse_map(&with(v)).unwrap_err().to_string()
    }

    #[test]
    fn parses_string_values_and_refuses_everything_else_by_name() {
        assert_eq!(parse_map(&HeaderMap::new()).unwrap(), None);
        let m = parse_map(&with(r#"{"_user":"u1","plan":"paid"}"#))
            .unwrap()
            .unwrap();
        assert_eq!(m.get("_user").map(String::as_str), Some("u1"));
        assert_eq!(m.get("plan").map(String::as_str), Some("paid"));
        assert!(message("nope").contains("not JSON"));
        assert!(message("[1]").contains("JSON object"));
        assert!(message(r#"{"n":1}"#).contains("`n` must be a string"));
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("\"k{i}\":\"v\"")).collect();
        assert!(message(&format!("{{{}}}", many.join(","))).contains("65 keys"));
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(message(&format!("{{\"{key}\":\"v\"}}")).contains("a key of 129 bytes"));
        let value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(message(&format!("{{\"k\":\"{value}\"}}")).contains("513 bytes"));
        let big = format!("{{\"k\":\"{}\"}}", "v".repeat(MAX_HEADER_BYTES));
        assert!(message(&big).contains("over the limit of 8192"));
        // At the limits exactly: accepted.
        let fine: Vec<String> = (0..MAX_KEYS).map(|i| format!("\"k{i}\":\"v\"")).collect();
        assert!(parse_map(&with(&format!("{{{}}}", fine.join(",")))).is_ok());
    }

    #[test]
    fn admin_filters_are_the_metadata_dot_pairs() {
        assert_eq!(
            filters("limit=5&metadata.plan=paid&metadata._user=a%20b&trace_id=x"),
            [
                ("plan".into(), "paid".into()),
                ("_user".into(), "a b".into())
            ]
        );
    }
}
