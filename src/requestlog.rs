//! The bounded in-memory log of recent requests that `GET /admin/requests` serves: route taken,
//! every attempt, models, tokens and cost. Old entries fall off the end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Price;
use crate::proxy::AttemptRecord;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unix milliseconds when the request arrived.
    pub time: u64,
    pub trace_id: String,
    pub config: Option<String>,
    pub endpoint: &'static str,
    pub status: u16,
    pub latency_ms: f64,
    pub stream: bool,
    pub attempts: Vec<AttemptRecord>,
    /// Leaf path that answered, if any.
    pub served_by: Option<String>,
    pub virtual_key: Option<String>,
    pub provider: Option<&'static str>,
    pub model_requested: Option<String>,
    pub model_used: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Entry {
    /// Cost from the price table, matching the model used, then the model asked for, then the
    /// longest price-table prefix of either (providers append dates: `gpt-4o-2024-08-06`).
    pub fn price(&mut self, table: &std::collections::HashMap<String, Price>) {
        let find = |m: &str| -> Option<Price> {
            table.get(m).copied().or_else(|| {
                table
                    .iter()
                    .filter(|(k, _)| m.starts_with(k.as_str()))
                    .max_by_key(|(k, _)| k.len())
                    .map(|(_, p)| *p)
            })
        };
        let price = self
            .model_used
            .as_deref()
            .and_then(find)
            .or_else(|| self.model_requested.as_deref().and_then(find));
        self.cost_usd = price.map(|p| {
            (self.prompt_tokens as f64 * p.input_per_mtok
                + self.completion_tokens as f64 * p.output_per_mtok)
                / 1e6
        });
    }
}

pub struct RequestLog {
    entries: Mutex<VecDeque<Arc<Entry>>>,
    capacity: usize,
    pub traffic: Traffic,
}

impl RequestLog {
    pub fn new(capacity: usize) -> RequestLog {
        RequestLog {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            traffic: Traffic::default(),
        }
    }

    pub fn push(&self, e: Entry) {
        self.traffic.record(
            e.time / 1000,
            !(200..300).contains(&e.status) || e.error.is_some(),
        );
        let mut q = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            q.pop_front();
        }
        q.push_back(Arc::new(e));
    }

    /// Newest first, optionally only one trace id.
    pub fn recent(&self, trace_id: Option<&str>, limit: usize) -> Vec<Arc<Entry>> {
        let q = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        q.iter()
            .rev()
            .filter(|e| trace_id.is_none_or(|t| e.trace_id == t))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Requests and errors per second over the last [`Traffic::WINDOW`] seconds, for the
/// status page's chart.
pub struct Traffic {
    buckets: Mutex<VecDeque<Bucket>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    /// Unix seconds.
    pub t: u64,
    pub requests: u32,
    pub errors: u32,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            buckets: Mutex::new(VecDeque::with_capacity(Traffic::WINDOW)),
        }
    }
}

impl Traffic {
    pub const WINDOW: usize = 900;

    pub fn record(&self, unix_secs: u64, error: bool) {
        let mut q = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match q.back_mut() {
            Some(b) if b.t == unix_secs => {
                b.requests += 1;
                b.errors += error as u32;
            }
            _ => {
                q.push_back(Bucket {
                    t: unix_secs,
                    requests: 1,
                    errors: error as u32,
                });
                while q.len() > Traffic::WINDOW
                    || q.front()
                        .is_some_and(|f| f.t + (Traffic::WINDOW as u64) < unix_secs)
                {
                    q.pop_front();
                }
            }
        }
    }

    /// Seconds with traffic, oldest first (seconds without any are absent).
    pub fn series(&self) -> Vec<Bucket> {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}
