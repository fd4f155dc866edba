//! The lock-free gate of one target: what its actor publishes for the request path
//! (`unavailable_until`, whether a permit may be taken without asking, whether a success needs
//! telling) and the budgets and counters the request path may touch without a message.
//!
//! The gate never decides health. It only lets the request path act on a decision the actor
//! already published: while `open`, a permit is a budget take plus two atomic increments; a
//! success while `quiet` is settled here too. Everything else goes to the actor's mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use thread_local::ThreadLocal;

use super::budget::{Budgets, Refused, Which};
use super::Refusal;
use crate::clock::now_ms;
use crate::observability::telemetry::{
    split_counter, split_histogram, SplitCounter, SplitHistogram,
};

/// Latency samples kept for recent percentiles.
const LATENCY_WINDOW: usize = 512;

pub struct TargetShared {
    /// What the actor publishes and every request reads, on a cache line of its own: the
    /// counters every request writes would otherwise take it from the other workers' caches
    /// (a miss on each read).
    pub(super) published: CachePadded<Published>,
    /// Written by every request, and read by the retiring actor: shared by design.
    pub(super) counters: CachePadded<Counters>,
    /// What every request adds and only `/admin/targets` reads: per thread, added up when read,
    /// so the workers do not pass these cache lines back and forth on every request.
    local: ThreadLocal<CachePadded<Local>>,
    pub(super) budgets: Budgets,
    /// `llmux_attempts_total{status="200"}` and `llmux_attempt_duration_seconds` of this target.
    pub(super) attempts_ok: Arc<SplitCounter>,
    pub(super) attempt_seconds: Arc<SplitHistogram>,
}

pub(super) struct Published {
    /// `now_ms()` before which the target should not be selected; 0 = available.
    pub(super) unavailable_until: AtomicU64,
    /// Why it is unavailable (a [`Refusal`] as `u8`), so the walk can tell a spent budget (429
    /// to a client) from an open circuit (503) without asking the actor.
    pub(super) reason: AtomicU8,
    /// Permits may be granted without asking the actor.
    pub(super) open: AtomicBool,
    /// Successes and cancellations need not be reported to the actor.
    pub(super) quiet: AtomicBool,
    /// Outcomes sent to the actor and not yet handled. While any is pending, permits go
    /// through the mailbox, behind them: a request that starts after another's failure was
    /// answered is decided with that failure known (the mailbox is FIFO).
    pub(super) pending: AtomicU32,
}

pub(super) struct Counters {
    pub(super) in_flight: AtomicU32,
}

#[derive(Default)]
struct Local {
    requests: AtomicU64,
    successes: AtomicU64,
    latency: Mutex<Latency>,
}

impl TargetShared {
    pub(super) fn new(name: &str, budgets: Budgets) -> TargetShared {
        TargetShared {
            published: CachePadded::new(Published {
                unavailable_until: AtomicU64::new(0),
                reason: AtomicU8::new(Refusal::RateLimited as u8),
                open: AtomicBool::new(false),
                quiet: AtomicBool::new(false),
                pending: AtomicU32::new(0),
            }),
            counters: CachePadded::new(Counters {
                in_flight: AtomicU32::new(0),
            }),
            local: ThreadLocal::new(),
            budgets,
            attempts_ok: split_counter(format!("llmux_attempts_total\0{name}\0200"), || {
                metrics::counter!("llmux_attempts_total",
                    "virtual_key" => name.to_owned(), "status" => "200")
            }),
            attempt_seconds: split_histogram(
                format!("llmux_attempt_duration_seconds\0{name}"),
                || {
                    metrics::histogram!("llmux_attempt_duration_seconds",
                        "virtual_key" => name.to_owned())
                },
            ),
        }
    }

    pub fn available_at(&self, now: u64) -> bool {
        self.published.unavailable_until.load(Ordering::Relaxed) <= now
    }

    pub fn unavailable_until(&self) -> u64 {
        self.published.unavailable_until.load(Ordering::Relaxed)
    }

    /// Why the target is unavailable, when it is.
    pub fn unavailable_reason(&self) -> Refusal {
        Refusal::from_u8(self.published.reason.load(Ordering::Relaxed))
    }

    pub(super) fn publish(&self, until: u64, reason: Refusal) {
        self.published.reason.store(reason as u8, Ordering::Relaxed);
        self.published
            .unavailable_until
            .store(until, Ordering::Relaxed);
    }

    /// Takes one request and `tokens` from the local budgets, or says which refused and until
    /// when. Only a request-budget refusal is published: every request needs a request cell,
    /// but a token refusal says nothing about a smaller request, which may still fit.
    pub(super) fn take_budgets(&self, tokens: u32) -> Result<(), (Refusal, u64)> {
        // No clock read for a target without budgets (~25 ns, on every request).
        if !self.budgets.is_limited() {
            return Ok(());
        }
        let now = now_ms();
        self.budgets
            .take(now, tokens)
            .map_err(|r| self.refused(now, r))
    }

    pub(super) fn refused(&self, now: u64, r: Refused) -> (Refusal, u64) {
        let until = now.saturating_add(u64::try_from(r.wait.as_millis()).unwrap_or(u64::MAX));
        match r.which {
            Which::Requests => {
                // Raise only, never lower: the actor may have published a longer cooldown.
                if self
                    .published
                    .unavailable_until
                    .fetch_max(until, Ordering::Relaxed)
                    < until
                {
                    self.published
                        .reason
                        .store(Refusal::RateLimited as u8, Ordering::Relaxed);
                }
                (Refusal::RateLimited, until)
            }
            Which::Tokens => (Refusal::TokenBudget, until),
        }
    }

