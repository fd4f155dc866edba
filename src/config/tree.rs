//! Compiled strategy trees: the validated, inheritance-resolved form of a Portkey config that
//! the supervisor walks for every request. Compilation does all per-tree work once (weights
//! checked, `override_params`/`retry`/`request_timeout` inherited down to the leaves, the
//! targets under every node collected) so that selection is a cheap walk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use super::condition::{Query, Request};
use super::raw::{RawNode, RawRetry, RawStrategy};

/// Status codes a leaf retries on when `retry.attempts > 0` names none (Portkey's default).
pub const DEFAULT_RETRY_CODES: [u16; 5] = [429, 500, 502, 503, 504];
/// Portkey caps retries at 5; more only multiplies load on a struggling provider.
const MAX_RETRY_ATTEMPTS: u32 = 5;

#[derive(Debug)]
pub struct Tree {
    /// Stored config id, or `"inline"` / `"virtual_key:NAME"`.
    pub id: Arc<str>,
    pub root: Node,
    /// Estimated heap bytes of the compiled tree (see [`Limits`]), for the inline cache.
    pub approx_bytes: usize,
    /// How many `conditional` nodes the tree has (their [`Conditional::id`]s are `0..this`).
    pub conditionals: u16,
    /// Whether any condition reads `params.*`, i.e. needs the request body as a map.
    pub reads_params: bool,
    /// The first node (by error path) with `cache.mode = "semantic"`, if any: semantic
    /// caching needs `[cache] embeddings_virtual_key`, which the config checks.
    pub semantic_at: Option<String>,
}

impl Tree {
    /// What every conditional node of the tree chooses for `r` (indexed by
    /// [`Conditional::id`]): evaluated once per request, before the walk, since the answer
    /// depends on the request alone. Empty for a tree without conditional nodes.
    pub fn choose(&self, r: &Request<'_>) -> Box<[Option<u16>]> {
        let mut out = vec![None; self.conditionals as usize].into_boxed_slice();
        if self.conditionals > 0 {
            choose_below(&self.root, r, &mut out);
        }
        out
    }
}

fn choose_below(node: &Node, r: &Request<'_>, out: &mut [Option<u16>]) {
    if let NodeKind::Group(g) = &node.kind {
        if let Some(c) = &g.conditional {
            out[c.id as usize] = c.choose(r);
        }
        for child in &g.children {
            choose_below(child, r, out);
        }
    }
}

/// Bounds on what compiling one tree may build. Inline configs come from clients, so their
/// compiled size is bounded (the messages name the `server.max_inline_config_*` settings);
/// stored configs come from the operator and are not.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_leaves: usize,
    /// Estimated heap bytes of the compiled tree: nodes, leaves and every merged
    /// `override_params` map (one per node that has its own).
    pub max_bytes: usize,
    /// Whether errors may list the virtual keys that exist (not to clients: an inline config's
    /// errors must not tell a client which accounts the gateway has).
    pub list_names: bool,
}

impl Limits {
    pub const NONE: Limits = Limits {
        max_leaves: usize::MAX,
        max_bytes: usize::MAX,
        list_names: true,
    };
}

/// Largest weight a node may carry: far above any sensible ratio, and small enough that the
/// sum of a group's weights can never overflow to infinity (which breaks weighted selection).
pub const MAX_WEIGHT: f64 = 1e6;

#[derive(Debug)]
pub struct Node {
    pub weight: f64,
    /// The target's `name`, by which a conditional parent chooses it.
    pub name: Option<Box<str>>,
    pub kind: NodeKind,
    /// Every leaf below this node (itself, for a leaf), so that the availability of a whole
    /// subtree is a scan of a short slice rather than a walk.
    pub leaves: Box<[Arc<Leaf>]>,
}

#[derive(Debug)]
pub enum NodeKind {
    Leaf(Arc<Leaf>),
    Group(Group),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Loadbalance,
    Fallback,
    /// The first condition that matches the request chooses the child (see [`Conditional`]).
    Conditional,
}

#[derive(Debug)]
pub struct Group {
    pub mode: Mode,
    /// Statuses that make a fallback node move on; `None` = any failure does.
    pub on_status_codes: Option<Box<[u16]>>,
    pub children: Vec<Node>,
    /// The rules of a [`Mode::Conditional`] node.
    pub conditional: Option<Box<Conditional>>,
}

