//! The target actor: the single owner of one provider account's health ([`Breaker`]) and the
//! only writer of what the gate publishes. It runs the pure state machines with the process
//! clock, turns their transitions into logs, metrics and cluster publications, and serves the
//! slow path: permits while the target is not open, every outcome that can change health, the
//! Redis-shared budgets, active health checks and retirement.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use super::breaker::{Admit, Breaker, BreakerSettings, HealthState, OutcomeKind, Transition};
use super::budget::{Budgets, Limit, Refused, Which};
use super::{
    Acquire, GetStatus, LatencyStatus, Outcome, Permit, RateLimitStatus, Refusal, Retire,
    StateSource, TargetShared, TargetStatus, Unavailable,
};
use crate::clock::{now_ms, unix_ms};
use crate::cluster::{Admission, Cluster, RemoteState};
use crate::providers::FailureClass;
use crate::providers::Upstream;

/// How often a target reads the state other replicas published for it.
const CLUSTER_POLL: Duration = Duration::from_millis(250);

pub struct TargetActor {
    spec: Arc<Upstream>,
    shared: Arc<TargetShared>,
    breaker: Breaker,
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

impl TargetActor {
    /// With a cluster, the local budgets are this replica's share, used while Redis is away.
    pub fn new(
        spec: Arc<Upstream>,
        cluster: Option<Arc<Cluster>>,
    ) -> (TargetActor, Arc<TargetShared>) {
        let share = cluster.as_ref().map_or(1.0, |c| c.local_share);
        let limit = |per_minute: Option<u32>, burst: Option<u32>| {
            per_minute.map(|n| Limit {
                per_minute: n,
                burst: burst.unwrap_or(n),
            })
        };
        let budgets = Budgets::new(
            limit(spec.rpm, spec.rpm_burst),
            limit(spec.tpm, spec.tpm_burst),
            share,
        );
        let shared = Arc::new(TargetShared::new(&spec.name, budgets));
        let actor = TargetActor {
            breaker: Breaker::new(BreakerSettings::from(&*spec.spec)),
            spec,
            shared: shared.clone(),
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

    /// Applies a breaker transition: log, metrics, and what the request path sees.
    fn apply(&mut self, t: Option<Transition>, source: StateSource) {
        if let Some(t) = t {
            let name = self.spec.name.clone();
            metrics::gauge!("llmux_target_state", "virtual_key" => name.clone(), "state" => t.from.name()).set(0.0);
            metrics::gauge!("llmux_target_state", "virtual_key" => name, "state" => t.to.name())
                .set(1.0);
            tracing::warn!(virtual_key = %self.spec.name, from = ?t.from, to = ?t.to,
                reason = t.reason, "target state changed");
            self.source = source;
        }
        self.publish();
    }

    /// Publishes the breaker's decision and the gates: whether the request path may grant
    /// permits and settle successes on its own. Called after anything that changes the
    /// breaker or `stopping`.
    fn publish(&self) {
        let (until, reason) = if self.stopping {
            (u64::MAX, Refusal::Stopping)
        } else {
            let reason = match self.breaker.state() {
                HealthState::Unhealthy => Refusal::Unhealthy,
                _ => Refusal::CoolingDown,
            };
            (self.breaker.unavailable_until(), reason)
        };
        self.shared.publish(until, reason);
        let healthy = self.breaker.is_healthy() && !self.stopping;
        // With a cluster, budgets are admitted by Redis: only the actor talks to it.
        let budgets_shared = self.cluster.is_some() && self.shared.budgets.is_limited();
        self.shared
            .published
            .open
            .store(healthy && !budgets_shared, Ordering::SeqCst);
        self.shared
            .published
            .quiet
            .store(healthy && self.breaker.quiet(), Ordering::SeqCst);
    }

    fn note_error(&mut self, status: u16, error: Option<String>) {
        let text = error.unwrap_or_else(|| format!("status {status}"));
        self.last_error = Some((text, SystemTime::now()));
    }

    /// A retiring actor stops once nothing it granted is still out. Grants settled without a
    /// message do not wake it, so it also looks on a short timer.
    fn stop_when_drained(&self, ctx: &mut Context<Self>) {
        if self.stopping && self.shared.in_flight() == 0 {
            ctx.stop();
        }
    }

    /// Shares a new local cooldown/unhealthy state with the other replicas (once per state).
    fn share_state(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let until = self.breaker.until();
        if self.breaker.state() == HealthState::Healthy
            || self.source != StateSource::Local
            || until <= self.published_until
        {
            return;
        }
        self.published_until = until;
        let until_unix = unix_ms().saturating_add(until.saturating_sub(now_ms()));
        let (name, state) = (self.spec.name.clone(), self.breaker.state().name());
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

    /// Adopts a longer cooldown/unhealthy state another replica saw, ending it a little later
    /// than that replica does ([`Cluster::jitter_ms`]) so the replicas do not all retry the
    /// provider at the same instant.
    fn apply_remote(&mut self, remote: Option<RemoteState>) {
        let (Some(r), Some(cluster)) = (remote, &self.cluster) else {
            return;
        };
        if self.stopping {
            return;
        }
        let remaining = r.until_unix_ms.saturating_sub(unix_ms());
        let jitter = cluster.jitter_ms(r.until_unix_ms, remaining);
        let until = now_ms().saturating_add(remaining).saturating_add(jitter);
        let to = match r.state.as_str() {
            "cooling_down" => HealthState::CoolingDown,
            "unhealthy" => HealthState::Unhealthy,
            _ => return,
        };
        let (changed, t) = self.breaker.adopt_remote(to, until);
        if changed {
            self.published_until = until;
            self.source = StateSource::Cluster;
            self.apply(t, StateSource::Cluster);
        }
    }

    /// Active health check: a cheap `GET …/models`. The call runs as a spawned future, so the
    /// mailbox keeps serving permits while it is out. An answer classified as the request's
    /// fault or a rate limit proves the provider is up (a 401/404 on /models still answers);
    /// 5xx, 408, timeouts and connection errors count like failed requests.
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
            // The one classification: what counts against health on a request counts here.
            let failed = match &result {
                Ok(200..=299) => None,
                Ok(status) => matches!(
                    crate::providers::AttemptError::class_of(*status),
                    FailureClass::Server | FailureClass::Timeout
                )
                .then(|| format!("health check: status {status}")),
                Err(e) => Some(format!("health check: {e}")),
            };
            if let Some(error) = &failed {
                let status = *result.as_ref().unwrap_or(&502);
                act.note_error(
                    status,
                    Some(crate::providers::scrub(error, act.spec.api_key.as_ref())),
                );
            }
            let t = act.breaker.check_result(now_ms(), failed.is_none());
            act.apply(t, StateSource::Local);
            act.share_state(ctx);
        }));
    }

