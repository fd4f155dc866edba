//! Provider wire formats: building each provider's upstream request from an OpenAI-shaped body
//! and turning its answer (success or error) back into OpenAI terms. Pure translation plus the
//! `reqwest` call; it runs in the request task, never inside an actor.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod body;
pub mod gemini;
pub mod headers;
pub mod openai;
mod provider;
pub mod responses;
pub mod stream;
pub mod vertex;

pub use body::{Body, Merged};
pub use provider::{provider, Provider};

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{ProviderKind, Secret, TargetSpec};

/// Which OpenAI endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// OpenAI's Responses API: native where the target speaks it, else translated to chat.
    Responses,
}

impl Endpoint {
    /// The path clients call on llmux (Portkey's `url.pathname` in conditions).
    pub fn gateway_path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
        }
    }

    pub fn openai_path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
        }
    }
}

/// Whether a provider serves an endpoint at all (the walk skips leaves that cannot).
pub fn supports(kind: ProviderKind, endpoint: Endpoint) -> bool {
    provider(kind).supports(endpoint)
}

/// A target as the providers see it: its validated definition plus its upstream URLs, parsed
/// once when the target's actor starts (parsing per request showed up as 2–3 % of CPU under
/// load). Derefs to the [`TargetSpec`]; equal specs give equal URLs, so whether an actor
/// survives a reload is decided on the spec alone.
#[derive(Debug)]
pub struct Upstream {
    pub spec: Arc<TargetSpec>,
    pub urls: Urls,
    /// The target's OAuth2 access token (Vertex), cached for the actor's life; `None` for
    /// providers whose credential is in the spec.
    pub oauth: Option<vertex::TokenSource>,
    /// The API key's header (see [`Provider::credential_header`]), built once and marked
    /// sensitive, so a request copies it instead of formatting and checking it again.
    pub credential: Option<(HeaderName, HeaderValue)>,
}

impl Upstream {
    pub fn new(spec: Arc<TargetSpec>) -> Result<Upstream, String> {
        let (urls, oauth) = match &spec.vertex {
            // A Vertex URL needs the project and location, which the trait's `urls` lacks.
            Some(v) => (
                vertex::urls(&spec.base_url, v)?,
                Some(vertex::TokenSource::new(&spec.name, v.credentials.clone())),
            ),
            None => (
                Urls::new(
                    spec.provider,
                    &spec.base_url,
                    spec.deployment.as_deref(),
                    spec.api_version.as_deref(),
                )?,
                None,
            ),
        };
        let credential = match &spec.api_key {
            Some(key) => match provider(spec.provider).credential_header(key.expose()) {
                Some((name, value)) => {
                    let mut value = HeaderValue::from_str(&value).map_err(|_| {
                        "the API key has characters an HTTP header cannot carry".to_owned()
                    })?;
                    value.set_sensitive(true);
                    Some((HeaderName::from_static(name), value))
                }
                None => None,
            },
            None => None,
        };
        Ok(Upstream {
            spec,
            urls,
            oauth,
            credential,
        })
    }

    /// `req` with the target's API key header, when it has one.
    pub fn with_credential(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some((name, value)) => req.header(name.clone(), value.clone()),
            None => req,
        }
    }
}

/// Adds the target's OAuth2 bearer token to a built request, fetching it first when the cache
/// has none fresh (one fetch per target at a time, see [`vertex::token`]). Called by the
/// request task, only for targets with [`Upstream::oauth`]; a failure is the attempt's, counted
/// against the target's health.
pub async fn authorize(
    spec: &Upstream,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    match &spec.oauth {
        Some(source) => {
            let token = source.token().await?;
            Ok(req.bearer_auth(token.expose()))
        }
        None => Ok(req),
    }
}

impl std::ops::Deref for Upstream {
    type Target = TargetSpec;
    fn deref(&self) -> &TargetSpec {
        &self.spec
    }
}

