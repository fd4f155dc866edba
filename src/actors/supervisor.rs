//! The supervisor actor: walks strategy trees to choose each attempt (weighted load balancing,
//! fallback), gets a permit from the chosen target, and swaps in reloaded configs.
//!
//! There is one supervisor per HTTP worker (a *shard*, started on the worker's own thread) plus
//! the *root* on the system arbiter. Shards serve [`Next`]: selection never leaves the thread
//! that accepted the request, so the common path costs no cross-thread wake-up. The root owns
//! the target actors' lifecycle: [`Reload`] goes to it, it starts and retires target actors on
//! its arbiter and publishes the new [`Runtime`] through [`Current`], which every shard reads.
//!
//! A request's walk state travels in its [`Route`], which pins the `Runtime` the request started
//! on: a reload never changes the tree under a request in flight. The walk reads availability
//! that target actors publish, so skipping a rate-limited or failing target costs no message.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use rand::Rng;

use super::now_ms;
pub use super::target::TargetHandle;
use super::target::{Permit, Retire, TargetActor};
use crate::cluster::Cluster;
use crate::config::{Config, Leaf, Mode, Node, NodeKind, TargetSpec, Tree};

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

/// The current runtime, readable by HTTP workers without a message (one uncontended read lock).
pub type Current = Arc<RwLock<Arc<Runtime>>>;

pub fn current(c: &Current) -> Arc<Runtime> {
    c.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Why the last attempt did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The target could not take the request (budget, cooldown, circuit open).
    Skip,
    /// The attempt failed with this status (408 for timeouts, 502 for connection errors).
    Status(u16),
}

/// A request's position in its tree.
pub struct Route {
    pub runtime: Arc<Runtime>,
    pub tree: Arc<Tree>,
    /// Child indices from the root to the current leaf.
    stack: Vec<u16>,
    /// Targets found unavailable during this request.
    skipped: Vec<u32>,
    /// Leaves already attempted (by address), so a walk never tries one twice.
    tried: Vec<usize>,
    /// Earliest `now_ms()` at which a skipped target frees up.
    pub earliest_free: u64,
    /// Whether any attempt produced a real upstream failure (not only skips).
    started: bool,
}

impl Route {
    pub fn new(runtime: Arc<Runtime>, tree: Arc<Tree>) -> Route {
        Route {
            runtime,
            tree,
            stack: Vec::with_capacity(4),
            skipped: Vec::new(),
            tried: Vec::new(),
            earliest_free: u64::MAX,
            started: false,
        }
    }

    /// Forget skips so the walk can start over (after waiting for a budget). Only called when
    /// every attempt so far was a skip, so no leaf has really been tried yet.
    pub fn restart(&mut self) {
        self.stack.clear();
        self.skipped.clear();
        self.tried.clear();
        self.earliest_free = u64::MAX;
        self.started = false;
    }

    fn leaf_available(&mut self, leaf: &Arc<Leaf>, now: u64) -> bool {
        if self.tried.contains(&(Arc::as_ptr(leaf) as usize)) || self.skipped.contains(&leaf.target)
        {
            return false;
        }
        let shared = &self.runtime.targets[leaf.target as usize].shared;
        if shared.available_at(now) {
            return true;
        }
        self.earliest_free = self.earliest_free.min(shared.unavailable_until());
        false
    }

    fn subtree_available(&mut self, node: &Node, now: u64) -> bool {
        // Not `any` over a borrowed iterator: leaf_available records earliest_free.
        let mut any = false;
        for leaf in node.leaves.iter() {
            any |= self.leaf_available(leaf, now);
        }
        any
    }

    /// Chooses the first leaf at or below `node`, pushing child indices onto the stack.
    fn descend(&mut self, node: &Node, now: u64) -> Option<Arc<Leaf>> {
        match &node.kind {
            NodeKind::Leaf(leaf) => self.leaf_available(leaf, now).then(|| leaf.clone()),
            NodeKind::Group(g) => match g.mode {
                Mode::Single => self.enter(node, 0, now),
                Mode::Fallback => self.fallback_from(node, 0, now),
                Mode::Loadbalance => self.pick(node, now),
            },
        }
    }

