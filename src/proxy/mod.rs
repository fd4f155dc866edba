//! The data path of one request: run the supervisor's selection for an attempt, call the
//! provider with the permit, report the outcome, retry the leaf or ask for the next one. All upstream
//! I/O happens here, on the HTTP worker that accepted the request.

mod cache;
mod grace;
pub mod responses;
mod stream;

pub use grace::{Grace, GraceEnd};
pub use stream::ClientStream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value};

use crate::actors::supervisor::{Failure, Route, Runtime, SkipReason};
use crate::actors::target::{OutcomeKind, Permit, TargetHandle};
use crate::cache::{Cache, Status};
use crate::clock::now_ms;
use crate::config::condition::Request;
use crate::config::{Leaf, TargetSpec, Tree};
use crate::error::Error;
use crate::observability::otel;
use crate::observability::requestlog::{AttemptRecord, Attempts};
use crate::providers::stream::UpstreamStream;
use crate::providers::{
    self, Answer, AttemptError, Body, Endpoint, FailureClass, Merged, Upstream,
};
use crate::routing::estimate::Estimate;
use bytes::Bytes;

/// First retry backoff ceiling; doubles per retry up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(8);

/// A parsed, validated client request, ready to route.
pub struct Prepared {
    pub trace_id: Arc<str>,
    pub endpoint: Endpoint,
    /// The body as the client sent it (parsed into a map only where a leaf needs one).
    pub body: Body,
    /// The model the client asked for.
    pub model: Option<Arc<str>>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    pub idle_timeout: Duration,
    /// What is known of the token cost before a leaf is chosen, for token budgets.
    pub estimate: Estimate,
    /// `x-portkey-metadata`, for conditional routing.
    pub metadata: Option<Arc<BTreeMap<String, String>>>,
    /// `x-portkey-cache-namespace`.
    pub cache_namespace: Option<Arc<str>>,
    /// `x-portkey-cache-force-refresh: true`.
    pub cache_force_refresh: bool,
    /// For `/v1/responses`: the turn's conversation state.
    pub turn: Option<Arc<responses::Turn>>,
    /// Only this target may serve (a `previous_response_id` follow-up: the account that
    /// produced the earlier response).
    pub pinned: Option<u32>,
    /// The request's OpenTelemetry span, parent of each attempt's (with `[telemetry]`).
    pub otel: Option<tracing::Span>,
}

impl Prepared {
    /// What the tree's conditional nodes choose for this request; a 400 when a condition
    /// needs the body as a JSON object and it is not one.
    fn choices(&self, tree: &Tree) -> Result<Box<[Option<u16>]>, Error> {
        if tree.conditionals == 0 {
            return Ok(Box::default());
        }
        let params = if tree.reads_params {
            Some(
                self.body
                    .map()
                    .map_err(|e| Error::invalid(e.message, None))?,
            )
        } else {
            None
        };
        Ok(tree.choose(&Request {
            metadata: self.metadata.as_deref(),
            params,
            pathname: self.endpoint.gateway_path(),
        }))
    }
}

/// What a leaf answered with.
pub enum Reply {
    Full(Answer),
    /// A committed stream: `head` holds the frames read before commit (up to the first content).
    Stream {
        head: Vec<Bytes>,
        upstream: UpstreamStream,
    },
    /// A cache hit: the stored answer (a streaming client gets it replayed as SSE).
    Cached(Arc<crate::cache::Stored>),
}

/// A request some leaf answered.
pub struct Served {
    pub reply: Reply,
    /// For a stream, the permit stays held until the stream ends; its outcome is reported then.
    pub permit: Option<Permit>,
    pub leaf: Arc<Leaf>,
    /// The serving target's provider.
    pub provider: crate::config::ProviderKind,
    /// Retries on the leaf that answered.
    pub retries: u32,
    pub attempts: Attempts,
    /// What the cache did (`Disabled` when the leaf that answered has no `cache`).
    pub cache: Status,
    /// For a stream that missed the cache: where to store it once it completes.
    pub store: Option<cache::Pending>,
    /// For a Responses stream: what to remember once it completes.
    pub conversation: Option<responses::StreamDone>,
}

