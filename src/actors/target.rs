//! The target actor: the single owner of one provider account's rate-limit budget (`governor`)
//! and health (circuit breaker, cooldowns, latency). Requests get a [`Permit`] before calling
//! the provider and report an [`Outcome`] after; the upstream call itself happens in the request
//! task, never in this actor's mailbox, so a slow provider cannot slow anything else.
//!
//! Only the actor decides health. It publishes each decision into [`TargetShared`]: when the
//! target is unavailable, whether a permit may be granted without asking it (`open`: healthy,
//! not retiring, budgets local) and whether a success needs telling (`quiet`: no failure streak
//! to reset). While a target is healthy, the request path takes its budget cells (the limiter is
//! lock-free) and settles successes with atomics, so the common case costs no message and no
//! cross-thread wake-up; anything that can change health (failures, 429s, half-open probes,
//! Redis-shared budgets, cooldown expiry) still goes through the mailbox.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;

use super::unix_ms;
use super::{ms_after, now_ms};
use crate::cluster::{Admission, Cluster, RemoteState};
use crate::config::TargetSpec;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Latency samples kept for recent percentiles.
const LATENCY_WINDOW: usize = 512;
/// How often a target reads the state other replicas published for it.
const CLUSTER_POLL: Duration = Duration::from_millis(250);
/// How long others wait while a half-open probe is out before they may try to probe again.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the actor publishes for the request path, and the budgets and counters the request
/// path may touch without a message.
pub struct TargetShared {
    /// `now_ms()` before which the target should not be selected; 0 = available.
    unavailable_until: AtomicU64,
    /// Permits may be granted without asking the actor.
    open: AtomicBool,
    /// Successes and cancellations need not be reported to the actor.
    quiet: AtomicBool,
    rpm: Option<Budget>,
    tpm: Option<Budget>,
    in_flight: AtomicU32,
    requests: AtomicU64,
    successes: AtomicU64,
    latency: Mutex<Latency>,
    /// `llmux_attempts_total{status="200"}` and `llmux_attempt_duration_seconds` of this target.
    attempts_ok: metrics::Counter,
    attempt_seconds: metrics::Histogram,
}

impl TargetShared {
    pub fn available_at(&self, now: u64) -> bool {
        self.unavailable_until.load(Ordering::Relaxed) <= now
    }
    pub fn unavailable_until(&self) -> u64 {
        self.unavailable_until.load(Ordering::Relaxed)
    }
    fn publish(&self, until: u64) {
        self.unavailable_until.store(until, Ordering::Relaxed);
    }

    /// Takes one request and `tokens` from the local budgets, or says which budget refused and
    /// when it will have the cells.
    fn take_budgets(&self, tokens: u32) -> Result<(), (Refusal, Duration)> {
        if let Some(b) = &self.rpm {
            b.take(1).map_err(|w| (Refusal::RateLimited, w))?;
        }
        if let Some(b) = &self.tpm {
            b.take(tokens).map_err(|w| (Refusal::TokenBudget, w))?;
        }
        Ok(())
    }

    /// A budget refusal: unavailable until the cells are back. Raise only, never lower: the
    /// actor may have published a longer cooldown meanwhile.
    fn refuse_budget(&self, reason: Refusal, wait: Duration) -> Unavailable {
        let until = ms_after(wait);
        self.unavailable_until.fetch_max(until, Ordering::Relaxed);
        Unavailable { reason, until }
    }

    /// The lock-free grant. `None` when the actor must decide (not healthy, retiring, or its
    /// budgets live in Redis).
    fn try_grant(&self, tokens: u32) -> Option<Result<(), Unavailable>> {
        if !self.open.load(Ordering::Acquire) {
            return None;
        }
        // Counted before the second look, so a retiring actor that closes the gate and then
        // reads in_flight either sees this request or makes it ask (SeqCst on both sides).
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if !self.open.load(Ordering::SeqCst) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if let Err((reason, wait)) = self.take_budgets(tokens) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Some(Err(self.refuse_budget(reason, wait)));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(Ok(()))
    }

