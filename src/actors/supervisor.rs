//! The supervisor: the actor that owns the running config and its target actors, and the
//! selection (weighted load balancing, fallback) that it publishes for requests to run.
//!
//! The [`Supervisor`] actor decides what exists: it starts the target actors for a config,
//! answers [`Reload`]/[`ReloadFile`] (validate, keep unchanged actors, start new ones, retire
//! dropped ones once no request holds them) and publishes each [`Runtime`] through
//! [`Current`]. It never sees a request: a request runs the selection, [`next`], on its own
//! task. That is a pure walk of the tree over what the supervisor and the target actors
//! published (lock-free), plus a permit from the chosen target: lock-free while the target is
//! healthy, through the target actor's mailbox when the target must decide (README ›
//! Architecture gives both paths' costs). A message to a supervisor per attempt cost 2.3 µs of
//! about 35 µs of CPU per request (BENCHMARKS.md) and decided nothing the walk does not.
//!
//! A request's walk state travels in its [`Route`], which pins the `Runtime` the request started
//! on: a reload never changes the tree under a request in flight.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use actix::prelude::*;

use super::reload::{not_applied, ReloadStatus};
pub use super::target::TargetHandle;
use super::target::{Permit, Retire, TargetActor, Unavailable};
use crate::clock::now_ms;
use crate::cluster::Cluster;
use crate::config::{Config, Leaf, TargetSpec, Tree};
use crate::providers::{Endpoint, Upstream};
use crate::routing::estimate::Estimate;
use crate::routing::walk::Walk;
pub use crate::routing::walk::{Check, Failure, SkipReason};

/// A config snapshot with its target actors, indexed like `config.targets`.
///
/// A runtime keeps its target actors serving: every request and stream holds the `Arc<Runtime>`
/// it started on, and an actor that a reload dropped is only retired when the last runtime
/// holding it is gone (see [`Retirement`]). So a request in flight across a reload finishes, and
/// falls back, on exactly the snapshot it started with.
pub struct Runtime {
    pub config: Arc<Config>,
    pub targets: Vec<TargetHandle>,
    /// Increments on every successful reload.
    pub generation: u64,
    /// One per target, indexed like `targets`, shared with every later runtime that keeps the
    /// same actor.
    retirement: Vec<Arc<Retirement>>,
}

/// Retires a target actor when dropped: when the last runtime that holds the actor is gone.
///
/// Only runtimes hold it, never the actor itself, its permits or its `TargetShared`, so there
/// is no cycle: the actor cannot keep itself alive. The retired actor refuses new permits (none
/// can come: nothing that could ask holds it any more) and stops once its in-flight permits have
/// reported.
struct Retirement(Addr<TargetActor>);

impl Drop for Retirement {
    fn drop(&mut self) {
        // A mailbox already closed (the system is stopping) ignores it.
        self.0.do_send(Retire);
    }
}

/// The current runtime, readable by HTTP workers without a message or a lock (one atomic load
/// and a reference count); the supervisor swaps it on reload.
pub type Current = Arc<ArcSwap<Runtime>>;

pub fn current(c: &Current) -> Arc<Runtime> {
    c.load_full()
}

/// A request's walk through its tree, pinned to the runtime it started on.
pub struct Route {
    pub runtime: Arc<Runtime>,
    pub walk: Walk,
    pub endpoint: Endpoint,
    /// Only this target may serve (its other leaves are passed over silently).
    pub pinned: Option<u32>,
}

impl Route {
    /// `choices`: what the tree's conditional nodes chose for this request ([`Tree::choose`]).
    pub fn new(
        runtime: Arc<Runtime>,
        tree: Arc<Tree>,
        endpoint: Endpoint,
        choices: Box<[Option<u16>]>,
    ) -> Route {
        Route {
            runtime,
            walk: Walk::new(tree).with_choices(choices),
            endpoint,
            pinned: None,
        }
    }