impl Served {
    /// A cache hit for `leaf`: no permit, no attempt of its own.
    fn cached(
        route: &Route,
        leaf: Arc<Leaf>,
        stored: Arc<crate::cache::Stored>,
        status: Status,
        attempts: Attempts,
    ) -> Served {
        Served {
            reply: Reply::Cached(stored),
            permit: None,
            provider: route.target(&leaf).spec.provider,
            leaf,
            retries: 0,
            attempts,
            cache: status,
            store: None,
            conversation: None,
        }
    }
}

/// A request no leaf answered.
pub struct Unserved {
    pub error: Error,
    pub attempts: Attempts,
    /// The last leaf that really answered (with a failure), for the route headers.
    pub last: Option<LastLeaf>,
}

/// The leaf an unserved request last reached.
pub struct LastLeaf {
    pub leaf: Arc<Leaf>,
    pub provider: &'static str,
    pub retries: u32,
}

/// How one leaf failed.
enum LeafError {
    /// The leaf's provider cannot serve this request (its translation refused it before
    /// anything was sent): the walk skips it like an unavailable one.
    Unsupported(AttemptError),
    /// The provider answered with a failure (after the leaf's own retries).
    Failed { error: AttemptError, retries: u32 },
}

/// What the data path keeps across requests, borrowed from the server's state for the
/// request: cloning these `Arc`s would touch reference counts that every worker shares (a
/// cache-line transfer each).
#[derive(Default, Clone)]
pub struct Services<'a> {
    /// The response cache, for leaves whose tree says `cache`.
    pub cache: Option<&'a Arc<Cache>>,
    /// Responses API state (affinity, translated conversations).
    pub conversations: Option<&'a Arc<crate::conversation::Conversations>>,
}