/// A `conditional` node's rules, with `then`/`default` resolved to child indices.
#[derive(Debug)]
pub struct Conditional {
    /// This node's slot in a request's choices ([`Tree::choose`]).
    pub id: u16,
    pub rules: Vec<Rule>,
    /// The default child's index and name.
    pub default: Option<(u16, String)>,
    /// Portkey's option path of this node, e.g. `config.targets[1]`.
    pub path: Arc<str>,
}

#[derive(Debug)]
pub struct Rule {
    pub query: Query,
    pub then: u16,
    /// The query as written, for the admin API and the no-match error.
    pub written: Value,
    pub then_name: String,
}

impl Conditional {
    /// The child this node routes `r` to: the first matching rule's, else the default.
    pub fn choose(&self, r: &Request<'_>) -> Option<u16> {
        self.rules
            .iter()
            .find(|rule| rule.query.matches(r))
            .map(|rule| rule.then)
            .or(self.default.as_ref().map(|d| d.0))
    }

    /// The rules as a client reads them in the no-match error.
    pub fn describe(&self) -> String {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("{} then `{}`", r.written, r.then_name))
            .collect();
        format!(
            "no condition of the conditional node at {} matched this request and it has no `default` (conditions: {})",
            self.path,
            if rules.is_empty() { "none".to_owned() } else { rules.join("; ") },
        )
    }
}

/// A leaf with everything inherited from its ancestors already applied.
#[derive(Debug)]
pub struct Leaf {
    /// Portkey's option index, e.g. `config.targets[1].targets[0]`.
    pub path: Arc<str>,
    pub target: u32,
    pub virtual_key: Arc<str>,
    /// The merged params of the nearest ancestor (or self) that has its own: one map shared
    /// by every leaf that inherits it, so a config's memory is O(its own params), not
    /// O(leaves x params).
    pub override_params: Arc<Map<String, Value>>,
    pub retry: Retry,
    pub request_timeout: Option<Duration>,
    /// The response cache for answers this leaf serves (inherited whole, like `retry`).
    pub cache: Option<CachePolicy>,
    /// `path` and `virtual_key` as response header values, built once (every response that
    /// reached a leaf names it).
    pub headers: LeafHeaders,
}

#[derive(Debug)]
pub struct LeafHeaders {
    pub path: Option<HeaderValue>,
    pub virtual_key: Option<HeaderValue>,
}

impl LeafHeaders {
    /// Both are header-safe (names are validated at load, paths are generated), so `None`
    /// is only a safeguard: the header is then left out.
    fn new(path: &str, virtual_key: &str) -> LeafHeaders {
        LeafHeaders {
            path: HeaderValue::from_str(path).ok(),
            virtual_key: HeaderValue::from_str(virtual_key).ok(),
        }
    }
}

/// A node's `cache`: Portkey's `{ mode, max_age }` (seconds, as Portkey's hosted gateway; its
/// OSS build reads milliseconds) plus `similarity` for semantic matching.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub mode: CacheMode,
    pub max_age: Duration,
    /// Cosine similarity a semantic match needs.
    pub similarity: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Simple,
    Semantic,
}

/// Portkey's hosted default and bounds for `max_age` (7 days; at most 90 days). The lower
/// bound is 1 s, not Portkey's 60, so short-lived answers can be cached too.
const DEFAULT_MAX_AGE: u64 = 7 * 24 * 3600;
const MAX_MAX_AGE: u64 = 90 * 24 * 3600;
pub const DEFAULT_SIMILARITY: f32 = 0.95;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub on_status_codes: Box<[u16]>,
    pub use_retry_after_header: bool,
}

impl Retry {
    pub fn none() -> Retry {
        Retry {
            attempts: 0,
            on_status_codes: Box::new([]),
            use_retry_after_header: true,
        }
    }

    pub fn retries_on(&self, status: u16) -> bool {
        self.on_status_codes.contains(&status)
    }
}

/// A problem found while compiling a tree: where (`path`, in the operator's terms) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError {
    pub path: String,
    pub message: String,
}

