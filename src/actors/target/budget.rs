//! The local rate-limit budgets of one target: requests per minute (`governor`) and tokens per
//! minute (a GCRA bucket that can go into debt). Both are decided together, so a refusal
//! spends nothing: the token bucket is checked first without taking, then `governor` takes the
//! request cell, then the tokens are taken, all under the token bucket's lock.
//!
//! Why the token budget is not a second `governor` limiter: governor cannot give cells back or
//! charge more than its burst, so an estimate corrected by the provider's reported usage could
//! never land (its `check_n` fails above the burst and an over-estimate is never refunded). The
//! token bucket is the same GCRA as governor and as the Redis script in `cluster`, with
//! [`Budgets::correct`] moving its theoretical arrival time both ways.
//!
//! Both are GCRA with emission interval `e = 60 s / limit` and an explicit burst `b`
//! ([`Limit`]): a take of `n ≤ b` cells succeeds when `tat − now ≤ (b − n)·e`, then `tat`
//! moves by `n·e`. Hence **any window of length T admits at most `b + T/e` cells**
//! (`b + T·limit/60 s`): the bucket starts full, and the last admission in the window found
//! `tat ≥ t₀ + (count − 1)·e`. A single request larger than `b` tokens goes only when the
//! bucket is full and leaves the excess as debt, so a window ending with it admits at most
//! `T/e + n`. With the old default `b = limit`, a 60-s window could pass `2·limit − 1`.
//!
//! Time is injected: [`Budgets::take`] and friends take `now` in milliseconds, and the request
//! limiter runs on a `governor` clock that tests replace with `FakeRelativeClock`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use crate::config::limit::{Limit, Which};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A refusal: which budget, and how long until the request would fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub which: Which,
    pub wait: Duration,
}

/// Tokens per minute as GCRA with debt. `tat` is the theoretical arrival time (ms): the bucket
/// is full when `tat <= now`; a request of `n` tokens fits when `tat + n·e − burst·e <= now`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Milliseconds per token.
    emission: f64,
    /// Tokens the bucket holds when full.
    burst: u32,
    tat: f64,
}

impl TokenBucket {
    /// `per_minute` tokens a minute (may be fractional: a replica's share), `burst` at once.
    pub fn new(per_minute: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            emission: 60_000.0 / per_minute,
            burst: burst.max(1),
            tat: 0.0,
        }
    }

    /// A request larger than the whole bucket still goes when the bucket is full (it could
    /// never go otherwise); the excess is charged as debt.
    fn cells(&self, n: u32) -> f64 {
        n.min(self.burst) as f64
    }

    /// How long until `n` tokens fit (zero: they fit now).
    pub fn wait(&self, now: u64, n: u32) -> Duration {
        let now = now as f64;
        let allow_at = self.tat.max(now) + self.emission * (self.cells(n) - self.burst as f64);
        Duration::from_secs_f64(((allow_at - now).max(0.0) / 1000.0).min(1e9))
    }

    /// Takes `n` tokens (call only after `wait` said zero); the part above the burst is debt.
    pub fn take(&mut self, now: u64, n: u32) {
        self.tat = self.tat.max(now as f64) + self.emission * n as f64;
    }

    /// Charges (`delta > 0`, may go into debt) or refunds (`delta < 0`, never beyond full).
    pub fn correct(&mut self, now: u64, delta: i64) {
        let now = now as f64;
        self.tat = (self.tat.max(now) + self.emission * delta as f64).max(now);
    }

    pub fn remaining(&self, now: u64) -> u32 {
        let now = now as f64;
        let free = (now + self.emission * self.burst as f64 - self.tat.max(now)) / self.emission;
        free.clamp(0.0, self.burst as f64) as u32
    }

    pub fn capacity(&self) -> u32 {
        self.burst
    }
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// The request budget: governor, plus the last remaining capacity it reported (governor tells
/// only on decisions) for the admin view.
struct Requests<C: Clock> {
    limiter: Limiter<C>,
    clock: C,
    /// Requests per minute (this replica's share with a cluster).
    rate: f64,
    capacity: u32,
    remaining: AtomicU32,
    seen: AtomicU64,
}