/// Routes `req` through `tree` until a leaf answers (or the cache does, for a leaf whose tree
/// says `cache`) or the tree is exhausted.
pub async fn route(
    runtime: Arc<Runtime>,
    tree: Arc<Tree>,
    req: &Prepared,
    services: &Services<'_>,
) -> Result<Served, Unserved> {
    let cache = services.cache;
    let settings = &runtime.config.server;
    let started = Instant::now();
    let deadline = started + settings.request_deadline;
    let queue_until = settings.max_queue_wait.map(|w| started + w);
    let choices = match req.choices(&tree) {
        Ok(c) => c,
        Err(error) => {
            return Err(Unserved {
                error,
                attempts: Attempts::new(),
                last: None,
            })
        }
    };
    // Moved, not cloned: the count of the shared runtime is touched once per request.
    let mut route = Route::new(runtime, tree, req.endpoint, choices);
    route.pinned = req.pinned;
    let mut attempts = Attempts::new();
    let mut failure: Option<Failure> = None;
    // Boxed, like the refusal below: an `AttemptError` is 120 bytes, and this future is
    // copied whole when it is created (every request pays for the failure path's space).
    let mut last_error: Option<Box<AttemptError>> = None;
    let mut last: Option<LastLeaf> = None;
    // The last translation refusal, to answer with when it is the only reason nothing served.
    let mut refusal: Option<Box<AttemptError>> = None;
    let mut embedded: cache::Embedded = None;
    loop {
        let Some(leaf) = route.advance(failure.take()) else {
            if !route.walk.only_skips() || last_error.is_some() {
                return Err(Unserved {
                    error: exhausted(last_error, &attempts),
                    attempts,
                    last,
                });
            }
            // Nothing was attempted: every leaf was skipped. A cached answer of a leaf that is
            // only unavailable (rate-limited, cooling down, circuit open) still serves: that is
            // when a cache helps most.
            if let Some(cache) = cache {
                let busy: Vec<Arc<Leaf>> = route
                    .walk
                    .skipped
                    .iter()
                    .filter(|s| {
                        matches!(s.reason, SkipReason::Busy { .. }) && s.leaf.cache.is_some()
                    })
                    .map(|s| s.leaf.clone())
                    .collect();
                for leaf in busy {
                    let Some(policy) = leaf.cache else { continue };
                    let looked =
                        cache::lookup(cache, &route.runtime, req, &leaf, policy, &mut embedded)
                            .await;
                    if let Ok(cache::Lookup::Hit(stored, status)) = looked {
                        return Ok(Served::cached(&route, leaf, stored, status, attempts));
                    }
                }
            }
            // If only budgets stood in the way, maybe wait for one. The error lives in a block
            // of its own, so the routing future keeps no room for it across the wait.
            let at = {
                let error = skipped_error(&route, refusal.take());
                let queue = match (&error, queue_until) {
                    (Error::NoCapacity { retry_after }, Some(limit)) => {
                        let at = Instant::now() + (*retry_after).max(Duration::from_millis(5));
                        (at <= limit && at < deadline).then_some(at)
                    }
                    _ => None,
                };
                let Some(at) = queue else {
                    return Err(Unserved {
                        error,
                        attempts,
                        last,
                    });
                };
                at
            };
            tokio::time::sleep_until(at.into()).await;
            route.walk.restart();
            continue;
        };
        // The cache is asked before the permit: a hit spends no budget.
        let mut pending = None;
        if let (Some(cache), Some(policy)) = (cache, leaf.cache) {
            let looked =
                cache::lookup(cache, &route.runtime, req, &leaf, policy, &mut embedded).await;
            match looked {
                Ok(cache::Lookup::Hit(stored, status)) => {
                    return Ok(Served::cached(&route, leaf, stored, status, attempts))
                }
                Ok(cache::Lookup::Miss(p)) => pending = Some(p),
                Err(error) => {
                    return Err(Unserved {
                        error,
                        attempts,
                        last,
                    })
                }
            }
        }
        let permit = match route.acquire(&leaf, req.estimate).await {
            Ok(p) => p,
            Err(skip) => {
                failure = Some(skip);
                continue;
            }
        };
        let provider = route.target(&leaf).spec.provider.as_str();
        // Boxed: inline, the leaf run's state (the attempt, the upstream call) would sit in
        // every request's routing future and handler future, and each level of nesting copies
        // its whole state when it is created (BENCHMARKS.md, run R).
        match Box::pin(run_leaf(
            &route,
            &leaf,
            permit,
            req,
            deadline,
            &mut attempts,
        ))
        .await
        {
            Ok((reply, retries, permit)) => {
                let conversation = match (req.endpoint, &services.conversations) {
                    (Endpoint::Responses, Some(c)) => {
                        responses::remember(c, &route.target(&leaf).spec, req, &reply)
                    }
                    _ => None,
                };
                let status = pending.as_ref().map_or(Status::Disabled, |p| p.status);
                let store = match (&reply, pending) {
                    (Reply::Full(answer), Some(p)) => {
                        p.store_answer(answer);
                        None
                    }
                    (_, p) => p,
                };
                return Ok(Served {
                    reply,
                    permit,
                    provider: route.target(&leaf).spec.provider,
                    leaf,
                    retries,
                    attempts,
                    cache: status,
                    store,
                    conversation,
                });
            }
            Err(LeafError::Unsupported(e)) => {
                route
                    .walk
                    .skip_current(SkipReason::Unsupported, Some(e.message.clone()));
                failure = Some(Failure::Skip(SkipReason::Unsupported));
                refusal = Some(Box::new(e));
            }
            Err(LeafError::Failed { error, retries }) => {
                failure = Some(Failure::Status(error.status));
                last = Some(LastLeaf {
                    leaf,
                    provider,
                    retries,
                });
                last_error = Some(Box::new(error));
                if Instant::now() >= deadline {
                    return Err(Unserved {
                        error: exhausted(last_error, &attempts),
                        attempts,
                        last,
                    });
                }
            }
        }
    }
}