    /// The next leaf to try: the first when `failure` is `None`. What the walk knows about
    /// each target is what its actor published, plus whether its provider serves the endpoint.
    pub fn advance(&mut self, failure: Option<Failure>) -> Option<Arc<Leaf>> {
        let Route {
            runtime,
            walk,
            endpoint,
            pinned,
        } = self;
        let now = now_ms();
        let mut check = |leaf: &Leaf| {
            let t = &runtime.targets[leaf.target as usize];
            if pinned.is_some_and(|p| p != leaf.target) {
                Check::Excluded
            } else if !crate::providers::supports(t.spec.provider, *endpoint) {
                Check::Unsupported
            } else if t.shared.available_at(now) {
                Check::Ready
            } else {
                Check::Busy {
                    until: t.shared.unavailable_until(),
                    budget: t.shared.unavailable_reason().is_budget(),
                }
            }
        };
        match failure {
            None => walk.first(&mut check),
            Some(f) => walk.next(f, &mut check),
        }
    }

    /// The handle of a leaf's target in this request's runtime.
    pub fn target(&self, leaf: &Leaf) -> &TargetHandle {
        &self.runtime.targets[leaf.target as usize]
    }
}

/// The next attempt of `route`: the first when `failure` is `None`; `None` when nothing is
/// left to try. This is the selection the supervisor publishes, run on the request's own task:
/// the walk is a pure function of the tree, the runtime's published target states and the
/// RNG, and a healthy target grants its permit without a message (see [`TargetHandle::acquire`]:
/// only a target that must decide something, e.g. a half-open probe, is asked through its
/// mailbox, and then only this request waits for it).
pub async fn next(
    route: &mut Route,
    mut failure: Option<Failure>,
    estimate: Estimate,
) -> Option<(Arc<Leaf>, Permit)> {
    loop {
        let leaf = route.advance(failure.take())?;
        match route.acquire(&leaf, estimate).await {
            Ok(permit) => return Some((leaf, permit)),
            Err(skip) => failure = Some(skip),
        }
    }
}

impl Route {
    /// A permit for the leaf the walk chose; when its target refuses, the skip is recorded and
    /// returned as the failure to walk on with.
    pub async fn acquire(&mut self, leaf: &Leaf, estimate: Estimate) -> Result<Permit, Failure> {
        let target = &self.runtime.targets[leaf.target as usize];
        let tokens = estimate.for_leaf(leaf, &target.spec);
        match target.acquire(tokens).await {
            Ok(permit) => Ok(permit),
            Err(unavailable) => {
                let reason = skip_reason(&unavailable);
                self.walk
                    .skip_current(reason, Some(unavailable.reason.describe().into()));
                Err(Failure::Skip(reason))
            }
        }
    }
}

/// A target's refusal as the walk records it.
pub fn skip_reason(u: &Unavailable) -> SkipReason {
    SkipReason::Busy {
        until: u.until,
        budget: u.reason.is_budget(),
    }
}

/// Re-read the running config's file, validate it fully (config and providers), and only then
/// swap it in. An invalid file changes nothing but the reported status.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, String>")]
pub struct ReloadFile;

/// Swap in a new validated config (one that passed [`crate::providers::check`] too).
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, String>")]
pub struct Reload(pub Config);

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// Targets whose actor (budget, health) carries over.
    pub kept: Vec<String>,
    /// Targets with a new actor (new, or changed definition).
    pub started: Vec<String>,
    /// Targets whose old actor retires once the requests still in flight on the previous
    /// config are done.
    pub retired: Vec<String>,
}

pub struct Supervisor {
    current: Current,
    cluster: Option<Arc<Cluster>>,
    /// What the last reload did, for `/admin/reload`.
    status: Arc<ReloadStatus>,
}

