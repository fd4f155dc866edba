//! Usage reports: per-hour aggregates of every finished request (requests, tokens, cost,
//! errors, a latency histogram), by gateway key, virtual key, model, config and metadata.
//! Bounded memory: at most [`RETENTION_HOURS`] hours, at most [`MAX_ROWS_PER_HOUR`] distinct
//! combinations per hour and [`MAX_ROWS`] in all (further ones are added to an `(other)` row),
//! and at most [`MAX_METADATA`] metadata pairs of at most [`MAX_VALUE`] bytes per row (clients
//! choose metadata, so a row's size is bounded here, not by them). Persisted as a
//! JSON snapshot (`[usage] path`), written atomically every minute and at shutdown, and read
//! back at start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

use super::requestlog::Entry;

/// Hours kept (35 days: a whole calendar month and some).
pub const RETENTION_HOURS: u64 = 35 * 24;
/// Distinct (key, virtual key, model, config, metadata) combinations kept per hour, and in all.
pub const MAX_ROWS_PER_HOUR: usize = 5_000;
pub const MAX_ROWS: usize = 50_000;
/// Metadata kept per row: the first pairs by name, values cut to this many bytes.
pub const MAX_METADATA: usize = 8;
pub const MAX_VALUE: usize = 64;
/// Latency histogram buckets: upper bounds in ms, doubling from 1 ms (the last is open).
const LATENCY_BUCKETS: usize = 24;

/// What one row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dims {
    pub key: Option<String>,
    pub virtual_key: Option<String>,
    pub model: Option<String>,
    pub config: Option<String>,
    /// Sorted `(name, value)` pairs of the request's metadata.
    pub metadata: Vec<(String, String)>,
}

/// Sums of one row (or of a report's group).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Requests per latency bucket (see [`LATENCY_BUCKETS`]).
    pub latency: Vec<u64>,
}

impl Sums {
    /// Counts one finished request.
    fn add_one(&mut self, e: &Entry) {
        self.requests += 1;
        self.errors += u64::from(!(200..300).contains(&e.status) || e.error.is_some());
        self.input_tokens += e.prompt_tokens;
        self.cached_tokens += e.cached_tokens;
        self.output_tokens += e.completion_tokens;
        self.cost_usd += e.cost_usd.unwrap_or(0.0);
        self.latency.resize(LATENCY_BUCKETS, 0);
        self.latency[bucket_of(e.latency_ms)] += 1;
    }

    fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.cached_tokens += other.cached_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.latency.resize(LATENCY_BUCKETS, 0);
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// The latency at quantile `q` (the upper bound of its bucket), in ms.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_bound(i));
            }
        }
        Some(bucket_bound(LATENCY_BUCKETS - 1))
    }
}

fn bucket_bound(i: usize) -> f64 {
    (1u64 << i) as f64
}

fn bucket_of(ms: f64) -> usize {
    (0..LATENCY_BUCKETS)
        .find(|&i| ms <= bucket_bound(i))
        .unwrap_or(LATENCY_BUCKETS - 1)
}

#[derive(Default, Serialize, Deserialize)]
struct Store {
    /// Hour number (Unix ms / 3,600,000) → rows.
    hours: BTreeMap<u64, Vec<(Dims, Sums)>>,
}

/// Where each (hour, dims fingerprint) row sits in its hour's list, for O(1) updates.
type Index = HashMap<(u64, u64), usize, foldhash::fast::RandomState>;

/// The row of `hour` whose dims pass `is`: through the index, else (a fingerprint collision)
/// by a scan of the hour's rows.
fn find(
    index: &Index,
    rows: &[(Dims, Sums)],
    hour: u64,
    fp: u64,
    is: impl Fn(&Dims) -> bool,
) -> Option<usize> {
    let i = *index.get(&(hour, fp))?;
    if rows.get(i).is_some_and(|(d, _)| is(d)) {
        return Some(i);
    }
    rows.iter().position(|(d, _)| is(d))
}

/// The fingerprint hasher: seeded at random per process (see [`fingerprint`]).
type Seed = foldhash::quality::RandomState;

