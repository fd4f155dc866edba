//! Process clocks: monotonic milliseconds for timestamps published through atomics, and
//! wall-clock Unix milliseconds for what people read and replicas share. The state machines
//! never read these themselves: their callers pass `now` in.

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
