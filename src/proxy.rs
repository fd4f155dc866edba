//! The request task's side of routing: ask the supervisor for an attempt, call the provider
//! with the permit, report the outcome, retry the leaf or ask for the next one. All upstream
//! I/O happens here, on the HTTP worker that accepted the request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::actors::now_ms;
use crate::actors::supervisor::{Failure, Next, Route, Runtime, Supervisor};
use crate::actors::target::{OutcomeKind, Permit};
use crate::config::{Leaf, TargetSpec, Tree};
use crate::error::Error;
use crate::providers::stream::UpstreamStream;
use crate::providers::{self, Answer, AttemptError, Endpoint, FailureClass, Merged};
use bytes::Bytes;

/// First retry backoff ceiling; doubles per retry up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(8);

/// A parsed, validated client request, ready to route.
pub struct Prepared {
    pub trace_id: String,
    pub endpoint: Endpoint,
    pub body: Map<String, Value>,
    /// The body as the client sent it (`body` is parsed from it).
    pub raw: Bytes,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    pub idle_timeout: Duration,
    /// Estimated token cost (prompt + completion budget), for token budgets.
    pub tokens: u32,
}

/// One attempt on one leaf, for the response error, logs and the request log.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub path: Arc<str>,
    pub virtual_key: Arc<str>,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a leaf answered with.
pub enum Reply {
    Full(Answer),
    /// A committed stream: `head` holds the frames read before commit (up to the first content).
    Stream {
        head: Vec<Bytes>,
        upstream: UpstreamStream,
    },
}

/// A request some leaf answered.
pub struct Served {
    pub reply: Reply,
    /// For a stream, the permit stays held until the stream ends; its outcome is reported then.
    pub permit: Option<Permit>,
    pub leaf: Arc<Leaf>,
    pub target: Arc<TargetSpec>,
    /// Retries on the leaf that answered.
    pub retries: u32,
    pub attempts: Vec<AttemptRecord>,
}

/// A request no leaf answered.
pub struct Unserved {
    pub error: Error,
    pub attempts: Vec<AttemptRecord>,
}

/// Routes `req` through `tree` until a leaf answers or the tree is exhausted.
pub async fn route(
    supervisor: &Addr<Supervisor>,
    runtime: Arc<Runtime>,
    tree: Arc<Tree>,
    req: &Prepared,
) -> Result<Served, Unserved> {
    let settings = &runtime.config.server;
    let started = Instant::now();
    let deadline = started + settings.request_deadline;
    let queue_until = settings.max_queue_wait.map(|w| started + w);
    let mut route = Route::new(runtime.clone(), tree);
    let mut attempts = Vec::new();
    let mut failure: Option<Failure> = None;
    let mut last_error: Option<AttemptError> = None;
    loop {
        let step = match supervisor
            .send(Next {
                route,
                failure: failure.take(),
                tokens: req.tokens,
            })
            .await
        {
            Ok(step) => step,
            Err(_) => {
                return Err(Unserved {
                    error: Error::ShuttingDown,
                    attempts,
                })
            }
        };
        route = step.route;
        let Some((leaf, permit)) = step.attempt else {
            // Nothing left. If only budgets stood in the way, maybe wait for one.
            if route.only_skips() && last_error.is_none() {
                let free_in = Duration::from_millis(route.earliest_free.saturating_sub(now_ms()));
                if let Some(limit) = queue_until {
                    let at = Instant::now() + free_in.max(Duration::from_millis(5));
                    if route.earliest_free != u64::MAX && at <= limit && at < deadline {
                        tokio::time::sleep_until(at.into()).await;
                        route.restart();
                        continue;
                    }
                }
                let error = if route.earliest_free == u64::MAX {
                    Error::Upstream {
                        status: 503,
                        message: "no target is available for this request".into(),
                        kind: "server_error".into(),
                        code: Some("no_target_available".into()),
                        param: None,
                        retry_after: None,
                    }
                } else {
                    Error::NoCapacity {
                        retry_after: free_in.max(Duration::from_millis(1)),
                    }
                };
                return Err(Unserved { error, attempts });
            }
            return Err(Unserved {
                error: exhausted(last_error, &attempts),
                attempts,
            });
        };
        match run_leaf(&route, &leaf, permit, req, deadline, &mut attempts).await {
            Ok((reply, retries, permit)) => {
                return Ok(Served {
                    reply,
                    permit,
                    target: route.target(&leaf).spec.clone(),
                    leaf,
                    retries,
                    attempts,
                })
            }
            Err(e) => {
                failure = Some(Failure::Status(e.status));
                last_error = Some(e);
                if Instant::now() >= deadline {
                    return Err(Unserved {
                        error: exhausted(last_error, &attempts),
                        attempts,
                    });
                }
            }
        }
    }
}