/// One fingerprint for a row's dims, computed alike from owned [`Dims`] and from a request's
/// borrowed [`DimsOf`].
fn fingerprint<'a>(
    seed: &Seed,
    key: Option<&str>,
    virtual_key: Option<&str>,
    model: Option<&str>,
    config: Option<&str>,
    metadata: impl Iterator<Item = (&'a str, &'a str)>,
) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    // Randomly keyed: the dims are client-chosen (model names, metadata), and rows that share
    // a fingerprint are found by a scan, which a chosen collision must not make the norm.
    let mut h = seed.build_hasher();
    (key, virtual_key, model, config).hash(&mut h);
    for pair in metadata {
        pair.hash(&mut h);
    }
    h.finish()
}

impl Dims {
    fn fingerprint(&self, seed: &Seed) -> u64 {
        fingerprint(
            seed,
            self.key.as_deref(),
            self.virtual_key.as_deref(),
            self.model.as_deref(),
            self.config.as_deref(),
            self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// The row that takes requests once an hour (or the store) is full.
    fn other() -> Dims {
        Dims {
            key: Some("(other)".into()),
            virtual_key: None,
            model: None,
            config: None,
            metadata: Vec::new(),
        }
    }
}

/// A request's row dims, borrowed from its log entry.
struct DimsOf<'a> {
    key: Option<&'a str>,
    virtual_key: Option<&'a str>,
    model: Option<&'a str>,
    config: Option<&'a str>,
    metadata: Option<&'a BTreeMap<String, String>>,
}

impl<'a> DimsOf<'a> {
    fn of(e: &'a Entry) -> DimsOf<'a> {
        DimsOf {
            key: e.key.as_deref(),
            virtual_key: e.virtual_key.as_deref(),
            model: e.model_used.as_deref().or(e.model_requested.as_deref()),
            config: e.config.as_deref(),
            metadata: e.metadata.as_deref(),
        }
    }

    /// The metadata a row keeps: the first [`MAX_METADATA`] pairs by name, values cut.
    fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.metadata
            .into_iter()
            .flatten()
            .take(MAX_METADATA)
            .map(|(k, v)| (cut_str(k), cut_str(v)))
    }

    fn fingerprint(&self, seed: &Seed) -> u64 {
        fingerprint(
            seed,
            self.key,
            self.virtual_key,
            self.model,
            self.config,
            self.pairs(),
        )
    }

    fn matches(&self, d: &Dims) -> bool {
        d.key.as_deref() == self.key
            && d.virtual_key.as_deref() == self.virtual_key
            && d.model.as_deref() == self.model
            && d.config.as_deref() == self.config
            && d.metadata.len() == self.pairs().count()
            && d.metadata
                .iter()
                .zip(self.pairs())
                .all(|((k, v), (k2, v2))| k == k2 && v == v2)
    }

    fn owned(&self) -> Dims {
        Dims {
            key: self.key.map(str::to_owned),
            virtual_key: self.virtual_key.map(str::to_owned),
            model: self.model.map(str::to_owned),
            config: self.config.map(str::to_owned),
            metadata: self
                .pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

pub struct Usage {
    store: Mutex<(Store, Index)>,
    /// Finished requests not yet added to `store`, per thread ([`Usage::record_batched`]): a
    /// worker takes the shared lock once per [`BATCH`] requests instead of once per request.
    pending: ThreadLocal<Mutex<Vec<Arc<Entry>>>>,
    /// The key of the row fingerprints in the index.
    seed: Seed,
    path: Option<PathBuf>,
}

/// How a report groups rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    VirtualKey,
    Model,
    Config,
    Metadata(String),
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "virtual_key" => GroupBy::VirtualKey,
            "model" => GroupBy::Model,
            "config" => GroupBy::Config,
            m => GroupBy::Metadata(
                m.strip_prefix("metadata.")
                    .filter(|k| !k.is_empty())?
                    .into(),
            ),
        })
    }

    fn of(&self, d: &Dims) -> String {
        let v = match self {
            GroupBy::Key => d.key.clone(),
            GroupBy::VirtualKey => d.virtual_key.clone(),
            GroupBy::Model => d.model.clone(),
            GroupBy::Config => d.config.clone(),
            GroupBy::Metadata(k) => d
                .metadata
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone()),
        };
        v.unwrap_or_else(|| "(none)".into())
    }
}

/// One line of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Unix ms where the bucket starts.
    pub start: u64,
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

const HOUR: u64 = 3_600_000;

/// Requests a thread gathers before it takes the store's lock to add them.
const BATCH: usize = 32;