    /// Books a success: counters, latency, and the token budget charged for what the
    /// provider reported beyond the estimate (governor cannot refund an over-estimate).
    fn settle_success(&self, latency: Duration, estimated: u32, used: Option<u64>) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.record_latency(latency);
        self.charge_tokens(estimated, used);
    }

    fn charge_tokens(&self, estimated: u32, used: Option<u64>) {
        if let (Some(b), Some(used)) = (&self.tpm, used) {
            if used > estimated as u64 {
                let _ = b.take((used - estimated as u64).min(u32::MAX as u64) as u32);
            }
        }
    }

    fn record_latency(&self, latency: Duration) {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(latency);
    }

    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Recent latencies: an EWMA and a window for percentiles.
struct Latency {
    ewma_ms: Option<f64>,
    window: VecDeque<f32>,
}

impl Latency {
    fn record(&mut self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        // α = 0.2: reacts within a handful of requests, smooths single outliers.
        self.ewma_ms = Some(self.ewma_ms.map_or(ms, |e| e * 0.8 + ms * 0.2));
        if self.window.len() == LATENCY_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(ms as f32);
    }

    fn percentiles(&self, qs: [f64; 2]) -> [Option<f64>; 2] {
        if self.window.is_empty() {
            return [None, None];
        }
        let mut v: Vec<f32> = self.window.iter().copied().collect();
        v.sort_unstable_by(f32::total_cmp);
        qs.map(|q| Some(v[((v.len() - 1) as f64 * q).round() as usize] as f64))
    }
}

/// One provider account's actor, as the request path sees it.
#[derive(Clone)]
pub struct TargetHandle {
    pub spec: Arc<TargetSpec>,
    pub addr: Addr<TargetActor>,
    pub shared: Arc<TargetShared>,
}

impl TargetHandle {
    /// A permit without a message, when the actor has published the target as open.
    pub fn try_acquire(&self, tokens: u32) -> Option<Result<Permit, Unavailable>> {
        self.shared.try_grant(tokens).map(|granted| {
            granted.map(|()| {
                Permit::new(
                    self.spec.clone(),
                    self.shared.clone(),
                    self.addr.clone(),
                    false,
                    tokens,
                )
            })
        })
    }

