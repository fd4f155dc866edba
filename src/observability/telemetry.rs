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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use thread_local::ThreadLocal;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorder's histograms are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds of the recorder's histograms done by the upkeep thread (for its test).
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

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
        let handle = builder.install_recorder().ok()?;
        spawn_upkeep(handle.clone(), UPKEEP_EVERY);
        Some(handle)
    });
}

/// The recorder keeps every histogram sample until it folds them into buckets, which it does
/// only when rendered or told to (`install_recorder` starts no upkeep task of its own). Unscraped,
/// two samples a request piled up without bound (hundreds of MB an hour at full load), so a
/// thread of its own folds them on a timer, off the request path.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("llmux-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            publish_splits();
            handle.run_upkeep();
            UPKEEPS.fetch_add(1, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        // Without it /metrics still works; only unscraped histograms grow.
        tracing::warn!("could not start the metrics upkeep thread: {e}");
    }
}

/// The Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    let Some(handle) = PROMETHEUS.get().and_then(Option::as_ref) else {
        return String::new();
    };
    publish_tallies();
    publish_splits();
    handle.render()
}

/// A counter each thread adds to on a cache line of its own; `/metrics` and the upkeep thread
/// publish the sum to the recorder's counter. A recorder counter that both workers add to on
/// every request moves its cache line between the cores each time.
pub struct SplitCounter {
    shared: Counter,
    parts: ThreadLocal<CachePadded<AtomicU64>>,
}

impl SplitCounter {
    pub fn increment(&self, n: u64) {
        // Only this thread writes its part (a thread that ends hands its slot to the next
        // thread that starts, which goes on adding to it).
        bump(self.parts.get_or_default(), n);
    }

    fn publish(&self) {
        let sum = self
            .parts
            .iter()
            .fold(0u64, |a, p| a.wrapping_add(p.load(Ordering::Relaxed)));
        self.shared.absolute(sum);
    }
}

/// A histogram whose samples each thread keeps in a buffer of its own until `/metrics` or the
/// upkeep thread hands them to the recorder's histogram (whose own buffer every worker would
/// otherwise append to). At most one upkeep period of samples waits in the buffers.
pub struct SplitHistogram {
    shared: Histogram,
    parts: ThreadLocal<CachePadded<Mutex<Vec<f64>>>>,
}

impl SplitHistogram {
    pub fn record(&self, v: f64) {
        // Uncontended but for the moment a publish takes the batch.
        lock(self.parts.get_or_default()).push(v);
    }

