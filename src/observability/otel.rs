//! OpenTelemetry traces (`[telemetry]`): one server span per request and a client span per
//! attempt, with the GenAI semantic conventions plus llmux's own `llmux.*` attributes, exported
//! over OTLP/HTTP (protobuf).
//!
//! Spans are `tracing` spans on the [`TARGET`] target, turned into OpenTelemetry spans by
//! `tracing-opentelemetry`; only that layer listens to the target, so the log output is
//! unchanged. Without `[telemetry]` nothing is created at all: the data path checks
//! [`enabled`] (one relaxed load) before building any span. With it, spans go to the SDK's
//! batch processor, which exports from its own thread with a bounded queue: a slow or absent
//! collector costs spans (the newest are dropped when the queue is full), never requests.
//!
//! Trace context: a client's W3C `traceparent`/`tracestate` make the request span its child,
//! and each attempt's context goes to the provider in the same headers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::{ProviderKind, TelemetrySettings};

/// The `tracing` target of every exported span.
pub const TARGET: &str = "llmux::otel";

/// Longest prompt or completion exported with `capture_content = true`.
const MAX_CONTENT_BYTES: usize = 16 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
/// `sample_ratio`, for requests that bring no sampling decision of their own.
static SAMPLE_RATIO: OnceLock<f64> = OnceLock::new();

/// Whether spans are exported (`[telemetry]` was configured at start).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether prompts and completions go on the spans.
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; flushes what it holds on drop, waiting at most the export
/// timeout (a collector that is away must not hold up shutdown).
pub struct Guard {
    provider: SdkTracerProvider,
    timeout: std::time::Duration,
}

impl Drop for Guard {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        let provider = self.provider.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = provider.shutdown();
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(self.timeout);
    }
}

/// The exporter and the `tracing` layer that feeds it. Must run outside any async runtime
/// (the blocking HTTP client builds its own).
pub fn start<S>(
    settings: &TelemetrySettings,
) -> Result<(impl tracing_subscriber::Layer<S>, Guard), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.traces_url.clone())
        .with_timeout(settings.export_timeout)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue)
        .with_max_export_batch_size(512.min(settings.max_queue))
        .with_scheduled_delay(settings.batch_delay)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // Sampled or not is decided before a span exists (`request_span`): an unsampled
        // request then costs nothing at all, where an SDK sampler would decide only after
        // every attribute had been recorded.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("llmux");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Only what the data path reports; tracing's own bookkeeping is noise here.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE),
        );
    PROPAGATOR.get_or_init(TraceContextPropagator::new);
    SAMPLE_RATIO.get_or_init(|| settings.sample_ratio);
    CAPTURE_CONTENT.store(settings.capture_content, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        layer,
        Guard {
            provider,
            timeout: settings.export_timeout,
        },
    ))
}

/// The semantic-convention name of a provider (`gen_ai.provider.name`).
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => "openai",
        ProviderKind::AzureOpenai => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Vertex => "gcp.vertex_ai",
    }
}

/// `gen_ai.operation.name` for an endpoint (`/v1/responses` generates chat, as in the
/// conventions' OpenAI instrumentation).
fn operation(endpoint: crate::providers::Endpoint) -> &'static str {
    use crate::providers::Endpoint;
    match endpoint {
        Endpoint::Chat | Endpoint::Responses => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
    }
}

struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Outgoing<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Whether to trace a request: the client's decision when its `traceparent` is valid (parent
/// based, as the W3C flag asks), else a draw at `sample_ratio`.
fn sampled(parent: &opentelemetry::Context) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    let span = parent.span();
    let sc = span.span_context();
    if sc.is_valid() {
        return sc.is_sampled();
    }
    let ratio = SAMPLE_RATIO.get().copied().unwrap_or(1.0);
    ratio >= 1.0 || rand::random::<f64>() < ratio
}

