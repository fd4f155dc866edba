//! The bounded in-memory log of recent requests that `GET /admin/requests` serves: route taken,
//! every attempt, models, tokens and cost. Old entries fall off the end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use thread_local::ThreadLocal;

use crate::config::{Price, Pricing};

/// One attempt on one leaf, for the response error, logs and the request log.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub path: Arc<str>,
    pub virtual_key: Arc<str>,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request's attempts: almost always one, kept inline.
pub type Attempts = smallvec::SmallVec<[AttemptRecord; 1]>;

/// Where a request's cost is added up (a gateway key's spend), once it is known.
pub trait Spend: Send + Sync + std::fmt::Debug {
    fn record(&self, usd: f64);
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unix milliseconds when the request arrived.
    pub time: u64,
    pub trace_id: Arc<str>,
    pub config: Option<Arc<str>>,
    pub endpoint: &'static str,
    pub status: u16,
    pub latency_ms: f64,
    pub stream: bool,
    pub attempts: Attempts,
    /// Leaf path that answered, if any.
    pub served_by: Option<Arc<str>>,
    pub virtual_key: Option<Arc<str>>,
    pub provider: Option<&'static str>,
    pub model_requested: Option<Arc<str>>,
    pub model_used: Option<String>,
    pub prompt_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache.
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// `null` when the price table has no row for the model: unknown, not free.
    pub cost_usd: Option<f64>,
    /// How `cost_usd` adds up, and which price row it used.
    pub cost: Option<Cost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request's `x-portkey-metadata`, keys sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Arc<BTreeMap<String, String>>>,
    /// What the response cache did: `hit`, `semantic_hit`, `miss`, `semantic_miss`,
    /// `refresh`; absent when the serving leaf has no cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// For a cache hit: what the answer would have cost (its `cost_usd` is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<f64>,
    /// The gateway key that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where the cost is added up (the key's budget), when it has one.
    #[serde(skip)]
    pub spend: Option<Arc<dyn Spend>>,
    /// The request's OpenTelemetry span (with `[telemetry]`): ends when the entry is written.
    #[serde(skip)]
    pub otel: Option<tracing::Span>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cost {
    /// The `[pricing."MODEL"]` row used.
    pub priced_as: Arc<str>,
    /// Uncached prompt tokens.
    pub input_usd: f64,
    /// Cached prompt tokens, at `cached_input_per_mtok` (else the input rate).
    pub cached_input_usd: f64,
    pub output_usd: f64,
}

impl Entry {
    /// The entry of a request that arrived at `time` (Unix ms), before anything is known of it.
    pub fn new(time: u64, trace_id: Arc<str>, endpoint: &'static str) -> Entry {
        Entry {
            time,
            trace_id,
            config: None,
            endpoint,
            status: 0,
            latency_ms: 0.0,
            stream: false,
            attempts: Attempts::new(),
            served_by: None,
            virtual_key: None,
            provider: None,
            model_requested: None,
            model_used: None,
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cost_usd: None,
            cost: None,
            error: None,
            metadata: None,
            cache: None,
            saved_usd: None,
            key: None,
            spend: None,
            otel: None,
        }
    }

    /// Whether the answer came from the response cache (no provider call, no tokens spent).
    pub fn cache_hit(&self) -> bool {
        matches!(self.cache, Some("hit" | "semantic_hit"))
    }