    fn publish(&self) {
        for part in self.parts.iter() {
            let batch = std::mem::take(&mut *lock(part));
            for v in batch {
                self.shared.record(v);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every split metric, by its name and labels: one per series, whoever asks for it (a target
/// rebuilt by a reload adds to the same series as the one it replaced). Like the recorder's
/// own registry, it keeps every series it was ever given.
#[derive(Default)]
struct Splits {
    counters: HashMap<String, Arc<SplitCounter>>,
    histograms: HashMap<String, Arc<SplitHistogram>>,
}

static SPLITS: Mutex<Option<Splits>> = Mutex::new(None);

/// The split metric of the series `key` in `pick(splits)`, made with `make` the first time.
fn split<T>(
    key: String,
    pick: impl FnOnce(&mut Splits) -> &mut HashMap<String, Arc<T>>,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let mut splits = lock(&SPLITS);
    pick(splits.get_or_insert_with(Splits::default))
        .entry(key)
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// The split counter of the series `key` (its name and labels, spelled the same by every
/// caller), made with `counter` the first time.
pub fn split_counter(key: String, counter: impl FnOnce() -> Counter) -> Arc<SplitCounter> {
    split(
        key,
        |s| &mut s.counters,
        || SplitCounter {
            shared: counter(),
            parts: ThreadLocal::new(),
        },
    )
}

/// The split histogram of the series `key`, made with `histogram` the first time.
pub fn split_histogram(key: String, histogram: impl FnOnce() -> Histogram) -> Arc<SplitHistogram> {
    split(
        key,
        |s| &mut s.histograms,
        || SplitHistogram {
            shared: histogram(),
            parts: ThreadLocal::new(),
        },
    )
}

/// Hands every split metric's threads' counts and samples to the recorder.
fn publish_splits() {
    let splits = lock(&SPLITS);
    if let Some(splits) = splits.as_ref() {
        splits.counters.values().for_each(|c| c.publish());
        splits.histograms.values().for_each(|h| h.publish());
    }
}

/// One thread's running totals of the request metrics that every request moves. Each worker
/// adds to its own (on a cache line of its own), and `/metrics` publishes the sums: shared
/// counters would move one cache line between the workers several times per request.
#[repr(align(128))]
#[derive(Default)]
struct Tally {
    /// Requests started minus requests ended here (can go below zero on a thread that ends
    /// requests another started).
    in_flight: AtomicI64,
    fallbacks: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// Every thread's tally (a thread that ends hands its tally to the next thread that starts).
static TALLY: ThreadLocal<Tally> = ThreadLocal::new();

/// Adds `n` to a counter only this thread writes: a plain load and store, no locked
/// instruction (`/metrics` only reads it).
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The threads' tallies added up: (in flight, fallbacks, prompt tokens, completion tokens).
fn tally_sums() -> (i64, u64, u64, u64) {
    let (mut in_flight, mut fallbacks, mut prompt, mut completion) = (0i64, 0u64, 0u64, 0u64);
    for t in TALLY.iter() {
        in_flight += t.in_flight.load(Ordering::Relaxed);
        fallbacks = fallbacks.wrapping_add(t.fallbacks.load(Ordering::Relaxed));
        prompt = prompt.wrapping_add(t.prompt_tokens.load(Ordering::Relaxed));
        completion = completion.wrapping_add(t.completion_tokens.load(Ordering::Relaxed));
    }
    (in_flight, fallbacks, prompt, completion)
}

/// Sets the exported metrics to the sums of the threads' tallies.
fn publish_tallies() {
    let (in_flight, fallbacks, prompt, completion) = tally_sums();
    metrics::gauge!("llmux_in_flight_requests").set(in_flight.max(0) as f64);
    metrics::counter!("llmux_fallbacks_total").absolute(fallbacks);
    metrics::counter!("llmux_tokens_total", "kind" => "prompt").absolute(prompt);
    metrics::counter!("llmux_tokens_total", "kind" => "completion").absolute(completion);
}

/// Metric handles cached per worker thread. Looking a metric up by name builds, hashes and
/// compares its label strings in the shared registry; at tens of thousands of requests per
/// second that showed in profiles, a cached handle adds to this thread's part of the metric.
struct Handles {
    /// Per config id: (status, endpoint, requests counter, duration histogram).
    by_config: HashMap<String, Vec<ConfigHandles>, foldhash::fast::RandomState>,
}

/// One config's request handles: (status, endpoint, requests counter, duration histogram).
type ConfigHandles = (u16, &'static str, Arc<SplitCounter>, Arc<SplitHistogram>);

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
                let (config, status, endpoint) = (m.config.to_owned(), m.status, m.endpoint);
                row.push((
                    status,
                    endpoint,
                    split_counter(
                        format!("llmux_requests_total\0{config}\0{status}\0{endpoint}"),
                        || {
                            metrics::counter!("llmux_requests_total", "config" => config.clone(),
                                "status" => status.to_string(), "endpoint" => endpoint)
                        },
                    ),
                    split_histogram(
                        format!("llmux_request_duration_seconds\0{config}\0{endpoint}"),
                        || {
                            metrics::histogram!("llmux_request_duration_seconds",
                                "config" => config.clone(), "endpoint" => endpoint)
                        },
                    ),
                ));
                row.len() - 1
            }
        };
        row[i].2.increment(1);
        row[i].3.record(m.seconds);
    });
    let t = TALLY.get_or_default();
    bump(&t.fallbacks, m.fallbacks);
    bump(&t.prompt_tokens, m.prompt_tokens);
    bump(&t.completion_tokens, m.completion_tokens);
}

/// Counts a request as in flight until dropped (a stream carries it until it ends).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        TALLY
            .get_or_default()
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // On the thread that ends it: a read-modify-write, as another thread may have started
        // it (the sum over all threads is what counts).
        TALLY
            .get_or_default()
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upkeep_thread_folds_histograms_on_its_timer() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let before = UPKEEPS.load(Ordering::Relaxed);
        spawn_upkeep(handle, Duration::from_millis(5));
        let t0 = std::time::Instant::now();
        while UPKEEPS.load(Ordering::Relaxed) < before + 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the upkeep thread never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The value of the one exported sample of `name` whose labels include `config`.
    fn sample(text: &str, name: &str, config: &str) -> Option<f64> {
        let label = format!("config=\"{config}\"");
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Requests counted and timed on several threads reach `/metrics` summed, a second render
    /// counts nothing twice, and every caller of one series shares one split metric (a
    /// reloaded target adds to the series of the one it replaced).
    #[test]
    fn split_metrics_add_up_across_threads_and_reach_the_recorder() {
        install_metrics();
        let config = "split-test";
        let threads: Vec<_> = (0..3)
            .map(|i| {
                std::thread::spawn(move || {
                    for _ in 0..=i {
                        record_request(RequestMetrics {
                            config,
                            status: 200,
                            endpoint: "chat.completions",
                            seconds: 0.002,
                            fallbacks: 0,
                            prompt_tokens: 0,
                            completion_tokens: 0,
                        });
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        for _ in 0..2 {
            let text = render_metrics();
            assert_eq!(
                sample(&text, "llmux_requests_total", config),
                Some(6.0),
                "{text}"
            );
            assert_eq!(
                sample(&text, "llmux_request_duration_seconds_count", config),
                Some(6.0),
                "{text}"
            );
        }
        let key = || format!("llmux_attempts_total\0{config}\0200");
        let a = split_counter(key(), || metrics::counter!("split_test_a"));
        let b = split_counter(key(), || unreachable!("the series exists"));
        assert!(Arc::ptr_eq(&a, &b));
    }

    /// A request started on one thread and ended on another nets zero in flight, and every
    /// thread's tokens reach the sums (no other test in this binary moves these tallies).
    #[test]
    fn tallies_add_up_across_threads() {
        let before = tally_sums();
        let started = std::thread::spawn(InFlight::start).join().unwrap();
        assert_eq!(tally_sums().0, before.0 + 1);
        let record = |prompt, completion, fallbacks| {
            std::thread::spawn(move || {
                record_request(RequestMetrics {
                    config: "tally-test",
                    status: 200,
                    endpoint: "chat.completions",
                    seconds: 0.01,
                    fallbacks,
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                })
            })
            .join()
            .unwrap()
        };
        record(3, 5, 0);
        record(7, 11, 2);
        std::thread::spawn(move || drop(started)).join().unwrap();
        let after = tally_sums();
        assert_eq!(after.0, before.0);
        assert_eq!(after.1, before.1 + 2);
        assert_eq!(after.2, before.2 + 10);
        assert_eq!(after.3, before.3 + 16);
    }
}
