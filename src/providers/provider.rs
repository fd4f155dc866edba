//! The one seam between llmux and a provider's wire format: [`Provider`], implemented once per
//! provider kind, and [`provider`], the only place a [`ProviderKind`] is turned into behaviour.
//! Adding a provider is one module implementing the trait plus one arm in [`provider`] (and one
//! line in `tests/conformance.rs`).

use bytes::Bytes;

use super::stream::Framing;
use super::{Answer, AttemptError, Endpoint, Merged, Upstream, Urls};
use crate::config::{ProviderKind, TargetSpec};

/// Everything provider-specific about an attempt. Implementations do no I/O: the shared code in
/// [`super`] sends, reads (with its size and time limits), scrubs and applies `Retry-After`.
pub trait Provider: Sync {
    /// The name used in messages (the config's `provider` value).
    fn name(&self) -> &'static str;

    /// Whether this provider serves `endpoint` at all (the walk skips leaves that cannot).
    fn supports(&self, _endpoint: Endpoint) -> bool {
        true
    }

    /// Whether llmux asks for stream usage itself (`stream_options.include_usage`) when the
    /// client did not, for logs, cost and token budgets.
    fn asks_usage(&self) -> bool {
        false
    }

    /// The target's upstream URLs, parsed once at config load. `base_url` has no trailing
    /// slash; `deployment`/`api_version` are Azure's.
    fn urls(
        &self,
        base_url: &str,
        deployment: Option<&str>,
        api_version: Option<&str>,
    ) -> Result<Urls, String>;

    /// The upstream request for `endpoint` carrying `body` (the client's body with the leaf's
    /// overrides), with the target's credentials. Called only for supported endpoints; an
    /// `Err` is the client's fault (a request that cannot be translated).
    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError>;

    /// Adds the credentials (and any version header) to the health check's model-list request.
    fn health(&self, spec: &Upstream, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        spec.with_credential(req)
    }

    /// The header that carries the target's API key, and its value; built once per target
    /// into [`Upstream::credential`]. `None`: the key travels another way (or not at all).
    fn credential_header(&self, _key: &str) -> Option<(&'static str, String)> {
        None
    }

    /// A 4xx/5xx answer in OpenAI terms; the class comes from [`AttemptError::class_of`] on the
    /// status the client will see. Unscrubbed: the caller scrubs and sets `retry_after`. A
    /// provider whose wait hint is in the body (Gemini's `RetryInfo`) leaves it, uncapped, in
    /// `retry_after`: the caller uses it when no header hints one, and caps it.
    fn error(&self, status: u16, body: &[u8]) -> AttemptError;

    /// [`Provider::error`] with the answer's headers (Bedrock names the error in
    /// `x-amzn-errortype`) and the target (to name it); what [`super::send`] calls for every
    /// provider.
    fn classify(
        &self,
        _spec: &TargetSpec,
        status: u16,
        _headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> AttemptError {
        self.error(status, body)
    }

    /// A whole 2xx non-streamed answer, in OpenAI shape; a body that is not an answer for
    /// `endpoint` is a 502 [`AttemptError::bad_upstream`]-style failure.
    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError>;

    /// [`Provider::answer`] for providers whose answer does not name what the URL did (Bedrock
    /// puts the model in the path only); what [`super::finish`] calls for every provider.
    fn answer_at(
        &self,
        endpoint: Endpoint,
        status: u16,
        _url: Option<&reqwest::Url>,
        body: Bytes,
    ) -> Result<Answer, AttemptError> {
        self.answer(endpoint, status, body)
    }

    /// Whether [`Provider::answer_at`] reads the request URL (it is then copied out of the
    /// response before the body is read; the others skip that copy).
    fn answer_reads_url(&self) -> bool {
        false
    }

    /// How a 2xx SSE stream is read and turned into OpenAI chunks. `include_usage`: the client
    /// asked for the usage chunk; `model` is the requested model, until the stream names one.
    fn framing(&self, include_usage: bool, model: &str) -> Framing;
}

/// The one dispatch on the provider kind.
pub fn provider(kind: ProviderKind) -> &'static dyn Provider {
    match kind {
        ProviderKind::Openai => &super::openai::OpenAi { compatible: false },
        ProviderKind::OpenaiCompatible => &super::openai::OpenAi { compatible: true },
        ProviderKind::AzureOpenai => &super::azure::Azure,
        ProviderKind::Anthropic => &super::anthropic::Anthropic,
        ProviderKind::Gemini => &super::gemini::Gemini,
        ProviderKind::Bedrock => &super::bedrock::Bedrock,
        ProviderKind::Vertex => &super::vertex::Vertex,
    }
}