    /// Cost from the price table for the model that answered (the model asked for when the
    /// answer named none). A model is priced by its own row, or by the row of the model it is
    /// a dated snapshot of (`gpt-4o-2024-08-06` -> `gpt-4o`), never by another model's row
    /// (`gpt-4o-mini` is not `gpt-4o`).
    pub fn price(&mut self, table: &Pricing) {
        let model = self
            .model_used
            .as_deref()
            .or(self.model_requested.as_deref());
        let Some((priced_as, p)) = model.and_then(|m| price_row(table, m)) else {
            if let Some(m) = model {
                warn_unpriced(m);
            }
            self.cost_usd = None;
            self.cost = None;
            return;
        };
        let cached = self.cached_tokens.min(self.prompt_tokens);
        let usd = |tokens: u64, per_mtok: f64| tokens as f64 * per_mtok / 1e6;
        let cost = Cost {
            priced_as: priced_as.clone(),
            input_usd: usd(self.prompt_tokens - cached, p.input_per_mtok),
            cached_input_usd: usd(cached, p.cached_input_per_mtok.unwrap_or(p.input_per_mtok)),
            output_usd: usd(self.completion_tokens, p.output_per_mtok),
        };
        let usd = cost.input_usd + cost.cached_input_usd + cost.output_usd;
        if self.cache_hit() {
            self.saved_usd = Some(usd);
            self.cost_usd = Some(0.0);
            return;
        }
        self.cost_usd = Some(usd);
        self.cost = Some(cost);
    }
}

/// Warns once per model that has no price (bounded: past 1,000 distinct models, silently).
fn warn_unpriced(model: &str) {
    static WARNED: std::sync::OnceLock<Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if warned.len() < 1000 && warned.insert(model.to_owned()) {
        tracing::warn!(
            model,
            "no price for this model (built-in catalog or [pricing]): its cost is logged as null"
        );
    }
}

/// The prices that apply, as `llmux prices` prints them: one line per model, with where the
/// row comes from (the built-in catalog, or config.toml when it differs or is not in it).
pub fn price_table(table: &Pricing) -> String {
    let catalog = crate::config::catalog::catalog();
    let mut rows: Vec<(&Arc<str>, &Price)> = table.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = format!(
        "{:<28} {:>10} {:>14} {:>10}  source\n",
        "model", "input", "cached input", "output"
    );
    for (model, p) in rows {
        let from_catalog = catalog.models.get(&**model).is_some_and(|c| {
            c.input_per_mtok == p.input_per_mtok
                && c.output_per_mtok == p.output_per_mtok
                && c.cached_input_per_mtok == p.cached_input_per_mtok
        });
        let cached = p
            .cached_input_per_mtok
            .map_or_else(|| "-".to_owned(), |c| format!("{c}"));
        out.push_str(&format!(
            "{model:<28} {:>10} {cached:>14} {:>10}  {}\n",
            p.input_per_mtok,
            p.output_per_mtok,
            if from_catalog {
                "catalog"
            } else {
                "config.toml"
            }
        ));
    }
    out.push_str(&format!(
        "USD per million tokens. Catalog of {}: {}\n",
        catalog.meta.date, catalog.meta.source
    ));
    out
}

/// The price row for `model`: its own, else that of the model it is a dated snapshot of.
pub fn price_row<'a>(table: &'a Pricing, model: &str) -> Option<(&'a Arc<str>, Price)> {
    let hit = |m: &str| table.get_key_value(m).map(|(k, p)| (k, *p));
    hit(model).or_else(|| undated(model).and_then(hit))
}

/// `model` without a trailing snapshot date: `-YYYY-MM-DD` (OpenAI), `-YYYYMMDD`
/// (Anthropic) or `@YYYYMMDD` (Vertex).
fn undated(model: &str) -> Option<&str> {
    let b = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let date = |y: &[u8], m: &[u8], d: &[u8]| {
        let n = |s: &[u8]| s.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
        digits(y) && digits(m) && digits(d) && (1..=12).contains(&n(m)) && (1..=31).contains(&n(d))
    };
    let n = b.len();
    // The separators are ASCII, so the cuts fall on character boundaries.
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && date(&b[n - 10..n - 6], &b[n - 5..n - 3], &b[n - 2..])
    {
        return Some(&model[..n - 11]);
    }
    if n > 9
        && (b[n - 9] == b'-' || b[n - 9] == b'@')
        && date(&b[n - 8..n - 4], &b[n - 4..n - 2], &b[n - 2..])
    {
        return Some(&model[..n - 9]);
    }
    None
}