/// Checks what only the providers know of a loaded config: that every target's upstream URLs
/// can be built. Run with [`crate::config::Config::load`] wherever a config is accepted
/// (`check-config`, start, reload), so an actor never starts on URLs that do not parse.
pub fn check(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    for spec in &config.targets {
        Upstream::new(spec.clone()).map_err(|e| crate::config::ConfigError::Invalid {
            file: config.file.display().to_string(),
            path: format!("virtual_keys.{}.base_url", spec.name),
            message: format!("not a valid URL: {e}"),
        })?;
    }
    if let Some(vk) = &config.cache.embeddings_virtual_key {
        let kind = config
            .target_index(vk)
            .map(|i| config.targets[i as usize].provider);
        if let Some(kind) = kind.filter(|k| !supports(*k, Endpoint::Embeddings)) {
            return Err(crate::config::ConfigError::Invalid {
                file: config.file.display().to_string(),
                path: "cache.embeddings_virtual_key".into(),
                message: format!(
                    "`{vk}` is a {} account, which serves no embeddings; name an openai, \
                     azure-openai, openai-compatible or gemini one",
                    kind.as_str()
                ),
            });
        }
    }
    Ok(())
}

/// A target's upstream URLs.
#[derive(Debug, Clone, PartialEq)]
pub struct Urls {
    /// Indexed by [`Endpoint`]; `None` where the provider has no such endpoint (for
    /// `Responses`: no native Responses API).
    endpoints: [Option<reqwest::Url>; 4],
    /// What an active health check asks for: the model list.
    pub health: reqwest::Url,
}

impl Urls {
    /// `base_url` has no trailing slash; `deployment`/`api_version` are Azure's.
    pub fn new(
        kind: ProviderKind,
        base_url: &str,
        deployment: Option<&str>,
        api_version: Option<&str>,
    ) -> Result<Urls, String> {
        provider(kind).urls(base_url, deployment, api_version)
    }

    /// Whether the target is reached over plain `http` (every URL of a target is built on its
    /// `base_url`, so they share its scheme).
    pub fn plain_http(&self) -> bool {
        self.health.scheme() == "http"
    }

    /// Parses one upstream URL; the error names it with any userinfo redacted.
    fn parse(s: &str) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(s)
            .map_err(|e| format!("{e} in `{}`", crate::config::redact_userinfo(s)))
    }

    /// Every endpoint at `path(endpoint)` and the model list at `health`.
    fn every_endpoint(path: impl Fn(Endpoint) -> String, health: &str) -> Result<Urls, String> {
        Ok(Urls {
            endpoints: [
                Some(Urls::parse(&path(Endpoint::Chat))?),
                Some(Urls::parse(&path(Endpoint::Completions))?),
                Some(Urls::parse(&path(Endpoint::Embeddings))?),
                Some(Urls::parse(&path(Endpoint::Responses))?),
            ],
            health: Urls::parse(health)?,
        })
    }

    pub fn endpoint(&self, e: Endpoint) -> Option<&reqwest::Url> {
        self.endpoints[e as usize].as_ref()
    }
}

/// Token usage in OpenAI terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// How an attempt failed, for health accounting and fallback decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 4xx other than 408/429: the request's fault, not the target's.
    Client,
    RateLimited,
    /// 5xx or an unusable answer.
    Server,
    Timeout,
    /// Could not connect, or the connection broke.
    Connection,
}

impl FailureClass {
    /// The class's name in metrics and traces (`error.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Client => "client_error",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Server => "server_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Connection => "connection_error",
        }
    }
}

