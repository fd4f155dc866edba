//! `loadgen`: the load tool of the llmux benchmark harness (`bench/run.sh`). Loopback only by
//! intent: it refuses any URL whose host is not a 127.0.0.0/8 address or `localhost`.
//!
//! Every run is bounded in time (a duration, a count, per-request timeouts) and prints one JSON
//! object on stdout. Latencies are in microseconds.
//!
//! ```text
//! loadgen rate   --url URL --rps R --duration-s D [--conns C]     fixed-rate (open-loop per connection, wrk2-style)
//!                [--url-b URL [--label-b L] [--slice-ms 200]]    … alternating between two targets
//! loadgen closed --url URL --conns C --duration-s D               closed-loop max throughput
//! loadgen stream --url URL --concurrency C --count N [--expect-chunks K]   SSE TTFT / total time
//! loadgen hold   --url URL --streams N [--pid P]... [--hold-ms H] open N streams, sample RSS, drop them
//! loadgen sse-server --listen 127.0.0.1:PORT [--chunks 50] [--interval-ms 10] [--max-s 900]
//! common: [--body S | --body-file F] [-H 'name: value']... [--timeout-ms T] [--threads T] [--label L]
//! ```
//!
//! `rate`: connection k sends requests k, k+C, k+2C, … each at its scheduled time
//! `start + i/R` (requests not sent by the end of the duration are reported as `unsent`).
//! `latency_us` runs from the actual send; `corrected_us` adds the time a request waited
//! behind a slow predecessor on its connection (coordinated omission, as wrk2 counts it), but
//! not the up-to-1 ms slack of tokio's millisecond timer when the connection was idle.
//! With `--url-b`, each connection also connects to the second target, and each request goes
//! to `--url` when its scheduled time falls in an even slice of `--slice-ms` (counted from the
//! start) and to `--url-b` in an odd one: the two are compared under the same schedule, with
//! any drift of the machine slower than a slice hitting both alike. The second target's
//! numbers are under `b` (its `achieved_rps` over its half of the time); `slice_p50_diff_us`
//! compares each even slice's p50 with the odd slice right after it (b − a).
//!
//! `stream`: TTFT is the time from sending the request to the first SSE `data:` event whose
//! `choices[0].delta.content` is a non-empty string; `total` to the end of the body. A stream
//! counts as ok when the status is 2xx and `data: [DONE]` arrived.
//!
//! `hold`: opens N streams at once (connects limited to `--connect-parallel` at a time), waits
//! until every stream has its first content (or `--open-timeout-ms`), samples VmRSS/VmHWM of
//! each `--pid` for `--hold-ms`, then drops every stream.
//!
//! `sse-server`: answers every request with an OpenAI-style chat stream (a role delta, `--chunks`
//! content deltas each `--interval-ms` apart, a finish chunk, `[DONE]`), with TCP_NODELAY on its
//! sockets, so that stream timings are not shaped by Nagle's algorithm meeting delayed ACKs (the
//! mock, like actix-web by default, does not set TCP_NODELAY). Exits after `--max-s`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self as client_http1, SendRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{watch, Barrier, Semaphore};

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    mode: String,
    map: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let mode = it
            .next()
            .ok_or("usage: loadgen rate|closed|stream|hold --url URL ...")?;
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        while let Some(k) = it.next() {
            let key = match k.as_str() {
                "-H" => "header".to_owned(),
                k if k.starts_with("--") => k[2..].to_owned(),
                other => return Err(format!("unexpected argument `{other}`")),
            };
            let v = it.next().ok_or_else(|| format!("`{k}` needs a value"))?;
            map.entry(key).or_default().push(v);
        }
        Ok(Args { mode, map })
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).and_then(|v| v.last()).map(String::as_str)
    }

    fn all(&self, k: &str) -> Vec<String> {
        self.map.get(k).cloned().unwrap_or_default()
    }

    fn num<T: FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{k}: `{v}` is not a valid number")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Target and connections

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Target {
    fn from_args(a: &Args) -> Result<Target, String> {
        Target::for_url(a, a.get("url").ok_or("--url is required")?)
    }

    /// `url` with the body and headers of the other arguments.
    fn for_url(a: &Args, url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| format!("no IPv4 address for {authority}"))?;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {}
            ip => return Err(format!("refusing non-loopback target {ip}: loopback only")),
        }
        let body = if let Some(f) = a.get("body-file") {
            std::fs::read(f).map_err(|e| format!("--body-file {f}: {e}"))?
        } else {
            a.get("body").unwrap_or("").as_bytes().to_vec()
        };
        let method = match a.get("method") {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(|e| format!("--method: {e}"))?,
            None if body.is_empty() => Method::GET,
            None => Method::POST,
        };
        let mut headers = Vec::new();
        let mut has_ct = false;
        for h in a.all("header") {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("header `{h}` is not `name: value`"))?;
            let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| e.to_string())?;
            has_ct |= name == hyper::header::CONTENT_TYPE;
            let value = HeaderValue::from_str(v.trim()).map_err(|e| e.to_string())?;
            headers.push((name, value));
        }
        if !has_ct && !body.is_empty() {
            headers.push((
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        Ok(Target {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
            method,
            headers,
            body: Bytes::from(body),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(hyper::header::HOST, self.host.as_str());
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone()))
            .expect("request from validated parts")
    }
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> Result<Conn, String> {
    let s = TcpStream::connect(t.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let (sender, conn) = client_http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ErrKind {
    Connect,
    Io,
    Timeout,
}

impl ErrKind {
    fn name(self) -> &'static str {
        match self {
            ErrKind::Connect => "connect",
            ErrKind::Io => "io",
            ErrKind::Timeout => "timeout",
        }
    }
}

/// Sends one request on `conn` (reconnecting if it is closed) and returns the response head.
async fn send(t: &Target, conn: &mut Option<Conn>) -> Result<Response<Incoming>, ErrKind> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect(t).await.map_err(|_| ErrKind::Connect)?);
    }
    let c = conn.as_mut().expect("connection just ensured");
    if c.ready().await.is_err() {
        *conn = Some(connect(t).await.map_err(|_| ErrKind::Connect)?);
    }
    let c = conn.as_mut().expect("connection just ensured");
    c.send_request(t.request()).await.map_err(|_| ErrKind::Io)
}

