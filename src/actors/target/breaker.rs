//! The health state machine of one target: circuit breaker, rate-limit cooldown and half-open
//! probes, as a pure value. Time is passed in (`now`, process milliseconds from
//! [`crate::clock::now_ms`] in production, any number in tests), nothing here does I/O or reads
//! a clock, so every transition is unit-tested without sleeping.
//!
//! Rules (README › "How selection and fallback work"):
//! - `failure_threshold` consecutive failures (5xx, timeouts, connection errors, unusable
//!   answers) open the circuit for `cooldown`, doubling after every failed probe up to
//!   `max_cooldown`.
//! - An open circuit lets exactly one *probe* through once its cooldown is over. Only the probe
//!   decides: 2xx or 4xx close the circuit (the target answered), 429 turns it into a rate-limit
//!   cooldown, a failure re-opens it with the doubled cooldown, a cancellation frees the slot
//!   for the next request. Anything else that reports while the circuit is open — a request
//!   granted before it opened, a probe that outlived `probe_timeout` — is recorded by the actor
//!   but changes no state.
//! - A 429 cools the target down for the provider's hint, or `rate_limit_cooldown` without one,
//!   capped by `max_retry_after`; a later 429 may extend a cooldown, never shorten it.

use std::time::Duration;

use serde::Serialize;

use crate::config::TargetSpec;

/// How long a half-open probe holds the probe slot. A probe that has not reported by then is
/// presumed stuck (its request may legitimately run up to the request deadline): the next
/// request probes instead, and the stale probe's outcome no longer counts as the probe's.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    /// Rate-limited by the provider: waiting out its hint.
    CoolingDown,
    /// Circuit open after consecutive failures (or a half-open probe in flight).
    Unhealthy,
}

impl HealthState {
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::CoolingDown => "cooling_down",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// What happened to a permitted request, classified once (see
/// [`crate::providers::FailureClass`]) for health, retries, fallback and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Success,
    /// 4xx caused by the request itself: says nothing about the target's health.
    ClientError(u16),
    /// Upstream 429; `retry_after` is the provider's hint, already parsed and capped.
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// 5xx, timeout (408), connection error, unusable answer, broken stream.
    Failure(u16),
    /// The client went away first; neutral for health.
    Cancelled,
}

/// The settings of [`TargetSpec`] the breaker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
    pub rate_limit_cooldown: Duration,
    pub max_retry_after: Duration,
    pub probe_timeout: Duration,
}

impl From<&TargetSpec> for BreakerSettings {
    fn from(s: &TargetSpec) -> BreakerSettings {
        BreakerSettings {
            failure_threshold: s.failure_threshold.max(1),
            cooldown: s.cooldown,
            max_cooldown: s.max_cooldown,
            rate_limit_cooldown: s.rate_limit_cooldown,
            max_retry_after: s.max_retry_after,
            probe_timeout: PROBE_TIMEOUT,
        }
    }
}

/// The answer to "may a request go to this target now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes; `probe` is the id of the half-open probe this request is, if it is one.
    Grant { probe: Option<u64> },
    /// No, until `until` (milliseconds, same clock as `now`).
    Refuse { state: HealthState, until: u64 },
}

/// A state change, for the actor to log, count and share with other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    id: u64,
    /// After this the probe slot is free again.
    deadline: u64,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    s: BreakerSettings,
    state: HealthState,
    /// End of the current cooldown or open period.
    until: u64,
    /// How many times in a row the circuit has opened: the exponent of the backoff.
    opens: u32,
    streak: u32,
    probe: Option<Probe>,
    probes_issued: u64,
}