impl Supervisor {
    /// Starts the supervisor and the target actors for `config` on the current arbiter.
    ///
    /// Fails only on a config that did not pass [`crate::providers::check`].
    pub fn start(
        config: Config,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<(Addr<Supervisor>, Current, Arc<ReloadStatus>), String> {
        let status = Arc::new(ReloadStatus::new(&config));
        let (targets, retirement) = config
            .targets
            .iter()
            .map(|spec| spawn_target(spec.clone(), &cluster))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let runtime = Arc::new(Runtime {
            config: Arc::new(config),
            targets,
            generation: 1,
            retirement,
        });
        let current: Current = Arc::new(ArcSwap::new(runtime));
        let addr = Supervisor {
            current: current.clone(),
            cluster,
            status: status.clone(),
        }
        .start();
        Ok((addr, current, status))
    }
}

/// Starts a target actor: its handle, and the guard that retires it once no runtime holds it.
fn spawn_target(
    spec: Arc<TargetSpec>,
    cluster: &Option<Arc<Cluster>>,
) -> Result<(TargetHandle, Arc<Retirement>), String> {
    let spec = Arc::new(
        Upstream::new(spec.clone())
            .map_err(|e| format!("virtual_keys.{}.base_url: {e}", spec.name))?,
    );
    let (actor, shared) = TargetActor::new(spec.clone(), cluster.clone());
    let addr = actor.start();
    let retirement = Arc::new(Retirement(addr.clone()));
    Ok((TargetHandle::new(spec, addr, shared), retirement))
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Reloads only; a burst of SIGHUPs or admin calls queues rather than failing.
        ctx.set_mailbox_capacity(64);
    }
}

impl Handler<Reload> for Supervisor {
    type Result = Result<ReloadReport, String>;

    fn handle(&mut self, Reload(config): Reload, _: &mut Context<Self>) -> Self::Result {
        let old = current(&self.current);
        let mut by_name: HashMap<&str, usize> = old
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.name.as_str(), i))
            .collect();
        let mut report = ReloadReport {
            generation: old.generation + 1,
            kept: Vec::new(),
            started: Vec::new(),
            retired: Vec::new(),
        };
        let mut targets = Vec::with_capacity(config.targets.len());
        let mut retirement = Vec::with_capacity(config.targets.len());
        for spec in &config.targets {
            match by_name.remove(spec.name.as_str()) {
                // Unchanged definition: same actor, so budget and health carry over.
                Some(i) if *old.targets[i].spec.spec == **spec => {
                    report.kept.push(spec.name.clone());
                    targets.push(old.targets[i].clone());
                    retirement.push(old.retirement[i].clone());
                }
                prev => {
                    // The old actor is not told anything here: requests in flight on the old
                    // runtime keep using it, and it retires when the last of them is done.
                    if prev.is_some() {
                        report.retired.push(spec.name.clone());
                    }
                    report.started.push(spec.name.clone());
                    // Nothing is published before every new actor started: on an error the
                    // running config stays, and the actors started so far retire when their
                    // guards drop here.
                    let (handle, guard) = spawn_target(spec.clone(), &self.cluster)?;
                    targets.push(handle);
                    retirement.push(guard);
                }
            }
        }
        report
            .retired
            .extend(by_name.into_keys().map(str::to_owned));
        let runtime = Arc::new(Runtime {
            config: Arc::new(config),
            targets,
            generation: report.generation,
            retirement,
        });
        self.current.store(runtime);
        Ok(report)
    }
}

impl Handler<ReloadFile> for Supervisor {
    type Result = Result<ReloadReport, String>;

    fn handle(&mut self, _: ReloadFile, ctx: &mut Context<Self>) -> Self::Result {
        let status = self.status.clone();
        // Reading a small local file is the only I/O here; this mailbox serves reloads alone.
        let path = current(&self.current).config.file.clone();
        let result = super::reload::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|new| {
                let skipped = not_applied(&status.fixed, &new);
                self.handle(Reload(new), ctx)
                    .map(|report| (report, skipped))
            });
        status.record(&result);
        result.map(|(report, _)| report)
    }
}
