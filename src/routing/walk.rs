//! The tree walk: which leaf a request tries first and which next after a failure or a skip,
//! following Portkey's semantics (weighted `loadbalance`, ordered `fallback`, `single`) plus
//! llmux's skipping of leaves that cannot serve now. Pure: what a leaf's target can do is asked
//! through a closure, time is passed in, and the random source is injectable, so the walk is
//! unit-tested with seeded RNGs and no actors.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use smallvec::SmallVec;

use crate::config::{Leaf, Mode, Node, NodeKind, Tree};

/// Why the last leaf did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The target could not take the request now (budget, cooldown, circuit open, retired):
    /// the walk chooses again as if the leaf were not there.
    Skip(SkipReason),
    /// The attempt failed upstream with this status (408 for timeouts, 502 for connection
    /// errors): fallback semantics decide.
    Status(u16),
}

/// What the walk learns about a leaf's target before choosing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ready,
    /// Unavailable until this instant (same clock as `now`); `budget` as in [`SkipReason`].
    Busy {
        until: u64,
        budget: bool,
    },
    /// Cannot serve this request at all (the provider lacks the endpoint or a feature).
    Unsupported,
    /// Not a candidate for this request (another target is pinned): passed over without
    /// being named in errors.
    Excluded,
}

/// Why a leaf was passed over, for the error a client gets when nothing could serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Unavailable until `until`; `budget` when it frees up by itself (rate limits), not when
    /// its circuit is open.
    Busy {
        until: u64,
        budget: bool,
    },
    Unsupported,
}

#[derive(Debug, Clone)]
pub struct Skipped {
    pub leaf: Arc<Leaf>,
    pub reason: SkipReason,
    /// A human-readable why, when the caller knows more than the reason.
    pub detail: Option<String>,
}

/// A request's position in its tree and everything it learned on the way.
pub struct Walk {
    pub tree: Arc<Tree>,
    /// Child indices from the root to the current leaf.
    stack: SmallVec<[u16; 8]>,
    /// Targets passed over during this request.
    skipped_targets: Vec<u32>,
    /// Leaves already attempted (by address), so a walk never tries one twice.
    tried: SmallVec<[usize; 4]>,
    /// Every leaf passed over, with why (one entry per target).
    pub skipped: Vec<Skipped>,
    /// Whether any attempt produced a real upstream failure (not only skips).
    started: bool,
    /// Boxed: a `StdRng` is 336 bytes, and the walk lives in every request's future (which
    /// is copied whole when it is created); only tests seed one.
    rng: Option<Box<StdRng>>,
    /// What each conditional node chose for this request ([`Tree::choose`]).
    choices: Box<[Option<u16>]>,
    /// The conditional nodes entered that matched nothing and had no default, described.
    pub unmatched: Vec<String>,
}

impl Walk {
    pub fn new(tree: Arc<Tree>) -> Walk {
        Walk {
            tree,
            stack: SmallVec::new(),
            skipped_targets: Vec::new(),
            tried: SmallVec::new(),
            skipped: Vec::new(),
            started: false,
            rng: None,
            choices: Box::default(),
            unmatched: Vec::new(),
        }
    }

    /// Sets what the tree's conditional nodes chose for this request (without it, every
    /// conditional node matches nothing).
    pub fn with_choices(mut self, choices: Box<[Option<u16>]>) -> Walk {
        self.choices = choices;
        self
    }

    /// A walk drawing its load-balancing choices from `rng` (tests; otherwise the thread's
    /// RNG is used).
    pub fn with_rng(tree: Arc<Tree>, rng: StdRng) -> Walk {
        Walk {
            rng: Some(Box::new(rng)),
            ..Walk::new(tree)
        }
    }

    /// Forgets skips so the walk can start over (after waiting for a budget). Only called when
    /// every attempt so far was a skip, so no leaf has really been tried yet.
    pub fn restart(&mut self) {
        self.stack.clear();
        self.skipped_targets.clear();
        self.tried.clear();
        self.skipped.clear();
        self.unmatched.clear();
        self.started = false;
    }

    /// True when no upstream answered with a failure: every candidate was skipped.
    pub fn only_skips(&self) -> bool {
        !self.started
    }

