//! One provider account's target: the actor that alone decides its health and budgets
//! ([`actor`]), the pure state machines it runs ([`breaker`] for circuit breaking and
//! cooldowns, [`budget`] for the rpm/tpm budgets), and the lock-free [`gate`] through which the
//! request path acts on what the actor published.
//!
//! Requests get a [`Permit`] before calling the provider and report an [`OutcomeKind`] after;
//! the upstream call itself happens in the request task, never in the actor's mailbox, so a
//! slow provider cannot slow anything else.
//!
//! Two paths to a permit (README › Architecture): while the actor has published the target as
//! open (healthy, not retiring, budgets local), the request path takes the budget cells itself
//! and settles successes with atomics — no message, no cross-thread wake-up. Anything that can
//! change health (failures, 429s, half-open probes, Redis-shared budgets, the end of a
//! cooldown) goes through the mailbox.

mod actor;
pub mod breaker;
pub mod budget;
mod gate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde::Serialize;

pub use actor::TargetActor;
pub use breaker::{HealthState, OutcomeKind};
pub use gate::TargetShared;

use crate::providers::Upstream;

/// One provider account's actor, as the request path sees it.
#[derive(Clone)]
pub struct TargetHandle(Arc<Parts>);

/// What a permit needs of its target, behind one `Arc`: every request takes a permit, and
/// each `Arc` it clones is a reference count all workers share (a cache-line transfer on each
/// clone and drop).
pub struct Parts {
    pub spec: Arc<Upstream>,
    pub addr: Addr<TargetActor>,
    pub shared: Arc<TargetShared>,
}

impl std::ops::Deref for TargetHandle {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl TargetHandle {
    pub fn new(spec: Arc<Upstream>, addr: Addr<TargetActor>, shared: Arc<TargetShared>) -> Self {
        TargetHandle(Arc::new(Parts { spec, addr, shared }))
    }

    /// A permit without a message, when the actor has published the target as open.
    pub fn try_acquire(&self, tokens: u32) -> Option<Result<Permit, Unavailable>> {
        self.shared.try_grant(tokens).map(|granted| match granted {
            Ok(()) => Ok(Permit::new(self.0.clone(), None, tokens)),
            Err((reason, until)) => Err(Unavailable { reason, until }),
        })
    }

    /// A permit: lock-free when the target is open, else from the actor.
    pub async fn acquire(&self, tokens: u32) -> Result<Permit, Unavailable> {
        if let Some(answer) = self.try_acquire(tokens) {
            return answer;
        }
        // The mailbox path, boxed: inline, its message future (~0.2 kB) would be room every
        // request's routing carries, though the fast path above answers most of them.
        match Box::pin(self.addr.send(Acquire { tokens })).await {
            Ok(answer) => answer,
            // The actor is gone (retired mid-request): unavailable.
            Err(_) => Err(Unavailable {
                reason: Refusal::Stopping,
                until: u64::MAX,
            }),
        }
    }
}

/// The one classification of a failed attempt ([`crate::providers::FailureClass`]) as health
/// sees it; retries, fallback and metrics read the same `AttemptError`.
impl From<&crate::providers::AttemptError> for OutcomeKind {
    fn from(e: &crate::providers::AttemptError) -> OutcomeKind {
        use crate::providers::FailureClass;
        match e.class {
            FailureClass::Client => OutcomeKind::ClientError(e.status),
            FailureClass::RateLimited => OutcomeKind::RateLimited {
                retry_after: e.retry_after,
            },
            FailureClass::Server | FailureClass::Timeout | FailureClass::Connection => {
                OutcomeKind::Failure(e.status)
            }
        }
    }
}

/// Why a permit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Refusal {
    /// The local (or shared) request budget is spent.
    RateLimited,
    /// The token budget cannot fit this request now.
    TokenBudget,
    /// The provider answered 429 and the target waits out its hint.
    CoolingDown,
    /// Circuit open (or a half-open probe is out).
    Unhealthy,
    /// Retired by a reload.
    Stopping,
}

