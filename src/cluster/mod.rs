//! Optional cluster state shared through Redis (`[cluster] redis_url`): rate-limit budgets that
//! several replicas draw from together (GCRA in one atomic Lua script, one round trip per
//! admission) and cooldown/unhealthy states that one replica sets and the others honour.
//!
//! Redis is an accelerator, never a dependency of a request: every call is bounded by a short
//! timeout; on any error the replica marks the cluster down, serves with its local share of
//! each budget, and a background ping brings it back when Redis answers again (within one ping
//! period: the connection is rebuilt after a failed ping, never left to a growing backoff).
//! What a replica admitted locally is charged to the shared budgets before it counts as
//! connected again, so an outage does not hand out a second budget (README › Several replicas).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::unix_ms;
use crate::config::limit::{Limit, Which};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;

/// Longest a request may wait on Redis before it is admitted from the local share instead.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// Slow answers in a row after which the cluster counts as down (until the next good ping).
const SLOW_LIMIT: u32 = 3;
/// How often the cluster is pinged (to rejoin when down, to land local charges when up).
const PING_EVERY: Duration = Duration::from_millis(500);
/// A ping slower than this counts as failed.
const PING_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest one (re)connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(400);

/// GCRA (the algorithm behind governor and redis-cell) for both budgets of a target in one
/// atomic script: each budget key holds its theoretical arrival time, and the request is
/// admitted only if the request budget *and* the token budget have room, so a refusal spends
/// nothing. Redis' own clock is the only clock, so replicas never disagree.
/// KEYS = rpm key, tpm key; ARGV = per budget: emission interval (ms per cell, 0 = no such
/// budget), burst (cells), cost (cells). Returns {1, 0, 0} when admitted, else
/// {0, ms until it would be, 1 for rpm / 2 for tpm}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local new = {}
for i = 1, 2 do
  local emission = tonumber(ARGV[i * 3 - 2])
  if emission > 0 then
    local burst = tonumber(ARGV[i * 3 - 1])
    local cost = tonumber(ARGV[i * 3])
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local allow_at = tat + emission * (math.min(cost, burst) - burst)
    if allow_at > now then
      return {0, math.ceil(allow_at - now), i}
    end
    new[i] = tat + emission * cost
  end
end
for i = 1, 2 do
  if new[i] then
    redis.call('SET', KEYS[i], tostring(new[i]), 'PX', math.ceil(new[i] - now) + 1000)
  end
end
return {1, 0, 0}
"#;

/// Lands a charge in one budget without asking: a token correction (reported usage minus the
/// estimate) or what a replica admitted locally while Redis was away. A positive delta is
/// debt, a negative one a refund that never fills the bucket beyond full.
/// KEYS[1] = budget key; ARGV = emission interval (ms per cell), delta (cells).
const CORRECT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
end
return 1
"#;

/// Concurrency leases: a sorted set of lease ids scored by expiry (Redis' clock). Expired
/// leases (a replica that died) are dropped first; a lease is added only below the limit.
/// KEYS[1] = the set; ARGV = lease id, limit, ttl ms. Returns 1 when taken, 0 when full.
const LEASE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return 1
"#;

/// A state one replica published for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteState {
    pub state: String,
    /// Unix milliseconds until which it holds.
    pub until_unix_ms: u64,
    pub replica: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub redis_url: String,
    pub replica: String,
    pub connected: bool,
    pub local_share: f64,
    pub errors: u64,
    /// Admissions decided from the local share because Redis could not answer in time.
    pub local_admissions: u64,
    /// Local admissions (requests) not yet charged to the shared budgets.
    pub uncharged: u64,
}

/// What a replica admitted from its local share and has not yet charged to Redis, per target.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    rpm: Option<u32>,
    tpm: Option<u32>,
    requests: u64,
    tokens: i64,
}

pub struct Cluster {
    client: redis::Client,
    url_redacted: String,
    prefix: String,
    pub replica: String,
    pub local_share: f64,
    conn: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    errors: AtomicU64,
    slow: std::sync::atomic::AtomicU32,
    local_admissions: AtomicU64,
    pending: Mutex<HashMap<String, Pending>>,
    script: redis::Script,
    correct: redis::Script,
    lease: redis::Script,
}