impl TreeError {
    fn at(path: &str, field: &str, message: impl Into<String>) -> TreeError {
        let path = if field.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        };
        TreeError {
            path,
            message: message.into(),
        }
    }
}

/// Where inheritance stands at one node while descending.
struct Inherited<'a> {
    override_params: &'a Arc<Map<String, Value>>,
    /// Estimated heap bytes of `override_params`.
    params_bytes: usize,
    retry: &'a Retry,
    request_timeout: Option<u64>,
    cache: Option<CachePolicy>,
}

/// What compiling has built so far, against [`Limits`].
struct Budget {
    limits: Limits,
    leaves: usize,
    bytes: usize,
    conditionals: u16,
    reads_params: bool,
    semantic_at: Option<String>,
}

impl Budget {
    fn spend(&mut self, bytes: usize, err_path: &str) -> Result<(), TreeError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limits.max_bytes {
            return Err(TreeError::at(
                err_path,
                "",
                format!(
                    "the compiled inline config would exceed {} bytes \
                     (server.max_inline_config_bytes; override_params are merged into every \
                     node that has its own): give params once, higher in the tree",
                    self.limits.max_bytes,
                ),
            ));
        }
        Ok(())
    }

    fn leaf(&mut self, err_path: &str) -> Result<(), TreeError> {
        self.leaves += 1;
        if self.leaves > self.limits.max_leaves {
            return Err(TreeError::at(
                err_path,
                "",
                format!(
                    "the inline config has more than {} leaves \
                     (server.max_inline_config_leaves); use a stored config instead",
                    self.limits.max_leaves,
                ),
            ));
        }
        Ok(())
    }
}

/// Estimated heap bytes of a JSON map: entries, keys, values, tree overhead. An estimate
/// that grows with the real size is all the bounds need.
fn map_bytes(m: &Map<String, Value>) -> usize {
    m.iter().fold(0usize, |acc, (k, v)| {
        acc.saturating_add(std::mem::size_of::<String>() + k.len() + 16)
            .saturating_add(value_bytes(v))
    })
}

fn value_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a
                .iter()
                .fold(0usize, |acc, v| acc.saturating_add(value_bytes(v))),
            Value::Object(m) => map_bytes(m),
            _ => 0,
        }
}

/// Compiles `raw` into a tree. `err_path` prefixes error paths (e.g. `configs.main`, or
/// `x-portkey-config` for inline configs); `targets` maps virtual key names to indices;
/// `limits` bounds what may be built (checked as it is built, so nothing large is built first).
pub fn compile(
    id: &str,
    raw: &RawNode,
    err_path: &str,
    targets: &HashMap<&str, u32>,
    limits: Limits,
) -> Result<Tree, TreeError> {
    let empty = Arc::new(Map::new());
    let no_retry = Retry::none();
    let mut budget = Budget {
        limits,
        leaves: 0,
        bytes: 0,
        conditionals: 0,
        reads_params: false,
        semantic_at: None,
    };
    let root = compile_node(
        raw,
        err_path,
        "config",
        targets,
        Inherited {
            override_params: &empty,
            params_bytes: 0,
            retry: &no_retry,
            request_timeout: None,
            cache: None,
        },
        &mut budget,
    )?;
    Ok(Tree {
        id: id.into(),
        root,
        approx_bytes: budget.bytes,
        conditionals: budget.conditionals,
        reads_params: budget.reads_params,
        semantic_at: budget.semantic_at,
    })
}

/// A one-leaf tree routing straight to one virtual key (`x-portkey-virtual-key`).
pub fn direct(name: &str, index: u32) -> Tree {
    Tree {
        id: format!("virtual_key:{name}").into(),
        root: leaf_node(
            1.0,
            None,
            Leaf {
                path: "config".into(),
                target: index,
                virtual_key: name.into(),
                override_params: Arc::default(),
                retry: Retry::none(),
                request_timeout: None,
                cache: None,
                headers: LeafHeaders::new("config", name),
            },
        ),
        // The name and path twice: as strings and as header values.
        approx_bytes: LEAF_BYTES + NODE_BYTES + 2 * (name.len() + "config".len()),
        conditionals: 0,
        reads_params: false,
        semantic_at: None,
    }
}