impl Usage {
    /// Usage aggregates, read back from `path` when given and present (an unreadable file is
    /// set aside and a warning logged: usage is a report, never a reason not to start).
    pub fn new(path: Option<PathBuf>) -> Usage {
        let store = path
            .as_deref()
            .and_then(|p| match std::fs::read(p) {
                Ok(raw) => match serde_json::from_slice::<Store>(&raw) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e,
                            "usage file unreadable: starting empty (the file is kept as .bad)");
                        let _ = std::fs::rename(p, p.with_extension("bad"));
                        None
                    }
                },
                Err(_) => None,
            })
            .unwrap_or_default();
        let seed = Seed::default();
        let mut index = Index::default();
        for (hour, rows) in &store.hours {
            for (i, (d, _)) in rows.iter().enumerate() {
                index.entry((*hour, d.fingerprint(&seed))).or_insert(i);
            }
        }
        Usage {
            store: Mutex::new((store, index)),
            pending: ThreadLocal::new(),
            seed,
            path,
        }
    }

    /// Adds one finished request now.
    pub fn record(&self, e: &Entry) {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        self.add(&mut guard, e);
    }

    /// Adds one finished request with the next [`BATCH`] of this thread's, or when a report or
    /// snapshot is taken, whichever comes first: reports always include it.
    pub fn record_batched(&self, e: &Arc<Entry>) {
        let mine = self
            .pending
            .get_or(|| Mutex::new(Vec::with_capacity(BATCH)));
        let full = {
            let mut pending = mine.lock().unwrap_or_else(|p| p.into_inner());
            pending.push(e.clone());
            pending.len() >= BATCH
        };
        if full {
            // The batch leaves the thread's buffer only under the store's lock (taken first,
            // as `flush` does): a report never runs between the two and misses it.
            let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
            // The next batch gets a buffer of its own size: no regrowing on the request path.
            let batch = std::mem::replace(
                &mut *mine.lock().unwrap_or_else(|p| p.into_inner()),
                Vec::with_capacity(BATCH),
            );
            for e in &batch {
                self.add(&mut guard, e);
            }
        }
    }

    /// Adds every thread's pending requests to the store (under its lock, which the caller
    /// holds, so a report sees each request exactly once).
    fn flush(&self, guard: &mut (Store, Index)) {
        for pending in self.pending.iter() {
            let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
            for e in &batch {
                self.add(guard, e);
            }
        }
    }

    /// The common case (a row that exists) looks the row up by the entry's borrowed fields:
    /// no allocation.
    fn add(&self, guard: &mut (Store, Index), e: &Entry) {
        let hour = e.time / HOUR;
        let dims = DimsOf::of(e);
        let fp = dims.fingerprint(&self.seed);
        let (store, index) = guard;
        let rows = store.hours.entry(hour).or_default();
        let at = find(index, rows, hour, fp, |d| dims.matches(d));
        let (at, fp, owned) = match at {
            Some(i) => (Some(i), fp, None),
            None if rows.len() >= MAX_ROWS_PER_HOUR || index.len() >= MAX_ROWS => {
                // Full: the request is added to the hour's `(other)` row.
                let other = Dims::other();
                let fp = other.fingerprint(&self.seed);
                let at = find(index, rows, hour, fp, |d| *d == other);
                (at, fp, Some(other))
            }
            None => (None, fp, Some(dims.owned())),
        };
        match (at, owned) {
            (Some(i), _) => rows[i].1.add_one(e),
            (None, owned) => {
                let mut sums = Sums::default();
                sums.add_one(e);
                // A fingerprint already indexed (another row's: a 64-bit collision) stays
                // with that row; `find` falls back to a scan for this one.
                index.entry((hour, fp)).or_insert(rows.len());
                rows.push((owned.unwrap_or_else(|| dims.owned()), sums));
            }
        }
        // Forget hours past the retention.
        let oldest = hour.saturating_sub(RETENTION_HOURS);
        while store
            .hours
            .first_key_value()
            .is_some_and(|(h, _)| *h < oldest)
        {
            if let Some((h, rows)) = store.hours.pop_first() {
                for (d, _) in rows {
                    index.remove(&(h, d.fingerprint(&self.seed)));
                }
            }
        }
    }

    /// Lines for `group` over `[from, to)` (Unix ms), one per bucket (`day` = 24 hours, from
    /// UTC midnight) and group value, oldest first.
    pub fn report(&self, group: &GroupBy, from: u64, to: u64, day: bool) -> Vec<Line> {
        let span = if day { 24 * HOUR } else { HOUR };
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        self.flush(&mut guard);
        let mut out: BTreeMap<(u64, String), Sums> = BTreeMap::new();
        for (hour, rows) in guard.0.hours.range(from / HOUR..to.div_ceil(HOUR)) {
            let start = hour * HOUR / span * span;
            for (d, s) in rows {
                out.entry((start, group.of(d))).or_default().add(s);
            }
        }
        out.into_iter()
            .map(|((start, group), s)| Line {
                start,
                group,
                requests: s.requests,
                errors: s.errors,
                input_tokens: s.input_tokens,
                cached_tokens: s.cached_tokens,
                output_tokens: s.output_tokens,
                cost_usd: s.cost_usd,
                p50_ms: s.latency_ms(0.5),
                p99_ms: s.latency_ms(0.99),
            })
            .collect()
    }

    /// Writes the snapshot (to a temporary file, then renamed over the old one).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let json = {
            let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
            self.flush(&mut guard);
            serde_json::to_vec(&guard.0).map_err(std::io::Error::other)?
        };
        write_atomically(path, &json)
    }
}