/// The outcome of asking the cluster for budget.
pub enum Admission {
    Admitted,
    /// Denied by the request (`Which::Requests`) or token budget; it frees up in this long.
    Denied(Which, Duration),
    /// The cluster could not answer: use the local share.
    Unavailable,
}

impl Cluster {
    pub fn new(url: &str, prefix: &str, local_share: f64) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let replica = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Ok(Arc::new(Cluster {
            client,
            url_redacted: redact_url(url),
            prefix: prefix.to_owned(),
            replica,
            local_share,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            slow: std::sync::atomic::AtomicU32::new(0),
            local_admissions: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            script: redis::Script::new(GCRA),
            correct: redis::Script::new(CORRECT),
            lease: redis::Script::new(LEASE),
        }))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            redis_url: self.url_redacted.clone(),
            replica: self.replica.clone(),
            connected: self.is_up(),
            local_share: self.local_share,
            errors: self.errors.load(Ordering::Relaxed),
            local_admissions: self.local_admissions.load(Ordering::Relaxed),
            uncharged: self.pending().values().map(|p| p.requests).sum(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Books an admission taken from the local share, to be charged to the shared budgets.
    pub fn note_local(&self, target: &str, rpm: Option<u32>, tpm: Option<u32>, tokens: u32) {
        self.local_admissions.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending();
        let p = pending.entry(target.to_owned()).or_default();
        (p.rpm, p.tpm) = (rpm, tpm);
        p.requests += 1;
        p.tokens = p.tokens.saturating_add(tokens as i64);
    }

    /// Charges what was admitted locally to the shared budgets (as debt: it was spent). On
    /// failure the rest stays pending for the next try.
    async fn charge_pending(&self, conn: &mut ConnectionManager) -> Result<(), String> {
        let charges = std::mem::take(&mut *self.pending());
        let mut left = charges.clone();
        let mut result = Ok(());
        for (target, p) in charges {
            for (kind, limit, delta) in
                [("rpm", p.rpm, p.requests as i64), ("tpm", p.tpm, p.tokens)]
            {
                let Some(limit) = limit.filter(|&l| l > 0 && delta != 0) else {
                    continue;
                };
                let mut invocation = self.correct.key(self.key(kind, &target));
                invocation.arg(60_000.0 / limit as f64).arg(delta);
                let call = invocation.invoke_async::<i64>(conn);
                match tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => result = Err(e.to_string()),
                    Err(_) => result = Err("charging local admissions timed out".into()),
                }
                if result.is_err() {
                    break;
                }
                if let Some(l) = left.get_mut(&target) {
                    if kind == "rpm" {
                        l.requests = 0;
                    } else {
                        l.tokens = 0;
                    }
                }
            }
            if result.is_err() {
                break;
            }
            left.remove(&target);
        }
        if !left.is_empty() {
            let mut pending = self.pending();
            for (target, l) in left {
                let p = pending.entry(target).or_default();
                (p.rpm, p.tpm) = (p.rpm.or(l.rpm), p.tpm.or(l.tpm));
                p.requests += l.requests;
                p.tokens = p.tokens.saturating_add(l.tokens);
            }
        }
        result
    }

    /// A per-replica delay added to a cooldown adopted from another replica, so that the
    /// replicas do not all retry the provider at the same instant: a fraction (fixed per
    /// replica and state) of a tenth of what remains, at most 1 s.
    pub fn jitter_ms(&self, until_unix_ms: u64, remaining_ms: u64) -> u64 {
        jitter_ms(&self.replica, until_unix_ms, remaining_ms)
    }