    fn enter(&mut self, node: &Node, i: usize, now: u64) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        let child = g.children.get(i)?;
        self.stack.push(i as u16);
        let found = self.descend(child, now);
        if found.is_none() {
            self.stack.pop();
        }
        found
    }

    fn fallback_from(&mut self, node: &Node, from: usize, now: u64) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        (from..g.children.len()).find_map(|i| self.enter(node, i, now))
    }

    /// Weighted random choice among children that can serve now (weights renormalize over them).
    fn pick(&mut self, node: &Node, now: u64) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        let mut candidates: Vec<(usize, f64)> = Vec::with_capacity(g.children.len());
        for (i, c) in g.children.iter().enumerate() {
            if c.weight > 0.0 && self.subtree_available(c, now) {
                candidates.push((i, c.weight));
            }
        }
        let mut rng = rand::thread_rng();
        while !candidates.is_empty() {
            let total: f64 = candidates.iter().map(|c| c.1).sum();
            let mut r = rng.gen::<f64>() * total;
            let mut chosen = candidates.len() - 1;
            for (k, c) in candidates.iter().enumerate() {
                if r < c.1 {
                    chosen = k;
                    break;
                }
                r -= c.1;
            }
            let (i, _) = candidates.swap_remove(chosen);
            if let Some(leaf) = self.enter(node, i, now) {
                return Some(leaf);
            }
        }
        None
    }

    fn node_at<'t>(tree: &'t Tree, stack: &[u16]) -> Option<&'t Node> {
        let mut node = &tree.root;
        for &i in stack {
            let NodeKind::Group(g) = &node.kind else {
                return None;
            };
            node = g.children.get(i as usize)?;
        }
        Some(node)
    }

    /// The first attempt of a request.
    pub fn first(&mut self) -> Option<Arc<Leaf>> {
        let tree = self.tree.clone();
        self.stack.clear();
        let leaf = self.descend(&tree.root, now_ms());
        if let Some(l) = &leaf {
            self.tried.push(Arc::as_ptr(l) as usize);
        }
        leaf
    }

    /// The attempt after the current leaf failed with `failure`, following fallback semantics:
    /// climb until a fallback node whose `on_status_codes` accept the failure has a next child
    /// (or, for a skip, until any node can choose again).
    pub fn next(&mut self, failure: Failure) -> Option<Arc<Leaf>> {
        let tree = self.tree.clone();
        let now = now_ms();
        if let Failure::Status(_) = failure {
            self.started = true;
        }
        if let (Failure::Skip, Some(cur)) = (failure, Route::node_at(&tree, &self.stack)) {
            if let NodeKind::Leaf(l) = &cur.kind {
                if !self.skipped.contains(&l.target) {
                    self.skipped.push(l.target);
                }
            }
        }
        let leaf = loop {
            let Some(i) = self.stack.pop() else {
                break None;
            };
            let Some(parent) = Route::node_at(&tree, &self.stack) else {
                break None;
            };
            let NodeKind::Group(g) = &parent.kind else {
                break None;
            };
            let found = match (g.mode, failure) {
                (Mode::Fallback, Failure::Skip) => self.fallback_from(parent, i as usize + 1, now),
                (Mode::Fallback, Failure::Status(s)) => {
                    let moves_on = g.on_status_codes.as_ref().is_none_or(|c| c.contains(&s));
                    if moves_on {
                        self.fallback_from(parent, i as usize + 1, now)
                    } else {
                        None
                    }
                }
                // A skipped target never counts as the load balancer's choice: choose again.
                (Mode::Loadbalance, Failure::Skip) => self.pick(parent, now),
                _ => None,
            };
            if found.is_some() {
                break found;
            }
        };
        if let Some(l) = &leaf {
            self.tried.push(Arc::as_ptr(l) as usize);
        }
        leaf
    }

    /// True when the walk ended without any upstream answering with a failure: every candidate
    /// was skipped as unavailable.
    pub fn only_skips(&self) -> bool {
        !self.started
    }

    /// The handle of a leaf's target in this request's runtime.
    pub fn target(&self, leaf: &Leaf) -> &TargetHandle {
        &self.runtime.targets[leaf.target as usize]
    }
}

