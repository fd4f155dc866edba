//! Per gateway key limits (`[auth] keys = [{ …, rpm, tpm, max_concurrent, budget_usd }]`),
//! decided before any provider call:
//!
//! - `rpm` / `tpm`: `governor` limiters (tokens as the request's estimate, like target budgets);
//! - `max_concurrent`: requests and streams in flight, held by a [`Lease`] until the answer (or
//!   the stream) ends;
//! - `budget_usd = { daily, monthly }`: spend in UTC calendar periods, added when each request
//!   is logged with its cost. A request in flight when a budget runs out finishes; the next is
//!   refused.
//!
//! With `[cluster]`, rates and spend are shared through Redis: rates by the same GCRA script
//! as target budgets (key `{prefix}:rpm:key:NAME`), spend by atomic `INCRBYFLOAT` per period.
//! Concurrency is shared through leases in Redis (a sorted set scored by expiry, renewed while
//! held, so the slots of a replica that dies come back after [`LEASE_TTL`]). While Redis is
//! away a replica admits from its `local_share` of each rate, budget and concurrency limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::clock::unix_ms;
use crate::cluster::{Admission, Cluster};
use crate::config::limit::{Limit, Which};
use crate::config::{AuthKey, KeyLimits};
use crate::observability::requestlog::Spend;

/// Why a key's request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// `max_concurrent` requests are in flight.
    Concurrency { limit: u32 },
    /// `rpm` or `tpm` is spent; it frees up in `retry_after`.
    Rate {
        which: &'static str,
        retry_after: Duration,
    },
    /// The `daily`/`monthly` budget is spent until the period ends (`resets_in`).
    Budget {
        period: &'static str,
        limit: f64,
        spent: f64,
        resets_in: Duration,
    },
}

/// Spend in the current UTC day and month.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Periods {
    day: i64,
    day_usd: f64,
    month: i64,
    month_usd: f64,
}

/// The UTC day number and month number (year × 12 + month) of `unix_ms`, and the ms until each
/// ends.
fn periods_of(unix_ms: u64) -> (i64, i64, u64, u64) {
    const DAY: u64 = 86_400_000;
    let day = (unix_ms / DAY) as i64;
    let next_day = (unix_ms / DAY + 1) * DAY;
    let dt = time::OffsetDateTime::from_unix_timestamp((unix_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month) = (dt.year(), dt.month());
    let next_month = match month {
        time::Month::December => time::Date::from_calendar_date(year + 1, time::Month::January, 1),
        m => time::Date::from_calendar_date(year, m.next(), 1),
    }
    .map(|d| d.midnight().assume_utc().unix_timestamp() as u64 * 1000)
    .unwrap_or(next_day);
    (
        day,
        i64::from(year) * 12 + i64::from(month as u8),
        next_day - unix_ms,
        next_month.saturating_sub(unix_ms),
    )
}

/// One key's counters.
pub struct KeyGate {
    name: String,
    cluster: Option<Arc<Cluster>>,
    leases: Option<tokio::sync::mpsc::UnboundedSender<LeaseEvent>>,
    limits: KeyLimits,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<DefaultDirectRateLimiter>,
    /// The limiters' clock, built once: building a quanta clock calibrates it with CPUID
    /// (~40 µs, which showed as most of a request's CPU when done per request).
    clock: DefaultClock,
    in_flight: AtomicU32,
    spend: Mutex<Periods>,
}

/// How long a shared concurrency lease lives without renewal (renewed every third of it).
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// One admitted request of a key with `max_concurrent`: the slot frees when it drops.
#[derive(Debug)]
pub struct Lease {
    gate: Arc<KeyGate>,
    /// The Redis lease id, when the slot is shared.
    shared: Option<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        match self.shared.take() {
            Some(id) => {
                if let Some(tx) = &self.gate.leases {
                    // A send never blocks nor fails loudly; the lease task releases it.
                    let _ = tx.send(LeaseEvent::Release(self.gate.name.clone(), id));
                }
            }
            None => {
                self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// What the lease task (one per process) is told.
enum LeaseEvent {
    Hold(String, String),
    Release(String, String),
}

/// Renews the shared leases this process holds and releases the ones it gives back.
async fn keep_leases(
    cluster: Arc<Cluster>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LeaseEvent>,
) {
    let mut held: HashMap<String, String> = HashMap::new();
    let mut tick = tokio::time::interval(LEASE_TTL / 3);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(LeaseEvent::Hold(key, id)) => {
                    held.insert(id, key);
                }
                Some(LeaseEvent::Release(key, id)) => {
                    held.remove(&id);
                    cluster.lease_release(&key, &id).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                for (id, key) in &held {
                    cluster.lease_renew(key, id, LEASE_TTL).await;
                }
            }
        }
    }
}

impl std::fmt::Debug for KeyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGate")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A limit of `per_minute` with a tenth of the minute at once, like target budgets.
fn limit(per_minute: u32) -> Limit {
    Limit {
        per_minute,
        burst: per_minute.div_ceil(10).max(1),
    }
}

/// The local limiter: the whole limit alone, or `share` of it as one of several replicas.
fn limiter(per_minute: u32, share: f64, clock: &DefaultClock) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(per_minute)?;
    let (rate, burst) = limit(per_minute).scaled(share);
    let period = Duration::from_secs_f64(60.0 / rate);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| RateLimiter::direct_with_clock(q.allow_burst(burst), clock))
}