/// Estimated fixed heap cost of one leaf (the `Leaf` in its `Arc`, its retry codes, the
/// `Arc<Leaf>` entries that list it) and of one node, for [`Limits::max_bytes`].
const LEAF_BYTES: usize = std::mem::size_of::<Leaf>() + 64;
const NODE_BYTES: usize = std::mem::size_of::<Node>() + 16;

fn compile_node(
    raw: &RawNode,
    err_path: &str,
    route_path: &str,
    targets: &HashMap<&str, u32>,
    inherited: Inherited<'_>,
    budget: &mut Budget,
) -> Result<Node, TreeError> {
    for (present, field) in [
        (raw.api_key.is_some(), "api_key"),
        (raw.provider.is_some(), "provider"),
        (raw.custom_host.is_some(), "custom_host"),
    ] {
        if present {
            return Err(TreeError::at(
                err_path,
                field,
                format!(
                    "`{field}` is not allowed in an llmux config: credentials and hosts live in \
                     config.toml; name a `virtual_key` defined under [virtual_keys] instead"
                ),
            ));
        }
    }
    if raw.forward_headers.is_some() {
        return Err(TreeError::at(
            err_path,
            "forward_headers",
            "`forward_headers` is not supported by llmux; remove it",
        ));
    }

    let weight = raw.weight.unwrap_or(1.0);
    if !(0.0..=MAX_WEIGHT).contains(&weight) {
        return Err(TreeError::at(
            err_path,
            "weight",
            format!(
                "weight must be a number from 0 to {MAX_WEIGHT}, got {weight}; only the ratio \
                 between siblings matters"
            ),
        ));
    }
    if let Some(0) = raw.request_timeout {
        return Err(TreeError::at(
            err_path,
            "request_timeout",
            "request_timeout is in milliseconds and must be > 0",
        ));
    }

    // Inheritance (Portkey): override_params merge with the child winning per key; retry and
    // request_timeout are taken whole from the parent only when the child has none. A node
    // with params of its own builds its merged map once; every node below shares it.
    let merged;
    let (override_params, params_bytes) = match &raw.override_params {
        Some(own) if !own.is_empty() => {
            // Bounded before it is built: the merge is at most the parent's plus its own.
            let bytes = inherited.params_bytes.saturating_add(map_bytes(own));
            budget.spend(bytes, err_path)?;
            let mut m = Map::clone(inherited.override_params);
            m.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            merged = Arc::new(m);
            (&merged, bytes)
        }
        _ => (inherited.override_params, inherited.params_bytes),
    };
    let own_retry;
    let retry = match &raw.retry {
        Some(r) => {
            own_retry = compile_retry(r, err_path)?;
            &own_retry
        }
        None => inherited.retry,
    };
    let request_timeout = raw.request_timeout.or(inherited.request_timeout);
    let cache = match &raw.cache {
        Some(v) => {
            let policy = compile_cache(v, err_path)?;
            if policy.mode == CacheMode::Semantic && budget.semantic_at.is_none() {
                budget.semantic_at = Some(format!("{err_path}.cache"));
            }
            Some(policy)
        }
        None => inherited.cache,
    };

    match (&raw.virtual_key, &raw.targets, &raw.strategy) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(TreeError::at(
            err_path,
            "",
            "a node is either a leaf (`virtual_key`) or a strategy node (`strategy` + `targets`), not both",
        )),
        (Some(vk), None, None) => {
            budget.leaf(err_path)?;
            // Path and name twice: as strings and as header values.
            budget.spend(LEAF_BYTES + 2 * (route_path.len() + vk.len()), err_path)?;
            let &target = targets.get(vk.as_str()).ok_or_else(|| {
                if !budget.limits.list_names {
                    return TreeError::at(
                        err_path,
                        "virtual_key",
                        format!("unknown virtual key `{vk}`"),
                    );
                }
                let mut known: Vec<&str> = targets.keys().copied().collect();
                known.sort_unstable();
                TreeError::at(
                    err_path,
                    "virtual_key",
                    format!(
                        "unknown virtual key `{vk}`; define it under [virtual_keys.{vk}] or use one of: {}",
                        if known.is_empty() { "(none defined)".to_owned() } else { known.join(", ") }
                    ),
                )
            })?;
            Ok(leaf_node(
                weight,
                raw.name.as_deref(),
                Leaf {
                    path: route_path.into(),
                    target,
                    virtual_key: vk.as_str().into(),
                    override_params: override_params.clone(),
                    retry: retry.clone(),
                    request_timeout: request_timeout.map(Duration::from_millis),
                    cache,
                    headers: LeafHeaders::new(route_path, vk),
                },
            ))
        }
        (None, None, _) => Err(TreeError::at(
            err_path,
            "",
            "node has neither `virtual_key` nor `targets`; give a leaf a `virtual_key`, or a strategy node `strategy` and `targets`",
        )),
        (None, Some(_), None) => Err(TreeError::at(
            err_path,
            "strategy",
            "node has `targets` but no `strategy`; add `strategy = { mode = \"loadbalance\" }` (or \"fallback\" / \"single\")",
        )),
        (None, Some(children_raw), Some(strategy)) => {
            let mode = match strategy.mode.as_str() {
                "single" => Mode::Single,
                "loadbalance" => Mode::Loadbalance,
                "fallback" => Mode::Fallback,
                "conditional" => Mode::Conditional,
                other => {
                    return Err(TreeError::at(
                        err_path,
                        "strategy.mode",
                        format!("unknown strategy mode `{other}`; expected loadbalance, fallback, single or conditional"),
                    ))
                }
            };
            if mode != Mode::Conditional
                && (strategy.conditions.is_some() || strategy.default.is_some())
            {
                return Err(TreeError::at(
                    err_path,
                    "strategy",
                    "`conditions`/`default` belong to `mode = \"conditional\"`; remove them or change the mode",
                ));
            }
            if children_raw.is_empty() {
                return Err(TreeError::at(
                    err_path,
                    "targets",
                    "targets must not be empty; list at least one target",
                ));
            }
            let on_status_codes = match &strategy.on_status_codes {
                Some(codes) => {
                    check_codes(codes, err_path, "strategy.on_status_codes")?;
                    Some(codes.clone().into_boxed_slice())
                }
                None => None,
            };
            let mut children = Vec::with_capacity(children_raw.len());
            for (i, child) in children_raw.iter().enumerate() {
                children.push(compile_node(
                    child,
                    &format!("{err_path}.targets[{i}]"),
                    &format!("{route_path}.targets[{i}]"),
                    targets,
                    Inherited {
                        override_params,
                        params_bytes,
                        retry,
                        request_timeout,
                        cache,
                    },
                    budget,
                )?);
            }
            if mode == Mode::Loadbalance && children.iter().all(|c| c.weight == 0.0) {
                return Err(TreeError::at(
                    err_path,
                    "targets",
                    "every target of this loadbalance node has weight 0, so it can never serve; give at least one a weight > 0",
                ));
            }
            let conditional = match mode {
                Mode::Conditional => Some(Box::new(compile_conditional(
                    strategy,
                    children_raw,
                    err_path,
                    route_path,
                    budget,
                )?)),
                _ => None,
            };
            let leaves: Box<[Arc<Leaf>]> =
                children.iter().flat_map(|c| c.leaves.iter().cloned()).collect();
            budget.spend(
                NODE_BYTES + leaves.len() * std::mem::size_of::<Arc<Leaf>>(),
                err_path,
            )?;
            Ok(Node {
                weight,
                name: raw.name.as_deref().map(Into::into),
                leaves,
                kind: NodeKind::Group(Group {
                    mode,
                    on_status_codes,
                    children,
                    conditional,
                }),
            })
        }
    }
}