impl Refusal {
    fn from_u8(v: u8) -> Refusal {
        match v {
            0 => Refusal::RateLimited,
            1 => Refusal::TokenBudget,
            2 => Refusal::CoolingDown,
            3 => Refusal::Unhealthy,
            _ => Refusal::Stopping,
        }
    }

    /// Out of *budget* (it frees up by itself at a known time: 429 to a client), as opposed
    /// to unavailable (circuit open, retired: 503).
    pub fn is_budget(self) -> bool {
        matches!(
            self,
            Refusal::RateLimited | Refusal::TokenBudget | Refusal::CoolingDown
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Refusal::RateLimited => "request budget (rpm) spent",
            Refusal::TokenBudget => "token budget (tpm) cannot fit the request",
            Refusal::CoolingDown => "cooling down after a provider 429",
            Refusal::Unhealthy => "circuit open after consecutive failures",
            Refusal::Stopping => "retired by a reload",
        }
    }
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

#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub latency: std::time::Duration,
    /// The half-open probe id, when the permit was a probe.
    pub probe: Option<u64>,
    pub tokens_estimated: u32,
    pub tokens_used: Option<u64>,
    pub error: Option<String>,
}

/// Right to send one request to a target. Dropping it without [`Permit::report`] reports
/// `Cancelled`, so a client disconnect releases the in-flight slot and any half-open probe.
pub struct Permit {
    target: Arc<Parts>,
    probe: Option<u64>,
    tokens: u32,
    started: Instant,
    reported: bool,
}

impl Permit {
    fn new(target: Arc<Parts>, probe: Option<u64>, tokens: u32) -> Permit {
        Permit {
            target,
            probe,
            tokens,
            started: Instant::now(),
            reported: false,
        }
    }

    /// The target's upstream settings.
    pub fn spec(&self) -> &Arc<Upstream> {
        &self.target.spec
    }

    /// Attempt metrics, with this target's handles for the common (200) case.
    pub fn record_attempt(&self, status: u16, seconds: f64) {
        if status == 200 {
            self.target.shared.attempts_ok.increment(1);
        } else {
            metrics::counter!("llmux_attempts_total", "virtual_key" => self.target.spec.name.clone(),
                "status" => status.to_string())
            .increment(1);
        }
        self.target.shared.attempt_seconds.record(seconds);
    }

    pub fn report(mut self, kind: OutcomeKind, tokens_used: Option<u64>, error: Option<String>) {
        self.reported = true;
        self.settle(kind, tokens_used, error);
    }

    /// Settles here what cannot change health (a success while the target is quiet, a
    /// cancellation that is not a probe); tells the actor everything else.
    fn settle(&self, kind: OutcomeKind, tokens_used: Option<u64>, error: Option<String>) {
        let latency = self.started.elapsed();
        let local = self.probe.is_none()
            && match kind {
                OutcomeKind::Success => self
                    .target
                    .shared
                    .published
                    .quiet
                    .load(std::sync::atomic::Ordering::SeqCst),
                OutcomeKind::Cancelled => true,
                _ => false,
            };
        if local {
            if let OutcomeKind::Success = kind {
                self.target
                    .shared
                    .settle_success(latency, self.tokens, tokens_used);
            }
            self.target.shared.release();
            return;
        }
        self.target.shared.outcome_sent();
        self.target.addr.do_send(Outcome {
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
    /// Per minute (this replica's share while a cluster is down).
    pub rpm: Option<u32>,
    /// The most admitted at once; `*_remaining` counts down from it.
    pub rpm_burst: Option<u32>,
    pub rpm_remaining: Option<u32>,
    pub tpm: Option<u32>,
    pub tpm_burst: Option<u32>,
    pub tpm_remaining: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyStatus {
    pub ewma: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateSource {
    /// Seen by this replica.
    Local,
    /// Published by another replica through the cluster.
    Cluster,
}

/// Retires the actor once no runtime holds it any more (a reload removed or changed its
/// target and every request that started on the old config has finished; see
/// `supervisor::Retirement`): it refuses new permits and stops once its in-flight requests have
/// reported.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;