impl KeyGate {
    fn new(
        name: &str,
        limits: KeyLimits,
        cluster: Option<Arc<Cluster>>,
        leases: Option<tokio::sync::mpsc::UnboundedSender<LeaseEvent>>,
    ) -> KeyGate {
        let share = cluster.as_ref().map_or(1.0, |c| c.local_share);
        let clock = DefaultClock::default();
        KeyGate {
            name: format!("key:{name}"),
            leases,
            rpm: limits.rpm.and_then(|l| limiter(l, share, &clock)),
            tpm: limits.tpm.and_then(|l| limiter(l, share, &clock)),
            clock,
            cluster,
            limits,
            in_flight: AtomicU32::new(0),
            spend: Mutex::new(Periods::default()),
        }
    }

    fn periods(&self, now: u64) -> std::sync::MutexGuard<'_, Periods> {
        let mut p = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let (day, month, _, _) = periods_of(now);
        if p.day != day {
            p.day = day;
            p.day_usd = 0.0;
        }
        if p.month != month {
            p.month = month;
            p.month_usd = 0.0;
        }
        p
    }

    /// Admits one request estimated at `tokens`, or says why not. Checks spend nothing when
    /// they refuse (budgets, concurrency first; rates last).
    pub async fn admit(self: &Arc<Self>, tokens: u32) -> Result<Option<Lease>, Refusal> {
        let now = unix_ms();
        let (day, month, day_left, month_left) = periods_of(now);
        let b = &self.limits;
        if b.daily_usd.is_some() || b.monthly_usd.is_some() {
            let shared = match &self.cluster {
                Some(c) => c.spend_get(&self.name, day, month).await,
                None => None,
            };
            // Shared spend when Redis answers; else this replica's, against its share.
            let (spent_day, spent_month, share) = match shared {
                Some((d, m)) => (d, m, 1.0),
                None => {
                    let p = self.periods(now);
                    let share = self.cluster.as_ref().map_or(1.0, |c| c.local_share);
                    (p.day_usd, p.month_usd, share)
                }
            };
            for (period, limit, spent, left) in [
                ("daily", b.daily_usd, spent_day, day_left),
                ("monthly", b.monthly_usd, spent_month, month_left),
            ] {
                if let Some(limit) = limit.filter(|l| spent >= *l * share) {
                    return Err(Refusal::Budget {
                        period,
                        limit,
                        spent,
                        resets_in: Duration::from_millis(left),
                    });
                }
            }
        }
        let lease = match self.limits.max_concurrent {
            Some(limit) => Some(self.take_slot(limit).await?),
            None => None,
        };
        if let Some(c) = &self.cluster {
            if b.rpm.is_some() || b.tpm.is_some() {
                match c
                    .admit(&self.name, b.rpm.map(limit), b.tpm.map(limit), tokens)
                    .await
                {
                    Admission::Admitted => return Ok(lease),
                    Admission::Denied(which, wait) => {
                        return Err(Refusal::Rate {
                            which: if which == Which::Tokens { "tpm" } else { "rpm" },
                            retry_after: wait,
                        })
                    }
                    // Redis away: this replica's share, below.
                    Admission::Unavailable => {}
                }
            }
        }
        if let Some(tpm) = &self.tpm {
            let n = NonZeroU32::new(tokens.max(1)).unwrap_or(NonZeroU32::MIN);
            match tpm.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(Refusal::Rate {
                        which: "tpm",
                        retry_after: not_until.wait_time_from(self.clock.now()),
                    })
                }
                // More tokens than the whole burst: it can never pass at once.
                Err(_) => {
                    return Err(Refusal::Rate {
                        which: "tpm",
                        retry_after: Duration::from_secs(60),
                    })
                }
            }
        }
        if let Some(rpm) = &self.rpm {
            if let Err(not_until) = rpm.check() {
                return Err(Refusal::Rate {
                    which: "rpm",
                    retry_after: not_until.wait_time_from(self.clock.now()),
                });
            }
        }
        Ok(lease)
    }

    /// One concurrency slot: a shared lease when Redis answers, else a local one (this
    /// replica's share of the limit when it is one of several).
    async fn take_slot(self: &Arc<Self>, limit: u32) -> Result<Lease, Refusal> {
        if let (Some(c), Some(tx)) = (&self.cluster, &self.leases) {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let id = format!("{}-{}", c.replica, NEXT.fetch_add(1, Ordering::Relaxed));
            match c.lease_take(&self.name, &id, limit, LEASE_TTL).await {
                Some(true) => {
                    let _ = tx.send(LeaseEvent::Hold(self.name.clone(), id.clone()));
                    return Ok(Lease {
                        gate: self.clone(),
                        shared: Some(id),
                    });
                }
                Some(false) => return Err(Refusal::Concurrency { limit }),
                None => {}
            }
        }
        let local = match &self.cluster {
            Some(c) => ((limit as f64 * c.local_share).floor() as u32).max(1),
            None => limit,
        };
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let lease = Lease {
            gate: self.clone(),
            shared: None,
        };
        if prev >= local {
            return Err(Refusal::Concurrency { limit });
        }
        Ok(lease)
    }

    /// Spend so far in the current day and month, for the admin API.
    pub fn spent(&self) -> (f64, f64) {
        let p = self.periods(unix_ms());
        (p.day_usd, p.month_usd)
    }
}