    /// A permit: lock-free when the target is open, else from the actor.
    pub async fn acquire(&self, tokens: u32) -> Result<Permit, Unavailable> {
        if let Some(answer) = self.try_acquire(tokens) {
            return answer;
        }
        match self.addr.send(Acquire { tokens }).await {
            Ok(answer) => answer,
            // The actor is gone (retired mid-request): unavailable.
            Err(_) => Err(Unavailable {
                reason: Refusal::Stopping,
                until: u64::MAX,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    /// Rate-limited by the provider: waiting out its Retry-After.
    CoolingDown,
    /// Circuit open after consecutive failures (or a half-open probe in flight).
    Unhealthy,
}

/// Why a permit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    RateLimited,
    TokenBudget,
    CoolingDown,
    Unhealthy,
    Stopping,
}

#[derive(Debug, Clone, Copy)]
pub struct Unavailable {
    pub reason: Refusal,
    /// `now_ms()` at which the target may take requests again.
    pub until: u64,
}

/// Asks for the right to send one request. `tokens` is the estimated token cost.
#[derive(Message)]
#[rtype(result = "Result<Permit, Unavailable>")]
pub struct Acquire {
    pub tokens: u32,
}

/// What happened to a permitted request.
#[derive(Debug, Clone)]
pub enum OutcomeKind {
    Success,
    /// 4xx caused by the request itself: says nothing about the target's health.
    ClientError(u16),
    /// Upstream 429; `retry_after` from its headers when given.
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// 5xx, timeout (408), connection error, broken stream.
    Failure(u16),
    /// The client went away first; neutral for health.
    Cancelled,
}

#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub latency: Duration,
    pub probe: bool,
    pub tokens_estimated: u32,
    pub tokens_used: Option<u64>,
    pub error: Option<String>,
}

/// Right to send one request to a target. Dropping it without [`Permit::report`] reports
/// `Cancelled`, so a client disconnect releases the in-flight slot and any half-open probe.
pub struct Permit {
    pub spec: Arc<TargetSpec>,
    shared: Arc<TargetShared>,
    addr: Addr<TargetActor>,
    probe: bool,
    tokens: u32,
    started: Instant,
    reported: bool,
}

impl Permit {
    fn new(
        spec: Arc<TargetSpec>,
        shared: Arc<TargetShared>,
        addr: Addr<TargetActor>,
        probe: bool,
        tokens: u32,
    ) -> Permit {
        Permit {
            spec,
            shared,
            addr,
            probe,
            tokens,
            started: Instant::now(),
            reported: false,
        }
    }

    /// Attempt metrics, with this target's handles for the common (200) case.
    pub fn record_attempt(&self, status: u16, seconds: f64) {
        if status == 200 {
            self.shared.attempts_ok.increment(1);
        } else {
            metrics::counter!("llmux_attempts_total", "virtual_key" => self.spec.name.clone(),
                "status" => status.to_string())
            .increment(1);
        }
        self.shared.attempt_seconds.record(seconds);
    }

    pub fn report(mut self, kind: OutcomeKind, tokens_used: Option<u64>, error: Option<String>) {
        self.reported = true;
        self.settle(kind, tokens_used, error);
    }

    /// Settles here what cannot change health (a success while the target is quiet, a
    /// cancellation that is not a probe); tells the actor everything else.
    fn settle(&self, kind: OutcomeKind, tokens_used: Option<u64>, error: Option<String>) {
        let latency = self.started.elapsed();
        let local = !self.probe
            && match kind {
                OutcomeKind::Success => self.shared.quiet.load(Ordering::SeqCst),
                OutcomeKind::Cancelled => true,
                _ => false,
            };
        if local {
            if let OutcomeKind::Success = kind {
                self.shared
                    .settle_success(latency, self.tokens, tokens_used);
            }
            self.shared.release();
            return;
        }
        self.addr.do_send(Outcome {
            kind,
            latency,
            probe: self.probe,
            tokens_estimated: self.tokens,
            tokens_used,
            error,
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.settle(OutcomeKind::Cancelled, None, None);
        }
    }
}

/// Admin view of a target, read from the actor that owns it.
#[derive(Message)]
#[rtype(result = "TargetStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub provider: &'static str,
    pub state: HealthState,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Unix milliseconds of the last error.
    pub last_error_at: Option<u64>,
    pub in_flight: u32,
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub rate_limit: RateLimitStatus,
    pub latency_ms: LatencyStatus,
    /// Milliseconds until the target is tried again, when cooling down or unhealthy.
    pub retry_in_ms: Option<u64>,
    /// Whether a non-healthy state was seen here or published by another replica.
    pub state_source: StateSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitStatus {
    pub rpm: Option<u32>,
    pub rpm_remaining: Option<u32>,
    pub tpm: Option<u32>,
    pub tpm_remaining: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyStatus {
    pub ewma: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// A budget and the last remaining capacity it reported (governor tells only on decisions).
struct Budget {
    limiter: Limiter,
    capacity: u32,
    remaining: AtomicU32,
    /// `now_ms()` of `remaining`.
    seen: AtomicU64,
}

impl Budget {
    fn per_minute(n: u32) -> Option<Budget> {
        let n = NonZeroU32::new(n)?;
        Some(Budget {
            limiter: RateLimiter::direct(Quota::per_minute(n)).with_middleware(),
            capacity: n.get(),
            remaining: AtomicU32::new(n.get()),
            seen: AtomicU64::new(now_ms()),
        })
    }

    /// Takes `n` cells, or says when they will be there.
    fn take(&self, n: u32) -> Result<(), Duration> {
        let n = NonZeroU32::new(n.clamp(1, self.capacity)).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(n) {
            Ok(Ok(snapshot)) => {
                // For the admin view only: a racing pair of takes may leave either's number.
                self.remaining
                    .store(snapshot.remaining_burst_capacity(), Ordering::Relaxed);
                self.seen.store(now_ms(), Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // Unreachable after the clamp; treat as a full minute to be safe.
            Err(_) => Err(Duration::from_secs(60)),
        }
    }

    /// Estimated remaining now: last seen plus what replenished since.
    fn remaining(&self) -> u32 {
        let elapsed_ms = now_ms().saturating_sub(self.seen.load(Ordering::Relaxed));
        let refill = elapsed_ms as f64 / 1000.0 * self.capacity as f64 / 60.0;
        (self.remaining.load(Ordering::Relaxed) as f64 + refill).min(self.capacity as f64) as u32
    }
}

pub struct TargetActor {
    spec: Arc<TargetSpec>,
    shared: Arc<TargetShared>,
    state: HealthState,
    /// `now_ms()` until which the current cooldown/open circuit lasts.
    until: u64,
    /// How many times in a row the circuit has opened (exponent of the backoff).
    opens: u32,
    probe_in_flight: bool,
    consecutive_failures: u32,
    last_error: Option<(String, SystemTime)>,
    failures: u64,
    /// Statuses other than 200 (successes are counted in `shared`).
    by_status: BTreeMap<u16, u64>,
    stopping: bool,
    checking: bool,
    cluster: Option<Arc<Cluster>>,
    /// Where the current non-healthy state came from.
    source: StateSource,
    /// `until` of the last state shared with the cluster, so each state is published once.
    published_until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateSource {
    /// Seen by this replica.
    Local,
    /// Published by another replica through the cluster.
    Cluster,
}

impl TargetActor {
    /// With a cluster, the local budgets are this replica's share, used while Redis is away.
    pub fn new(
        spec: Arc<TargetSpec>,
        cluster: Option<Arc<Cluster>>,
    ) -> (TargetActor, Arc<TargetShared>) {
        let share = cluster.as_ref().map_or(1.0, |c| c.local_share);
        let local = |n: u32| Budget::per_minute(((n as f64 * share).ceil() as u32).max(1));
        let shared = Arc::new(TargetShared {
            unavailable_until: AtomicU64::new(0),
            open: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            rpm: spec.rpm.and_then(local),
            tpm: spec.tpm.and_then(local),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            latency: Mutex::new(Latency {
                ewma_ms: None,
                window: VecDeque::with_capacity(LATENCY_WINDOW),
            }),
            attempts_ok: metrics::counter!("llmux_attempts_total",
                "virtual_key" => spec.name.clone(), "status" => "200"),
            attempt_seconds: metrics::histogram!("llmux_attempt_duration_seconds",
                "virtual_key" => spec.name.clone()),
        });
        let actor = TargetActor {
            spec,
            shared: shared.clone(),
            state: HealthState::Healthy,
            until: 0,
            opens: 0,
            probe_in_flight: false,
            consecutive_failures: 0,
            last_error: None,
            failures: 0,
            by_status: BTreeMap::new(),
            stopping: false,
            checking: false,
            cluster,
            source: StateSource::Local,
            published_until: 0,
        };
        (actor, shared)
    }

    fn transition(&mut self, to: HealthState, why: &str) {
        if self.state != to {
            let name = self.spec.name.clone();
            metrics::gauge!("llmux_target_state", "virtual_key" => name.clone(), "state" => state_name(self.state)).set(0.0);
            metrics::gauge!("llmux_target_state", "virtual_key" => name, "state" => state_name(to))
                .set(1.0);
            tracing::warn!(virtual_key = %self.spec.name, from = ?self.state, to = ?to, reason = why, "target state changed");
            self.state = to;
        }
        self.publish_gates();
    }

    /// Publishes whether the request path may grant permits and settle successes on its own.
    /// Called after anything that changes `state`, `consecutive_failures` or `stopping`.
    fn publish_gates(&self) {
        let healthy = self.state == HealthState::Healthy && !self.stopping;
        // With a cluster, budgets are admitted by Redis: only the actor talks to it.
        let budgets_shared =
            self.cluster.is_some() && (self.spec.rpm.is_some() || self.spec.tpm.is_some());
        self.shared
            .open
            .store(healthy && !budgets_shared, Ordering::SeqCst);
        self.shared
            .quiet
            .store(healthy && self.consecutive_failures == 0, Ordering::SeqCst);
    }

    fn note_error(&mut self, status: u16, error: Option<String>) {
        let text = error.unwrap_or_else(|| format!("status {status}"));
        self.last_error = Some((text, SystemTime::now()));
    }

    fn open_circuit(&mut self) {
        self.source = StateSource::Local;
        let backoff = self
            .spec
            .cooldown
            .saturating_mul(1u32 << self.opens.min(16));
        let backoff = backoff.min(self.spec.max_cooldown);
        self.opens = self.opens.saturating_add(1);
        self.until = ms_after(backoff);
        self.shared.publish(self.until);
        self.transition(HealthState::Unhealthy, "consecutive failures");
    }

    /// A retiring actor stops once nothing it granted is still out. Grants settled without a
    /// message do not wake it, so it also looks on a short timer.
    fn stop_when_drained(&self, ctx: &mut Context<Self>) {
        if self.stopping && self.shared.in_flight() == 0 {
            ctx.stop();
        }
    }
}

fn state_name(s: HealthState) -> &'static str {
    match s {
        HealthState::Healthy => "healthy",
        HealthState::CoolingDown => "cooling_down",
        HealthState::Unhealthy => "unhealthy",
    }
}

impl Actor for TargetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!("llmux_target_state", "virtual_key" => self.spec.name.clone(), "state" => "healthy").set(1.0);
        // Bursts of hundreds of concurrent requests must not park senders on a tiny mailbox.
        ctx.set_mailbox_capacity(4096);
        self.publish_gates();
        if let Some(every) = self.spec.health_check_interval {
            ctx.run_interval(every, |act, ctx| act.active_check(ctx));
        }
        if self.cluster.is_some() {
            ctx.run_interval(CLUSTER_POLL, |act, ctx| act.poll_cluster(ctx));
        }
    }
}

impl TargetActor {
    /// Shares a new local cooldown/unhealthy state with the other replicas (once per state).
    fn share_state(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        if self.state == HealthState::Healthy
            || self.source != StateSource::Local
            || self.until <= self.published_until
        {
            return;
        }
        self.published_until = self.until;
        let until_unix = unix_ms() + self.until.saturating_sub(now_ms());
        let (name, state) = (self.spec.name.clone(), state_name(self.state));
        ctx.spawn(
            async move { cluster.publish_state(&name, state, until_unix).await }.into_actor(self),
        );
    }

    fn poll_cluster(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let name = self.spec.name.clone();
        ctx.spawn(
            async move { cluster.read_state(&name).await }
                .into_actor(self)
                .map(|remote, act, _| act.apply_remote(remote)),
        );
    }

    /// Adopts a longer cooldown/unhealthy state another replica saw.
    fn apply_remote(&mut self, remote: Option<RemoteState>) {
        let Some(r) = remote else { return };
        let until = now_ms() + r.until_unix_ms.saturating_sub(unix_ms());
        if until <= self.until || self.stopping {
            return;
        }
        let to = match r.state.as_str() {
            "cooling_down" if self.state != HealthState::Unhealthy => HealthState::CoolingDown,
            "unhealthy" if self.state == HealthState::Healthy => HealthState::Unhealthy,
            _ => return,
        };
        self.until = until;
        self.published_until = until;
        self.source = StateSource::Cluster;
        self.shared.publish(until);
        self.transition(to, "state published by another replica");
    }

    /// Active health check: a cheap `GET …/models`. The call runs as a spawned future, so the
    /// mailbox keeps serving permits while it is out. Any answer below 500 means the provider
    /// is up (a 401/404 on /models still proves it answers); 5xx, timeouts and connection
    /// errors count like failed requests.
    fn active_check(&mut self, ctx: &mut Context<Self>) {
        if self.checking || self.stopping {
            return;
        }
        self.checking = true;
        let timeout = self
            .spec
            .health_check_interval
            .unwrap_or(Duration::from_secs(10))
            .min(Duration::from_secs(10));
        let req = crate::providers::health_request(&self.spec).timeout(timeout);
        let fut = async move {
            req.send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.checking = false;
            let failed = match &result {
                Ok(status) => (*status >= 500).then(|| format!("health check: status {status}")),
                Err(e) => Some(format!("health check: {e}")),
            };
            match failed {
                None if act.state == HealthState::Unhealthy => {
                    act.opens = 0;
                    act.until = 0;
                    act.consecutive_failures = 0;
                    act.shared.publish(0);
                    act.transition(HealthState::Healthy, "active health check succeeded");
                }
                None => {}
                Some(error) => {
                    act.consecutive_failures += 1;
                    act.publish_gates();
                    let status = *result.as_ref().unwrap_or(&502);
                    act.note_error(
                        status,
                        Some(crate::providers::scrub(&error, act.spec.api_key.as_ref())),
                    );
                    if act.state != HealthState::Unhealthy
                        && act.consecutive_failures >= act.spec.failure_threshold
                    {
                        act.open_circuit();
                        act.share_state(ctx);
                    }
                }
            }
        }));
    }
}

impl TargetActor {
    /// Takes from the local budgets (the whole budget alone, or this replica's share when the
    /// cluster is configured but unreachable), then grants.
    fn take_local(
        &mut self,
        tokens: u32,
        probe: bool,
        ctx: &mut Context<Self>,
    ) -> Result<Permit, Unavailable> {
        match self.shared.take_budgets(tokens) {
            Ok(()) => Ok(self.grant(tokens, probe, ctx)),
            Err((reason, wait)) => Err(self.refuse_budget(reason, wait, probe)),
        }
    }

    fn refuse_budget(&mut self, reason: Refusal, wait: Duration, probe: bool) -> Unavailable {
        if probe {
            self.probe_in_flight = false;
        }
        self.shared.refuse_budget(reason, wait)
    }

    fn grant(&mut self, tokens: u32, probe: bool, ctx: &mut Context<Self>) -> Permit {
        if probe {
            // Half-open: exactly one request goes through; others skip until it reports.
            self.probe_in_flight = true;
            self.until = ms_after(PROBE_TIMEOUT);
            self.shared.publish(self.until);
        } else if self.state == HealthState::Healthy && self.shared.unavailable_until() > now_ms() {
            self.shared.publish(0);
        }
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        Permit::new(
            self.spec.clone(),
            self.shared.clone(),
            ctx.address(),
            probe,
            tokens,
        )
    }
}

impl Handler<Acquire> for TargetActor {
    type Result = ResponseActFuture<Self, Result<Permit, Unavailable>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let refuse = |reason, until| -> Self::Result {
            Box::pin(fut::ready(Err(Unavailable { reason, until })))
        };
        if self.stopping {
            return refuse(Refusal::Stopping, u64::MAX);
        }
        let mut probe = false;
        match self.state {
            HealthState::Healthy => {}
            HealthState::CoolingDown if now < self.until => {
                return refuse(Refusal::CoolingDown, self.until)
            }
            HealthState::CoolingDown => {
                self.source = StateSource::Local;
                self.transition(HealthState::Healthy, "rate-limit cooldown over");
                self.shared.publish(0);
            }
            HealthState::Unhealthy if now < self.until || self.probe_in_flight => {
                return refuse(Refusal::Unhealthy, self.until.max(now + 1))
            }
            HealthState::Unhealthy => probe = true,
        }
        let tokens = msg.tokens;
        let shared_budget = self.spec.rpm.is_some() || self.spec.tpm.is_some();
        let cluster = match &self.cluster {
            Some(c) if shared_budget && c.is_up() => c.clone(),
            _ => return Box::pin(fut::ready(self.take_local(tokens, probe, ctx))),
        };
        if probe {
            // Reserve the half-open slot while the cluster answers.
            self.probe_in_flight = true;
        }
        let (name, rpm, tpm) = (self.spec.name.clone(), self.spec.rpm, self.spec.tpm);
        // The cluster round trip runs as a spawned future: this mailbox keeps serving others.
        let admission = async move {
            for (kind, limit, cost) in [("rpm", rpm, 1), ("tpm", tpm, tokens)] {
                let Some(limit) = limit else { continue };
                match cluster.admit(&name, kind, limit, cost).await {
                    Admission::Admitted => {}
                    Admission::Denied(wait) => return Some(Err((kind, wait))),
                    Admission::Unavailable => return None,
                }
            }
            Some(Ok(()))
        };
        Box::pin(
            admission
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Some(Ok(())) => Ok(act.grant(tokens, probe, ctx)),
                    Some(Err((kind, wait))) => {
                        let reason = if kind == "rpm" {
                            Refusal::RateLimited
                        } else {
                            Refusal::TokenBudget
                        };
                        Err(act.refuse_budget(reason, wait, probe))
                    }
                    None => act.take_local(tokens, probe, ctx),
                }),
        )
    }
}