/// Both budgets of a target. Either may be absent (no limit).
pub struct Budgets<C: Clock = DefaultClock> {
    rpm: Option<Requests<C>>,
    tpm: Option<Mutex<TokenBucket>>,
}

impl Budgets<DefaultClock> {
    /// `share` scales both (1.0 alone; a replica's `local_share` with a cluster).
    pub fn new(rpm: Option<Limit>, tpm: Option<Limit>, share: f64) -> Budgets<DefaultClock> {
        Budgets::with_clock(rpm, tpm, share, DefaultClock::default())
    }
}

impl<C: Clock> Budgets<C> {
    pub fn with_clock(rpm: Option<Limit>, tpm: Option<Limit>, share: f64, clock: C) -> Budgets<C> {
        let valid = |l: &Limit| l.per_minute > 0 && l.burst > 0;
        Budgets {
            rpm: rpm.filter(valid).map(|l| {
                let (rate, burst) = l.scaled(share);
                let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                let period = Duration::from_secs_f64(60.0 / rate).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                    .allow_burst(burst);
                Requests {
                    limiter: RateLimiter::direct_with_clock(quota, &clock).with_middleware(),
                    clock,
                    rate,
                    capacity: burst.get(),
                    remaining: AtomicU32::new(burst.get()),
                    seen: AtomicU64::new(0),
                }
            }),
            tpm: tpm.filter(valid).map(|l| {
                let (rate, burst) = l.scaled(share);
                Mutex::new(TokenBucket::new(rate, burst))
            }),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }

    fn tokens(&self) -> Option<std::sync::MutexGuard<'_, TokenBucket>> {
        self.tpm
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes one request and `tokens`, or neither.
    pub fn take(&self, now: u64, tokens: u32) -> Result<(), Refused> {
        // The token lock is held across the request cell so that the pair is one decision.
        let mut bucket = self.tokens();
        if let Some(b) = &bucket {
            let wait = b.wait(now, tokens);
            if !wait.is_zero() {
                return Err(Refused {
                    which: Which::Tokens,
                    wait,
                });
            }
        }
        if let Some(r) = &self.rpm {
            match r.limiter.check() {
                Ok(snapshot) => {
                    r.remaining
                        .store(snapshot.remaining_burst_capacity(), Ordering::Relaxed);
                    r.seen.store(now, Ordering::Relaxed);
                }
                Err(not_until) => {
                    return Err(Refused {
                        which: Which::Requests,
                        wait: not_until.wait_time_from(r.clock.now()),
                    })
                }
            }
        }
        if let Some(b) = &mut bucket {
            b.take(now, tokens);
        }
        Ok(())
    }

    /// Lands the difference between what was charged (`estimated`) and what the provider
    /// reported (`used`): more is debt that later requests wait out, less is refunded.
    pub fn correct(&self, now: u64, estimated: u32, used: u64) {
        if let Some(mut b) = self.tokens() {
            let delta = i64::try_from(used)
                .unwrap_or(i64::MAX)
                .saturating_sub(estimated as i64);
            if delta != 0 {
                b.correct(now, delta);
            }
        }
    }

    /// (burst, estimated remaining) of the request budget.
    pub fn requests(&self, now: u64) -> Option<(u32, u32)> {
        self.rpm.as_ref().map(|r| {
            let elapsed_ms = now.saturating_sub(r.seen.load(Ordering::Relaxed));
            let refill = elapsed_ms as f64 / 60_000.0 * r.rate;
            let remaining =
                (r.remaining.load(Ordering::Relaxed) as f64 + refill).min(r.capacity as f64) as u32;
            (r.capacity, remaining)
        })
    }

    /// Requests and tokens per minute (this replica's share with a cluster).
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        (
            self.rpm.as_ref().map(|r| r.rate),
            self.tokens().map(|b| 60_000.0 / b.emission),
        )
    }