pub struct RequestLog {
    /// One ring per thread that finishes requests (each HTTP worker), each holding up to
    /// `capacity` entries and its own traffic series. A finished request takes only its own
    /// thread's lock, so the workers never wait on each other or pass its cache lines back and
    /// forth, and an entry is freed on the thread that made it. Readers (the admin API) merge
    /// the rings, newest first.
    rings: ThreadLocal<Mutex<Inner>>,
    capacity: usize,
    /// Hourly aggregates for `/admin/usage`.
    pub usage: Option<Arc<super::usage::Usage>>,
}

struct Inner {
    /// `(when it was pushed, in ns of the process clock, entry)`, oldest first.
    entries: VecDeque<(u64, Arc<Entry>)>,
    traffic: Traffic,
}

/// Nanoseconds since the first call, on the monotonic clock: orders entries across rings.
fn stamp() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        BASE.get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// A request's entry while it is filled in: the only handle to its `Arc`, so the entry is
/// written in place from the request's start and the log takes it without a copy. (Held by
/// value, a ~0.5 kB entry sat in every request's future and was copied once more into the
/// log's `Arc` at the end.)
pub struct Draft(Arc<Entry>);

impl Draft {
    pub fn new(entry: Entry) -> Draft {
        Draft(Arc::new(entry))
    }

    /// The entry, to fill in.
    pub fn get(&mut self) -> &mut Entry {
        // A draft is never cloned and its `Arc` never leaves it before the log takes it.
        Arc::get_mut(&mut self.0).expect("a draft is the only handle to its entry")
    }
}

impl std::ops::Deref for Draft {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.0
    }
}

impl RequestLog {
    /// Prices, logs and stores one finished request.
    pub fn finish(&self, mut draft: Draft, pricing: &Pricing) {
        let entry = draft.get();
        entry.price(pricing);
        if let (Some(spend), Some(usd)) = (entry.spend.take(), entry.cost_usd) {
            spend.record(usd);
        }
        if let Some(span) = entry.otel.take() {
            super::otel::finish_request(&span, entry);
        }
        super::telemetry::record_request(super::telemetry::RequestMetrics {
            config: entry.config.as_deref().unwrap_or("-"),
            status: entry.status,
            endpoint: entry.endpoint,
            seconds: entry.latency_ms / 1000.0,
            fallbacks: entry.attempts.len().saturating_sub(1) as u64,
            // A cache hit spent no provider tokens.
            prompt_tokens: if entry.cache_hit() {
                0
            } else {
                entry.prompt_tokens
            },
            completion_tokens: if entry.cache_hit() {
                0
            } else {
                entry.completion_tokens
            },
        });
        tracing::info!(
            trace_id = %entry.trace_id,
            config = entry.config.as_deref().unwrap_or("-"),
            endpoint = entry.endpoint,
            stream = entry.stream,
            path = entry.served_by.as_deref().unwrap_or("-"),
            virtual_key = entry.virtual_key.as_deref().unwrap_or("-"),
            attempts = entry.attempts.len(),
            status = entry.status,
            latency_ms = entry.latency_ms,
            prompt_tokens = entry.prompt_tokens,
            completion_tokens = entry.completion_tokens,
            error = entry.error.as_deref().unwrap_or(""),
            "request finished"
        );
        let entry = draft.0;
        if let Some(usage) = &self.usage {
            usage.record_batched(&entry);
        }
        self.push(entry);
    }

    pub fn new(capacity: usize) -> RequestLog {
        RequestLog {
            rings: ThreadLocal::new(),
            capacity: capacity.max(1),
            usage: None,
        }
    }

    /// Also adds every finished request to `usage`.
    pub fn with_usage(mut self, usage: Arc<super::usage::Usage>) -> RequestLog {
        self.usage = Some(usage);
        self
    }

    pub fn push(&self, e: Arc<Entry>) {
        let error = !(200..300).contains(&e.status) || e.error.is_some();
        let secs = e.time / 1000;
        let at = stamp();
        let ring = self.rings.get_or(|| {
            Mutex::new(Inner {
                entries: VecDeque::with_capacity(self.capacity.min(4096)),
                traffic: Traffic::default(),
            })
        });
        let evicted = {
            let mut inner = ring.lock().unwrap_or_else(|e| e.into_inner());
            inner.traffic.record(secs, error);
            let q = &mut inner.entries;
            let evicted = (q.len() >= self.capacity).then(|| q.pop_front()).flatten();
            q.push_back((at, e));
            evicted
        };
        // Freed outside the lock: a reader may be waiting on it.
        drop(evicted);
    }