    fn conn(&self) -> Option<ConnectionManager> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn mark(&self, up: bool, why: &str) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            metrics::gauge!("llmux_cluster_connected").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!(redis = %self.url_redacted, "cluster state: connected to Redis; budgets and health are shared");
            } else {
                tracing::warn!(redis = %self.url_redacted, error = why,
                    "cluster state: Redis unavailable; serving with local budget shares until it returns");
            }
        }
        if !up {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the connection alive: connects, pings, lands local charges and flips up/down.
    /// Runs forever on the current arbiter. A failed ping drops the connection and the next
    /// tick builds a new one, so a restarted Redis is rejoined within about one ping period
    /// (redis-rs' own reconnect backoff would grow to minutes).
    pub async fn supervise(self: Arc<Cluster>) {
        let config = ConnectionManagerConfig::new()
            .set_exponent_base(2)
            .set_factor(50)
            .set_max_delay(PING_EVERY.as_millis() as u64)
            .set_number_of_retries(1)
            .set_connection_timeout(PING_TIMEOUT)
            .set_response_timeout(CONNECT_TIMEOUT);
        loop {
            let conn = match self.conn() {
                Some(c) => Some(c),
                None => match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    self.client
                        .get_connection_manager_with_config(config.clone()),
                )
                .await
                {
                    Ok(Ok(c)) => {
                        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                        Some(c)
                    }
                    Ok(Err(e)) => {
                        self.mark(false, &e.to_string());
                        None
                    }
                    Err(_) => {
                        self.mark(false, "connect timed out");
                        None
                    }
                },
            };
            if let Some(mut c) = conn {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut c);
                let result = match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    Ok(Ok(_)) => self.charge_pending(&mut c).await,
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("ping timed out".into()),
                };
                match result {
                    // Up only once what was admitted locally is charged: nothing admitted by
                    // Redis from here on ignores it.
                    Ok(()) => self.mark(true, ""),
                    Err(e) => {
                        self.mark(false, &e);
                        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                }
            }
            tokio::time::sleep(PING_EVERY).await;
        }
    }

    fn key(&self, kind: &str, target: &str) -> String {
        format!("{}:{kind}:{target}", self.prefix)
    }

    /// Takes one request and `tokens` from the shared budgets of `target`, both or neither.
    /// `Unavailable` admits nothing: the caller takes from its local share and books that
    /// with [`Cluster::note_local`].
    pub async fn admit(
        &self,
        target: &str,
        rpm: Option<Limit>,
        tpm: Option<Limit>,
        tokens: u32,
    ) -> Admission {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return Admission::Unavailable;
        };
        let mut invocation = self.script.key(self.key("rpm", target));
        invocation.key(self.key("tpm", target));
        for (limit, cost) in [(rpm, 1), (tpm, tokens)] {
            match limit.filter(|l| l.per_minute > 0) {
                Some(l) => invocation
                    .arg(60_000.0 / l.per_minute as f64)
                    .arg(l.burst.max(1))
                    .arg(cost.max(1)),
                None => invocation.arg(0).arg(0).arg(0),
            };
        }
        let call = invocation.invoke_async::<(i64, i64, i64)>(&mut conn);
        let result = tokio::time::timeout(CALL_TIMEOUT, call).await;
        if result.is_ok() {
            self.slow.store(0, Ordering::Relaxed);
        }
        match result {
            Ok(Ok((1, _, _))) => Admission::Admitted,
            Ok(Ok((_, wait_ms, which))) => Admission::Denied(
                if which == 2 {
                    Which::Tokens
                } else {
                    Which::Requests
                },
                Duration::from_millis(wait_ms.max(1) as u64),
            ),
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                Admission::Unavailable
            }
            Err(_) => {
                // One slow answer is load, not an outage; several in a row are.
                if self.slow.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_LIMIT {
                    self.mark(false, "admissions timed out");
                }
                Admission::Unavailable
            }
        }
    }

    /// Lands a token correction in the shared token budget; while Redis is away it waits with
    /// the local admissions' charges. Best effort (a lost correction only makes the shared
    /// estimate as rough as the local one).
    pub async fn correct(&self, target: &str, tpm: u32, delta: i64) {
        if delta == 0 || tpm == 0 {
            return;
        }
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            let mut pending = self.pending();
            let p = pending.entry(target.to_owned()).or_default();
            p.tpm = Some(tpm);
            p.tokens = p.tokens.saturating_add(delta);
            return;
        };
        let mut invocation = self.correct.key(self.key("tpm", target));
        invocation.arg(60_000.0 / tpm as f64).arg(delta);
        let call = invocation.invoke_async::<i64>(&mut conn);
        if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT, call).await {
            self.mark(false, &e.to_string());
        }
    }

    /// Publishes a cooldown/unhealthy state so the other replicas skip the target too.
    pub async fn publish_state(&self, target: &str, state: &str, until_unix_ms: u64) {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return;
        };
        let ttl = until_unix_ms.saturating_sub(unix_ms()).max(1);
        let value = format!("{state}|{until_unix_ms}|{}", self.replica);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("health", target))
            .arg(value)
            .arg("PX")
            .arg(ttl);
        let call = cmd.query_async::<()>(&mut conn);
        match tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.mark(false, &e.to_string()),
            Err(_) => self.mark(false, "publish timed out"),
        }
    }

    /// A state another replica published for `target`, if one is in force.
    pub async fn read_state(&self, target: &str) -> Option<RemoteState> {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return None;
        };
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key("health", target));
        let call = cmd.query_async::<Option<String>>(&mut conn);
        let value = match tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
            Ok(Ok(v)) => v?,
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                return None;
            }
            Err(_) => return None,
        };
        let mut parts = value.splitn(3, '|');
        let state = parts.next()?.to_owned();
        let until_unix_ms = parts.next()?.parse().ok()?;
        let replica = parts.next()?.to_owned();
        (replica != self.replica && until_unix_ms > unix_ms()).then_some(RemoteState {
            state,
            until_unix_ms,
            replica,
        })
    }
}