/// One whole request; returns the status.
async fn one_request(t: &Target, conn: &mut Option<Conn>) -> Result<u16, ErrKind> {
    let resp = send(t, conn).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|_| ErrKind::Io)?;
    Ok(status)
}

// ---------------------------------------------------------------------------------------------
// Recording

#[derive(Default)]
struct Rec {
    lat: Vec<u64>,
    corr: Vec<u64>,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrKind, u64>,
}

impl Rec {
    fn merge(&mut self, o: Rec) {
        self.lat.extend(o.lat);
        self.corr.extend(o.corr);
        self.ok += o.ok;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn non2xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn errors_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.errors {
            m.insert(k.name().into(), json!(v));
        }
        m.insert("non2xx".into(), json!(self.non2xx()));
        m.insert(
            "total".into(),
            json!(self.errors.values().sum::<u64>() + self.non2xx()),
        );
        Value::Object(m)
    }

    fn statuses_json(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Value::Object(m)
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

fn percentiles(v: &mut [u64]) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_unstable();
    let n = v.len();
    let at = |p: f64| -> u64 {
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        v[i.clamp(1, n) - 1]
    };
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    json!({
        "n": n,
        "p50": at(50.0),
        "p90": at(90.0),
        "p99": at(99.0),
        "p999": at(99.9),
        "max": v[n - 1],
        "mean": mean.round() as u64,
    })
}

// ---------------------------------------------------------------------------------------------
// rate / closed

async fn rate(a: &Args, closed: bool) -> Result<Value, String> {
    // With `--url-b`, the schedule alternates between the two targets every `--slice-ms`:
    // slices 0, 2, 4, … go to `--url`, 1, 3, 5, … to `--url-b`.
    let mut targets = vec![Arc::new(Target::from_args(a)?)];
    if let Some(b) = a.get("url-b") {
        if closed {
            return Err("--url-b is for rate mode only".into());
        }
        targets.push(Arc::new(Target::for_url(a, b)?));
    }
    let slice = Duration::from_millis(a.num("slice-ms", 200)?);
    if targets.len() == 2 && slice.is_zero() {
        return Err("--slice-ms must be > 0".into());
    }
    let sides = targets.len();
    let conns: usize = a.num("conns", 64)?;
    let dur = Duration::from_secs_f64(a.num("duration-s", 5.0)?);
    let timeout = Duration::from_millis(a.num("timeout-ms", 5000)?);
    let rps: f64 = if closed { 0.0 } else { a.num("rps", 1000.0)? };
    if !closed && rps <= 0.0 {
        return Err("--rps must be > 0".into());
    }
    if conns == 0 {
        return Err("--conns must be > 0".into());
    }
    let total: u64 = if closed {
        u64::MAX
    } else {
        (rps * dur.as_secs_f64()).round() as u64
    };
    // Every worker connects first; the clock starts when all are connected.
    let barrier = Arc::new(Barrier::new(conns + 1));
    let start_slot = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::with_capacity(conns);
    for k in 0..conns {
        let targets = targets.clone();
        let barrier = barrier.clone();
        let start_slot = start_slot.clone();
        handles.push(tokio::spawn(async move {
            let mut recs: Vec<Rec> = (0..sides).map(|_| Rec::default()).collect();
            // (slice, latency) of every ok request, for the per-slice comparison.
            let mut by_slice: Vec<(u64, u64)> = Vec::new();
            let mut conn = Vec::with_capacity(sides);
            for t in &targets {
                conn.push(connect(t).await.ok());
            }
            barrier.wait().await;
            let start = *start_slot
                .get()
                .expect("start set before the barrier opens");
            let end = start + dur;
            let mut i = k as u64;
            // When the previous request on this connection ended after this one's scheduled
            // time, the wait is real queueing (counted in `corrected_us`); otherwise any gap
            // between schedule and send is timer slack and is not counted.
            let mut prev_done = vec![start; sides];
            loop {
                let sched = if closed {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    now
                } else {
                    // A server slower than the rate leaves the rest unsent at the end.
                    if i >= total || Instant::now() >= end {
                        break;
                    }
                    let s = start + Duration::from_secs_f64(i as f64 / rps);
                    tokio::time::sleep_until(s.into()).await;
                    s
                };
                let slice_no = if sides == 2 {
                    (sched.saturating_duration_since(start).as_nanos() / slice.as_nanos()) as u64
                } else {
                    0
                };
                let side = (slice_no % sides as u64) as usize;
                let (t, rec, conn) = (&targets[side], &mut recs[side], &mut conn[side]);
                let sent = Instant::now();
                let res = tokio::time::timeout(timeout, one_request(t, conn)).await;
                let done = Instant::now();
                let queued = prev_done[side].saturating_duration_since(sched);
                prev_done[side] = done;
                match res {
                    Ok(Ok(status)) => {
                        *rec.statuses.entry(status).or_default() += 1;
                        if (200..300).contains(&status) {
                            rec.ok += 1;
                            rec.lat.push(micros(done - sent));
                            rec.corr.push(micros(done - sent + queued));
                            if sides == 2 {
                                by_slice.push((slice_no, micros(done - sent)));
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        *rec.errors.entry(e).or_default() += 1;
                        *conn = None;
                        if e == ErrKind::Connect {
                            // Do not spin on a dead server.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    Err(_) => {
                        *rec.errors.entry(ErrKind::Timeout).or_default() += 1;
                        *conn = None;
                    }
                }
                i += conns as u64;
            }
            (recs, by_slice)
        }));
    }
    let _ = start_slot.set(Instant::now() + Duration::from_millis(20));
    barrier.wait().await;
    let start = *start_slot.get().expect("set above");
    let mut recs: Vec<Rec> = (0..sides).map(|_| Rec::default()).collect();
    let mut by_slice: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for h in handles {
        let (rs, bs) = h.await.map_err(|e| e.to_string())?;
        for (rec, r) in recs.iter_mut().zip(rs) {
            rec.merge(r);
        }
        for (s, l) in bs {
            by_slice.entry(s).or_default().push(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let measured = if closed { dur.as_secs_f64() } else { elapsed };
    let side_json = |rec: &mut Rec, url: Option<&str>, label: Option<&str>, share: f64| {
        let mut out = json!({
            "label": label.unwrap_or(""),
            "url": url,
            "sent": rec.ok + rec.non2xx() + rec.errors.values().sum::<u64>(),
            "ok": rec.ok,
            "achieved_rps": rec.ok as f64 / (measured * share),
            "errors": rec.errors_json(),
            "statuses": rec.statuses_json(),
            "latency_us": percentiles(&mut rec.lat),
        });
        if !closed {
            out["corrected_us"] = percentiles(&mut rec.corr);
        }
        out
    };
    let share = 1.0 / sides as f64;
    let mut out = side_json(&mut recs[0], a.get("url"), a.get("label"), share);
    out["mode"] = json!(if closed { "closed" } else { "rate" });
    out["conns"] = json!(conns);
    out["duration_s"] = json!(dur.as_secs_f64());
    out["elapsed_s"] = json!(elapsed);
    if !closed {
        let sent: u64 = recs
            .iter()
            .map(|r| r.ok + r.non2xx() + r.errors.values().sum::<u64>())
            .sum();
        out["target_rps"] = json!(rps);
        out["unsent"] = json!(total.saturating_sub(sent));
    }
    if sides == 2 {
        out["slice_ms"] = json!(slice.as_millis() as u64);
        out["b"] = side_json(&mut recs[1], a.get("url-b"), a.get("label-b"), share);
        // Each slice of `--url` against the `--url-b` slice right after it: p50 (b − a).
        let mut diffs: Vec<i64> = Vec::new();
        let p50 = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[(v.len() - 1) / 2] as i64
        };
        let mut s = 0;
        while let (Some(x), Some(y)) = (by_slice.get(&s).cloned(), by_slice.get(&(s + 1)).cloned())
        {
            let (mut x, mut y) = (x, y);
            if !x.is_empty() && !y.is_empty() {
                diffs.push(p50(&mut y) - p50(&mut x));
            }
            s += 2;
        }
        diffs.sort_unstable();
        out["slice_pairs"] = json!(diffs.len());
        out["slice_p50_diff_us"] = json!({
            "median": diffs.get(diffs.len().saturating_sub(1) / 2),
            "min": diffs.first(),
            "max": diffs.last(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// SSE streams

/// Reads SSE lines from a body, calling back on content events and `[DONE]`.
struct SseScan {
    buf: BytesMut,
    chunks: u64,
    done: bool,
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    /// Longest wait between two consecutive content events.
    max_gap: Duration,
}

impl SseScan {
    fn new() -> Self {
        SseScan {
            buf: BytesMut::new(),
            chunks: 0,
            done: false,
            first_content: None,
            last_content: None,
            max_gap: Duration::ZERO,
        }
    }

    /// Returns true when this call saw the first content event.
    fn feed(&mut self, data: &[u8]) -> bool {
        let before = self.first_content.is_some();
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line = self.buf.split_to(pos + 1);
            let mut line = &line[..pos];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let Some(rest) = line.strip_prefix(b"data:") else {
                continue;
            };
            let rest = rest.trim_ascii();
            if rest == b"[DONE]" {
                self.done = true;
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                let content = v
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if content {
                    let now = Instant::now();
                    self.chunks += 1;
                    if self.first_content.is_none() {
                        self.first_content = Some(now);
                    }
                    if let Some(last) = self.last_content {
                        self.max_gap = self.max_gap.max(now - last);
                    }
                    self.last_content = Some(now);
                }
            }
        }
        !before && self.first_content.is_some()
    }
}

struct StreamResult {
    ttft: Option<Duration>,
    max_gap: Duration,
    total: Duration,
    chunks: u64,
    done: bool,
    status: u16,
}

async fn one_stream(t: &Target, conn: &mut Option<Conn>) -> Result<StreamResult, ErrKind> {
    let t0 = Instant::now();
    let resp = send(t, conn).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut scan = SseScan::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ErrKind::Io)?;
        if let Ok(data) = frame.into_data() {
            scan.feed(&data);
        }
    }
    Ok(StreamResult {
        ttft: scan.first_content.map(|f| f - t0),
        max_gap: scan.max_gap,
        total: t0.elapsed(),
        chunks: scan.chunks,
        done: scan.done,
        status,
    })
}

async fn stream(a: &Args) -> Result<Value, String> {
    let t = Arc::new(Target::from_args(a)?);
    let concurrency: usize = a.num("concurrency", 1)?;
    let count: usize = a.num("count", concurrency)?;
    let expect: u64 = a.num("expect-chunks", 0)?;
    let timeout = Duration::from_millis(a.num("timeout-ms", 60_000)?);
    if concurrency == 0 {
        return Err("--concurrency must be > 0".into());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (t, next, barrier) = (t.clone(), next.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let mut conn = connect(&t).await.ok();
            barrier.wait().await;
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let r = tokio::time::timeout(timeout, one_stream(&t, &mut conn)).await;
                let r = match r {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(ErrKind::Timeout),
                };
                if r.is_err() {
                    conn = None;
                }
                out.push(r);
            }
            out
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let (mut ttft, mut total, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    let mut rec = Rec::default();
    let (mut incomplete, mut mismatch, mut chunks_sum) = (0u64, 0u64, 0u64);
    for h in handles {
        for r in h.await.map_err(|e| e.to_string())? {
            match r {
                Ok(r) => {
                    *rec.statuses.entry(r.status).or_default() += 1;
                    if !(200..300).contains(&r.status) {
                        continue;
                    }
                    if !r.done {
                        incomplete += 1;
                        continue;
                    }
                    rec.ok += 1;
                    chunks_sum += r.chunks;
                    if expect > 0 && r.chunks != expect {
                        mismatch += 1;
                    }
                    if let Some(f) = r.ttft {
                        ttft.push(micros(f));
                    }
                    total.push(micros(r.total));
                    gaps.push(micros(r.max_gap));
                }
                Err(e) => *rec.errors.entry(e).or_default() += 1,
            }
        }
    }
    let mut errors = rec.errors_json();
    errors["incomplete"] = json!(incomplete);
    errors["chunk_mismatch"] = json!(mismatch);
    errors["total"] = json!(errors["total"].as_u64().unwrap_or(0) + incomplete + mismatch);
    Ok(json!({
        "mode": "stream",
        "label": a.get("label").unwrap_or(""),
        "url": a.get("url"),
        "concurrency": concurrency,
        "count": count,
        "ok": rec.ok,
        "elapsed_s": start.elapsed().as_secs_f64(),
        "mean_chunks": if rec.ok > 0 { chunks_sum as f64 / rec.ok as f64 } else { 0.0 },
        "errors": errors,
        "statuses": rec.statuses_json(),
        "ttft_us": percentiles(&mut ttft),
        "total_us": percentiles(&mut total),
        "max_gap_us": percentiles(&mut gaps),
    }))
}

// ---------------------------------------------------------------------------------------------
// hold: many open streams, RSS sampling

fn proc_mem_kb(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn hold(a: &Args) -> Result<Value, String> {
    let t = Arc::new(Target::from_args(a)?);
    let n: usize = a.num("streams", 1000)?;
    let hold = Duration::from_millis(a.num("hold-ms", 3000)?);
    let open_timeout = Duration::from_millis(a.num("open-timeout-ms", 30_000)?);
    let parallel: usize = a.num("connect-parallel", 256)?;
    let pids: Vec<u32> = a
        .all("pid")
        .iter()
        .map(|p| p.parse().map_err(|_| format!("--pid {p}: not a pid")))
        .collect::<Result<_, _>>()?;
    let before: Vec<Value> = pids
        .iter()
        .map(|&p| json!({"pid": p, "rss_kb": proc_mem_kb(p).map(|m| m.0)}))
        .collect();

    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<Duration, String>>();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, sem, mut stop, opened) =
            (t.clone(), sem.clone(), stop_rx.clone(), opened_tx.clone());
        handles.push(tokio::spawn(async move {
            let conn = {
                let _permit = sem.acquire().await;
                tokio::select! {
                    c = connect(&t) => c,
                    _ = stop.changed() => return,
                }
            };
            let mut conn = match conn {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = opened.send(Err(format!("connect: {e}")));
                    return;
                }
            };
            let t0 = Instant::now();
            let run = async {
                let resp = send(&t, &mut conn).await.map_err(|e| e.name().to_owned())?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status().as_u16()));
                }
                let mut body = resp.into_body();
                let mut scan = SseScan::new();
                let mut reported = false;
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|_| "io".to_owned())?;
                    if let Ok(data) = frame.into_data() {
                        if scan.feed(&data) && !reported {
                            reported = true;
                            let _ = opened.send(Ok(t0.elapsed()));
                        }
                    }
                }
                if reported {
                    Ok(())
                } else {
                    Err("stream ended before content".to_owned())
                }
            };
            tokio::select! {
                r = run => {
                    if let Err(e) = r {
                        let _ = opened.send(Err(e));
                    }
                }
                _ = stop.changed() => {}
            }
        }));
    }
    drop(opened_tx);

    let mut ttft = Vec::with_capacity(n);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + open_timeout;
    let mut peak: BTreeMap<u32, u64> = BTreeMap::new();
    let sample = |peak: &mut BTreeMap<u32, u64>| {
        for &p in &pids {
            if let Some((rss, _)) = proc_mem_kb(p) {
                let e = peak.entry(p).or_default();
                *e = (*e).max(rss);
            }
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while ttft.len() + (failures.values().sum::<u64>() as usize) < n {
        tokio::select! {
            m = opened_rx.recv() => match m {
                Some(Ok(d)) => ttft.push(micros(d)),
                Some(Err(e)) => *failures.entry(e).or_default() += 1,
                None => break,
            },
            _ = tick.tick() => sample(&mut peak),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    let opened = ttft.len();
    // Hold: every stream that opened is still open (the mock's streams outlast this).
    let hold_end = Instant::now() + hold;
    let mut at_open = BTreeMap::new();
    for &p in &pids {
        at_open.insert(p, proc_mem_kb(p));
    }
    while Instant::now() < hold_end {
        sample(&mut peak);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Streams that ended or failed during the hold.
    while let Ok(m) = opened_rx.try_recv() {
        if let Err(e) = m {
            *failures.entry(format!("during hold: {e}")).or_default() += 1;
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for h in handles {
            let _ = h.await;
        }
    })
    .await;
    let procs: Vec<Value> = pids
        .iter()
        .map(|p| {
            let (rss, hwm) = at_open.get(p).copied().flatten().unwrap_or((0, 0));
            json!({"pid": p, "rss_kb_all_open": rss, "hwm_kb": hwm,
                   "peak_rss_kb_sampled": peak.get(p).copied().unwrap_or(0)})
        })
        .collect();
    Ok(json!({
        "mode": "hold",
        "label": a.get("label").unwrap_or(""),
        "url": a.get("url"),
        "streams": n,
        "opened": opened,
        "failed": failures.values().sum::<u64>(),
        "failures": failures,
        "open_s": open_s,
        "hold_s": hold.as_secs_f64(),
        "ttft_us": percentiles(&mut ttft),
        "before": before,
        "procs": procs,
    }))
}

// ---------------------------------------------------------------------------------------------
// sse-server: an OpenAI-style streaming upstream that sets TCP_NODELAY

/// A timed SSE body: each frame waits its delay, then is sent as its own write.
struct SseBody {
    frames: std::collections::VecDeque<(Duration, Bytes)>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                let (_, b) = this
                    .frames
                    .pop_front()
                    .expect("a frame waits behind the sleep");
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(b))));
            }
            match this.frames.front() {
                None => return Poll::Ready(None),
                Some((d, _)) if d.is_zero() => {
                    let (_, b) = this.frames.pop_front().expect("front exists");
                    return Poll::Ready(Some(Ok(hyper::body::Frame::data(b))));
                }
                Some((d, _)) => this.sleep = Some(Box::pin(tokio::time::sleep(*d))),
            }
        }
    }
}

fn sse_frames(chunks: usize, interval: Duration) -> std::collections::VecDeque<(Duration, Bytes)> {
    let event = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-sse", "object": "chat.completion.chunk", "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        Bytes::from(format!("data: {v}\n\n"))
    };
    let mut f = std::collections::VecDeque::with_capacity(chunks + 3);
    f.push_back((
        Duration::ZERO,
        event(json!({"role": "assistant", "content": ""}), Value::Null),
    ));
    for i in 0..chunks {
        f.push_back((
            interval,
            event(json!({"content": format!("tok{i} ")}), Value::Null),
        ));
    }
    let mut tail = event(json!({}), json!("stop")).to_vec();
    tail.extend_from_slice(b"data: [DONE]\n\n");
    f.push_back((Duration::ZERO, Bytes::from(tail)));
    f
}

async fn sse_server(a: &Args) -> Result<Value, String> {
    let listen = a.get("listen").unwrap_or("127.0.0.1:0");
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("refusing to listen on non-loopback {addr}"));
    }
    let chunks: usize = a.num("chunks", 50)?;
    let interval = Duration::from_millis(a.num("interval-ms", 10)?);
    let max = Duration::from_secs(a.num("max-s", 900)?);
    // A deep accept queue: a proxy with a cold pool opens hundreds of upstream connections at
    // once, and tokio's default backlog (128) would drop SYNs (1 s retransmits) in the test rig.
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    let _ = socket.set_reuseaddr(true);
    socket.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let listener = socket
        .listen(4096)
        .map_err(|e| format!("listen {addr}: {e}"))?;
    println!(
        "loadgen sse-server listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let accept = async {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header(hyper::header::CONTENT_TYPE, "text/event-stream")
                            .header(hyper::header::CACHE_CONTROL, "no-cache")
                            .body(SseBody {
                                frames: sse_frames(chunks, interval),
                                sleep: None,
                            })
                            .expect("static response parts"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    };
    // Runs until killed, or `--max-s` at most.
    let _ = tokio::time::timeout(max, accept).await;
    Ok(json!({"mode": "sse-server", "stopped_after_s": max.as_secs()}))
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let a = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let threads: usize = match a.num("threads", 2) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let res = rt.block_on(async {
        match a.mode.as_str() {
            "rate" => rate(&a, false).await,
            "closed" => rate(&a, true).await,
            "stream" => stream(&a).await,
            "hold" => hold(&a).await,
            "sse-server" => sse_server(&a).await,
            m => Err(format!("unknown mode `{m}` (rate|closed|stream|hold)")),
        }
    });
    // Connections still draining must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(2));
    match res {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