    /// The traffic series of all threads, added up (see [`Traffic::series`]).
    pub fn traffic(&self) -> Vec<Bucket> {
        let mut all = Traffic::default();
        for ring in self.rings.iter() {
            all.add(&ring.lock().unwrap_or_else(|e| e.into_inner()).traffic);
        }
        all.series()
    }

    /// Newest first, optionally only one trace id.
    pub fn recent(&self, trace_id: Option<&str>, limit: usize) -> Vec<Arc<Entry>> {
        self.matching(trace_id, &[], limit)
    }

    /// Newest first: only one trace id if given, and only entries whose metadata has every
    /// `(key, value)` of `metadata`.
    pub fn matching(
        &self,
        trace_id: Option<&str>,
        metadata: &[(String, String)],
        limit: usize,
    ) -> Vec<Arc<Entry>> {
        let has = |e: &Entry| {
            metadata.iter().all(|(k, v)| {
                e.metadata
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .is_some_and(|x| x == v)
            })
        };
        let mut found: Vec<(u64, Arc<Entry>)> = Vec::new();
        for ring in self.rings.iter() {
            let inner = ring.lock().unwrap_or_else(|e| e.into_inner());
            found.extend(
                inner
                    .entries
                    .iter()
                    .rev()
                    .filter(|(_, e)| trace_id.is_none_or(|t| &*e.trace_id == t) && has(e))
                    .take(limit)
                    .cloned(),
            );
        }
        found.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        found.into_iter().take(limit).map(|(_, e)| e).collect()
    }
}

/// Requests and errors per second over the last [`Traffic::WINDOW`] seconds, for the
/// status page's chart.
pub struct Traffic {
    buckets: VecDeque<Bucket>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    /// Unix seconds.
    pub t: u64,
    pub requests: u32,
    pub errors: u32,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            buckets: VecDeque::with_capacity(Traffic::WINDOW),
        }
    }
}

impl Traffic {
    pub const WINDOW: usize = 900;

    pub fn record(&mut self, unix_secs: u64, error: bool) {
        let q = &mut self.buckets;
        match q.back_mut() {
            Some(b) if b.t == unix_secs => {
                b.requests += 1;
                b.errors += error as u32;
            }
            _ => {
                q.push_back(Bucket {
                    t: unix_secs,
                    requests: 1,
                    errors: error as u32,
                });
                while q.len() > Traffic::WINDOW
                    || q.front()
                        .is_some_and(|f| f.t + (Traffic::WINDOW as u64) < unix_secs)
                {
                    q.pop_front();
                }
            }
        }
    }

    /// Adds another thread's series: counts of the same second are summed, and the result
    /// keeps the window that ends at the newest second of either.
    pub fn add(&mut self, other: &Traffic) {
        let mut by_second: BTreeMap<u64, Bucket> = self.buckets.iter().map(|b| (b.t, *b)).collect();
        for b in &other.buckets {
            let sum = by_second.entry(b.t).or_insert(Bucket {
                t: b.t,
                requests: 0,
                errors: 0,
            });
            sum.requests += b.requests;
            sum.errors += b.errors;
        }
        let newest = by_second.keys().next_back().copied().unwrap_or(0);
        self.buckets = by_second
            .into_values()
            .filter(|b| b.t + (Traffic::WINDOW as u64) >= newest)
            .collect();
        while self.buckets.len() > Traffic::WINDOW {
            self.buckets.pop_front();
        }
    }