/// The error when every leaf was skipped without an attempt: 400 when none can serve the
/// request at all, 429 when the ones that could are only out of budget (rate limits free up by
/// themselves, so a client should retry), else 503 (circuit open or retired: unavailable).
fn skipped_error(route: &Route, refusal: Option<Box<AttemptError>>) -> Error {
    let walk = &route.walk;
    let now = now_ms();
    let list = walk
        .skipped
        .iter()
        .map(|s| {
            let why = match (&s.detail, s.reason) {
                (Some(d), _) => d.clone(),
                (None, SkipReason::Unsupported) => format!(
                    "provider {} does not serve {}",
                    route.target(&s.leaf).spec.provider.as_str(),
                    route.endpoint.openai_path()
                ),
                (None, SkipReason::Busy { budget: true, .. }) => {
                    "out of budget (rate limit or cooldown)".to_owned()
                }
                (None, SkipReason::Busy { .. }) => {
                    "unavailable (circuit open or retired)".to_owned()
                }
            };
            let when = match s.reason {
                SkipReason::Busy { until, .. } if until != u64::MAX => {
                    format!(", free in {} ms", until.saturating_sub(now))
                }
                _ => String::new(),
            };
            format!("{} ({}): {why}{when}", s.leaf.virtual_key, s.leaf.path)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let busy = |budget: bool| {
        walk.skipped
            .iter()
            .any(|s| matches!(s.reason, SkipReason::Busy { budget: b, .. } if b == budget))
    };
    if busy(true) && !busy(false) {
        let free_in = walk.earliest_free(true).saturating_sub(now);
        return Error::NoCapacity {
            retry_after: Duration::from_millis(free_in.max(1)),
        };
    }
    if !busy(true) && !busy(false) && !walk.unmatched.is_empty() {
        // The request matched no condition where the walk needed one: the request decides
        // this, so it is the client's to change (a 400 listing the conditions).
        let mut message = walk.unmatched.join("; ");
        if !list.is_empty() {
            message.push_str(&format!("; and no other target could serve it: {list}"));
        }
        return Error::InvalidRequest {
            message,
            param: None,
            code: Some("no_condition_matched"),
        };
    }
    if !busy(true) && !busy(false) && !walk.skipped.is_empty() {
        if let (1, Some(e)) = (walk.skipped.len(), refusal) {
            // One leaf, refused by its translation: its own error, with its `param`.
            let e = *e;
            return Error::Upstream {
                status: e.status,
                message: e.message,
                kind: e.kind,
                code: e.code,
                param: e.param,
                retry_after: None,
            };
        }
        return Error::InvalidRequest {
            message: format!("no target in this config can serve this request: {list}"),
            param: None,
            code: Some("unsupported_by_targets"),
        };
    }
    Error::Upstream {
        status: 503,
        message: if list.is_empty() {
            "no target is available for this request".to_owned()
        } else {
            format!("no target is available for this request: {list}")
        },
        kind: "server_error".into(),
        code: Some("service_unavailable".into()),
        param: None,
        retry_after: None,
    }
}

/// The final error after every attempt failed: the last upstream error's status and type, with
/// a message listing each attempt.
fn exhausted(last: Option<Box<AttemptError>>, attempts: &[AttemptRecord]) -> Error {
    let Some(last) = last else {
        return Error::Internal("routing ended without an attempt".into());
    };
    let last = *last;
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
/// jitter; `Retry-After` honoured when it fits the deadline; after a 429, the target's
/// cooldown is waited out, since the target refuses permits until it ends).
async fn run_leaf(
    route: &Route,
    leaf: &Arc<Leaf>,
    mut permit: Permit,
    req: &Prepared,
    deadline: Instant,
    attempts: &mut Attempts,
) -> Result<(Reply, u32, Option<Permit>), LeafError> {
    let mut retries = 0;
    let target = route.target(leaf);
    loop {
        let t0 = Instant::now();
        let max_body = route.runtime.config.server.max_upstream_body_bytes;
        let span = match &req.otel {
            Some(parent) => otel::attempt_span(
                parent,
                req.endpoint,
                permit.spec().provider,
                &leaf.virtual_key,
                &leaf.path,
                retries,
            ),
            None => tracing::Span::none(),
        };
        // The result is read in a block of its own, so its room is not kept across a retry's
        // wait below.
        let latency_ms;
        let err = {
            let result = attempt(permit.spec(), leaf, req, t0, deadline, max_body, &span).await;
            latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(reply) => {
                    if !span.is_none() {
                        let (model, usage) = match &reply {
                            Reply::Full(a) => (a.model.as_deref(), Some(a.usage)),
                            _ => (None, None),
                        };
                        otel::attempt_finished(&span, 200, None, model, usage);
                    }
                    permit.record_attempt(200, latency_ms / 1000.0);
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
                // Nothing was sent: the permit goes back as cancelled, neutral for health.
                Err(Attempt::Refused(e)) if retries == 0 => return Err(LeafError::Unsupported(e)),
                Err(Attempt::Refused(e)) | Err(Attempt::Failed(e)) => e,
            }
        };
        permit.record_attempt(err.status, latency_ms / 1000.0);
        if !span.is_none() {
            otel::attempt_finished(&span, err.status, Some(err.class.as_str()), None, None);
        }
        drop(span);
        tracing::info!(
            trace_id = %req.trace_id,
            virtual_key = %leaf.virtual_key,
            path = %leaf.path,
            status = err.status,
            error = %err.message,
            "attempt failed"
        );
        permit.report(OutcomeKind::from(&err), None, Some(err.message.clone()));
        attempts.push(AttemptRecord {
            path: leaf.path.clone(),
            virtual_key: leaf.virtual_key.clone(),
            status: err.status,
            latency_ms,
            error: Some(err.message.clone()),
        });
        let failed = move |error| LeafError::Failed { error, retries };
        if retries >= leaf.retry.attempts || !leaf.retry.retries_on(err.status) {
            return Err(failed(err));
        }
        retries += 1;
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << (retries - 1).min(16))
            .min(BACKOFF_CAP);
        let mut wait = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
        if let (true, Some(ra)) = (leaf.retry.use_retry_after_header, err.retry_after) {
            wait = ra;
        }
        if err.class == FailureClass::RateLimited {
            // The target cools down for this long whatever the retry settings say.
            wait = wait.max(cooldown_after_429(&target.spec, err.retry_after));
        }
        if !fits(wait, deadline) {
            return Err(failed(err));
        }
        let tokens = req.estimate.for_leaf(leaf, &target.spec);
        // Boxed: retries are rare, and this wait inline (a sleep, then a re-acquire) would be
        // room every leaf run carries while it waits for its upstream (~0.4 kB each).
        permit = match Box::pin(retry_permit(wait, target, tokens, deadline)).await {
            Some(p) => p,
            // Circuit open, retired, or the budget frees too late: let the tree move on.
            None => return Err(failed(err)),
        };
    }
}

/// What a target's breaker waits after a 429 with this hint.
fn cooldown_after_429(spec: &TargetSpec, hint: Option<Duration>) -> Duration {
    hint.unwrap_or(spec.rate_limit_cooldown)
        .min(spec.max_retry_after)
}

fn fits(wait: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(wait)
        .is_some_and(|at| at < deadline)
}

/// After `wait`, a permit for the leaf's next try ([`acquire_before`]).
async fn retry_permit(
    wait: Duration,
    target: &TargetHandle,
    tokens: u32,
    deadline: Instant,
) -> Option<Permit> {
    tokio::time::sleep(wait).await;
    acquire_before(target, tokens, deadline).await
}

/// A permit for a leaf's own retry: waits out a refusal that frees up by itself (budget,
/// cooldown) when that ends before the deadline; gives up on an open circuit.
async fn acquire_before(target: &TargetHandle, tokens: u32, deadline: Instant) -> Option<Permit> {
    // A few rounds: the cooldown may end a millisecond after we wake, or another request may
    // take the freed budget first.
    for _ in 0..4 {
        match target.acquire(tokens).await {
            Ok(p) => return Some(p),
            Err(u) if u.reason.is_budget() => {
                let wait = Duration::from_millis(u.until.saturating_sub(now_ms()).max(1));
                if !fits(wait, deadline) {
                    return None;
                }
                tokio::time::sleep(wait).await;
            }
            Err(_) => return None,
        }
    }
    None
}

/// How one call of a leaf ended, when it did not answer.
enum Attempt {
    /// The request was refused before anything was sent (translation).
    Refused(AttemptError),
    Failed(AttemptError),
}

/// `t0`: when the attempt started (its timeout counts from there).
async fn attempt(
    spec: &Upstream,
    leaf: &Leaf,
    req: &Prepared,
    t0: Instant,
    deadline: Instant,
    max_body: usize,
    span: &tracing::Span,
) -> Result<Reply, Attempt> {
    // From the caller's clock read: each read is ~25 ns, and a request made a dozen.
    let remaining = deadline.saturating_duration_since(t0);
    let timeout = leaf.request_timeout.map_or(remaining, |t| t.min(remaining));
    let until = tokio::time::Instant::from_std(t0 + timeout);
    if req.endpoint == Endpoint::Responses && !responses::native(spec) {
        // Boxed, so the translated path does not grow every attempt's future.
        return Box::pin(attempt_translated(
            spec, leaf, req, timeout, until, max_body, span,
        ))
        .await;
    }
    let adjusted;
    let overrides = if req.endpoint == Endpoint::Responses {
        let mut o = responses::overrides(&leaf.override_params);
        // Azure's Responses API names the deployment in `model`.
        if let (Some(d), crate::config::ProviderKind::AzureOpenai) =
            (&spec.deployment, spec.provider)
        {
            o.to_mut().insert("model".into(), Value::String(d.clone()));
        }
        match o {
            std::borrow::Cow::Borrowed(b) => b,
            std::borrow::Cow::Owned(m) => {
                adjusted = m;
                &adjusted
            }
        }
    } else {
        &leaf.override_params
    };
    let body = Merged {
        body: &req.body,
        overrides,
        ask_usage: req.endpoint != Endpoint::Responses
            && req.stream
            && !req.include_usage
            && providers::asks_usage(spec),
    };
    let mut upstream = providers::build(spec, req.endpoint, &body).map_err(Attempt::Refused)?;
    if !span.is_none() {
        let model = overrides
            .get("model")
            .and_then(Value::as_str)
            .or(req.model.as_deref());
        upstream = otel::attempt_started(
            span,
            req.endpoint,
            model,
            spec.urls.endpoint(req.endpoint),
            upstream,
        );
    }
    // request_timeout bounds the time to a complete answer, or for a stream to its first
    // content; after that the stream's idle timeout applies. Each call is boxed for the reason
    // the leaf run is (see `route`), and a stream's apart from a full answer's: a stream
    // waiting for its first content (for as long as a model thinks) then holds what priming
    // needs, not also the room `finish` takes.
    let called = if req.stream {
        let call = async {
            let upstream = authorized(spec, upstream).await?;
            let resp = providers::send(spec, upstream, timeout).await?;
            let mut s = if req.endpoint == Endpoint::Responses {
                providers::open_responses_stream(spec, resp, req.idle_timeout)
            } else {
                // Named in the chunks until the stream names its own.
                let model = overrides
                    .get("model")
                    .and_then(Value::as_str)
                    .or(req.model.as_deref())
                    .unwrap_or_default();
                providers::open_stream(spec, resp, req.idle_timeout, req.include_usage, model)
            };
            let head = s.prime(timeout).await?;
            Ok(Reply::Stream { head, upstream: s })
        };
        tokio::time::timeout_at(until, Box::pin(call)).await
    } else {
        let call = async {
            let upstream = authorized(spec, upstream).await?;
            let resp = providers::send(spec, upstream, timeout).await?;
            providers::finish(spec, req.endpoint, resp, timeout, max_body)
                .await
                .map(Reply::Full)
        };
        tokio::time::timeout_at(until, Box::pin(call)).await
    };
    match called {
        Ok(r) => r.map_err(Attempt::Failed),
        Err(_) => Err(Attempt::Failed(AttemptError::timeout(timeout))),
    }
}

/// The upstream request with the target's OAuth token, for targets that use one (Vertex). The
/// token fetch (rare: see `providers::vertex::token`) runs inside the attempt's timeout and
/// fails the attempt like any upstream failure. Boxed, so the OAuth path does not grow every
/// attempt's future.
async fn authorized(
    spec: &Upstream,
    upstream: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    if spec.oauth.is_some() {
        Box::pin(providers::authorize(spec, upstream)).await
    } else {
        Ok(upstream)
    }
}

/// A Responses request to a target that only speaks chat: translated there and back.
async fn attempt_translated(
    spec: &Upstream,
    leaf: &Leaf,
    req: &Prepared,
    timeout: Duration,
    until: tokio::time::Instant,
    max_body: usize,
    span: &tracing::Span,
) -> Result<Reply, Attempt> {
    let no_turn = responses::Turn::default();
    let turn = req.turn.as_deref().unwrap_or(&no_turn);
    let t = responses::translate(&req.body, leaf, turn, req.model.as_deref())
        .map_err(Attempt::Refused)?;
    let none = Map::new();
    let chat = Merged::new(&t.chat, &none);
    // The chat translation names chat fields; the client sent Responses ones.
    let mut upstream = providers::build(spec, Endpoint::Chat, &chat)
        .map_err(|e| Attempt::Refused(responses::responses_param(e)))?;
    if !span.is_none() {
        upstream = otel::attempt_started(
            span,
            Endpoint::Chat,
            Some(&t.echo.model),
            spec.urls.endpoint(Endpoint::Chat),
            upstream,
        );
    }
    let call = async {
        let upstream = authorized(spec, upstream).await?;
        let resp = providers::send(spec, upstream, timeout).await?;
        if req.stream {
            let model = t.echo.model.clone();
            // Usage is asked for (the translation's `response.completed` carries it).
            let mut s = providers::open_stream(spec, resp, req.idle_timeout, true, &model)
                .into_responses(responses::events(t.echo));
            let head = s.prime(timeout).await?;
            Ok(Reply::Stream { head, upstream: s })
        } else {
            let answer = providers::finish(spec, Endpoint::Chat, resp, timeout, max_body).await?;
            let chat: Value = serde_json::from_slice(&answer.body).map_err(|_| {
                AttemptError::bad_upstream(
                    "invalid_upstream_response",
                    "a chat answer that is not JSON",
                )
            })?;
            let response = providers::responses::from_chat(&chat, &t.echo)?;
            let body = serde_json::to_vec(&response).map_err(|e| {
                AttemptError::bad_upstream("invalid_upstream_response", e.to_string())
            })?;
            Ok(Reply::Full(providers::Answer {
                status: 200,
                body: body.into(),
                usage: answer.usage,
                model: answer.model,
            }))
        }
    };
    match tokio::time::timeout_at(until, call).await {
        Ok(r) => r.map_err(Attempt::Failed),
        Err(_) => Err(Attempt::Failed(AttemptError::timeout(timeout))),
    }
}