    /// Takes from the local budgets (the whole budget alone, or this replica's share when the
    /// cluster is configured but unreachable), then grants.
    fn take_local(
        &mut self,
        tokens: u32,
        probe: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Result<Permit, Unavailable> {
        match self.shared.take_budgets(tokens) {
            Ok(()) => Ok(self.grant(tokens, probe, ctx)),
            Err((reason, until)) => Err(self.refuse_budget(reason, until, probe)),
        }
    }

    fn refuse_budget(&mut self, reason: Refusal, until: u64, probe: Option<u64>) -> Unavailable {
        if let Some(id) = probe {
            // The probe never went out: the next request may probe.
            self.breaker.release_probe(id);
            self.publish();
        }
        Unavailable { reason, until }
    }

    fn grant(&mut self, tokens: u32, probe: Option<u64>, ctx: &mut Context<Self>) -> Permit {
        self.shared.count_grant();
        // The slow path: a fresh `Parts` is one allocation, rare next to the lock-free grants.
        let parts = super::Parts {
            spec: self.spec.clone(),
            addr: ctx.address(),
            shared: self.shared.clone(),
        };
        Permit::new(Arc::new(parts), probe, tokens)
    }
}

impl Actor for TargetActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!("llmux_target_state", "virtual_key" => self.spec.name.clone(), "state" => "healthy").set(1.0);
        // Bursts of hundreds of concurrent requests must not park senders on a tiny mailbox.
        ctx.set_mailbox_capacity(4096);
        self.publish();
        if let Some(every) = self.spec.health_check_interval {
            ctx.run_interval(every, |act, ctx| act.active_check(ctx));
        }
        if self.cluster.is_some() {
            ctx.run_interval(CLUSTER_POLL, |act, ctx| act.poll_cluster(ctx));
        }
    }
}