    /// Seconds with traffic, oldest first (seconds without any are absent).
    pub fn series(&self) -> Vec<Bucket> {
        self.buckets.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Pricing {
        let p = |i, o, c| Price {
            input_per_mtok: i,
            output_per_mtok: o,
            cached_input_per_mtok: c,
        };
        [
            ("gpt-4o".into(), p(2.5, 10.0, Some(1.25))),
            ("gpt-4o-mini".into(), p(0.15, 0.6, None)),
            ("claude-3-5-sonnet".into(), p(3.0, 15.0, Some(0.3))),
            ("o1".into(), p(15.0, 60.0, None)),
        ]
        .into_iter()
        .collect()
    }

    fn entry(model: &str, prompt: u64, cached: u64, completion: u64) -> Entry {
        Entry {
            status: 200,
            model_requested: Some("asked".into()),
            model_used: Some(model.into()),
            prompt_tokens: prompt,
            cached_tokens: cached,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Entry::new(0, "".into(), "chat.completions")
        }
    }

    fn at(time: u64, trace: &str, status: u16) -> Arc<Entry> {
        Arc::new(Entry {
            status,
            ..Entry::new(time, trace.into(), "chat.completions")
        })
    }

    /// A draft is filled in where the log keeps it: the entry the log hands out is the very
    /// allocation the request wrote into (no copy at the end), with what was written.
    #[test]
    fn a_draft_is_logged_in_place_with_what_was_written() {
        let log = RequestLog::new(4);
        let mut draft = Draft::new(Entry::new(5_000, "t-draft".into(), "chat.completions"));
        draft.get().status = 201;
        draft.get().served_by = Some("targets[0]".into());
        let written: *const Entry = &*draft;
        log.finish(draft, &Pricing::default());
        let kept = log.recent(Some("t-draft"), 1);
        assert_eq!(kept.len(), 1);
        assert!(std::ptr::eq(Arc::as_ptr(&kept[0]), written));
        assert_eq!(kept[0].status, 201);
        assert_eq!(kept[0].served_by.as_deref(), Some("targets[0]"));
    }

    /// Each thread keeps its own ring; readers see all of them, newest first, filtered and
    /// cut to the limit, and each ring keeps at most `capacity` entries.
    #[test]
    fn the_rings_of_every_thread_read_as_one_log_newest_first() {
        let log = RequestLog::new(3);
        log.push(at(1_000, "main-1", 200));
        std::thread::scope(|s| {
            s.spawn(|| log.push(at(1_000, "other-1", 200)));
        });
        log.push(at(1_000, "main-2", 500));
        std::thread::scope(|s| {
            s.spawn(|| {
                log.push(at(2_000, "other-2", 200));
                log.push(at(2_000, "other-3", 200));
            });
        });
        let ids = |v: Vec<Arc<Entry>>| v.iter().map(|e| e.trace_id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(log.recent(None, 10)),
            ["other-3", "other-2", "main-2", "other-1", "main-1"]
        );
        assert_eq!(ids(log.recent(None, 2)), ["other-3", "other-2"]);
        assert_eq!(ids(log.recent(Some("main-1"), 10)), ["main-1"]);
        // A ring past its capacity drops its own oldest.
        for i in 0..3 {
            log.push(at(3_000, &format!("main-{}", 3 + i), 200));
        }
        let all = ids(log.recent(None, 10));
        assert_eq!(all.len(), 6, "{all:?}");
        assert!(
            !all.iter().any(|t| t == "main-1" || t == "main-2"),
            "{all:?}"
        );
        // The traffic series adds up the threads' seconds.
        let series: Vec<(u64, u32, u32)> = log
            .traffic()
            .iter()
            .map(|b| (b.t, b.requests, b.errors))
            .collect();
        assert_eq!(series, [(1, 3, 1), (2, 2, 0), (3, 3, 0)]);
    }

    #[test]
    fn traffic_of_two_threads_adds_up_within_the_window() {
        let mut a = Traffic::default();
        let mut b = Traffic::default();
        a.record(10, false);
        a.record(10, true);
        b.record(10, false);
        b.record(12, false);
        b.record(10 + Traffic::WINDOW as u64 + 1, false);
        a.add(&b);
        let s: Vec<(u64, u32, u32)> = a
            .series()
            .iter()
            .map(|x| (x.t, x.requests, x.errors))
            .collect();
        // Second 10 fell out of the window that ends at the newest second.
        assert_eq!(s, [(12, 1, 0), (10 + Traffic::WINDOW as u64 + 1, 1, 0)]);
    }

    #[test]
    fn a_model_is_priced_by_its_own_row_or_its_snapshot_base() {
        let t = table();
        let row = |m| price_row(&t, m).map(|(k, _)| &**k);
        assert_eq!(row("gpt-4o-mini"), Some("gpt-4o-mini"), "not gpt-4o's row");
        assert_eq!(row("gpt-4o"), Some("gpt-4o"));
        assert_eq!(row("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(row("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(row("claude-3-5-sonnet-20241022"), Some("claude-3-5-sonnet"));
        assert_eq!(row("claude-3-5-sonnet@20241022"), Some("claude-3-5-sonnet"));
        // Different models that merely start like a priced one.
        for other in [
            "gpt-4o-audio-preview",
            "gpt-4o-realtime-preview-2024-10-01",
            "o1-mini",
            "o1-2024-13-01",
            "gpt-4o-2024-08",
            "claude-3-5-sonnet-latest",
            "gpt-4",
            "",
        ] {
            assert_eq!(row(other), None, "{other}");
        }
    }

    #[test]
    fn unknown_models_cost_null_and_mini_is_not_billed_as_4o() {
        let t = table();
        let mut e = entry("gpt-4o-audio-preview", 1000, 0, 1000);
        e.price(&t);
        assert_eq!(e.cost_usd, None);
        assert_eq!(e.cost, None);

        let mut e = entry("gpt-4o-mini", 1_000_000, 0, 1_000_000);
        e.price(&t);
        assert_eq!(e.cost_usd, Some(0.15 + 0.6));
    }

    #[test]
    fn cached_prompt_tokens_use_the_cached_rate_when_there_is_one() {
        let t = table();
        let mut e = entry("gpt-4o-2024-08-06", 3_000_000, 2_000_000, 1_000_000);
        e.price(&t);
        let c = e.cost.clone().unwrap();
        assert_eq!(&*c.priced_as, "gpt-4o");
        assert_eq!(c.input_usd, 2.5);
        assert_eq!(c.cached_input_usd, 2.5);
        assert_eq!(c.output_usd, 10.0);
        assert_eq!(e.cost_usd, Some(15.0));

        // No cached rate: cached tokens cost the input rate, still shown apart.
        let mut e = entry("gpt-4o-mini", 2_000_000, 1_000_000, 0);
        e.price(&t);
        let c = e.cost.clone().unwrap();
        assert_eq!((c.input_usd, c.cached_input_usd), (0.15, 0.15));

        // A provider reporting more cached than prompt tokens cannot make a cost negative.
        let mut e = entry("gpt-4o", 10, 20, 0);
        e.price(&t);
        assert!(e.cost_usd.unwrap() >= 0.0);
    }

    #[test]
    fn the_catalog_prices_models_by_their_own_row_or_their_snapshots() {
        let mut table: Pricing = crate::config::catalog::catalog()
            .models
            .into_iter()
            .map(|(m, p)| {
                let price = Price {
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                    cached_input_per_mtok: p.cached_input_per_mtok,
                };
                (m.into(), price)
            })
            .collect();
        let row = |t: &Pricing, m: &str| price_row(t, m).map(|(k, _)| k.to_string());
        assert_eq!(row(&table, "gpt-4o-mini").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(row(&table, "gpt-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(
            row(&table, "gpt-4o-mini-2024-07-18").as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            row(&table, "claude-3-haiku-20240307").as_deref(),
            Some("claude-3-haiku")
        );
        assert_eq!(
            row(&table, "claude-3-5-sonnet@20241022").as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            row(&table, "gpt-4o-audio-preview"),
            None,
            "never another model's row"
        );
        assert_eq!(row(&table, "gpt-4"), None);
        // An operator's row wins over the catalog's.
        table.insert(
            "gpt-4o".into(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 1.0,
                cached_input_per_mtok: None,
            },
        );
        assert_eq!(price_row(&table, "gpt-4o").unwrap().1.input_per_mtok, 1.0);
    }
}