/// A failed attempt, already in OpenAI error terms and scrubbed of credentials.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub status: u16,
    pub class: FailureClass,
    pub message: String,
    pub kind: String,
    pub code: Option<String>,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    pub fn new(status: u16, class: FailureClass, kind: &str, message: impl Into<String>) -> Self {
        AttemptError {
            status,
            class,
            message: message.into(),
            kind: kind.to_owned(),
            code: None,
            param: None,
            retry_after: None,
        }
    }

    /// The 400 a request gets that a provider's translation cannot express.
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> AttemptError {
        let mut e = AttemptError::new(400, FailureClass::Client, "invalid_request_error", message);
        e.param = Some(param.into());
        e
    }

    pub fn timeout(after: Duration) -> AttemptError {
        AttemptError::new(
            408,
            FailureClass::Timeout,
            "timeout_error",
            format!("upstream did not answer within {} ms", after.as_millis()),
        )
    }

    /// Classifies a status code the upstream returned.
    pub fn class_of(status: u16) -> FailureClass {
        match status {
            429 => FailureClass::RateLimited,
            408 => FailureClass::Timeout,
            400..=499 => FailureClass::Client,
            _ => FailureClass::Server,
        }
    }

    /// An unusable upstream answer (a redirect, a body past the size limit, a 200 that is not
    /// an answer): 502, counted against the target's health like a 5xx, so the tree may fall
    /// back. `code` names what was wrong.
    pub fn bad_upstream(code: &str, message: impl Into<String>) -> AttemptError {
        let mut e = AttemptError::new(502, FailureClass::Server, "server_error", message);
        e.code = Some(code.to_owned());
        e
    }

    fn from_reqwest(e: &reqwest::Error, timeout: Duration) -> AttemptError {
        if e.is_timeout() {
            return AttemptError::timeout(timeout);
        }
        // reqwest's Display includes the URL, which is ours and safe, but not the key.
        let what = if e.is_connect() {
            "cannot connect to upstream"
        } else {
            "upstream connection failed"
        };
        AttemptError::new(
            502,
            FailureClass::Connection,
            "server_error",
            format!("{what}: {}", root_cause(e)),
        )
    }
}

pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A successful (2xx) non-streamed answer, already in OpenAI shape.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub usage: Usage,
    pub model: Option<String>,
}

impl Answer {
    /// A translated answer: `v` is the OpenAI-shaped body a provider's translation built.
    pub fn translated(
        status: u16,
        v: &Value,
        usage: Usage,
        model: Option<String>,
    ) -> Result<Answer, AttemptError> {
        let body = serde_json::to_vec(v).map_err(|e| {
            AttemptError::new(500, FailureClass::Server, "server_error", e.to_string())
        })?;
        Ok(Answer {
            status,
            body: body.into(),
            usage,
            model,
        })
    }
}

/// Whether `model` can name a model in a URL path as one segment, unencoded: 1–128 bytes of
/// ASCII letters, digits, `.`, `_`, `-` and the `extra` bytes, and not `.` or `..` (which a
/// URL parser would resolve). Gemini and Vertex put the model in the path.
pub fn is_model_segment(model: &str, extra: &[u8]) -> bool {
    !model.is_empty()
        && model.len() <= 128
        && model != "."
        && model != ".."
        && model.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || extra.contains(&b)
        })
}

/// The message for an error body a provider's error shape does not explain: the status and
/// the body's first [`MAX_ECHO_BYTES`] (cut on a character boundary), trimmed.
pub fn generic_error_message(provider: &str, status: u16, body: &[u8]) -> String {
    let head = &body[..body.len().min(MAX_ECHO_BYTES)];
    let snippet = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    }
    .trim();
    if snippet.is_empty() {
        format!("{provider} returned HTTP {status}")
    } else {
        format!("{provider} returned HTTP {status}: {snippet}")
    }
}

/// Upper bound on upstream text copied into an error message.
pub const MAX_ECHO_BYTES: usize = 512;

/// Longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

thread_local! {
    // One pair of clients (and so of connection pools) per worker thread: connections stay on
    // the runtime that created them, and workers never contend on a shared pool.
    static CLIENTS: RefCell<Option<Clients>> = const { RefCell::new(None) };
}