impl Handler<Outcome> for TargetActor {
    type Result = ();

    fn handle(&mut self, o: Outcome, ctx: &mut Context<Self>) {
        self.shared.release();
        if o.probe {
            self.probe_in_flight = false;
        }
        match o.kind {
            OutcomeKind::Success => {
                self.shared
                    .settle_success(o.latency, o.tokens_estimated, o.tokens_used);
                self.consecutive_failures = 0;
                if self.state == HealthState::Unhealthy {
                    self.opens = 0;
                    self.until = 0;
                    self.shared.publish(0);
                    self.transition(HealthState::Healthy, "probe succeeded");
                }
            }
            OutcomeKind::ClientError(status) => {
                *self.by_status.entry(status).or_default() += 1;
                self.shared.record_latency(o.latency);
                self.shared.charge_tokens(o.tokens_estimated, o.tokens_used);
                self.note_error(status, o.error);
                if o.probe {
                    // The target answered, so it is alive; the request was just bad.
                    self.opens = 0;
                    self.until = 0;
                    self.shared.publish(0);
                    self.transition(HealthState::Healthy, "probe answered");
                }
            }
            OutcomeKind::RateLimited { retry_after } => {
                *self.by_status.entry(429).or_default() += 1;
                self.failures += 1;
                self.note_error(429, o.error);
                let wait = retry_after
                    .unwrap_or(self.spec.rate_limit_cooldown)
                    .min(self.spec.max_retry_after);
                // A new 429 during a cooldown extends it, never shortens it.
                let until = ms_after(wait).max(self.until);
                if self.state != HealthState::Unhealthy || o.probe {
                    self.until = until;
                    self.source = StateSource::Local;
                    self.shared.publish(until);
                    self.transition(HealthState::CoolingDown, "upstream 429");
                }
            }
            OutcomeKind::Failure(status) => {
                *self.by_status.entry(status).or_default() += 1;
                self.failures += 1;
                self.consecutive_failures += 1;
                self.note_error(status, o.error);
                if o.probe
                    || (self.state != HealthState::Unhealthy
                        && self.consecutive_failures >= self.spec.failure_threshold)
                {
                    self.open_circuit();
                }
            }
            OutcomeKind::Cancelled => {
                if o.probe && self.state == HealthState::Unhealthy {
                    // Let the next request probe instead of waiting for PROBE_TIMEOUT.
                    self.until = now_ms();
                    self.shared.publish(0);
                }
            }
        }
        self.publish_gates();
        self.share_state(ctx);
        self.stop_when_drained(ctx);
    }
}

