//! The target actor: the single owner of one provider account's rate-limit budget (`governor`)
//! and health (circuit breaker, cooldowns, latency). Requests ask it for a [`Permit`] before
//! calling the provider and report an [`Outcome`] after; the upstream call itself happens in the
//! request task, never in this actor's mailbox, so a slow provider cannot slow anything else.
//!
//! The actor publishes "unavailable until" into [`TargetShared`] whenever its state changes, so
//! the supervisor can skip it during selection without a round trip.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// State the actor publishes for lock-free readers (the supervisor's selection walk).
#[derive(Debug, Default)]
pub struct TargetShared {
    /// `now_ms()` before which the target should not be selected; 0 = available.
    unavailable_until: AtomicU64,
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
    addr: Addr<TargetActor>,
    probe: bool,
    tokens: u32,
    started: Instant,
    reported: bool,
}

impl Permit {
    pub fn report(mut self, kind: OutcomeKind, tokens_used: Option<u64>, error: Option<String>) {
        self.reported = true;
        self.addr.do_send(Outcome {
            kind,
            latency: self.started.elapsed(),
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
            self.addr.do_send(Outcome {
                kind: OutcomeKind::Cancelled,
                latency: self.started.elapsed(),
                probe: self.probe,
                tokens_estimated: self.tokens,
                tokens_used: None,
                error: None,
            });
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
    remaining: u32,
    seen: Instant,
}

impl Budget {
    fn per_minute(n: u32) -> Option<Budget> {
        let n = NonZeroU32::new(n)?;
        Some(Budget {
            limiter: RateLimiter::direct(Quota::per_minute(n)).with_middleware(),
            capacity: n.get(),
            remaining: n.get(),
            seen: Instant::now(),
        })
    }

    /// Takes `n` cells, or says when they will be there.
    fn take(&mut self, n: u32) -> Result<(), Duration> {
        let n = NonZeroU32::new(n.clamp(1, self.capacity)).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(n) {
            Ok(Ok(snapshot)) => {
                self.remaining = snapshot.remaining_burst_capacity();
                self.seen = Instant::now();
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // Unreachable after the clamp; treat as a full minute to be safe.
            Err(_) => Err(Duration::from_secs(60)),
        }
    }

    /// Estimated remaining now: last seen plus what replenished since.
    fn remaining(&self) -> u32 {
        let refill = self.seen.elapsed().as_secs_f64() * self.capacity as f64 / 60.0;
        (self.remaining as f64 + refill).min(self.capacity as f64) as u32
    }
}

pub struct TargetActor {
    spec: Arc<TargetSpec>,
    shared: Arc<TargetShared>,
    rpm: Option<Budget>,
    tpm: Option<Budget>,
    state: HealthState,
    /// `now_ms()` until which the current cooldown/open circuit lasts.
    until: u64,
    /// How many times in a row the circuit has opened (exponent of the backoff).
    opens: u32,
    probe_in_flight: bool,
    consecutive_failures: u32,
    last_error: Option<(String, SystemTime)>,
    in_flight: u32,
    requests: u64,
    successes: u64,
    failures: u64,
    by_status: BTreeMap<u16, u64>,
    ewma_ms: Option<f64>,
    latencies: VecDeque<f32>,
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
        let shared = Arc::new(TargetShared::default());
        let share = cluster.as_ref().map_or(1.0, |c| c.local_share);
        let local = |n: u32| Budget::per_minute(((n as f64 * share).ceil() as u32).max(1));
        let actor = TargetActor {
            rpm: spec.rpm.and_then(local),
            tpm: spec.tpm.and_then(local),
            spec,
            shared: shared.clone(),
            state: HealthState::Healthy,
            until: 0,
            opens: 0,
            probe_in_flight: false,
            consecutive_failures: 0,
            last_error: None,
            in_flight: 0,
            requests: 0,
            successes: 0,
            failures: 0,
            by_status: BTreeMap::new(),
            ewma_ms: None,
            latencies: VecDeque::with_capacity(LATENCY_WINDOW),
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
    }

    fn record_latency(&mut self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        // α = 0.2: reacts within a handful of requests, smooths single outliers.
        self.ewma_ms = Some(self.ewma_ms.map_or(ms, |e| e * 0.8 + ms * 0.2));
        if self.latencies.len() == LATENCY_WINDOW {
            self.latencies.pop_front();
        }
        self.latencies.push_back(ms as f32);
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

    fn percentile(&self, q: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<f32> = self.latencies.iter().copied().collect();
        v.sort_unstable_by(f32::total_cmp);
        let idx = ((v.len() - 1) as f64 * q).round() as usize;
        Some(v[idx] as f64)
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
        if let Some(b) = &mut self.rpm {
            if let Err(wait) = b.take(1) {
                return Err(self.refuse_budget(Refusal::RateLimited, wait, probe));
            }
        }
        if let Some(b) = &mut self.tpm {
            if let Err(wait) = b.take(tokens) {
                return Err(self.refuse_budget(Refusal::TokenBudget, wait, probe));
            }
        }
        Ok(self.grant(tokens, probe, ctx))
    }

    fn refuse_budget(&mut self, reason: Refusal, wait: Duration, probe: bool) -> Unavailable {
        if probe {
            self.probe_in_flight = false;
        }
        let until = ms_after(wait);
        self.shared.publish(until);
        Unavailable { reason, until }
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
        self.in_flight += 1;
        self.requests += 1;
        Permit {
            spec: self.spec.clone(),
            addr: ctx.address(),
            probe,
            tokens,
            started: Instant::now(),
            reported: false,
        }
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
        self.in_flight = self.in_flight.saturating_sub(1);
        if o.probe {
            self.probe_in_flight = false;
        }
        if let (Some(b), Some(used)) = (&mut self.tpm, o.tokens_used) {
            // governor cannot refund an over-estimate; it can charge an under-estimate.
            if used > o.tokens_estimated as u64 {
                let _ = b.take((used - o.tokens_estimated as u64).min(u32::MAX as u64) as u32);
            }
        }
        match o.kind {
            OutcomeKind::Success => {
                *self.by_status.entry(200).or_default() += 1;
                self.successes += 1;
                self.consecutive_failures = 0;
                self.record_latency(o.latency);
                if self.state == HealthState::Unhealthy {
                    self.opens = 0;
                    self.until = 0;
                    self.shared.publish(0);
                    self.transition(HealthState::Healthy, "probe succeeded");
                }
            }
            OutcomeKind::ClientError(status) => {
                *self.by_status.entry(status).or_default() += 1;
                self.record_latency(o.latency);
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
        self.share_state(ctx);
        if self.stopping && self.in_flight == 0 {
            ctx.stop();
        }
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
            in_flight: self.in_flight,
            requests: self.requests,
            successes: self.successes,
            failures: self.failures,
            by_status: self.by_status.clone(),
            rate_limit: RateLimitStatus {
                rpm: self.rpm.as_ref().map(|b| b.capacity),
                rpm_remaining: self.rpm.as_ref().map(Budget::remaining),
                tpm: self.tpm.as_ref().map(|b| b.capacity),
                tpm_remaining: self.tpm.as_ref().map(Budget::remaining),
            },
            latency_ms: LatencyStatus {
                ewma: self.ewma_ms,
                p50: self.percentile(0.5),
                p99: self.percentile(0.99),
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
        if self.in_flight == 0 {
            ctx.stop();
        }
    }
}