/// A request's server span, child of the client's `traceparent` when it sent a valid one;
/// `None` when the request is not sampled (then nothing of it is traced or propagated).
/// Fields known later are recorded by [`finish_request`].
pub fn request_span(
    endpoint: crate::providers::Endpoint,
    headers: &actix_web::http::header::HeaderMap,
    trace_id: &str,
) -> Option<Span> {
    let parent = PROPAGATOR.get()?.extract(&Headers(headers));
    if !sampled(&parent) {
        return None;
    }
    let op = operation(endpoint);
    let span = tracing::trace_span!(
        target: TARGET,
        "llmux.request",
        otel.name = op,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        http.request.method = "POST",
        url.path = endpoint.gateway_path(),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        gen_ai.operation.name = op,
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.request.model = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        gen_ai.input.messages = tracing::field::Empty,
        gen_ai.output.messages = tracing::field::Empty,
        llmux.trace_id = trace_id,
        llmux.config = tracing::field::Empty,
        llmux.leaf_path = tracing::field::Empty,
        llmux.virtual_key = tracing::field::Empty,
        llmux.cache = tracing::field::Empty,
        llmux.attempts = tracing::field::Empty,
        llmux.stream = tracing::field::Empty,
        llmux.key = tracing::field::Empty,
        llmux.cost_usd = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// Names the request span once the body says which model it asks for.
pub fn request_model(span: &Span, endpoint: crate::providers::Endpoint, model: Option<&str>) {
    if let Some(m) = model {
        span.record("gen_ai.request.model", m);
        span.record("otel.name", format!("{} {m}", operation(endpoint)).as_str());
    }
}

/// An attempt's client span, child of the request span.
pub fn attempt_span(
    parent: &Span,
    endpoint: crate::providers::Endpoint,
    provider: ProviderKind,
    virtual_key: &str,
    leaf_path: &str,
    retry: u32,
) -> Span {
    let op = operation(endpoint);
    tracing::trace_span!(
        target: TARGET,
        parent: parent,
        "llmux.attempt",
        otel.name = op,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = op,
        gen_ai.provider.name = provider_name(provider),
        gen_ai.request.model = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        llmux.virtual_key = virtual_key,
        llmux.leaf_path = leaf_path,
        llmux.retry = retry,
    )
}

/// Records where an attempt goes and puts its trace context on the upstream request.
pub fn attempt_started(
    span: &Span,
    endpoint: crate::providers::Endpoint,
    model: Option<&str>,
    url: Option<&reqwest::Url>,
    req: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    if let Some(m) = model {
        span.record("gen_ai.request.model", m);
        span.record("otel.name", format!("{} {m}", operation(endpoint)).as_str());
    }
    if let Some(u) = url {
        if let Some(h) = u.host_str() {
            span.record("server.address", h);
        }
        if let Some(p) = u.port_or_known_default() {
            span.record("server.port", p);
        }
    }
    let Some(p) = PROPAGATOR.get() else {
        return req;
    };
    let mut headers = reqwest::header::HeaderMap::new();
    p.inject_context(&span.context(), &mut Outgoing(&mut headers));
    req.headers(headers)
}

/// How an attempt ended: its status, and for a whole answer its model and usage.
pub fn attempt_finished(
    span: &Span,
    status: u16,
    error: Option<&str>,
    model: Option<&str>,
    usage: Option<crate::providers::Usage>,
) {
    span.record("http.response.status_code", status);
    if let Some(kind) = error {
        span.record("error.type", kind);
        span.record("otel.status_code", "ERROR");
    }
    if let Some(m) = model {
        span.record("gen_ai.response.model", m);
    }
    if let Some(u) = usage {
        span.record("gen_ai.usage.input_tokens", u.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", u.completion_tokens);
    }
}

/// Bounded content for `gen_ai.input.messages` / `gen_ai.output.messages`.
pub fn content(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_CONTENT_BYTES)]);
    let mut s = text.into_owned();
    if bytes.len() > MAX_CONTENT_BYTES {
        s.push('…');
    }
    s
}

/// The request's finish reasons from a whole OpenAI-shaped answer (chat or completions),
/// comma-separated in choice order.
pub fn finish_reasons(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        choices: Vec<Choice<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default)]
        finish_reason: Option<&'a str>,
    }
    let a: Answer<'_> = serde_json::from_slice(body).ok()?;
    let reasons: Vec<&str> = a.choices.iter().filter_map(|c| c.finish_reason).collect();
    (!reasons.is_empty()).then(|| reasons.join(","))
}

/// Records what the request log knows of a finished request on its span; the span ends when
/// the entry (its last holder) is dropped.
pub fn finish_request(span: &Span, e: &super::requestlog::Entry) {
    span.record("http.response.status_code", e.status);
    if e.status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    if e.status >= 400 {
        span.record("error.type", e.status.to_string().as_str());
        if let Some(err) = &e.error {
            span.record("otel.status_description", err.as_str());
        }
    }
    if let Some(p) = e.provider {
        span.record("gen_ai.provider.name", p);
    }
    if let Some(m) = &e.model_requested {
        span.record("gen_ai.request.model", &**m);
    }
    if let Some(m) = &e.model_used {
        span.record("gen_ai.response.model", m.as_str());
    }
    if e.prompt_tokens + e.completion_tokens > 0 {
        span.record("gen_ai.usage.input_tokens", e.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", e.completion_tokens);
    }
    if let Some(c) = &e.config {
        span.record("llmux.config", &**c);
    }
    if let Some(p) = &e.served_by {
        span.record("llmux.leaf_path", &**p);
    }
    if let Some(v) = &e.virtual_key {
        span.record("llmux.virtual_key", &**v);
    }
    if let Some(c) = e.cache {
        span.record("llmux.cache", c);
    }
    if let Some(k) = &e.key {
        span.record("llmux.key", k.as_str());
    }
    if let Some(usd) = e.cost_usd {
        span.record("llmux.cost_usd", usd);
    }
    span.record("llmux.attempts", e.attempts.len() as u64);
    span.record("llmux.stream", e.stream);
}