/// Asks for the next attempt: the first when `failure` is `None`.
#[derive(Message)]
#[rtype(result = "Step")]
pub struct Next {
    pub route: Route,
    pub failure: Option<Failure>,
    /// Estimated token cost, for the target's token budget.
    pub tokens: u32,
}

pub struct Step {
    pub route: Route,
    /// `None`: nothing left to try.
    pub attempt: Option<(Arc<Leaf>, Permit)>,
}

/// Swap in a new validated config.
#[derive(Message)]
#[rtype(result = "ReloadReport")]
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
}

impl Supervisor {
    /// Starts the root supervisor and the target actors for `config` on the current arbiter.
    pub fn start(config: Config, cluster: Option<Arc<Cluster>>) -> (Addr<Supervisor>, Current) {
        let (targets, retirement) = config
            .targets
            .iter()
            .map(|spec| spawn_target(spec.clone(), &cluster))
            .unzip();
        let runtime = Arc::new(Runtime {
            config: Arc::new(config),
            targets,
            generation: 1,
            retirement,
        });
        let current: Current = Arc::new(RwLock::new(runtime));
        let addr = Supervisor {
            current: current.clone(),
            cluster,
        }
        .start();
        (addr, current)
    }

    /// Starts a shard on the current arbiter (an HTTP worker's thread) for requests accepted
    /// there.
    pub fn shard(current: Current) -> Addr<Supervisor> {
        Supervisor {
            current,
            cluster: None,
        }
        .start()
    }
}

/// Starts a target actor: its handle, and the guard that retires it once no runtime holds it.
fn spawn_target(
    spec: Arc<TargetSpec>,
    cluster: &Option<Arc<Cluster>>,
) -> (TargetHandle, Arc<Retirement>) {
    let (actor, shared) = TargetActor::new(spec.clone(), cluster.clone());
    let addr = actor.start();
    let retirement = Arc::new(Retirement(addr.clone()));
    (TargetHandle { spec, addr, shared }, retirement)
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
    }
}

impl Handler<Next> for Supervisor {
    type Result = ResponseFuture<Step>;

    fn handle(&mut self, msg: Next, _: &mut Context<Self>) -> Self::Result {
        // Runs as a spawned future: awaiting a target actor's answer (only needed when the
        // target is not open) never blocks this mailbox.
        Box::pin(async move {
            let Next {
                mut route,
                mut failure,
                tokens,
            } = msg;
            let runtime = route.runtime.clone();
            loop {
                let leaf = match failure.take() {
                    None => route.first(),
                    Some(f) => route.next(f),
                };
                let Some(leaf) = leaf else {
                    return Step {
                        route,
                        attempt: None,
                    };
                };
                match runtime.targets[leaf.target as usize].acquire(tokens).await {
                    Ok(permit) => {
                        return Step {
                            route,
                            attempt: Some((leaf, permit)),
                        }
                    }
                    Err(unavailable) => {
                        route.earliest_free = route.earliest_free.min(unavailable.until);
                        failure = Some(Failure::Skip);
                    }
                }
            }
        })
    }
}

impl Handler<Reload> for Supervisor {
    type Result = MessageResult<Reload>;

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
                Some(i) if *old.targets[i].spec == **spec => {
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
                    let (handle, guard) = spawn_target(spec.clone(), &self.cluster);
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
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = runtime;
        MessageResult(report)
    }
}