/// A conditional node's rules: names resolved to child indices, queries compiled.
fn compile_conditional(
    strategy: &RawStrategy,
    children: &[RawNode],
    err_path: &str,
    route_path: &str,
    budget: &mut Budget,
) -> Result<Conditional, TreeError> {
    let mut names: HashMap<&str, u16> = HashMap::with_capacity(children.len());
    for (i, child) in children.iter().enumerate() {
        if let Some(name) = &child.name {
            if let Some(first) = names.insert(name.as_str(), i as u16) {
                return Err(TreeError::at(
                    err_path,
                    &format!("targets[{i}].name"),
                    format!(
                        "name `{name}` is already used by targets[{first}]; the targets of a \
                         conditional node need distinct names"
                    ),
                ));
            }
        }
    }
    let resolve = |name: &str, field: &str| {
        names.get(name).copied().ok_or_else(|| {
            let mut known: Vec<&str> = names.keys().copied().collect();
            known.sort_unstable();
            TreeError::at(
                err_path,
                field,
                format!(
                    "no target of this conditional node is named `{name}`; give one \
                     `name = \"{name}\"` or use one of: {}",
                    if known.is_empty() {
                        "(no target has a name)".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    };
    let raw_rules = strategy.conditions.as_deref().unwrap_or_default();
    if raw_rules.is_empty() && strategy.default.is_none() {
        return Err(TreeError::at(
            err_path,
            "strategy.conditions",
            "a conditional node needs `conditions` ([{query, then}]) or a `default`",
        ));
    }
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (i, raw) in raw_rules.iter().enumerate() {
        let field = format!("strategy.conditions[{i}]");
        let then = resolve(&raw.then, &format!("{field}.then"))?;
        budget.spend(2 * value_bytes(&raw.query) + raw.then.len(), err_path)?;
        let query =
            Query::compile(&raw.query, &format!("{err_path}.{field}.query")).map_err(|e| {
                TreeError {
                    path: e.path,
                    message: e.message,
                }
            })?;
        budget.reads_params |= query.reads_params();
        rules.push(Rule {
            query,
            then,
            written: raw.query.clone(),
            then_name: raw.then.clone(),
        });
    }
    let default = match &strategy.default {
        Some(name) => Some((resolve(name, "strategy.default")?, name.clone())),
        None => None,
    };
    let id = budget.conditionals;
    budget.conditionals = id.checked_add(1).ok_or_else(|| {
        TreeError::at(
            err_path,
            "",
            "a config may have at most 65535 conditional nodes",
        )
    })?;
    Ok(Conditional {
        id,
        rules,
        default,
        path: route_path.into(),
    })
}

fn leaf_node(weight: f64, name: Option<&str>, leaf: Leaf) -> Node {
    let leaf = Arc::new(leaf);
    Node {
        weight,
        name: name.map(Into::into),
        leaves: Box::new([leaf.clone()]),
        kind: NodeKind::Leaf(leaf),
    }
}

/// `cache`: `"simple"`, `"semantic"`, or `{ mode, max_age, similarity }`.
fn compile_cache(v: &Value, err_path: &str) -> Result<CachePolicy, TreeError> {
    let bad = |field: &str, message: String| TreeError::at(err_path, field, message);
    let mode_of = |m: &str| match m {
        "simple" => Ok(CacheMode::Simple),
        "semantic" => Ok(CacheMode::Semantic),
        other => Err(bad(
            "cache.mode",
            format!("unknown cache mode `{other}`; expected \"simple\" or \"semantic\""),
        )),
    };
    let mut policy = CachePolicy {
        mode: CacheMode::Simple,
        max_age: Duration::from_secs(DEFAULT_MAX_AGE),
        similarity: DEFAULT_SIMILARITY,
    };
    match v {
        Value::String(m) => policy.mode = mode_of(m)?,
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("mode", Value::String(s)) => policy.mode = mode_of(s)?,
                    ("max_age", v) => {
                        let secs = v.as_u64().filter(|s| (1..=MAX_MAX_AGE).contains(s));
                        policy.max_age = Duration::from_secs(secs.ok_or_else(|| {
                            bad(
                                "cache.max_age",
                                format!(
                                    "max_age is in seconds, from 1 to {MAX_MAX_AGE} (90 days); got {v}"
                                ),
                            )
                        })?);
                    }
                    ("similarity", v) => {
                        let s = v.as_f64().filter(|s| *s > 0.0 && *s <= 1.0);
                        policy.similarity = s.ok_or_else(|| {
                            bad(
                                "cache.similarity",
                                format!("similarity is a cosine in (0, 1], e.g. 0.95; got {v}"),
                            )
                        })? as f32;
                    }
                    (k, _) => {
                        return Err(bad(
                            &format!("cache.{k}"),
                            format!(
                                "unknown or mistyped cache field `{k}`; expected mode (\"simple\" or \"semantic\"), max_age (seconds) or similarity"
                            ),
                        ))
                    }
                }
            }
            if !m.contains_key("mode") {
                return Err(bad(
                    "cache.mode",
                    "cache needs a mode: \"simple\" or \"semantic\"".into(),
                ));
            }
        }
        other => {
            return Err(bad(
                "cache",
                format!("cache is \"simple\", \"semantic\" or {{ mode, max_age }}; got {other}"),
            ))
        }
    }
    Ok(policy)
}

fn compile_retry(raw: &RawRetry, err_path: &str) -> Result<Retry, TreeError> {
    if raw.attempts > MAX_RETRY_ATTEMPTS {
        return Err(TreeError::at(
            err_path,
            "retry.attempts",
            format!(
                "retry.attempts must be at most {MAX_RETRY_ATTEMPTS}, got {}",
                raw.attempts
            ),
        ));
    }
    let codes = match &raw.on_status_codes {
        Some(codes) => {
            check_codes(codes, err_path, "retry.on_status_codes")?;
            codes.clone().into_boxed_slice()
        }
        None => Box::new(DEFAULT_RETRY_CODES),
    };
    Ok(Retry {
        attempts: raw.attempts,
        on_status_codes: codes,
        use_retry_after_header: raw.use_retry_after_header,
    })
}

fn check_codes(codes: &[u16], err_path: &str, field: &str) -> Result<(), TreeError> {
    match codes.iter().find(|c| !(100..=599).contains(*c)) {
        Some(bad) => Err(TreeError::at(
            err_path,
            field,
            format!("{bad} is not an HTTP status code (100-599)"),
        )),
        None => Ok(()),
    }
}

/// The compiled tree as JSON for the admin API and status page (inheritance already applied).
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("weight", &self.weight)?;
        if let Some(name) = &self.name {
            m.serialize_entry("name", name)?;
        }
        match &self.kind {
            NodeKind::Leaf(l) => {
                m.serialize_entry("path", &*l.path)?;
                m.serialize_entry("virtual_key", &*l.virtual_key)?;
                m.serialize_entry("override_params", &*l.override_params)?;
                m.serialize_entry("retry_attempts", &l.retry.attempts)?;
                m.serialize_entry(
                    "request_timeout_ms",
                    &l.request_timeout.map(|d| d.as_millis() as u64),
                )?;
                if let Some(c) = &l.cache {
                    m.serialize_entry(
                        "cache",
                        &serde_json::json!({
                            "mode": match c.mode { CacheMode::Simple => "simple", CacheMode::Semantic => "semantic" },
                            "max_age": c.max_age.as_secs(),
                            "similarity": c.similarity,
                        }),
                    )?;
                }
            }
            NodeKind::Group(g) => {
                let mode = match g.mode {
                    Mode::Single => "single",
                    Mode::Loadbalance => "loadbalance",
                    Mode::Fallback => "fallback",
                    Mode::Conditional => "conditional",
                };
                m.serialize_entry("mode", mode)?;
                m.serialize_entry("on_status_codes", &g.on_status_codes)?;
                if let Some(c) = &g.conditional {
                    let conditions: Vec<Value> = c
                        .rules
                        .iter()
                        .map(|r| serde_json::json!({"query": r.written, "then": r.then_name}))
                        .collect();
                    m.serialize_entry("conditions", &conditions)?;
                    m.serialize_entry("default", &c.default.as_ref().map(|d| &d.1))?;
                }
                m.serialize_entry("targets", &g.children)?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile_json(v: Value, limits: Limits) -> Result<Tree, TreeError> {
        let raw: RawNode = serde_json::from_value(v).unwrap();
        let targets = HashMap::from([("a", 0), ("b", 1)]);
        compile("t", &raw, "x-portkey-config", &targets, limits)
    }

    #[test]
    fn leaves_share_one_merged_params_map() {
        let big: Map<String, Value> = (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
        let tree = compile_json(
            json!({"strategy": {"mode": "fallback"}, "override_params": big, "targets": [
                {"virtual_key": "a"},
                {"strategy": {"mode": "loadbalance"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}]},
                {"virtual_key": "b", "override_params": {"model": "m"}},
            ]}),
            Limits::NONE,
        )
        .unwrap();
        let l = &tree.root.leaves;
        assert_eq!(l.len(), 4);
        assert!(Arc::ptr_eq(&l[0].override_params, &l[1].override_params));
        assert!(Arc::ptr_eq(&l[0].override_params, &l[2].override_params));
        assert_eq!(l[0].override_params.len(), 100);
        // A leaf with its own params gets its own merge, inherited keys included.
        assert!(!Arc::ptr_eq(&l[0].override_params, &l[3].override_params));
        assert_eq!(l[3].override_params.len(), 101);
        assert_eq!(l[3].override_params["model"], "m");
        assert_eq!(l[3].override_params["k7"], 7);
        // The estimate counts the shared map once, not once per leaf.
        assert!(
            tree.approx_bytes < 3 * map_bytes(&big) + 4 * 1024,
            "{}",
            tree.approx_bytes
        );
    }

    #[test]
    fn limits_bound_leaves_and_bytes_and_name_the_path() {
        let limits = Limits {
            max_leaves: 3,
            max_bytes: 64 * 1024,
            list_names: false,
        };
        let leaves = |n: usize| {
            (0..n)
                .map(|_| json!({"virtual_key": "a"}))
                .collect::<Vec<_>>()
        };
        let ok = json!({"strategy": {"mode": "fallback"}, "targets": leaves(3)});
        assert!(compile_json(ok, limits).is_ok());
        let e = compile_json(
            json!({"strategy": {"mode": "fallback"}, "targets": [
                {"strategy": {"mode": "fallback"}, "targets": leaves(2)},
                {"strategy": {"mode": "fallback"}, "targets": leaves(2)},
            ]}),
            limits,
        )
        .unwrap_err();
        assert_eq!(e.path, "x-portkey-config.targets[1].targets[1]");
        assert!(e.message.contains("more than 3 leaves"), "{}", e.message);
        assert!(
            e.message.contains("max_inline_config_leaves"),
            "{}",
            e.message
        );

        // The root's 1,000 params fit; each leaf with params of its own re-merges them all.
        let limits = Limits {
            max_leaves: 256,
            max_bytes: 200 * 1024,
            list_names: false,
        };
        let big: Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
        let e = compile_json(
            json!({"strategy": {"mode": "fallback"}, "override_params": big, "targets": [
                {"virtual_key": "a", "override_params": {"n": 1}},
                {"virtual_key": "a", "override_params": {"n": 2}},
                {"virtual_key": "a", "override_params": {"n": 3}},
            ]}),
            limits,
        )
        .unwrap_err();
        assert_eq!(e.path, "x-portkey-config.targets[1]");
        assert!(
            e.message.contains("max_inline_config_bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn client_facing_errors_do_not_list_the_virtual_keys() {
        let raw = json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "zz"}]});
        let inline = Limits {
            list_names: false,
            ..Limits::NONE
        };
        let e = compile_json(raw.clone(), inline).unwrap_err();
        assert_eq!(e.message, "unknown virtual key `zz`");
        let e = compile_json(raw, Limits::NONE).unwrap_err();
        assert!(e.message.contains("use one of: a, b"), "{}", e.message);
    }

    #[test]
    fn weights_whose_sum_would_overflow_are_refused() {
        for w in [1e308, f64::MAX, MAX_WEIGHT * 2.0, -1.0] {
            let e = compile_json(
                json!({"strategy": {"mode": "loadbalance"}, "targets": [
                    {"virtual_key": "a", "weight": w}, {"virtual_key": "b", "weight": w}]}),
                Limits::NONE,
            )
            .unwrap_err();
            assert_eq!(e.path, "x-portkey-config.targets[0].weight");
        }
        let t = compile_json(
            json!({"strategy": {"mode": "loadbalance"}, "targets": [
                {"virtual_key": "a", "weight": MAX_WEIGHT}, {"virtual_key": "b", "weight": MAX_WEIGHT}]}),
            Limits::NONE,
        )
        .unwrap();
        let NodeKind::Group(g) = &t.root.kind else {
            panic!("a group")
        };
        assert!(g.children.iter().map(|c| c.weight).sum::<f64>().is_finite());
    }
}