impl Handler<GetStatus> for TargetActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let mut state = self.state;
        if state == HealthState::CoolingDown && now >= self.until {
            state = HealthState::Healthy;
        }
        let retry_in_ms = match state {
            HealthState::Healthy => None,
            _ => Some(self.until.saturating_sub(now)),
        };
        let shared = &self.shared;
        let successes = shared.successes.load(Ordering::Relaxed);
        let mut by_status = self.by_status.clone();
        if successes > 0 {
            by_status.insert(200, successes);
        }
        let latency = shared.latency.lock().unwrap_or_else(|e| e.into_inner());
        let [p50, p99] = latency.percentiles([0.5, 0.99]);
        MessageResult(TargetStatus {
            name: self.spec.name.clone(),
            provider: self.spec.provider.as_str(),
            state,
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: self.last_error.as_ref().and_then(|(_, t)| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64)
            }),
            in_flight: shared.in_flight(),
            requests: shared.requests.load(Ordering::Relaxed),
            successes,
            failures: self.failures,
            by_status,
            rate_limit: RateLimitStatus {
                rpm: shared.rpm.as_ref().map(|b| b.capacity),
                rpm_remaining: shared.rpm.as_ref().map(Budget::remaining),
                tpm: shared.tpm.as_ref().map(|b| b.capacity),
                tpm_remaining: shared.tpm.as_ref().map(Budget::remaining),
            },
            latency_ms: LatencyStatus {
                ewma: latency.ewma_ms,
                p50,
                p99,
            },
            retry_in_ms,
            state_source: self.source,
        })
    }
}

/// Retires the actor after a reload removed or changed its target: it refuses new permits and
/// stops once its in-flight requests have reported.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for TargetActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.shared.publish(u64::MAX);
        self.publish_gates();
        self.stop_when_drained(ctx);
        ctx.run_interval(Duration::from_millis(100), |act, ctx| {
            act.stop_when_drained(ctx)
        });
    }
}