/// `s` cut to at most [`MAX_VALUE`] bytes, on a character boundary.
fn cut_str(s: &str) -> &str {
    let mut end = s.len().min(MAX_VALUE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A report as CSV (a header line, then one line per [`Line`]).
pub fn csv(lines: &[Line]) -> String {
    let mut out = String::from(
        "start,group,requests,errors,input_tokens,cached_tokens,output_tokens,cost_usd,p50_ms,p99_ms\n",
    );
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            l.start,
            quote(&l.group),
            l.requests,
            l.errors,
            l.input_tokens,
            l.cached_tokens,
            l.output_tokens,
            l.cost_usd,
            opt(l.p50_ms),
            opt(l.p99_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: u64, key: &str, model: &str, cost: f64, latency: f64, status: u16) -> Entry {
        let mut e = Entry::new(time, "t".into(), "chat.completions");
        e.key = Some(key.into());
        e.model_used = Some(model.into());
        e.cost_usd = Some(cost);
        e.latency_ms = latency;
        e.status = status;
        e.prompt_tokens = 10;
        e.completion_tokens = 5;
        e
    }

    #[test]
    fn a_request_finds_its_row_by_borrowed_dims_and_collisions_fall_back_to_a_scan() {
        // The borrowed view of a request and the row it creates agree, metadata cut included.
        let mut e = entry(0, "k", "m", 0.0, 1.0, 200);
        let long = "é".repeat(40); // 80 bytes: cut to 64 on a character boundary
        e.metadata = Some(std::sync::Arc::new(
            (0..12)
                .map(|i| (format!("n{i:02}"), long.clone()))
                .collect(),
        ));
        let of = DimsOf::of(&e);
        let owned = of.owned();
        assert_eq!(owned.metadata.len(), MAX_METADATA);
        assert_eq!(owned.metadata[0].1.len(), 64);
        assert!(of.matches(&owned));
        let seed = Seed::default();
        assert_eq!(of.fingerprint(&seed), owned.fingerprint(&seed));
        let e2 = entry(0, "k", "m2", 0.0, 1.0, 200);
        assert!(!DimsOf::of(&e2).matches(&owned));

        // Two rows under one fingerprint: the index names the first, a scan finds the second.
        let a = Dims::other();
        let rows = vec![
            (a.clone(), Sums::default()),
            (owned.clone(), Sums::default()),
        ];
        let mut index = Index::default();
        index.insert((1, 7), 0);
        assert_eq!(find(&index, &rows, 1, 7, |d| *d == a), Some(0));
        assert_eq!(find(&index, &rows, 1, 7, |d| of.matches(d)), Some(1));
        assert_eq!(find(&index, &rows, 1, 8, |d| *d == a), None);
        assert_eq!(find(&index, &rows, 2, 7, |d| *d == a), None);
    }

    /// Batched requests from several threads: each counts exactly once, in a report taken
    /// before any batch filled, in one taken after some did, and in the saved snapshot.
    #[test]
    fn batched_requests_from_every_thread_are_in_every_report_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let u = Usage::new(Some(path.clone()));
        let t0 = 2_000 * HOUR;
        let requests = |u: &Usage| -> u64 {
            u.report(&GroupBy::Key, t0, t0 + HOUR, false)
                .iter()
                .map(|l| l.requests)
                .sum()
        };
        let send = |u: &Usage, n: usize, key: &'static str| {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for i in 0..n {
                            u.record_batched(&Arc::new(entry(
                                t0 + i as u64,
                                key,
                                "m",
                                0.1,
                                2.0,
                                200,
                            )));
                        }
                    });
                }
            });
        };
        send(&u, 3, "a");
        assert_eq!(
            requests(&u),
            6,
            "pending requests are flushed by the report"
        );
        assert_eq!(requests(&u), 6, "and counted once");
        send(&u, BATCH + 5, "b");
        assert_eq!(requests(&u), 6 + 2 * (BATCH as u64 + 5));
        send(&u, 1, "c");
        u.save().unwrap();
        let again = Usage::new(Some(path));
        assert_eq!(requests(&again), 6 + 2 * (BATCH as u64 + 5) + 2);
    }

    #[test]
    fn groups_buckets_quantiles_persistence_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let u = Usage::new(Some(path.clone()));
        let t0 = 1_000 * HOUR;
        for i in 0..10 {
            u.record(&entry(t0 + i, "a", "m1", 0.5, 3.0, 200));
        }
        u.record(&entry(t0 + HOUR, "b", "m2", 1.0, 900.0, 500));
        let by_key = u.report(&GroupBy::Key, t0, t0 + 2 * HOUR, false);
        assert_eq!(by_key.len(), 2);
        assert_eq!((by_key[0].group.as_str(), by_key[0].requests), ("a", 10));
        assert_eq!(by_key[0].cost_usd, 5.0);
        assert_eq!(by_key[0].p50_ms, Some(4.0));
        assert_eq!((by_key[1].errors, by_key[1].p99_ms), (1, Some(1024.0)));
        let daily = u.report(&GroupBy::Model, t0, t0 + 2 * HOUR, true);
        assert_eq!(daily.iter().map(|l| l.requests).sum::<u64>(), 11);
        assert!(daily.iter().all(|l| l.start % (24 * HOUR) == 0));
        assert!(u
            .report(&GroupBy::Key, t0 + 2 * HOUR, t0 + 3 * HOUR, false)
            .is_empty());
        // Saved and read back.
        u.save().unwrap();
        let back = Usage::new(Some(path.clone()));
        assert_eq!(
            back.report(&GroupBy::Key, t0, t0 + 2 * HOUR, false)[0].requests,
            10
        );
        // CSV quotes what needs it.
        let mut l = by_key[0].clone();
        l.group = "x,\"y\"".into();
        assert!(csv(&[l]).contains("\"x,\"\"y\"\"\""));
        // Old hours are forgotten; a garbage file is set aside.
        u.record(&entry(
            t0 + (RETENTION_HOURS + 5) * HOUR,
            "c",
            "m",
            0.0,
            1.0,
            200,
        ));
        assert!(u.report(&GroupBy::Key, t0, t0 + 2 * HOUR, false).is_empty());
        std::fs::write(&path, b"garbage").unwrap();
        let empty = Usage::new(Some(path.clone()));
        assert!(empty
            .report(&GroupBy::Key, 0, u64::MAX / 2, false)
            .is_empty());
        assert!(path.with_extension("bad").exists());
    }

    #[test]
    fn client_metadata_cannot_grow_a_row() {
        let u = Usage::new(None);
        let mut e = entry(0, "k", "m", 0.0, 1.0, 200);
        let meta: std::collections::BTreeMap<String, String> = (0..64)
            .map(|i| (format!("k{i:02}"), "é".repeat(300)))
            .collect();
        e.metadata = Some(std::sync::Arc::new(meta));
        u.record(&e);
        let guard = u.store.lock().unwrap();
        let (dims, _) = &guard.0.hours[&0][0];
        assert_eq!(dims.metadata.len(), MAX_METADATA);
        assert!(dims.metadata.iter().all(|(_, v)| v.len() <= MAX_VALUE));
    }

    #[test]
    fn rows_per_hour_are_bounded() {
        let u = Usage::new(None);
        for i in 0..(MAX_ROWS_PER_HOUR + 50) {
            u.record(&entry(0, &format!("k{i}"), "m", 0.0, 1.0, 200));
        }
        let lines = u.report(&GroupBy::Key, 0, HOUR, false);
        assert_eq!(lines.len(), MAX_ROWS_PER_HOUR + 1);
        assert_eq!(
            lines
                .iter()
                .find(|l| l.group == "(other)")
                .unwrap()
                .requests,
            50
        );
    }
}