/// `now + d` in milliseconds, saturating.
fn after(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Breaker {
    pub fn new(s: BreakerSettings) -> Breaker {
        Breaker {
            s,
            state: HealthState::Healthy,
            until: 0,
            opens: 0,
            streak: 0,
            probe: None,
            probes_issued: 0,
        }
    }

    /// The state as last decided (a cooldown that has run out still reads `CoolingDown` until
    /// the next admission; see [`Breaker::state_at`]).
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The state as an observer at `now` should see it.
    pub fn state_at(&self, now: u64) -> HealthState {
        match self.state {
            HealthState::CoolingDown if now >= self.until => HealthState::Healthy,
            s => s,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.streak
    }

    /// Until when the request path should not select the target (0 = available). While a
    /// probe is out, that is the probe's deadline.
    pub fn unavailable_until(&self) -> u64 {
        match (self.state, self.probe) {
            (HealthState::Healthy, _) => 0,
            (HealthState::Unhealthy, Some(p)) => p.deadline.max(self.until),
            _ => self.until,
        }
    }

    /// Healthy with no failure streak to reset: a success needs no bookkeeping.
    pub fn quiet(&self) -> bool {
        self.state == HealthState::Healthy && self.streak == 0
    }

    pub fn is_healthy(&self) -> bool {
        self.state == HealthState::Healthy
    }

    fn go(&mut self, to: HealthState, reason: &'static str) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        (from != to).then_some(Transition { from, to, reason })
    }

    /// Whether a request may go now. A cooldown that has run out ends here; an open circuit
    /// whose cooldown is over grants exactly one probe at a time.
    pub fn admit(&mut self, now: u64) -> (Admit, Option<Transition>) {
        match self.state {
            HealthState::Healthy => (Admit::Grant { probe: None }, None),
            HealthState::CoolingDown if now < self.until => (
                Admit::Refuse {
                    state: HealthState::CoolingDown,
                    until: self.until,
                },
                None,
            ),
            HealthState::CoolingDown => {
                let t = self.go(HealthState::Healthy, "rate-limit cooldown over");
                (Admit::Grant { probe: None }, t)
            }
            HealthState::Unhealthy => {
                let probe_out = self.probe.filter(|p| now < p.deadline);
                if now < self.until || probe_out.is_some() {
                    let until = probe_out.map_or(self.until, |p| p.deadline.max(self.until));
                    return (
                        Admit::Refuse {
                            state: HealthState::Unhealthy,
                            until: until.max(now + 1),
                        },
                        None,
                    );
                }
                self.probes_issued += 1;
                let id = self.probes_issued;
                self.probe = Some(Probe {
                    id,
                    deadline: after(now, self.s.probe_timeout),
                });
                (Admit::Grant { probe: Some(id) }, None)
            }
        }
    }

    /// Gives back a probe slot that was granted but never used (the budget refused it), so
    /// the next request may probe at once.
    pub fn release_probe(&mut self, id: u64) {
        if self.probe.is_some_and(|p| p.id == id) {
            self.probe = None;
        }
    }

    fn is_current_probe(&self, probe: Option<u64>) -> bool {
        matches!((probe, self.probe), (Some(id), Some(p)) if p.id == id)
    }

    /// Books the outcome of a request granted by [`Breaker::admit`]; `probe` is what the grant
    /// said.
    pub fn record(
        &mut self,
        now: u64,
        kind: OutcomeKind,
        probe: Option<u64>,
    ) -> Option<Transition> {
        if self.is_current_probe(probe) {
            self.probe = None;
            return self.record_probe(now, kind);
        }
        match kind {
            OutcomeKind::Success => {
                // A late success must not close an open circuit: only the probe may.
                if self.state != HealthState::Unhealthy {
                    self.streak = 0;
                }
                None
            }
            OutcomeKind::ClientError(_) | OutcomeKind::Cancelled => None,
            OutcomeKind::RateLimited { retry_after } => {
                if self.state == HealthState::Unhealthy {
                    return None;
                }
                self.cool_down(now, retry_after)
            }
            OutcomeKind::Failure(_) => {
                if self.state == HealthState::Unhealthy {
                    return None;
                }
                self.streak = self.streak.saturating_add(1);
                if self.streak >= self.s.failure_threshold {
                    self.open(now, "consecutive failures")
                } else {
                    None
                }
            }
        }
    }

    fn record_probe(&mut self, now: u64, kind: OutcomeKind) -> Option<Transition> {
        match kind {
            OutcomeKind::Success => self.close("probe succeeded"),
            // The target answered, so it is alive; the request itself was bad.
            OutcomeKind::ClientError(_) => self.close("probe answered"),
            OutcomeKind::RateLimited { retry_after } => {
                // Alive but out of budget: a rate-limit cooldown, not an outage.
                self.opens = 0;
                self.streak = 0;
                self.until = now;
                self.cool_down(now, retry_after)
            }
            OutcomeKind::Failure(_) => {
                self.streak = self.streak.saturating_add(1);
                self.open(now, "half-open probe failed")
            }
            OutcomeKind::Cancelled => {
                // Let the next request probe rather than wait for the probe timeout.
                self.until = self.until.min(now);
                None
            }
        }
    }

    /// The wait a 429 imposes: the hint, or the default cooldown, capped.
    pub fn rate_limit_wait(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.s.rate_limit_cooldown)
            .min(self.s.max_retry_after)
    }

    fn cool_down(&mut self, now: u64, retry_after: Option<Duration>) -> Option<Transition> {
        let until = after(now, self.rate_limit_wait(retry_after));
        // A new 429 during a cooldown extends it, never shortens it.
        self.until = if self.state == HealthState::CoolingDown {
            self.until.max(until)
        } else {
            until
        };
        self.go(HealthState::CoolingDown, "upstream 429")
    }

    fn open(&mut self, now: u64, reason: &'static str) -> Option<Transition> {
        let backoff = self
            .s
            .cooldown
            .saturating_mul(1u32 << self.opens.min(16))
            .min(self.s.max_cooldown);
        self.opens = self.opens.saturating_add(1);
        self.until = after(now, backoff);
        self.probe = None;
        self.go(HealthState::Unhealthy, reason)
    }

    fn close(&mut self, reason: &'static str) -> Option<Transition> {
        self.opens = 0;
        self.streak = 0;
        self.until = 0;
        self.probe = None;
        self.go(HealthState::Healthy, reason)
    }

    /// The result of an active health check: any answer below 500 proves the target is up.
    pub fn check_result(&mut self, now: u64, up: bool) -> Option<Transition> {
        if up {
            return match self.state {
                HealthState::Unhealthy => self.close("active health check succeeded"),
                _ => None,
            };
        }
        if self.state == HealthState::Unhealthy {
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak >= self.s.failure_threshold {
            self.open(now, "active health checks failed")
        } else {
            None
        }
    }

    /// Adopts a cooldown or open circuit another replica saw, when it lasts longer than what
    /// this replica knows. Returns whether anything changed, and the transition if any.
    pub fn adopt_remote(&mut self, to: HealthState, until: u64) -> (bool, Option<Transition>) {
        if until <= self.until {
            return (false, None);
        }
        let allowed = match to {
            HealthState::CoolingDown => self.state != HealthState::Unhealthy,
            HealthState::Unhealthy => self.state == HealthState::Healthy,
            HealthState::Healthy => false,
        };
        if !allowed {
            return (false, None);
        }
        self.until = until;
        (true, self.go(to, "state published by another replica"))
    }

    /// Retirement: the target takes nothing from now on.
    pub fn until(&self) -> u64 {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::*;
    use OutcomeKind::*;

    const MS: u64 = 1;
    const S: u64 = 1000;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(30),
            rate_limit_cooldown: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
            probe_timeout: Duration::from_secs(30),
        }
    }

    fn breaker() -> Breaker {
        Breaker::new(settings())
    }

    fn grant(b: &mut Breaker, now: u64) -> Option<u64> {
        match b.admit(now).0 {
            Admit::Grant { probe } => probe,
            other => panic!("expected a grant at {now}, got {other:?}"),
        }
    }

    fn refused_until(b: &mut Breaker, now: u64) -> u64 {
        match b.admit(now).0 {
            Admit::Refuse { until, .. } => until,
            other => panic!("expected a refusal at {now}, got {other:?}"),
        }
    }

    /// Opens the circuit at `now` with threshold failures.
    fn open_at(b: &mut Breaker, now: u64) {
        for _ in 0..3 {
            assert_eq!(grant(b, now), None);
            b.record(now, Failure(500), None);
        }
        assert_eq!(b.state(), Unhealthy);
    }

    #[test]
    fn failures_below_threshold_keep_it_healthy_and_success_resets_the_streak() {
        let mut b = breaker();
        assert!(b.quiet());
        b.record(0, Failure(502), None);
        b.record(0, Failure(408), None);
        assert_eq!(b.state(), Healthy);
        assert_eq!(b.consecutive_failures(), 2);
        assert!(!b.quiet());
        b.record(0, Success, None);
        assert_eq!(b.consecutive_failures(), 0);
        b.record(0, Failure(500), None);
        b.record(0, Failure(500), None);
        assert_eq!(b.state(), Healthy, "the streak restarted after the success");
    }

    #[test]
    fn client_errors_and_cancellations_are_neutral() {
        let mut b = breaker();
        b.record(0, Failure(500), None);
        b.record(0, ClientError(400), None);
        b.record(0, Cancelled, None);
        assert_eq!(b.consecutive_failures(), 1);
        assert_eq!(b.state(), Healthy);
    }

    #[test]
    fn threshold_opens_for_cooldown_then_one_probe() {
        let mut b = breaker();
        let t = 1000;
        open_at(&mut b, t);
        assert_eq!(b.unavailable_until(), t + 5 * S);
        assert_eq!(refused_until(&mut b, t + 4999 * MS), t + 5 * S);
        let probe = grant(&mut b, t + 5 * S);
        assert!(
            probe.is_some(),
            "the first request after the cooldown is a probe"
        );
        // Probe exclusivity: nobody else while it is out.
        assert_eq!(refused_until(&mut b, t + 6 * S), t + 5 * S + 30 * S);
        assert_eq!(b.unavailable_until(), t + 35 * S);
    }

    #[test]
    fn probe_success_closes_and_resets_backoff() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        let t = b.record(5 * S, Success, p).unwrap();
        assert_eq!((t.from, t.to), (Unhealthy, Healthy));
        assert!(b.quiet());
        assert_eq!(b.unavailable_until(), 0);
        // Backoff starts again from `cooldown`.
        open_at(&mut b, 10 * S);
        assert_eq!(b.unavailable_until(), 15 * S);
    }

    #[test]
    fn probe_client_error_closes_and_clears_the_streak() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        b.record(5 * S, ClientError(404), p);
        assert_eq!(b.state(), Healthy);
        assert_eq!(
            b.consecutive_failures(),
            0,
            "no failure streak left standing"
        );
        b.record(6 * S, Failure(500), None);
        b.record(6 * S, Failure(500), None);
        assert_eq!(
            b.state(),
            Healthy,
            "two new failures are below the threshold"
        );
    }

    #[test]
    fn probe_429_cools_down_for_the_hint_and_clears_the_streak() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        b.record(
            5 * S,
            RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            p,
        );
        assert_eq!(b.state(), CoolingDown);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(refused_until(&mut b, 11 * S), 12 * S);
        assert_eq!(grant(&mut b, 12 * S), None, "not a probe: cooldown over");
        assert_eq!(b.state(), Healthy);
    }

    #[test]
    fn failed_probes_double_the_cooldown_up_to_the_cap() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let mut now = 5 * S;
        for expected in [10, 20, 30, 30, 30] {
            let p = grant(&mut b, now);
            assert!(p.is_some());
            b.record(now, Failure(503), p);
            assert_eq!(b.state(), Unhealthy);
            assert_eq!(b.unavailable_until(), now + expected * S, "at {now}");
            assert_eq!(
                refused_until(&mut b, now + expected * S - 1),
                now + expected * S
            );
            now += expected * S;
        }
    }

    #[test]
    fn probe_timeout_is_a_failure_like_any_other() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        b.record(7 * S, Failure(408), p);
        assert_eq!(b.unavailable_until(), 17 * S);
    }

    #[test]
    fn cancelled_probe_frees_the_slot_at_once() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        b.record(6 * S, Cancelled, p);
        assert_eq!(b.state(), Unhealthy);
        let p2 = grant(&mut b, 6 * S);
        assert!(p2.is_some() && p2 != p, "the next request probes");
    }

    #[test]
    fn released_probe_frees_the_slot() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S).unwrap();
        b.release_probe(p);
        assert!(grant(&mut b, 5 * S).is_some());
    }

    #[test]
    fn a_stuck_probe_is_replaced_after_the_probe_timeout_and_its_late_outcome_is_ignored() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let stuck = grant(&mut b, 5 * S);
        refused_until(&mut b, 34 * S);
        let fresh = grant(&mut b, 35 * S);
        assert!(fresh.is_some() && fresh != stuck);
        // The stuck one answers 200 late: it is not the probe any more, the circuit stays open.
        assert_eq!(b.record(36 * S, Success, stuck), None);
        assert_eq!(b.state(), Unhealthy);
        // The current probe decides.
        b.record(36 * S, Success, fresh);
        assert_eq!(b.state(), Healthy);
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let mut b = breaker();
        // Four permits granted while healthy; three fail and open the circuit.
        for _ in 0..4 {
            grant(&mut b, 0);
        }
        for _ in 0..3 {
            b.record(0, Failure(500), None);
        }
        assert_eq!(b.state(), Unhealthy);
        let before = (b.unavailable_until(), b.consecutive_failures());
        for late in [
            Success,
            ClientError(400),
            Failure(500),
            RateLimited { retry_after: None },
            Cancelled,
        ] {
            assert_eq!(b.record(S, late, None), None, "{late:?}");
            assert_eq!(
                b.state(),
                Unhealthy,
                "{late:?} must not change an open circuit"
            );
            assert_eq!((b.unavailable_until(), b.consecutive_failures()), before);
        }
        // And the backoff exponent was not reset by the late success: a failed probe doubles.
        let p = grant(&mut b, 5 * S);
        b.record(5 * S, Failure(500), p);
        assert_eq!(b.unavailable_until(), 15 * S);
    }

    #[test]
    fn late_outcomes_after_the_probe_closed_it_are_ordinary() {
        let mut b = breaker();
        open_at(&mut b, 0);
        let p = grant(&mut b, 5 * S);
        b.record(5 * S, Success, p);
        // The same probe id reported again (duplicate) is an ordinary success now.
        b.record(6 * S, Failure(500), None);
        b.record(6 * S, Success, p);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.state(), Healthy);
    }

    #[test]
    fn rate_limit_uses_hint_default_and_cap() {
        let mut b = breaker();
        b.record(
            0,
            RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
            None,
        );
        assert_eq!((b.state(), b.unavailable_until()), (CoolingDown, 2 * S));
        let mut b = breaker();
        b.record(0, RateLimited { retry_after: None }, None);
        assert_eq!(
            b.unavailable_until(),
            10 * S,
            "rate_limit_cooldown without a hint"
        );
        let mut b = breaker();
        b.record(
            0,
            RateLimited {
                retry_after: Some(Duration::MAX),
            },
            None,
        );
        assert_eq!(b.unavailable_until(), 120 * S, "capped by max_retry_after");
    }

    #[test]
    fn later_429s_extend_a_cooldown_never_shorten_it() {
        let mut b = breaker();
        let ra = |s| RateLimited {
            retry_after: Some(Duration::from_secs(s)),
        };
        b.record(0, ra(10), None);
        b.record(S, ra(2), None);
        assert_eq!(b.unavailable_until(), 10 * S);
        b.record(2 * S, ra(20), None);
        assert_eq!(b.unavailable_until(), 22 * S);
    }

    #[test]
    fn cooldown_ends_at_its_time_and_state_at_reports_it() {
        let mut b = breaker();
        b.record(0, RateLimited { retry_after: None }, None);
        assert_eq!(b.state_at(9999), CoolingDown);
        assert_eq!(b.state_at(10 * S), Healthy);
        refused_until(&mut b, 9999);
        let (a, t) = b.admit(10 * S);
        assert_eq!(a, Admit::Grant { probe: None });
        assert_eq!(t.unwrap().to, Healthy);
    }

    #[test]
    fn failures_during_a_cooldown_can_open_the_circuit() {
        let mut b = breaker();
        b.record(0, RateLimited { retry_after: None }, None);
        for _ in 0..3 {
            b.record(0, Failure(500), None);
        }
        assert_eq!(b.state(), Unhealthy);
        assert_eq!(b.unavailable_until(), 5 * S);
        // A success during a cooldown resets the streak but keeps the provider's wait.
        let mut b = breaker();
        b.record(0, RateLimited { retry_after: None }, None);
        b.record(0, Failure(500), None);
        b.record(0, Success, None);
        assert_eq!((b.state(), b.consecutive_failures()), (CoolingDown, 0));
    }

    #[test]
    fn active_checks_close_an_open_circuit_and_can_open_one() {
        let mut b = breaker();
        open_at(&mut b, 0);
        assert_eq!(b.check_result(S, true).unwrap().to, Healthy);
        assert!(b.quiet());
        for _ in 0..2 {
            assert_eq!(b.check_result(2 * S, false), None);
        }
        assert_eq!(b.check_result(2 * S, false).unwrap().to, Unhealthy);
        // Failing checks while open do not extend the open period.
        let until = b.unavailable_until();
        b.check_result(3 * S, false);
        assert_eq!(b.unavailable_until(), until);
        // A good check while healthy changes nothing.
        let mut b = breaker();
        assert_eq!(b.check_result(0, true), None);
    }

    #[test]
    fn remote_states_are_adopted_only_when_longer_and_compatible() {
        let mut b = breaker();
        let (changed, t) = b.adopt_remote(CoolingDown, 5 * S);
        assert!(changed);
        assert_eq!(t.unwrap().to, CoolingDown);
        assert_eq!(b.adopt_remote(CoolingDown, 4 * S), (false, None), "shorter");
        assert_eq!(
            b.adopt_remote(Unhealthy, 9 * S),
            (false, None),
            "not from cooling down"
        );
        let (changed, t) = b.adopt_remote(CoolingDown, 9 * S);
        assert!(changed && t.is_none(), "extends the cooldown");
        assert_eq!(b.unavailable_until(), 9 * S);
        let mut b = breaker();
        assert!(b.adopt_remote(Unhealthy, 5 * S).0);
        assert_eq!(b.state(), Unhealthy);
        assert_eq!(b.adopt_remote(CoolingDown, 50 * S), (false, None));
        assert!(
            grant(&mut b, 5 * S).is_some(),
            "adopted open circuit probes like a local one"
        );
    }

    #[test]
    fn huge_times_saturate() {
        let mut b = Breaker::new(BreakerSettings {
            max_retry_after: Duration::MAX,
            max_cooldown: Duration::MAX,
            cooldown: Duration::MAX,
            ..settings()
        });
        b.record(
            u64::MAX - 5,
            RateLimited {
                retry_after: Some(Duration::MAX),
            },
            None,
        );
        assert_eq!(b.unavailable_until(), u64::MAX);
        let mut b = Breaker::new(BreakerSettings {
            cooldown: Duration::MAX,
            max_cooldown: Duration::MAX,
            ..settings()
        });
        open_at(&mut b, 10);
        assert_eq!(b.unavailable_until(), u64::MAX);
    }

    /// Every sequence of admissions and outcomes (depth 6 over a small alphabet) keeps the
    /// invariants: at most one current probe, Healthy ⇔ nothing published, an open circuit
    /// closes only through its current probe or an active check.
    #[test]
    fn exhaustive_sequences_keep_the_invariants() {
        #[derive(Clone, Copy, Debug)]
        enum Ev {
            Admit,
            Report(OutcomeKind, bool),
            Advance(u64),
        }
        let outcomes = [
            Success,
            ClientError(400),
            RateLimited { retry_after: None },
            Failure(500),
            Cancelled,
        ];
        let mut alphabet = vec![Ev::Admit, Ev::Advance(6 * S), Ev::Advance(31 * S)];
        for o in outcomes {
            alphabet.push(Ev::Report(o, false));
            alphabet.push(Ev::Report(o, true));
        }
        let mut count = 0u64;
        let mut stack: Vec<Vec<usize>> = vec![vec![]];
        while let Some(seq) = stack.pop() {
            if seq.len() < 5 {
                for i in 0..alphabet.len() {
                    let mut s = seq.clone();
                    s.push(i);
                    stack.push(s);
                }
            }
            let mut b = breaker();
            open_at(&mut b, 0);
            let mut now = 0;
            let mut probes: Vec<u64> = Vec::new();
            for &i in &seq {
                let before = b.state();
                let closed_by_probe = match alphabet[i] {
                    Ev::Admit => {
                        if let (Admit::Grant { probe: Some(p) }, _) = b.admit(now) {
                            probes.push(p);
                        }
                        false
                    }
                    Ev::Report(o, as_probe) => {
                        let id = if as_probe { probes.pop() } else { None };
                        let current = b.is_current_probe(id);
                        b.record(now, o, id);
                        current
                    }
                    Ev::Advance(d) => {
                        now += d;
                        false
                    }
                };
                count += 1;
                if before == Unhealthy && b.state() != Unhealthy {
                    assert!(closed_by_probe, "{seq:?}: left Unhealthy without its probe");
                }
                assert_eq!(b.state() == Healthy, b.unavailable_until() == 0, "{seq:?}");
                if b.state() != Unhealthy {
                    assert!(
                        b.probe.is_none(),
                        "{seq:?}: a probe outside an open circuit"
                    );
                }
            }
        }
        assert!(count > 100_000);
    }
}