/// A worker's upstream clients.
struct Clients {
    /// reqwest's default: an HTTP/2 protocol NACK (a graceful GOAWAY, REFUSED_STREAM), which
    /// the provider never acted on, is retried on a fresh connection.
    default: reqwest::Client,
    /// For plain-`http` targets. Reached directly they speak HTTP/1.1 only (no TLS, so no ALPN;
    /// llmux never assumes HTTP/2 without it) and a protocol NACK cannot happen: no retry
    /// policy, which spares each request the copy of its method, URI, headers and extensions
    /// that reqwest's retry layer otherwise takes before sending, in case it has to send again.
    /// Through an egress proxy (which may speak HTTP/2 over its own TLS) it keeps reqwest's
    /// default retry, as `default` does.
    plain_http: reqwest::Client,
}

fn with_clients<T>(f: impl FnOnce(&Clients) -> T) -> T {
    CLIENTS.with(|c| {
        let mut c = c.borrow_mut();
        f(c.get_or_insert_with(|| {
            let proxy = proxy_in_env();
            let plain_http = if proxy {
                client_builder(proxy)
            } else {
                client_builder(proxy).retry(reqwest::retry::never().max_retries_per_request(0))
            };
            Clients {
                default: client_builder(proxy)
                    .build()
                    .expect("reqwest client with static settings"),
                plain_http: plain_http
                    .build()
                    .expect("reqwest client with static settings"),
            }
        }))
    })
}

/// The worker's client for requests off the forwarding path (token exchanges, the Responses
/// API's lookups), to any scheme.
pub fn client() -> reqwest::Client {
    with_clients(|c| c.default.clone())
}

/// The worker's client for a target's requests.
fn target_client(spec: &Upstream) -> reqwest::Client {
    let plain = spec.urls.plain_http();
    with_clients(|c| if plain { &c.plain_http } else { &c.default }.clone())
}

/// The settings both clients share; `proxy`: the environment names an egress proxy.
fn client_builder(proxy: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        // Never follow a provider's redirect: it would carry `api-key`/`x-api-key` to whatever
        // host the Location names, and turn a POST into a GET on 302.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    // With no proxy in the environment, say so: reqwest otherwise consults its (empty) system
    // proxy matcher on every plain-`http` request (~1.4k instructions each). With one set,
    // reqwest reads it exactly as before.
    if proxy {
        builder
    } else {
        builder.no_proxy()
    }
}

/// Whether the environment names a proxy in any variable reqwest's system proxy reads on Linux
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, either case).
fn proxy_in_env() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .iter()
        .flat_map(|v| [v.to_string(), v.to_ascii_lowercase()])
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Builds the upstream HTTP request for `endpoint` on `spec`. No reqwest timeout: it would
/// also bound a stream's whole body, and the caller already bounds the time to the answer (or
/// to a stream's first content) while the stream's idle timeout covers the rest.
pub fn build(
    spec: &Upstream,
    endpoint: Endpoint,
    body: &Merged<'_>,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    provider(spec.provider).build(&target_client(spec), spec, endpoint, body)
}

/// The cheap request an active health check sends: the provider's model list.
pub fn health_request(spec: &Upstream) -> reqwest::RequestBuilder {
    provider(spec.provider).health(spec, target_client(spec).get(spec.urls.health.clone()))
}

/// Sends the request and returns the response if it is 2xx; otherwise the error in OpenAI terms.
/// A 3xx (never followed, see [`client`]) or a status outside 2xx–5xx is a 502
/// [`FailureClass::Server`]. The error's `retry_after` is what llmux will really wait: see
/// [`retry_after_for`].
pub async fn send(
    spec: &TargetSpec,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let resp = req
        .send()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, timeout))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    if (300..400).contains(&status) {
        // The status only: a Location may carry signed URLs or tokens.
        return Err(AttemptError::bad_upstream(
            "upstream_redirect",
            format!(
                "upstream answered with a redirect (HTTP {status}); llmux does not follow \
                 redirects, check the target's base_url"
            ),
        ));
    }
    if !(400..600).contains(&status) {
        return Err(AttemptError::bad_upstream(
            "upstream_bad_status",
            format!("upstream answered with an unexpected HTTP status {status}"),
        ));
    }
    // Boxed: reading an error body must not grow every request's future (each level of
    // nesting copies the whole state when it is created).
    Err(Box::pin(upstream_error(spec, status, resp)).await)
}