    /// Earliest instant at which a leaf skipped as busy frees up (`u64::MAX`: none will).
    pub fn earliest_free(&self, budget_only: bool) -> u64 {
        self.skipped
            .iter()
            .filter_map(|s| match s.reason {
                SkipReason::Busy { until, budget } if budget || !budget_only => Some(until),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    fn note_skip(&mut self, leaf: &Arc<Leaf>, reason: SkipReason, detail: Option<String>) {
        if !self.skipped_targets.contains(&leaf.target) {
            self.skipped_targets.push(leaf.target);
        }
        match self
            .skipped
            .iter_mut()
            .find(|s| s.leaf.target == leaf.target)
        {
            // A later look at the same target knows more (e.g. its acquire refused).
            Some(s) => {
                s.reason = reason;
                if detail.is_some() {
                    s.detail = detail;
                }
            }
            None => self.skipped.push(Skipped {
                leaf: leaf.clone(),
                reason,
                detail,
            }),
        }
    }

    fn leaf_available(&mut self, leaf: &Arc<Leaf>, check: &mut dyn FnMut(&Leaf) -> Check) -> bool {
        if self.tried.contains(&(Arc::as_ptr(leaf) as usize))
            || self.skipped_targets.contains(&leaf.target)
        {
            return false;
        }
        match check(leaf) {
            Check::Ready => true,
            Check::Busy { until, budget } => {
                self.note_skip(leaf, SkipReason::Busy { until, budget }, None);
                false
            }
            Check::Unsupported => {
                self.note_skip(leaf, SkipReason::Unsupported, None);
                false
            }
            Check::Excluded => false,
        }
    }

    fn subtree_available(&mut self, node: &Node, check: &mut dyn FnMut(&Leaf) -> Check) -> bool {
        // Not `any` over a borrowed iterator: every leaf's skip is recorded.
        let mut any = false;
        for leaf in node.leaves.iter() {
            any |= self.leaf_available(leaf, check);
        }
        any
    }

    /// Chooses the first leaf at or below `node`, pushing child indices onto the stack.
    fn descend(&mut self, node: &Node, check: &mut dyn FnMut(&Leaf) -> Check) -> Option<Arc<Leaf>> {
        match &node.kind {
            NodeKind::Leaf(leaf) => self.leaf_available(leaf, check).then(|| leaf.clone()),
            NodeKind::Group(g) => match g.mode {
                Mode::Single => self.enter(node, 0, check),
                Mode::Fallback => self.fallback_from(node, 0, check),
                Mode::Loadbalance => self.pick(node, check),
                Mode::Conditional => {
                    let c = g.conditional.as_ref()?;
                    match self.choices.get(c.id as usize).copied().flatten() {
                        Some(i) => self.enter(node, i as usize, check),
                        None => {
                            let d = c.describe();
                            if self.unmatched.len() < 8 && !self.unmatched.contains(&d) {
                                self.unmatched.push(d);
                            }
                            None
                        }
                    }
                }
            },
        }
    }

    fn enter(
        &mut self,
        node: &Node,
        i: usize,
        check: &mut dyn FnMut(&Leaf) -> Check,
    ) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        let child = g.children.get(i)?;
        self.stack.push(i as u16);
        let found = self.descend(child, check);
        if found.is_none() {
            self.stack.pop();
        }
        found
    }

    fn fallback_from(
        &mut self,
        node: &Node,
        from: usize,
        check: &mut dyn FnMut(&Leaf) -> Check,
    ) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        (from..g.children.len()).find_map(|i| self.enter(node, i, check))
    }

    fn uniform(&mut self) -> f64 {
        match &mut self.rng {
            Some(r) => r.gen::<f64>(),
            None => rand::thread_rng().gen::<f64>(),
        }
    }

    /// Weighted random choice among children that can serve now (weights renormalize over them).
    fn pick(&mut self, node: &Node, check: &mut dyn FnMut(&Leaf) -> Check) -> Option<Arc<Leaf>> {
        let NodeKind::Group(g) = &node.kind else {
            return None;
        };
        let mut candidates: Vec<(usize, f64)> = Vec::with_capacity(g.children.len());
        for (i, c) in g.children.iter().enumerate() {
            if c.weight > 0.0 && self.subtree_available(c, check) {
                candidates.push((i, c.weight));
            }
        }
        while !candidates.is_empty() {
            let total: f64 = candidates.iter().map(|c| c.1).sum();
            let mut r = self.uniform() * total;
            let mut chosen = candidates.len() - 1;
            for (k, c) in candidates.iter().enumerate() {
                if r < c.1 {
                    chosen = k;
                    break;
                }
                r -= c.1;
            }
            let (i, _) = candidates.swap_remove(chosen);
            if let Some(leaf) = self.enter(node, i, check) {
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
    pub fn first(&mut self, check: &mut dyn FnMut(&Leaf) -> Check) -> Option<Arc<Leaf>> {
        let tree = self.tree.clone();
        self.stack.clear();
        let leaf = self.descend(&tree.root, check);
        if let Some(l) = &leaf {
            self.tried.push(Arc::as_ptr(l) as usize);
        }
        leaf
    }

    /// The current leaf was passed over after all (its actor refused, or its translation
    /// refused the request): record why, then choose again.
    pub fn skip_current(&mut self, reason: SkipReason, detail: Option<String>) {
        let tree = self.tree.clone();
        if let Some(NodeKind::Leaf(l)) = Walk::node_at(&tree, &self.stack).map(|n| &n.kind) {
            self.note_skip(l, reason, detail);
        }
    }

    /// The attempt after the current leaf failed with `failure`, following fallback semantics:
    /// climb until a fallback node whose `on_status_codes` accept the failure has a next child
    /// (or, for a skip, until any node can choose again).
    pub fn next(
        &mut self,
        failure: Failure,
        check: &mut dyn FnMut(&Leaf) -> Check,
    ) -> Option<Arc<Leaf>> {
        let tree = self.tree.clone();
        match failure {
            Failure::Status(_) => self.started = true,
            Failure::Skip(reason) => self.skip_current(reason, None),
        }
        let leaf = loop {
            let Some(i) = self.stack.pop() else {
                break None;
            };
            let Some(parent) = Walk::node_at(&tree, &self.stack) else {
                break None;
            };
            let NodeKind::Group(g) = &parent.kind else {
                break None;
            };
            let found = match (g.mode, failure) {
                (Mode::Fallback, Failure::Skip(_)) => {
                    self.fallback_from(parent, i as usize + 1, check)
                }
                (Mode::Fallback, Failure::Status(s)) => {
                    let moves_on = g.on_status_codes.as_ref().is_none_or(|c| c.contains(&s));
                    if moves_on {
                        self.fallback_from(parent, i as usize + 1, check)
                    } else {
                        None
                    }
                }
                // A skipped target never counts as the load balancer's choice: choose again.
                (Mode::Loadbalance, Failure::Skip(_)) => self.pick(parent, check),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawNode;
    use crate::config::tree::{compile, Limits};
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn tree(json: &str) -> Arc<Tree> {
        let raw: RawNode = serde_json::from_str(json).unwrap();
        let targets: HashMap<&str, u32> = [("a", 0), ("b", 1), ("c", 2), ("d", 3)].into();
        Arc::new(compile("t", &raw, "configs.t", &targets, Limits::NONE).unwrap())
    }

    fn ready(_: &Leaf) -> Check {
        Check::Ready
    }

    const LB: &str = r#"{"strategy":{"mode":"loadbalance"},"targets":[
        {"virtual_key":"a","weight":0.7},{"virtual_key":"b","weight":0.2},
        {"virtual_key":"c","weight":0.1},{"virtual_key":"d","weight":0}]}"#;

    /// Seeded: the exact counts are reproducible, and within a bound that a correct weighting
    /// misses with probability < 1e-6 (|z| < 4.9 for each share).
    #[test]
    fn loadbalance_follows_weights_with_a_seeded_rng() {
        let t = tree(LB);
        let n = 100_000;
        let mut counts = [0u32; 4];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..n {
            let mut w = Walk::with_rng(t.clone(), StdRng::seed_from_u64(rng.gen()));
            let leaf = w.first(&mut ready).unwrap();
            counts[leaf.target as usize] += 1;
        }
        assert_eq!(counts[3], 0, "weight 0 is never chosen");
        for (i, p) in [0.7, 0.2, 0.1].into_iter().enumerate() {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            let z = (counts[i] as f64 - n as f64 * p) / sd;
            assert!(
                z.abs() < 4.9,
                "target {i}: {} of {n} (z = {z:.2})",
                counts[i]
            );
        }
        // Same seed, same choices.
        let pick = |seed| {
            Walk::with_rng(t.clone(), StdRng::seed_from_u64(seed))
                .first(&mut ready)
                .unwrap()
                .target
        };
        assert_eq!(
            (0..50).map(pick).collect::<Vec<_>>(),
            (0..50).map(pick).collect::<Vec<_>>()
        );
    }

    #[test]
    fn unavailable_children_renormalize_the_weights() {
        let t = tree(LB);
        let n = 20_000;
        let mut a = 0;
        for seed in 0..n {
            let mut w = Walk::with_rng(t.clone(), StdRng::seed_from_u64(seed));
            let mut check = |l: &Leaf| {
                if l.target == 1 {
                    Check::Busy {
                        until: 99,
                        budget: true,
                    }
                } else {
                    Check::Ready
                }
            };
            let leaf = w.first(&mut check).unwrap();
            assert_ne!(leaf.target, 1);
            a += (leaf.target == 0) as u32;
            assert_eq!(w.earliest_free(true), 99);
        }
        // 0.7 / 0.8 of the requests go to a.
        let p = 0.875;
        let z = (a as f64 - n as f64 * p) / (n as f64 * p * (1.0 - p)).sqrt();
        assert!(z.abs() < 4.9, "{a} of {n}");
    }

    #[test]
    fn unsupported_leaves_are_skipped_and_named() {
        let t = tree(LB);
        let mut check = |l: &Leaf| {
            if l.target == 0 {
                Check::Unsupported
            } else {
                Check::Ready
            }
        };
        let mut w = Walk::new(t.clone());
        for seed in 0..50 {
            w = Walk::with_rng(t.clone(), StdRng::seed_from_u64(seed));
            assert_ne!(w.first(&mut check).unwrap().target, 0);
        }
        assert_eq!(w.skipped.len(), 1);
        assert_eq!(w.skipped[0].reason, SkipReason::Unsupported);
        let mut none = |_: &Leaf| Check::Unsupported;
        let mut w = Walk::new(tree(LB));
        assert!(w.first(&mut none).is_none());
        assert!(w.only_skips());
        assert_eq!(
            w.skipped.len(),
            3,
            "every candidate is named (weight 0 never is one)"
        );
    }

    #[test]
    fn fallback_moves_on_by_status_codes_and_skips() {
        let t = tree(
            r#"{"strategy":{"mode":"fallback","on_status_codes":[429,503]},"targets":[
            {"virtual_key":"a"},{"virtual_key":"b"},{"virtual_key":"c"}]}"#,
        );
        let mut w = Walk::new(t.clone());
        assert_eq!(w.first(&mut ready).unwrap().target, 0);
        assert_eq!(w.next(Failure::Status(503), &mut ready).unwrap().target, 1);
        assert!(
            w.next(Failure::Status(500), &mut ready).is_none(),
            "500 is not in on_status_codes"
        );
        assert!(!w.only_skips());
        let mut w = Walk::new(t);
        assert_eq!(w.first(&mut ready).unwrap().target, 0);
        let busy = SkipReason::Busy {
            until: 5,
            budget: false,
        };
        assert_eq!(w.next(Failure::Skip(busy), &mut ready).unwrap().target, 1);
        assert_eq!(w.skipped[0].reason, busy);
        assert_eq!(
            w.earliest_free(true),
            u64::MAX,
            "a health skip is not budget"
        );
        assert_eq!(w.earliest_free(false), 5);
    }

    #[test]
    fn a_load_balancer_does_not_retry_a_failed_child_elsewhere_but_a_fallback_above_does() {
        let t = tree(
            r#"{"strategy":{"mode":"fallback"},"targets":[
              {"strategy":{"mode":"loadbalance"},"targets":[{"virtual_key":"a"},{"virtual_key":"b"}]},
              {"virtual_key":"c"}]}"#,
        );
        for seed in 0..20 {
            let mut w = Walk::with_rng(t.clone(), StdRng::seed_from_u64(seed));
            let first = w.first(&mut ready).unwrap();
            assert!(first.target < 2);
            assert_eq!(w.next(Failure::Status(500), &mut ready).unwrap().target, 2);
            assert!(w.next(Failure::Status(500), &mut ready).is_none());
        }
    }

    #[test]
    fn a_leaf_is_never_tried_twice_and_restart_forgets_skips() {
        let t = tree(
            r#"{"strategy":{"mode":"loadbalance"},"targets":[{"virtual_key":"a"},{"virtual_key":"b"}]}"#,
        );
        let mut w = Walk::with_rng(t, StdRng::seed_from_u64(3));
        let busy = SkipReason::Busy {
            until: 10,
            budget: true,
        };
        let a = w.first(&mut ready).unwrap().target;
        let b = w.next(Failure::Skip(busy), &mut ready).unwrap().target;
        assert_ne!(a, b);
        assert!(w.next(Failure::Skip(busy), &mut ready).is_none());
        assert_eq!(w.earliest_free(true), 10);
        w.restart();
        assert!(w.first(&mut ready).is_some());
        assert!(w.skipped.is_empty());
    }

    fn request<'a>(
        metadata: Option<&'a std::collections::BTreeMap<String, String>>,
        params: Option<&'a serde_json::Map<String, serde_json::Value>>,
    ) -> crate::config::condition::Request<'a> {
        crate::config::condition::Request {
            metadata,
            params,
            pathname: "/v1/chat/completions",
        }
    }

    const COND: &str = r#"{"strategy":{"mode":"fallback"},"targets":[
        {"strategy":{"mode":"conditional","conditions":[
            {"query":{"metadata.plan":{"$eq":"paid"}},"then":"smart"},
            {"query":{"$or":[{"params.model":"gpt-4o"},{"params.temperature":{"$gt":0.7}}]},"then":"smart"}],
          "default":"cheap"},
         "targets":[{"name":"smart","virtual_key":"a"},
                    {"name":"cheap","strategy":{"mode":"loadbalance"},"targets":[{"virtual_key":"b"},{"virtual_key":"c"}]}]},
        {"virtual_key":"d"}]}"#;

    #[test]
    fn a_conditional_node_routes_by_the_first_matching_rule_else_its_default() {
        let t = tree(COND);
        assert_eq!((t.conditionals, t.reads_params), (1, true));
        let paid = [("plan".to_owned(), "paid".to_owned())].into();
        let free = [("plan".to_owned(), "free".to_owned())].into();
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        let cases = [
            (
                Some(&paid),
                body(serde_json::json!({"model": "x"})),
                vec![0],
            ),
            (
                Some(&free),
                body(serde_json::json!({"model": "gpt-4o"})),
                vec![0],
            ),
            (None, body(serde_json::json!({"temperature": 0.9})), vec![0]),
            (
                None,
                body(serde_json::json!({"temperature": 0.7})),
                vec![1, 2],
            ),
            (Some(&free), body(serde_json::json!({})), vec![1, 2]),
        ];
        for (i, (metadata, params, expected)) in cases.iter().enumerate() {
            let choices = t.choose(&request(*metadata, Some(params)));
            for seed in 0..8 {
                let mut w = Walk::with_rng(t.clone(), StdRng::seed_from_u64(seed))
                    .with_choices(choices.clone());
                let first = w.first(&mut ready).unwrap();
                assert!(expected.contains(&first.target), "case {i}: {}", first.path);
                // The chosen child failing climbs: the fallback above catches it (the default
                // is not tried instead, and a load balancer does not retry elsewhere).
                assert_eq!(w.next(Failure::Status(500), &mut ready).unwrap().target, 3);
                assert!(w.next(Failure::Status(500), &mut ready).is_none());
                assert!(w.unmatched.is_empty());
            }
        }
        let choices = t.choose(&request(Some(&paid), None));
        let mut w = Walk::new(t.clone()).with_choices(choices);
        assert_eq!(
            &*w.first(&mut ready).unwrap().path,
            "config.targets[0].targets[0]"
        );
    }

    #[test]
    fn a_skipped_chosen_child_climbs_and_no_match_without_default_is_reported() {
        let t = tree(
            r#"{"strategy":{"mode":"fallback"},"targets":[
              {"strategy":{"mode":"conditional","conditions":[
                {"query":{"metadata.tier":{"$in":["gold","silver"]}},"then":"x"}]},
               "targets":[{"name":"x","virtual_key":"a"},{"name":"y","virtual_key":"b"}]},
              {"virtual_key":"c"}]}"#,
        );
        let gold = [("tier".to_owned(), "gold".to_owned())].into();
        let busy = |l: &Leaf| {
            if l.target == 0 {
                Check::Busy {
                    until: 50,
                    budget: true,
                }
            } else {
                Check::Ready
            }
        };
        // Chosen child busy: the node does not fall back to its other child; the fallback
        // above moves on.
        let mut w = Walk::new(t.clone()).with_choices(t.choose(&request(Some(&gold), None)));
        assert_eq!(w.first(&mut { busy }).unwrap().target, 2);
        assert!(w.unmatched.is_empty());
        // Nothing matches and there is no default: the node serves nothing, named in
        // `unmatched` with its conditions; the fallback above still serves.
        let mut w = Walk::new(t.clone()).with_choices(t.choose(&request(None, None)));
        assert_eq!(w.first(&mut ready).unwrap().target, 2);
        assert_eq!(w.unmatched.len(), 1);
        assert!(
            w.unmatched[0].contains("config.targets[0]"),
            "{}",
            w.unmatched[0]
        );
        assert!(
            w.unmatched[0].contains(r#"{"metadata.tier":{"$in":["gold","silver"]}} then `x`"#),
            "{}",
            w.unmatched[0]
        );
        // At the root, a no-match leaves nothing to serve and no skips: only `unmatched`.
        let t = tree(
            r#"{"strategy":{"mode":"conditional","conditions":[
                {"query":{"url.pathname":{"$regex":"^/v1/embeddings$"}},"then":"x"}]},
               "targets":[{"name":"x","virtual_key":"a"}]}"#,
        );
        assert!(!t.reads_params);
        let mut w = Walk::new(t.clone()).with_choices(t.choose(&request(None, None)));
        assert!(w.first(&mut ready).is_none());
        assert!(w.only_skips() && w.skipped.is_empty());
        assert_eq!(w.unmatched.len(), 1);
        w.restart();
        assert!(w.unmatched.is_empty());
    }

    #[test]
    fn conditional_nodes_nest_inside_each_other_and_under_load_balancers() {
        let t = tree(
            r#"{"strategy":{"mode":"loadbalance"},"targets":[
              {"weight":1,"strategy":{"mode":"conditional","conditions":[
                 {"query":{"params.response_format.type":"json_object"},"then":"inner"}],"default":"plain"},
               "targets":[{"name":"plain","virtual_key":"a"},
                 {"name":"inner","strategy":{"mode":"conditional","conditions":[
                   {"query":{"params.messages.0.role":"system"},"then":"sys"}],"default":"nosys"},
                  "targets":[{"name":"sys","virtual_key":"b"},{"name":"nosys","virtual_key":"c"}]}]},
              {"weight":0,"virtual_key":"d"}]}"#,
        );
        assert_eq!(t.conditionals, 2);
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        for (params, target) in [
            (body(serde_json::json!({"messages":[{"role":"user"}]})), 0),
            (
                body(
                    serde_json::json!({"response_format":{"type":"json_object"},"messages":[{"role":"system"}]}),
                ),
                1,
            ),
            (
                body(
                    serde_json::json!({"response_format":{"type":"json_object"},"messages":[{"role":"user"}]}),
                ),
                2,
            ),
        ] {
            let mut w = Walk::new(t.clone()).with_choices(t.choose(&request(None, Some(&params))));
            assert_eq!(w.first(&mut ready).unwrap().target, target);
        }
    }
}
