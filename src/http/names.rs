//! The header names the API front reads and writes on every request, built once. Looking a
//! header up by `&str` parses the name again (and allocates for a non-standard one) on every
//! call; these are the parsed names.

use actix_web::http::header::HeaderName;

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
}
