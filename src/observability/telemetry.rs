//! Logging setup: `RUST_LOG` filters; JSON lines when stderr is not a terminal (journald and
//! log shippers), human-readable text when it is.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the log output and, with `[telemetry]`, the OpenTelemetry exporter; the guard
/// flushes the exporter when dropped. Call outside any async runtime.
pub fn init(telemetry: Option<&crate::config::TelemetrySettings>) -> Option<super::otel::Guard> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // aws-sigv4's trace events name the Bedrock access key id: never logged, whatever RUST_LOG says.
    let filter = filter.add_directive("aws_sigv4=off".parse().expect("a static directive"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::io::stderr().is_terminal() {
        fmt.boxed()
    } else {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let (otel, guard) = match telemetry.map(super::otel::start) {
        Some(Ok((layer, guard))) => (Some(layer), Some(guard)),
        Some(Err(e)) => {
            // Traces are an aid, not a reason to refuse traffic.
            eprintln!("warning: OpenTelemetry export is off: {e}");
            (None, None)
        }
        None => (None, None),
    };
    // Already initialised (tests start several servers in one process): keep the first.
    let _ = registry.with(otel).try_init();
    guard
}

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process); `/metrics` renders it.
pub fn install_metrics() {
    PROMETHEUS.get_or_init(|| {
        const BUCKETS: &[f64] = &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .ok()?;
        builder.install_recorder().ok()
    });
}

/// The Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    PROMETHEUS
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Metric handles cached per worker thread. Looking a metric up by name builds, hashes and
/// compares its label strings in the shared registry; at tens of thousands of requests per
/// second that showed in profiles, a cached handle is one atomic add.
struct Handles {
    in_flight: Gauge,
    fallbacks: Counter,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    /// Per config id: (status, endpoint, requests counter, duration histogram).
    by_config: HashMap<String, Vec<ConfigHandles>, foldhash::fast::RandomState>,
}

/// One config's request handles: (status, endpoint, requests counter, duration histogram).
type ConfigHandles = (u16, &'static str, Counter, Histogram);

/// Distinct config ids cached per thread before the cache starts over (inline configs can
/// bring many).
const BY_CONFIG_MAX: usize = 1024;

thread_local! {
    static HANDLES: RefCell<Option<Handles>> = const { RefCell::new(None) };
}

fn with_handles<R>(f: impl FnOnce(&mut Handles) -> R) -> R {
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(|| Handles {
            in_flight: metrics::gauge!("llmux_in_flight_requests"),
            fallbacks: metrics::counter!("llmux_fallbacks_total"),
            prompt_tokens: metrics::counter!("llmux_tokens_total", "kind" => "prompt"),
            completion_tokens: metrics::counter!("llmux_tokens_total", "kind" => "completion"),
            by_config: HashMap::default(),
        });
        f(h)
    })
}

/// The metrics of one finished request.
pub struct RequestMetrics<'a> {
    pub config: &'a str,
    pub status: u16,
    pub endpoint: &'static str,
    pub seconds: f64,
    pub fallbacks: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub fn record_request(m: RequestMetrics<'_>) {
    with_handles(|h| {
        if h.by_config.len() >= BY_CONFIG_MAX && !h.by_config.contains_key(m.config) {
            h.by_config.clear();
        }
        let row = match h.by_config.get_mut(m.config) {
            Some(row) => row,
            None => h.by_config.entry(m.config.to_owned()).or_default(),
        };
        let i = match row
            .iter()
            .position(|r| r.0 == m.status && r.1 == m.endpoint)
        {
            Some(i) => i,
            None => {
                let config = m.config.to_owned();
                row.push((
                    m.status,
                    m.endpoint,
                    metrics::counter!("llmux_requests_total", "config" => config.clone(),
                        "status" => m.status.to_string(), "endpoint" => m.endpoint),
                    metrics::histogram!("llmux_request_duration_seconds", "config" => config,
                        "endpoint" => m.endpoint),
                ));
                row.len() - 1
            }
        };
        row[i].2.increment(1);
        row[i].3.record(m.seconds);
        if m.fallbacks > 0 {
            h.fallbacks.increment(m.fallbacks);
        }
        h.prompt_tokens.increment(m.prompt_tokens);
        h.completion_tokens.increment(m.completion_tokens);
    })
}

/// Counts a request as in flight until dropped (a stream carries it until it ends).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        with_handles(|h| h.in_flight.increment(1.0));
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        with_handles(|h| h.in_flight.decrement(1.0));
    }
}