/// Shared values: opaque bytes under `{prefix}:{kind}:{key}`, expiring by Redis TTL (the
/// response cache uses kinds `cache:{scope}`, Responses API state `responses`). Like every
/// cluster call, bounded by a short timeout; a failure is a miss (or an unstored value),
/// never an error for the request.
impl Cluster {
    fn kv_key(&self, kind: &str, key: &str) -> String {
        format!("{}:{kind}:{key}", self.prefix)
    }

    pub async fn kv_get(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return None;
        };
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.kv_key(kind, key));
        let call = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                None
            }
            Err(_) => None,
        }
    }

    pub async fn kv_set(&self, kind: &str, key: &str, value: &[u8], ttl: Duration) {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(kind, key))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let call = cmd.query_async::<()>(&mut conn);
        if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
            self.mark(false, &e.to_string());
        }
    }

    pub async fn kv_delete(&self, kind: &str, key: &str) {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return;
        };
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(self.kv_key(kind, key));
        let call = cmd.query_async::<u64>(&mut conn);
        if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT * 4, call).await {
            self.mark(false, &e.to_string());
        }
    }

    /// Adds `usd` to a gateway key's spend in its day and month (atomic `INCRBYFLOAT` per
    /// period key, expiring after the period). `false` when Redis could not take it.
    pub async fn spend_add(&self, key: &str, day: i64, month: i64, usd: f64) -> bool {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return false;
        };
        let (d, m) = (
            self.spend_key(key, "d", day),
            self.spend_key(key, "m", month),
        );
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCRBYFLOAT")
            .arg(&d)
            .arg(usd)
            .ignore()
            .cmd("EXPIRE")
            .arg(&d)
            .arg(2 * 86_400)
            .ignore()
            .cmd("INCRBYFLOAT")
            .arg(&m)
            .arg(usd)
            .ignore()
            .cmd("EXPIRE")
            .arg(&m)
            .arg(40 * 86_400)
            .ignore();
        match tokio::time::timeout(CALL_TIMEOUT * 4, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                false
            }
            Err(_) => false,
        }
    }

    /// A gateway key's shared spend in its day and month; `None` when Redis cannot answer.
    pub async fn spend_get(&self, key: &str, day: i64, month: i64) -> Option<(f64, f64)> {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return None;
        };
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.spend_key(key, "d", day))
            .arg(self.spend_key(key, "m", month));
        let call = cmd.query_async::<(Option<f64>, Option<f64>)>(&mut conn);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok((d, m))) => Some((d.unwrap_or(0.0), m.unwrap_or(0.0))),
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                None
            }
            Err(_) => None,
        }
    }

    /// Takes one of `limit` concurrency slots of `key` for `ttl` (a lease that expires if this
    /// replica dies): `Some(true)` taken, `Some(false)` all taken, `None` Redis cannot answer.
    pub async fn lease_take(&self, key: &str, id: &str, limit: u32, ttl: Duration) -> Option<bool> {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return None;
        };
        let mut invocation = self.lease.key(self.kv_key("conc", key));
        invocation.arg(id).arg(limit).arg(ttl.as_millis() as u64);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(n)) => Some(n == 1),
            Ok(Err(e)) => {
                self.mark(false, &e.to_string());
                None
            }
            Err(_) => None,
        }
    }

    /// Extends a held lease (a long stream) by `ttl` from now.
    pub async fn lease_renew(&self, key: &str, id: &str, ttl: Duration) {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return;
        };
        let until = unix_ms() + ttl.as_millis() as u64;
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.kv_key("conc", key))
            .arg("XX")
            .arg(until)
            .arg(id);
        let _ = tokio::time::timeout(CALL_TIMEOUT * 4, cmd.query_async::<i64>(&mut conn)).await;
    }

    /// Gives a lease back.
    pub async fn lease_release(&self, key: &str, id: &str) {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return;
        };
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.kv_key("conc", key)).arg(id);
        let _ = tokio::time::timeout(CALL_TIMEOUT * 4, cmd.query_async::<i64>(&mut conn)).await;
    }

    fn spend_key(&self, key: &str, period: &str, n: i64) -> String {
        format!("{}:spend:{key}:{period}{n}", self.prefix)
    }

    /// Deletes every value of `kind` (a glob: `cache:*` is every cache scope). Returns how
    /// many were deleted, or `None` when Redis could not be reached.
    pub async fn kv_clear(&self, kind: &str) -> Option<u64> {
        let (true, Some(mut conn)) = (self.is_up(), self.conn()) else {
            return None;
        };
        let pattern = self.kv_key(kind, "*");
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        // SCAN in pages, so a large cache never blocks Redis the way KEYS would.
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let page = tokio::time::timeout(
                CALL_TIMEOUT * 10,
                scan.query_async::<(u64, Vec<String>)>(&mut conn),
            )
            .await;
            let (next, keys) = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    self.mark(false, &e.to_string());
                    return None;
                }
                Err(_) => return None,
            };
            if !keys.is_empty() {
                let mut del = redis::cmd("UNLINK");
                del.arg(&keys);
                let n = tokio::time::timeout(CALL_TIMEOUT * 10, del.query_async::<u64>(&mut conn))
                    .await;
                match n {
                    Ok(Ok(n)) => deleted += n,
                    Ok(Err(e)) => {
                        self.mark(false, &e.to_string());
                        return None;
                    }
                    Err(_) => return None,
                }
            }
            if next == 0 {
                return Some(deleted);
            }
            cursor = next;
        }
    }
}

fn jitter_ms(replica: &str, until_unix_ms: u64, remaining_ms: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (replica, until_unix_ms).hash(&mut h);
    // A fixed fraction of a bound that shrinks as the cooldown runs, so re-reading the same
    // state every poll never pushes the end further out.
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    (fraction * (remaining_ms / 10).min(1_000) as f64) as u64
}

/// `redis://user:password@host` → `redis://user:***@host`: the URL may carry a password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_is_bounded_fixed_per_replica_and_differs_between_replicas() {
        for remaining in [0, 5, 900, 9_000, 30_000, 600_000] {
            let j = super::jitter_ms("a", 42, remaining);
            assert!(j <= (remaining / 10).min(1_000), "{remaining}: {j}");
            assert_eq!(j, super::jitter_ms("a", 42, remaining));
        }
        let ends: std::collections::BTreeSet<u64> = (0..20)
            .map(|i| super::jitter_ms(&format!("replica-{i}"), 42, 30_000))
            .collect();
        assert!(
            ends.len() >= 15,
            "replicas end their cooldowns apart: {ends:?}"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            super::redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