    /// (burst, remaining) of the token budget.
    pub fn tokens_status(&self, now: u64) -> Option<(u32, u32)> {
        self.tokens().map(|b| (b.capacity(), b.remaining(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    /// Budgets on a fake clock that tests advance together with `now`.
    struct Rig {
        clock: FakeRelativeClock,
        b: Budgets<FakeRelativeClock>,
        now: u64,
    }

    impl Rig {
        /// Bursts of a whole minute (the cases below are about the bucket, not the burst).
        fn new(rpm: Option<u32>, tpm: Option<u32>) -> Rig {
            let full = |n| Limit {
                per_minute: n,
                burst: n,
            };
            Rig::with(rpm.map(full), tpm.map(full), 1.0)
        }
        fn with(rpm: Option<Limit>, tpm: Option<Limit>, share: f64) -> Rig {
            let clock = FakeRelativeClock::default();
            Rig {
                b: Budgets::with_clock(rpm, tpm, share, clock.clone()),
                clock,
                now: 0,
            }
        }
        fn advance_ms(&mut self, ms: u64) {
            self.now += ms;
            self.clock.advance(Duration::from_millis(ms));
        }
        fn take(&self, tokens: u32) -> Result<(), Refused> {
            self.b.take(self.now, tokens)
        }
    }

    #[test]
    fn rpm_refuses_after_the_burst_and_refills_at_the_rate() {
        let mut r = Rig::new(Some(60), None);
        for _ in 0..60 {
            r.take(1).unwrap();
        }
        let refused = r.take(1).unwrap_err();
        assert_eq!(refused.which, Which::Requests);
        assert_eq!(refused.wait, Duration::from_secs(1));
        r.advance_ms(1000);
        r.take(1).unwrap();
        assert!(r.take(1).is_err());
    }

    #[test]
    fn tokens_refuse_only_what_does_not_fit() {
        let mut r = Rig::new(None, Some(6000));
        r.take(5000).unwrap();
        // 1000 left: a large request waits, a small one passes (no head-of-line blocking).
        let big = r.take(4000).unwrap_err();
        assert_eq!(big.which, Which::Tokens);
        assert_eq!(big.wait, Duration::from_secs(30));
        r.take(10).unwrap();
        r.take(990).unwrap();
        assert_eq!(r.take(1).unwrap_err().wait, Duration::from_millis(10));
        r.advance_ms(10);
        r.take(1).unwrap();
    }

    #[test]
    fn a_token_refusal_spends_no_request_cell() {
        let r = Rig::new(Some(2), Some(100));
        r.take(100).unwrap();
        for _ in 0..5 {
            assert_eq!(r.take(50).unwrap_err().which, Which::Tokens);
        }
        assert_eq!(
            r.b.requests(0),
            Some((2, 1)),
            "refusals took no request cell"
        );
    }

    #[test]
    fn a_request_refusal_spends_no_tokens() {
        let r = Rig::new(Some(1), Some(100));
        r.take(10).unwrap();
        for _ in 0..5 {
            assert_eq!(r.take(10).unwrap_err().which, Which::Requests);
        }
        assert_eq!(r.b.tokens_status(0), Some((100, 90)));
    }

    #[test]
    fn corrections_land_as_debt_or_refund() {
        let mut r = Rig::new(None, Some(600));
        r.take(100).unwrap();
        // The provider reported 700: 100 of debt beyond an empty bucket.
        r.b.correct(r.now, 100, 700);
        assert_eq!(r.b.tokens_status(r.now), Some((600, 0)));
        assert_eq!(r.take(1).unwrap_err().wait, Duration::from_millis(10_100));
        r.advance_ms(10_100);
        r.take(1).unwrap();
        // An over-estimate is refunded.
        let mut r = Rig::new(None, Some(600));
        r.take(500).unwrap();
        r.b.correct(r.now, 500, 20);
        assert_eq!(r.b.tokens_status(r.now), Some((600, 580)));
        // Refunds never make the bucket more than full.
        r.b.correct(r.now, 10_000, 0);
        assert_eq!(r.b.tokens_status(r.now), Some((600, 600)));
        r.take(600).unwrap();
        assert!(r.take(1).is_err());
        r.advance_ms(100);
        r.take(1).unwrap();
    }

    #[test]
    fn a_request_larger_than_the_budget_goes_when_full_and_leaves_debt() {
        let mut r = Rig::new(None, Some(100));
        r.take(250).unwrap();
        assert_eq!(r.b.tokens_status(r.now), Some((100, 0)));
        // 250 tokens at 100/min: the bucket is full again 2.5 minutes later.
        assert_eq!(r.take(100).unwrap_err().wait, Duration::from_secs(150));
        r.advance_ms(150_000);
        r.take(100).unwrap();
    }

    #[test]
    fn concurrent_takes_never_overdraw() {
        let r = std::sync::Arc::new(Rig::new(Some(1000), Some(1000)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..500).filter(|_| r.take(3).is_ok()).count())
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(
            granted, 333,
            "1000 tokens / 3 per request, whatever the interleaving"
        );
        assert_eq!(r.b.requests(0).unwrap().1, 1000 - 333);
    }

    #[test]
    fn huge_values_saturate() {
        let r = Rig::new(Some(1), Some(1));
        r.take(u32::MAX).unwrap();
        r.b.correct(r.now, 0, u64::MAX);
        assert!(r.take(1).unwrap_err().wait <= Duration::from_secs(1_000_000_000));
        r.b.correct(r.now, u32::MAX, 0);
        assert!(r.b.tokens_status(r.now).is_some());
    }

    /// Every `step_ms` for `total_ms`, offers requests until one is refused (a saturating
    /// load); returns the admission times.
    fn admissions(r: &mut Rig, step_ms: u64, total_ms: u64, tokens: u32) -> Vec<u64> {
        let mut at = Vec::new();
        while r.now <= total_ms {
            while r.take(tokens).is_ok() {
                at.push(r.now);
            }
            r.advance_ms(step_ms);
        }
        at
    }

    /// The most admissions in any closed window `[t, t + len]`.
    fn max_in_window(at: &[u64], len: u64) -> usize {
        let mut j = 0;
        (0..at.len())
            .map(|i| {
                while at[i] - at[j] > len {
                    j += 1;
                }
                i - j + 1
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn any_minute_admits_at_most_burst_plus_the_limit() {
        // rpm 600 with burst 60 (the default tenth): e = 100 ms, so a window of T ms admits at
        // most 60 + ⌊T / 100⌋, and a saturating load reaches it exactly.
        let mut r = Rig::with(
            Some(Limit {
                per_minute: 600,
                burst: 60,
            }),
            None,
            1.0,
        );
        let at = admissions(&mut r, 1, 130_000, 1);
        for len in [0, 1_000, 10_000, 59_999, 60_000, 120_000] {
            assert_eq!(
                max_in_window(&at, len) as u64,
                60 + len / 100,
                "window {len} ms"
            );
        }
        // The whole-minute burst of before: any 60-s window could pass 2 × 600 − 1.
        let mut r = Rig::new(Some(600), None);
        let at = admissions(&mut r, 1, 130_000, 1);
        assert_eq!(max_in_window(&at, 59_999), 1199);
    }

    #[test]
    fn any_minute_of_tokens_admits_at_most_burst_plus_the_limit() {
        // tpm 60 000, burst 6 000, requests of 500: e = 1 ms per token.
        let mut r = Rig::with(
            None,
            Some(Limit {
                per_minute: 60_000,
                burst: 6_000,
            }),
            1.0,
        );
        let at = admissions(&mut r, 1, 130_000, 500);
        for len in [0, 10_000, 60_000] {
            let tokens = max_in_window(&at, len) as u64 * 500;
            assert!(tokens <= 6_000 + len, "window {len} ms: {tokens}");
            assert!(tokens + 500 > 6_000 + len, "saturated: {tokens}");
        }
    }

    #[test]
    fn a_share_scales_the_rate_exactly_and_rounds_the_burst_down() {
        // 0.34 of rpm 600 / burst 60: 204 a minute (not 205) and a burst of 20 (not 21).
        let mut r = Rig::with(
            Some(Limit {
                per_minute: 600,
                burst: 60,
            }),
            Some(Limit {
                per_minute: 600,
                burst: 60,
            }),
            0.34,
        );
        let at = admissions(&mut r, 11, 120_000, 1);
        assert_eq!(max_in_window(&at, 0), 20);
        assert!(
            max_in_window(&at, 60_000) <= 20 + 204,
            "{}",
            max_in_window(&at, 60_000)
        );
        assert!(max_in_window(&at, 60_000) >= 20 + 203);
        assert_eq!(r.b.requests(r.now).map(|c| c.0), Some(20));
        let (rpm, tpm) = r.b.rates();
        assert!((rpm.unwrap() - 204.0).abs() < 1e-6 && (tpm.unwrap() - 204.0).abs() < 1e-6);
    }
}