/// The attempt error of a 4xx/5xx answer: its body (capped) classified by the provider, with
/// secrets scrubbed and the wait llmux will honour.
async fn upstream_error(spec: &TargetSpec, status: u16, resp: reqwest::Response) -> AttemptError {
    let hint = headers::retry_after(resp.headers(), spec.max_retry_after);
    let resp_headers = resp.headers().clone();
    let body = read_capped(resp, 64 * 1024).await.unwrap_or_default();
    let mut err = provider(spec.provider).classify(spec, status, &resp_headers, &body);
    err.message = scrub(&err.message, spec.api_key.as_ref());
    // A header hint wins; else the body's (see `Provider::error`), capped the same way.
    let hint = hint.or(err.retry_after.take());
    for secret in spec.bedrock.iter().flat_map(|b| b.secrets()) {
        err.message = scrub(&err.message, Some(secret));
    }
    err.retry_after = retry_after_for(spec, err.class, hint);
    err
}

/// The wait an attempt error carries (and the client's `Retry-After`): the provider's hint,
/// already capped by the target's `max_retry_after` (see [`headers::retry_after`]); for a 429
/// without a usable hint, the target's `rate_limit_cooldown` (capped the same way), which is
/// how long the target really cools down.
pub fn retry_after_for(
    spec: &TargetSpec,
    class: FailureClass,
    hint: Option<Duration>,
) -> Option<Duration> {
    let cap = spec.max_retry_after.min(headers::HARD_CAP);
    match hint {
        Some(d) => Some(d.min(cap)),
        None if class == FailureClass::RateLimited => Some(spec.rate_limit_cooldown.min(cap)),
        None => None,
    }
}

/// Reads a whole (non-streamed) 2xx answer and converts it to OpenAI shape. An answer larger
/// than `max_body` bytes (`server.max_upstream_body_bytes`) fails the attempt without ever
/// holding more than `max_body` bytes; so does a body that is not an answer for `endpoint`.
pub async fn finish(
    spec: &TargetSpec,
    endpoint: Endpoint,
    resp: reqwest::Response,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, AttemptError> {
    let status = resp.status().as_u16();
    let p = provider(spec.provider);
    let url = p.answer_reads_url().then(|| resp.url().clone());
    let body = read_limited(resp, max_body, timeout).await?;
    p.answer_at(endpoint, status, url.as_ref(), body)
}

/// Wraps a 2xx streamed answer for reading SSE events in OpenAI terms.
pub fn open_stream(
    spec: &TargetSpec,
    resp: reqwest::Response,
    idle: Duration,
    include_usage: bool,
    model: &str,
) -> stream::UpstreamStream {
    let framing = provider(spec.provider).framing(include_usage, model);
    stream::UpstreamStream::new(resp, idle, framing).with_rate_limit_wait(retry_after_for(
        spec,
        FailureClass::RateLimited,
        None,
    ))
}

/// Wraps a 2xx native Responses API stream (its events pass through).
pub fn open_responses_stream(
    spec: &TargetSpec,
    resp: reqwest::Response,
    idle: Duration,
) -> stream::UpstreamStream {
    stream::UpstreamStream::new(resp, idle, stream::Framing::Responses)
        .with_rate_limit_wait(retry_after_for(spec, FailureClass::RateLimited, None))
}

/// Whether llmux asks this target for stream usage itself (for logs, cost and token budgets)
/// when the client did not. Only OpenAI proper is known to accept `stream_options`.
pub fn asks_usage(spec: &TargetSpec) -> bool {
    provider(spec.provider).asks_usage()
}

/// The whole body, failing as soon as it is known to exceed `limit` bytes: from the
/// Content-Length before reading anything, else while counting chunks.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, AttemptError> {
    let too_large = || {
        AttemptError::bad_upstream(
            "upstream_body_too_large",
            format!(
                "upstream answer exceeds the limit of {limit} bytes \
                 (server.max_upstream_body_bytes)"
            ),
        )
    };
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = |e: reqwest::Error| AttemptError::from_reqwest(&e, timeout);
    // The common case, one chunk, is returned without a copy.
    let Some(first) = resp.chunk().await.map_err(read)? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(too_large());
    }
    let Some(second) = resp.chunk().await.map_err(read)? else {
        return Ok(first);
    };
    let expect = declared.map_or(0, |n| n as usize);
    let mut out = bytes::BytesMut::with_capacity(expect.max(first.len() + second.len()).min(limit));
    let mut next = Some(second);
    out.extend_from_slice(&first);
    while let Some(chunk) = next {
        if chunk.len() > limit - out.len() {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
        next = resp.chunk().await.map_err(read)?;
    }
    Ok(out.freeze())
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(out)
}