    /// The lock-free grant. `None` when the actor must decide (not healthy, retiring, or its
    /// budgets live in Redis).
    pub(super) fn try_grant(&self, tokens: u32) -> Option<Result<(), (Refusal, u64)>> {
        if !self.published.open.load(Ordering::Acquire)
            || self.published.pending.load(Ordering::SeqCst) > 0
        {
            return None;
        }
        // Counted before the second look, so a retiring actor that closes the gate and then
        // reads in_flight either sees this request or makes it ask (SeqCst on both sides).
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        if !self.published.open.load(Ordering::SeqCst) {
            self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if let Err(refused) = self.take_budgets(tokens) {
            self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Some(Err(refused));
        }
        self.mine().requests.fetch_add(1, Ordering::Relaxed);
        Some(Ok(()))
    }

    /// A grant the actor decided.
    pub(super) fn count_grant(&self) {
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        self.mine().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Books a success: counters, latency, and the token correction.
    pub(super) fn settle_success(&self, latency: Duration, estimated: u32, used: Option<u64>) {
        self.mine().successes.fetch_add(1, Ordering::Relaxed);
        self.record_latency(latency);
        self.correct_tokens(estimated, used);
    }

    fn mine(&self) -> &Local {
        self.local.get_or_default()
    }

    /// Permits granted, over all threads.
    pub fn requests(&self) -> u64 {
        self.local
            .iter()
            .map(|l| l.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// Successes booked, over all threads.
    pub fn successes(&self) -> u64 {
        self.local
            .iter()
            .map(|l| l.successes.load(Ordering::Relaxed))
            .sum()
    }

    /// The EWMA, p50 and p99 of recent latencies (ms). Each thread keeps its own EWMA and
    /// window: the EWMA shown is their mean, the percentiles are over all windows together.
    pub fn latency(&self) -> (Option<f64>, [Option<f64>; 2]) {
        let mut ewmas = Vec::new();
        let mut all = Vec::new();
        for l in self.local.iter() {
            let l = l.latency.lock().unwrap_or_else(|e| e.into_inner());
            ewmas.extend(l.ewma_ms);
            all.extend(l.window.iter().copied());
        }
        let ewma = (!ewmas.is_empty()).then(|| ewmas.iter().sum::<f64>() / ewmas.len() as f64);
        (ewma, percentiles(all, [0.5, 0.99]))
    }

    /// Lands reported usage in the local token budget (debt or refund).
    pub(super) fn correct_tokens(&self, estimated: u32, used: Option<u64>) {
        if let Some(used) = used.filter(|_| self.budgets.is_limited()) {
            self.budgets.correct(now_ms(), estimated, used);
        }
    }

    pub(super) fn record_latency(&self, latency: Duration) {
        self.mine()
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(latency);
    }

    /// An outcome is on its way to the actor (call before sending it).
    pub(super) fn outcome_sent(&self) {
        self.published.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The actor is handling an outcome.
    pub(super) fn outcome_handled(&self) {
        // Saturating: never wraps, whatever the interleaving.
        let _ = self
            .published
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub(super) fn release(&self) {
        self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn in_flight(&self) -> u32 {
        self.counters.in_flight.load(Ordering::SeqCst)
    }
}

/// Recent latencies: an EWMA and a window for percentiles.
#[derive(Default)]
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
}

/// The `qs` quantiles of `v` (nearest rank), `None` when it is empty.
fn percentiles(mut v: Vec<f32>, qs: [f64; 2]) -> [Option<f64>; 2] {
    if v.is_empty() {
        return [None, None];
    }
    v.sort_unstable_by(f32::total_cmp);
    qs.map(|q| Some(v[((v.len() - 1) as f64 * q).round() as usize] as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests, successes and latencies booked on several threads add up when read; the
    /// percentiles span every thread's window and the EWMA is the threads' mean.
    #[test]
    fn per_thread_counts_and_latencies_read_as_the_targets() {
        let t = TargetShared::new("gate-test", Budgets::new(None, None, 1.0));
        t.published.open.store(true, Ordering::SeqCst);
        assert_eq!((t.requests(), t.successes()), (0, 0));
        assert_eq!(t.latency(), (None, [None, None]));
        // Both threads stay alive until both are done: a thread that ended could hand its
        // slot (its thread id) to the next one.
        let both = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for ms in [10u64, 30] {
                let (t, both) = (&t, &both);
                s.spawn(move || {
                    both.wait();
                    for _ in 0..5 {
                        assert_eq!(t.try_grant(0), Some(Ok(())));
                        t.settle_success(Duration::from_millis(ms), 0, None);
                        t.release();
                    }
                    both.wait();
                });
            }
        });
        t.count_grant();
        t.release();
        assert_eq!(t.requests(), 11);
        assert_eq!(t.successes(), 10);
        assert_eq!(t.in_flight(), 0);
        let (ewma, [p50, p99]) = t.latency();
        assert!((ewma.unwrap() - 20.0).abs() < 1e-9, "{ewma:?}");
        // Ten samples, five of each: nearest rank puts p50 on the 6th (30 ms), p99 on the 10th.
        assert_eq!((p50, p99), (Some(30.0), Some(30.0)));
    }
}
