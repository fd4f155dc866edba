//! Budget vocabulary shared by the target actors' local budgets and the cluster's shared ones:
//! a limit (rate and burst) and which budget a refusal came from.

use serde::Serialize;

/// Which budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    Requests,
    Tokens,
}

/// A budget: `per_minute` cells a minute, of which at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Limit {
    /// This replica's `share` of the limit, used alone while the cluster is away: the rate
    /// scaled exactly (not rounded up), the burst rounded down (at least one cell).
    pub fn scaled(self, share: f64) -> (f64, u32) {
        let rate = (self.per_minute as f64 * share).max(1e-3);
        let burst = ((self.burst as f64 * share + 1e-9).floor() as u32).max(1);
        (rate, burst)
    }
}