/// Removes anything in an upstream message that could echo a credential: the target's own key,
/// and anything shaped like an API key or bearer token. Long messages are cut.
pub fn scrub(text: &str, key: Option<&Secret>) -> String {
    let mut out = match key {
        Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "[redacted]"),
        _ => text.to_owned(),
    };
    for prefix in ["sk-", "sk_", "Bearer ", "key-"] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(prefix) {
            let start = from + pos + prefix.len();
            let len = out[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .unwrap_or(out.len() - start);
            if len >= 6 {
                out.replace_range(start..start + len, "[redacted]");
            }
            from = start.min(out.len());
        }
    }
    if out.len() > 1024 {
        let mut cut = 1024;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_targets_scheme_picks_its_client() {
        // Only plain-`http` targets go without reqwest's HTTP/2 retry (they never speak HTTP/2).
        for kind in [
            ProviderKind::Openai,
            ProviderKind::AzureOpenai,
            ProviderKind::Anthropic,
            ProviderKind::OpenaiCompatible,
            ProviderKind::Gemini,
            ProviderKind::Bedrock,
        ] {
            for (base, plain) in [
                ("http://127.0.0.1:9", true),
                ("HTTP://127.0.0.1:9", true),
                ("https://api.example.com", false),
            ] {
                let urls = Urls::new(kind, base, Some("dep"), Some("2024-06-01")).unwrap();
                assert_eq!(urls.plain_http(), plain, "{kind:?} at {base}");
            }
        }
    }

    #[test]
    fn scrub_removes_keys() {
        let k = Secret::new("abc123secret");
        let s = scrub("Incorrect API key provided: abc123secret. Also sk-proj-AAAAAAAAAAAA and Bearer xyzxyzxyz.", Some(&k));
        assert!(!s.contains("abc123secret"));
        assert!(!s.contains("AAAAAAAAAAAA"));
        assert!(!s.contains("xyzxyzxyz"));
        assert!(s.contains("Incorrect API key provided"));
    }

    fn spec(max_retry_after_ms: u64, rate_limit_cooldown_ms: u64) -> TargetSpec {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.t]\nprovider = \"openai\"\n\
             max_retry_after_ms = {max_retry_after_ms}\n\
             rate_limit_cooldown_ms = {rate_limit_cooldown_ms}\n"
        );
        let c =
            crate::config::Config::parse(&text, std::path::Path::new("c.toml"), &|_| None).unwrap();
        (*c.targets[0]).clone()
    }

    fn keyed(provider: &str, key: &str) -> Result<Upstream, String> {
        let azure = if provider == "azure-openai" {
            "deployment = \"d\"\napi_version = \"2024-10-21\"\n"
        } else {
            ""
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.t]\nprovider = \"{provider}\"\n\
             base_url = \"https://example.test\"\napi_key = {key:?}\n{azure}"
        );
        let c =
            crate::config::Config::parse(&text, std::path::Path::new("c.toml"), &|_| None).unwrap();
        Upstream::new(c.targets[0].clone())
    }

    #[test]
    fn each_provider_sends_its_key_in_its_own_header_built_once_and_sensitive() {
        for (provider, name, value) in [
            ("openai", "authorization", "Bearer sk-1"),
            ("openai-compatible", "authorization", "Bearer sk-1"),
            ("azure-openai", "api-key", "sk-1"),
            ("anthropic", "x-api-key", "sk-1"),
            ("gemini", "x-goog-api-key", "sk-1"),
        ] {
            let up = keyed(provider, "sk-1").unwrap();
            let (n, v) = up.credential.as_ref().expect(provider);
            assert_eq!(
                (n.as_str(), v.to_str().unwrap()),
                (name, value),
                "{provider}"
            );
            assert!(
                v.is_sensitive(),
                "{provider}: the key must be marked sensitive"
            );
            let req = up
                .with_credential(client().get("http://127.0.0.1:1/"))
                .build()
                .unwrap();
            assert_eq!(req.headers()[name], value, "{provider}");
        }
        // A key no header can carry is refused when the target is built, not per request.
        let bad = keyed("openai", "sk-1\nX-Injected: 1").unwrap_err();
        assert!(bad.contains("API key"), "{bad}");
        assert!(
            !bad.contains("sk-1"),
            "the error must not echo the key: {bad}"
        );
    }

    #[test]
    fn retry_after_is_what_llmux_really_waits() {
        let s = spec(5_000, 2_000);
        let secs = Duration::from_secs;
        // A hint is capped by the target's max_retry_after.
        assert_eq!(
            retry_after_for(&s, FailureClass::RateLimited, Some(secs(1_000_000_000_000))),
            Some(secs(5))
        );
        assert_eq!(
            retry_after_for(&s, FailureClass::Server, Some(secs(3))),
            Some(secs(3))
        );
        // A 429 without a usable hint: the target's rate-limit cooldown.
        assert_eq!(
            retry_after_for(&s, FailureClass::RateLimited, None),
            Some(secs(2))
        );
        assert_eq!(retry_after_for(&s, FailureClass::Server, None), None);
        // The cooldown is capped like a hint.
        assert_eq!(
            retry_after_for(&spec(1_000, 10_000), FailureClass::RateLimited, None),
            Some(secs(1))
        );
        // Even an absurd configured cap never yields a wait an Instant cannot hold.
        let huge = spec(i64::MAX as u64, i64::MAX as u64);
        let d = retry_after_for(&huge, FailureClass::RateLimited, Some(Duration::MAX)).unwrap();
        assert_eq!(d, headers::HARD_CAP);
        let _ = std::time::Instant::now() + d;
    }

    /// The vendored reqwest's patch (vendor/README.md) skips the redirect layer's URL re-parses
    /// for `Policy::none()`: the answer must still name the URL that was sent, query included,
    /// and a redirect must come back as the 3xx it is, its Location never asked.
    #[tokio::test]
    async fn the_client_reports_the_sent_url_and_never_follows_a_redirect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let elsewhere_at = elsewhere.local_addr().unwrap();
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = server.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = server.accept().await else {
                    return;
                };
                let mut head = vec![0u8; 4096];
                let n = s.read(&mut head).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..n]).into_owned();
                let answer = if head.starts_with("GET /moved") {
                    format!(
                        "HTTP/1.1 302 Found\r\nlocation: http://{elsewhere_at}/x\r\n\
                         content-length: 0\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string()
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let c = client();
        let url = reqwest::Url::parse(&format!("http://{at}/v1/models?key=a%20b")).unwrap();
        let r = c.get(url.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.url(), &url);
        let moved = reqwest::Url::parse(&format!("http://{at}/moved")).unwrap();
        // Following would connect to `elsewhere`, which never answers: bound the wait.
        let r = tokio::time::timeout(Duration::from_secs(10), c.get(moved.clone()).send())
            .await
            .expect("the redirect was followed")
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.url(), &moved);
        let asked = futures_util::future::poll_immediate(elsewhere.accept()).await;
        assert!(asked.is_none(), "the redirect's Location was asked");
    }
}