impl Spend for KeyGate {
    fn record(&self, usd: f64) {
        if !(usd.is_finite() && usd > 0.0) {
            return;
        }
        let now = unix_ms();
        {
            let mut p = self.periods(now);
            p.day_usd += usd;
            p.month_usd += usd;
        }
        if let Some(c) = self.cluster.clone() {
            let (day, month, _, _) = periods_of(now);
            let name = self.name.clone();
            // Off the request path; a spend Redis could not take stays counted locally only.
            actix_web::rt::spawn(async move {
                c.spend_add(&name, day, month, usd).await;
            });
        }
    }
}

/// Every key's gate, kept across reloads (spend survives; a key whose limits changed gets new
/// limiters but keeps its spend).
#[derive(Default)]
pub struct Tenancy {
    gates: Mutex<HashMap<String, Arc<KeyGate>>>,
    cluster: Option<Arc<Cluster>>,
    leases: Option<tokio::sync::mpsc::UnboundedSender<LeaseEvent>>,
}

impl Tenancy {
    /// With a cluster, starts the task that renews and releases shared leases (on the current
    /// arbiter).
    pub fn new(cluster: Option<Arc<Cluster>>) -> Tenancy {
        let leases = cluster.clone().map(|c| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            actix_web::rt::spawn(keep_leases(c, rx));
            tx
        });
        Tenancy {
            gates: Mutex::default(),
            cluster,
            leases,
        }
    }

    /// Spend so far today and this month of the key named `name`, if it has a gate.
    pub fn spent(&self, name: &str) -> Option<(f64, f64)> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.get(name).map(|g| g.spent())
    }

    /// The gate of `key`, or `None` when the key has no limits.
    pub fn gate(&self, key: &AuthKey) -> Option<Arc<KeyGate>> {
        if key.limits == KeyLimits::default() {
            return None;
        }
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = gates.get(&key.name).filter(|g| g.limits == key.limits) {
            return Some(g.clone());
        }
        let gate = KeyGate::new(
            &key.name,
            key.limits.clone(),
            self.cluster.clone(),
            self.leases.clone(),
        );
        if let Some(old) = gates.get(&key.name) {
            *gate.spend.lock().unwrap_or_else(|e| e.into_inner()) =
                *old.spend.lock().unwrap_or_else(|e| e.into_inner());
        }
        let gate = Arc::new(gate);
        gates.insert(key.name.clone(), gate.clone());
        Some(gate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limits: KeyLimits) -> Arc<KeyGate> {
        Arc::new(KeyGate::new("k", limits, None, None))
    }

    fn admit(g: &Arc<KeyGate>, tokens: u32) -> Result<Option<Lease>, Refusal> {
        futures_util::FutureExt::now_or_never(g.admit(tokens)).expect("no cluster: never waits")
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        // 2026-01-31 23:59:59.000 UTC and one second later.
        let before = 1_769_903_999_000;
        let (d1, m1, day_left, month_left) = periods_of(before);
        let (d2, m2, _, _) = periods_of(before + 1_000);
        assert_eq!((d2 - d1, m2 - m1), (1, 1));
        assert_eq!((day_left, month_left), (1_000, 1_000));
        // December rolls into January of the next year.
        let dec = 1_798_761_599_000; // 2026-12-31 23:59:59 UTC
        let (_, m, _, left) = periods_of(dec);
        assert_eq!(m, 2026 * 12 + 12);
        assert_eq!(left, 1_000);
    }

    #[test]
    fn concurrency_is_leased_and_released() {
        let g = gate(KeyLimits {
            max_concurrent: Some(2),
            ..KeyLimits::default()
        });
        let a = admit(&g, 1).unwrap();
        let b = admit(&g, 1).unwrap();
        assert_eq!(admit(&g, 1).unwrap_err(), Refusal::Concurrency { limit: 2 });
        drop(a);
        let c = admit(&g, 1).unwrap();
        assert!(b.is_some() && c.is_some());
        drop((b, c));
        assert_eq!(
            g.in_flight.load(Ordering::Acquire),
            0,
            "refusals hold no slot"
        );
    }

    #[test]
    fn budgets_refuse_once_spent_and_rates_refuse_past_the_burst() {
        let g = gate(KeyLimits {
            daily_usd: Some(1.0),
            monthly_usd: Some(10.0),
            ..KeyLimits::default()
        });
        assert!(admit(&g, 1).is_ok());
        g.record(0.6);
        assert!(admit(&g, 1).is_ok(), "0.6 of 1.0");
        g.record(0.6);
        match admit(&g, 1).unwrap_err() {
            Refusal::Budget { period, spent, .. } => {
                assert_eq!(period, "daily");
                assert!((spent - 1.2).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.spent().1, 1.2);
        let r = gate(KeyLimits {
            rpm: Some(20),
            ..KeyLimits::default()
        });
        // A burst of a tenth of the minute (2), then refused with a wait.
        assert!(admit(&r, 1).is_ok() && admit(&r, 1).is_ok());
        match admit(&r, 1).unwrap_err() {
            Refusal::Rate { which, retry_after } => {
                assert_eq!(which, "rpm");
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        let t = gate(KeyLimits {
            tpm: Some(1000),
            ..KeyLimits::default()
        });
        assert!(admit(&t, 100).is_ok());
        assert!(matches!(
            admit(&t, 100),
            Err(Refusal::Rate { which: "tpm", .. })
        ));
    }
}