impl Handler<Acquire> for TargetActor {
    type Result = ResponseActFuture<Self, Result<Permit, Unavailable>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let refuse = |reason, until| -> Self::Result {
            Box::pin(fut::ready(Err(Unavailable { reason, until })))
        };
        if self.stopping {
            return refuse(Refusal::Stopping, u64::MAX);
        }
        let (admit, t) = self.breaker.admit(now_ms());
        if t.is_some() {
            self.apply(t, StateSource::Local);
        } else if matches!(admit, Admit::Grant { probe: Some(_) }) {
            // A probe is out: the others skip the target until it reports.
            self.publish();
        }
        let probe = match admit {
            Admit::Grant { probe } => probe,
            Admit::Refuse { state, until } => {
                let reason = match state {
                    HealthState::CoolingDown => Refusal::CoolingDown,
                    _ => Refusal::Unhealthy,
                };
                return refuse(reason, until);
            }
        };
        let tokens = msg.tokens;
        let cluster = match &self.cluster {
            Some(c) if self.shared.budgets.is_limited() => c.clone(),
            _ => return Box::pin(fut::ready(self.take_local(tokens, probe, ctx))),
        };
        if !cluster.is_up() {
            return Box::pin(fut::ready(self.take_share(&cluster, tokens, probe, ctx)));
        }
        let name = self.spec.name.clone();
        let (rpm, tpm) = (self.limit(Which::Requests), self.limit(Which::Tokens));
        // The cluster round trip runs as a spawned future: this mailbox keeps serving others.
        let admission = async move { cluster.admit(&name, rpm, tpm, tokens).await };
        Box::pin(
            admission
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Admission::Admitted => Ok(act.grant(tokens, probe, ctx)),
                    Admission::Denied(which, wait) => {
                        // A spent shared request budget is published for everyone.
                        let (reason, until) = act.shared.refused(now_ms(), Refused { which, wait });
                        Err(act.refuse_budget(reason, until, probe))
                    }
                    Admission::Unavailable => match act.cluster.clone() {
                        Some(c) => act.take_share(&c, tokens, probe, ctx),
                        None => act.take_local(tokens, probe, ctx),
                    },
                }),
        )
    }
}

impl TargetActor {
    /// A budget of the spec with its burst.
    fn limit(&self, which: Which) -> Option<Limit> {
        let (per_minute, burst) = match which {
            Which::Requests => (self.spec.rpm, self.spec.rpm_burst),
            Which::Tokens => (self.spec.tpm, self.spec.tpm_burst),
        };
        per_minute.map(|n| Limit {
            per_minute: n,
            burst: burst.unwrap_or(n),
        })
    }

    /// Takes from this replica's local share while Redis cannot answer, and books what it
    /// took so that it is charged to the shared budgets on rejoin.
    fn take_share(
        &mut self,
        cluster: &Cluster,
        tokens: u32,
        probe: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Result<Permit, Unavailable> {
        let permit = self.take_local(tokens, probe, ctx)?;
        cluster.note_local(&self.spec.name, self.spec.rpm, self.spec.tpm, tokens);
        Ok(permit)
    }
}

impl Handler<Outcome> for TargetActor {
    type Result = ();

