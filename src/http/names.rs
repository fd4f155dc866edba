//! The header names the API front reads and writes on every request, built once (looking a
//! header up by `&str` parses the name again, and allocates for a non-standard one), and the
//! request headers it reads, found in one pass ([`Known`]).

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACE_ID: HeaderName = HeaderName::from_static("x-portkey-trace-id");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const API_KEY: HeaderName = HeaderName::from_static("x-portkey-api-key");
pub const VIRTUAL_KEY: HeaderName = HeaderName::from_static("x-portkey-virtual-key");
pub const CONFIG: HeaderName = HeaderName::from_static("x-portkey-config");
pub const METADATA: HeaderName = HeaderName::from_static("x-portkey-metadata");
pub const CACHE_NAMESPACE: HeaderName = HeaderName::from_static("x-portkey-cache-namespace");
pub const CACHE_FORCE_REFRESH: HeaderName =
    HeaderName::from_static("x-portkey-cache-force-refresh");
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("x-portkey-cache-status");
pub const LAST_USED_OPTION: HeaderName =
    HeaderName::from_static("x-portkey-last-used-option-index");
pub const PROVIDER: HeaderName = HeaderName::from_static("x-portkey-provider");
pub const RETRY_COUNT: HeaderName = HeaderName::from_static("x-portkey-retry-attempt-count");
pub const VIRTUAL_KEY_USED: HeaderName = HeaderName::from_static("x-llmux-virtual-key");
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-llmux-attempts");

/// The request headers the API front reads, found in one pass over the request's headers
/// (the first value of each, as a lookup by name would give). Actix's header map hashes the
/// name on every lookup, and most of these headers are absent: one pass over a request's few
/// headers costs less than ten lookups.
#[derive(Default)]
pub struct Known<'a> {
    pub trace_id: Option<&'a HeaderValue>,
    pub request_id: Option<&'a HeaderValue>,
    pub virtual_key: Option<&'a HeaderValue>,
    pub config: Option<&'a HeaderValue>,
    pub metadata: Option<&'a HeaderValue>,
    pub cache_namespace: Option<&'a HeaderValue>,
    pub cache_force_refresh: Option<&'a HeaderValue>,
    pub content_length: Option<&'a HeaderValue>,
    /// Bytes of every name and value, plus 4 per header (`: ` and CRLF), for
    /// `server.max_header_bytes`.
    pub bytes: usize,
}

impl<'a> Known<'a> {
    pub fn of(h: &'a HeaderMap) -> Known<'a> {
        let mut k = Known::default();
        for (name, value) in h.iter() {
            k.bytes += name.as_str().len() + value.len() + 4;
            let slot = match name.as_str() {
                "content-length" => &mut k.content_length,
                "x-portkey-trace-id" => &mut k.trace_id,
                "x-request-id" => &mut k.request_id,
                "x-portkey-virtual-key" => &mut k.virtual_key,
                "x-portkey-config" => &mut k.config,
                "x-portkey-metadata" => &mut k.metadata,
                "x-portkey-cache-namespace" => &mut k.cache_namespace,
                "x-portkey-cache-force-refresh" => &mut k.cache_force_refresh,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        k
    }

    /// A header's text, trimmed; `None` when absent, empty or not visible ASCII.
    pub fn text(v: Option<&'a HeaderValue>) -> Option<&'a str> {
        v.and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_what_the_docs_say() {
        // `from_static` would panic at first use on a bad name; check them all here.
        for (n, s) in [
            (super::TRACE_ID, "x-portkey-trace-id"),
            (super::METADATA, "x-portkey-metadata"),
            (super::LAST_USED_OPTION, "x-portkey-last-used-option-index"),
            (super::ATTEMPTS, "x-llmux-attempts"),
        ] {
            assert_eq!(n.as_str(), s);
        }
    }

    #[test]
    fn one_pass_finds_what_lookups_would() {
        use super::{HeaderMap, HeaderValue, Known};
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_static;
        h.insert(super::CONFIG, v("cfg"));
        h.append(super::TRACE_ID, v("first"));
        h.append(super::TRACE_ID, v("second"));
        h.insert(super::CACHE_NAMESPACE, v(" ns "));
        h.insert(actix_web::http::header::CONTENT_LENGTH, v("12"));
        h.insert(actix_web::http::header::ACCEPT, v("*/*"));
        let k = Known::of(&h);
        for (name, found) in [
            (super::CONFIG, k.config),
            (super::TRACE_ID, k.trace_id),
            (super::CACHE_NAMESPACE, k.cache_namespace),
            (actix_web::http::header::CONTENT_LENGTH, k.content_length),
            (super::VIRTUAL_KEY, k.virtual_key),
            (super::METADATA, k.metadata),
            (super::REQUEST_ID, k.request_id),
            (super::CACHE_FORCE_REFRESH, k.cache_force_refresh),
        ] {
            assert_eq!(found, h.get(&name), "{name}");
        }
        assert_eq!(Known::text(k.cache_namespace), Some("ns"));
        assert_eq!(Known::text(k.virtual_key), None);
        let bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        assert_eq!(k.bytes, bytes);
    }
}