/// The final error after every attempt failed: the last upstream error's status and type, with
/// a message listing each attempt.
fn exhausted(last: Option<AttemptError>, attempts: &[AttemptRecord]) -> Error {
    let Some(last) = last else {
        return Error::Internal("routing ended without an attempt".into());
    };
    let list: Vec<String> = attempts
        .iter()
        .map(|a| {
            format!(
                "{} ({}): {}{}",
                a.virtual_key,
                a.path,
                a.status,
                a.error
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let message = if attempts.len() == 1 {
        format!("{} [attempt: {}]", last.message, list[0])
    } else {
        format!(
            "all {} attempts failed: {}",
            attempts.len(),
            list.join("; ")
        )
    };
    Error::Upstream {
        status: last.status,
        message,
        kind: last.kind,
        code: last.code,
        param: last.param,
        retry_after: last.retry_after,
    }
}

/// Runs one leaf: the call, then its own retries (capped exponential backoff with full
/// jitter, `Retry-After` honoured when it fits the deadline).
async fn run_leaf(
    route: &Route,
    leaf: &Arc<Leaf>,
    mut permit: Permit,
    req: &Prepared,
    deadline: Instant,
    attempts: &mut Vec<AttemptRecord>,
) -> Result<(Reply, u32, Option<Permit>), AttemptError> {
    let mut retries = 0;
    loop {
        let t0 = Instant::now();
        let max_body = route.runtime.config.server.max_upstream_body_bytes;
        let result = attempt(&permit.spec, leaf, req, deadline, max_body).await;
        let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let status = match &result {
            Ok(_) => 200,
            Err(e) => e.status,
        };
        permit.record_attempt(status, latency_ms / 1000.0);
        let err = match result {
            Ok(reply) => {
                attempts.push(AttemptRecord {
                    path: leaf.path.clone(),
                    virtual_key: leaf.virtual_key.clone(),
                    status: 200,
                    latency_ms,
                    error: None,
                });
                return Ok(match reply {
                    Reply::Full(answer) => {
                        let used = answer.usage.prompt_tokens + answer.usage.completion_tokens;
                        permit.report(OutcomeKind::Success, (used > 0).then_some(used), None);
                        (Reply::Full(answer), retries, None)
                    }
                    stream => (stream, retries, Some(permit)),
                });
            }
            Err(e) => e,
        };
        tracing::info!(
            trace_id = %req.trace_id,
            virtual_key = %leaf.virtual_key,
            path = %leaf.path,
            status = err.status,
            error = %err.message,
            "attempt failed"
        );
        permit.report(outcome_of(&err), None, Some(err.message.clone()));
        attempts.push(AttemptRecord {
            path: leaf.path.clone(),
            virtual_key: leaf.virtual_key.clone(),
            status: err.status,
            latency_ms,
            error: Some(err.message.clone()),
        });
        if retries >= leaf.retry.attempts || !leaf.retry.retries_on(err.status) {
            return Err(err);
        }
        retries += 1;
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << (retries - 1).min(16))
            .min(BACKOFF_CAP);
        let mut wait = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
        if let (true, Some(ra)) = (leaf.retry.use_retry_after_header, err.retry_after) {
            wait = ra;
        }
        if Instant::now() + wait >= deadline {
            return Err(err);
        }
        tokio::time::sleep(wait).await;
        permit = match route.target(leaf).acquire(req.tokens).await {
            Ok(p) => p,
            // Cooling down or out of budget now: let the tree move on.
            Err(_) => return Err(err),
        };
    }
}

async fn attempt(
    spec: &TargetSpec,
    leaf: &Leaf,
    req: &Prepared,
    deadline: Instant,
    max_body: usize,
) -> Result<Reply, AttemptError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let timeout = leaf.request_timeout.map_or(remaining, |t| t.min(remaining));
    let with_usage;
    let overrides = if req.stream && !req.include_usage && providers::asks_usage(spec) {
        let mut o = leaf.override_params.clone();
        o.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
        with_usage = o;
        &with_usage
    } else {
        &leaf.override_params
    };
    let body = Merged {
        body: &req.body,
        overrides,
        raw: &req.raw,
    };
    let call = async {
        let upstream = providers::build(spec, req.endpoint, &body)?;
        let resp = providers::send(spec, upstream, timeout).await?;
        if req.stream {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut s =
                providers::open_stream(spec, resp, req.idle_timeout, req.include_usage, model);
            let head = s.prime(timeout).await?;
            Ok(Reply::Stream { head, upstream: s })
        } else {
            providers::finish(spec, req.endpoint, resp, timeout, max_body)
                .await
                .map(Reply::Full)
        }
    };
    // request_timeout bounds the time to a complete answer, or for a stream to its first
    // content; after that the stream's idle timeout applies.
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(AttemptError::timeout(timeout)),
    }
}

fn outcome_of(e: &AttemptError) -> OutcomeKind {
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