    fn handle(&mut self, o: Outcome, ctx: &mut Context<Self>) {
        self.shared.release();
        match o.kind {
            OutcomeKind::Success => {
                self.shared
                    .settle_success(o.latency, o.tokens_estimated, o.tokens_used);
                self.correct_shared(o.tokens_estimated, o.tokens_used, ctx);
            }
            OutcomeKind::ClientError(status) => {
                *self.by_status.entry(status).or_default() += 1;
                self.shared.record_latency(o.latency);
                self.shared
                    .correct_tokens(o.tokens_estimated, o.tokens_used);
                self.note_error(status, o.error);
            }
            OutcomeKind::RateLimited { .. } => {
                *self.by_status.entry(429).or_default() += 1;
                self.failures += 1;
                self.note_error(429, o.error);
            }
            OutcomeKind::Failure(status) => {
                *self.by_status.entry(status).or_default() += 1;
                self.failures += 1;
                self.note_error(status, o.error);
            }
            OutcomeKind::Cancelled => {}
        }
        let t = self.breaker.record(now_ms(), o.kind, o.probe);
        self.apply(t, StateSource::Local);
        // Only now, with the decision published, may permits skip the mailbox again.
        self.shared.outcome_handled();
        self.share_state(ctx);
        self.stop_when_drained(ctx);
    }
}

impl TargetActor {
    /// With Redis-shared budgets, lands the token correction there too.
    fn correct_shared(&mut self, estimated: u32, used: Option<u64>, ctx: &mut Context<Self>) {
        let (Some(cluster), Some(tpm), Some(used)) = (self.cluster.clone(), self.spec.tpm, used)
        else {
            return;
        };
        let delta = i64::try_from(used)
            .unwrap_or(i64::MAX)
            .saturating_sub(estimated as i64);
        let name = self.spec.name.clone();
        ctx.spawn(async move { cluster.correct(&name, tpm, delta).await }.into_actor(self));
    }
}

impl Handler<GetStatus> for TargetActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        let state = self.breaker.state_at(now);
        let retry_in_ms = match state {
            HealthState::Healthy => None,
            _ => Some(self.breaker.unavailable_until().saturating_sub(now)),
        };
        let shared = &self.shared;
        let successes = shared.successes();
        let mut by_status = self.by_status.clone();
        if successes > 0 {
            by_status.insert(200, successes);
        }
        let (ewma, [p50, p99]) = shared.latency();
        let rpm = shared.budgets.requests(now);
        let tpm = shared.budgets.tokens_status(now);
        let (rpm_rate, tpm_rate) = shared.budgets.rates();
        MessageResult(TargetStatus {
            name: self.spec.name.clone(),
            provider: self.spec.provider.as_str(),
            state,
            consecutive_failures: self.breaker.consecutive_failures(),
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: self.last_error.as_ref().and_then(|(_, t)| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64)
            }),
            in_flight: shared.in_flight(),
            requests: shared.requests(),
            successes,
            failures: self.failures,
            by_status,
            rate_limit: RateLimitStatus {
                rpm: rpm_rate.map(|r| r.round() as u32),
                rpm_burst: rpm.map(|r| r.0),
                rpm_remaining: rpm.map(|r| r.1),
                tpm: tpm_rate.map(|r| r.round() as u32),
                tpm_burst: tpm.map(|r| r.0),
                tpm_remaining: tpm.map(|r| r.1),
            },
            latency_ms: LatencyStatus { ewma, p50, p99 },
            retry_in_ms,
            state_source: self.source,
        })
    }
}

impl Handler<Retire> for TargetActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.publish();
        self.stop_when_drained(ctx);
        ctx.run_interval(Duration::from_millis(100), |act, ctx| {
            act.stop_when_drained(ctx)
        });
    }
}
