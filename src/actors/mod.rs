//! The actor system: one [`target::TargetActor`] per provider account, owning its rate limiter
//! and health; one [`supervisor::Supervisor`] owning the compiled trees, selection and fallback,
//! and reloads. No handler awaits upstream I/O: the request task does that with a
//! [`target::Permit`].

pub mod supervisor;
pub mod target;

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Process-local monotonic milliseconds, for timestamps published through atomics.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// `now_ms()` + `d`, saturating.
pub fn ms_after(d: Duration) -> u64 {
    now_ms().saturating_add(d.as_millis().min(u64::MAX as u128) as u64)
}

/// Wall-clock Unix milliseconds, for timestamps shown to people and shared between replicas.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
