//! Logging setup: `RUST_LOG` filters; JSON lines when stderr is not a terminal (journald and
//! log shippers), human-readable text when it is.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    };
    // Already initialised (tests start several servers in one process): keep the first.
    let _ = result;
}

use std::sync::OnceLock;

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

/// Counts a request as in flight until dropped (a stream carries it until it ends).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        metrics::gauge!("llmux_in_flight_requests").increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("llmux_in_flight_requests").decrement(1.0);
    }
}
