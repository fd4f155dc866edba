//! Configuration: `config.toml` is read, type-checked (`deny_unknown_fields`), validated and
//! compiled once into an immutable [`Config`]. Every error names the file, the path in the tree
//! and the fix. Reloads build a whole new `Config` and swap it in; nothing mutates one.

mod bedrock;
pub mod catalog;
pub mod condition;
pub mod gcp;
pub mod limit;
pub mod raw;
mod target;
mod telemetry;
pub mod tree;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use bedrock::{AwsKeys, BedrockAccount};
pub use raw::{ProviderKind, ResponsesApi};
use raw::{RawFile, RawNode, RawVirtualKey};
use target::compile_target;
pub use target::TargetSpec;
pub use telemetry::TelemetrySettings;
pub use tree::{
    CacheMode, CachePolicy, Leaf, Limits, Mode, Node, NodeKind, Retry, Tree, TreeError,
};

/// A credential, held as a [`secrecy::SecretString`]: zeroed when dropped, and its
/// `Debug`/`Serialize` never show the value, so it cannot leak into logs, errors or admin output
/// by accident; only [`Secret::expose`] reveals it.
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Secret {
        Secret(secrecy::SecretString::new(value.into()))
    }
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

/// Whether a reload changed a credential (a changed key gets a new target actor).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
}

impl ConfigError {
    /// Where in the tree the error is (empty for unreadable files).
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Invalid { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub default_config: Option<String>,
    pub max_body_bytes: usize,
    /// Largest non-streamed upstream answer; past it the attempt fails (502) without reading on.
    pub max_upstream_body_bytes: usize,
    #[serde(serialize_with = "ser_ms")]
    pub request_deadline: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub stream_idle_timeout: Duration,
    #[serde(serialize_with = "ser_opt_ms")]
    pub max_queue_wait: Option<Duration>,
    #[serde(serialize_with = "ser_ms")]
    pub shutdown_grace: Duration,
    pub workers: usize,
    pub request_log_size: usize,
    pub max_messages: usize,
    pub max_header_bytes: usize,
    #[serde(serialize_with = "ser_ms")]
    pub header_timeout: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub body_timeout: Duration,
    /// Bounds on one compiled inline config (leaves, estimated bytes).
    pub max_inline_config_leaves: usize,
    pub max_inline_config_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthKey {
    pub name: String,
    /// SHA-256 of the key; the key itself is not kept.
    #[serde(skip)]
    pub sha256: [u8; 32],
    /// What the key may reach.
    pub scope: Scope,
    /// Recorded with every request of this key (over the client's own metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Arc<std::collections::BTreeMap<String, String>>>,
    pub limits: KeyLimits,
}

/// A gateway key's limits (none by default).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyLimits {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

/// What one gateway key may reach. `None` lists mean everything, as without a scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scope {
    /// Stored config ids.
    pub configs: Option<Vec<String>>,
    /// Virtual key names (for `x-portkey-virtual-key` and the leaves of inline configs).
    pub virtual_keys: Option<Vec<String>>,
    pub inline_configs: bool,
}

impl Scope {
    pub fn config(&self, id: &str) -> bool {
        self.configs
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == id))
    }

    pub fn virtual_key(&self, name: &str) -> bool {
        self.virtual_keys
            .as_ref()
            .is_none_or(|v| v.iter().any(|x| x == name))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterSettings {
    /// May hold a password: kept as a secret.
    pub redis_url: Secret,
    pub key_prefix: String,
    pub local_share: f64,
}

/// `[cache]`: the response cache's store (which requests are cached is the trees' `cache`).
#[derive(Debug, Clone, Serialize)]
pub struct CacheSettings {
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub embeddings_virtual_key: Option<String>,
    pub embeddings_model: String,
    pub semantic_max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            embeddings_virtual_key: None,
            embeddings_model: "text-embedding-3-small".into(),
            semantic_max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// For prompt tokens read from the provider's cache; `None` bills them at the input rate.
    pub cached_input_per_mtok: Option<f64>,
}

/// Prices by model name (the built-in catalog under the operator's `[pricing]` rows). Keys
/// are shared, so a request's cost names its row without copying it.
pub type Pricing = HashMap<Arc<str>, Price, foldhash::fast::RandomState>;

/// A validated, compiled configuration snapshot.
#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerSettings,
    pub admin: Option<AdminSettings>,
    pub auth: Vec<AuthKey>,
    /// Targets sorted by name; tree leaves refer to them by index.
    pub targets: Vec<Arc<TargetSpec>>,
    target_index: HashMap<String, u32>,
    pub configs: HashMap<String, Arc<Tree>, foldhash::fast::RandomState>,
    /// One single-leaf tree per virtual key, for `x-portkey-virtual-key`.
    direct: Vec<Arc<Tree>>,
    pub pricing: Pricing,
    pub cluster: Option<ClusterSettings>,
    pub cache: CacheSettings,
    /// `[usage] path`, resolved against the config file's folder.
    pub usage_path: Option<PathBuf>,
    /// `[telemetry]`: read at start only (the exporter lives as long as the process).
    pub telemetry: Option<TelemetrySettings>,
}

const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// Inline configs are for a handful of targets; big trees belong in config.toml.
const DEFAULT_INLINE_LEAVES: usize = 256;
/// Estimated compiled bytes of one inline config: ample for any header within the default
/// 64 KB `max_header_bytes` whose params are given once.
const DEFAULT_INLINE_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_UPSTREAM_BODY: usize = 32 * 1024 * 1024;

impl Config {
    /// Reads and validates `path`, resolving secrets from the environment and files.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates `text` as if read from `path`; `env` resolves `*_env` references.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let invalid = |path: &str, message: String| ConfigError::Invalid {
            file: file.clone(),
            path: path.to_owned(),
            message,
        };
        let de = toml::Deserializer::new(text);
        let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().to_owned();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                message = format!("{message} (line {line})");
            }
            invalid(if path == "." { "" } else { &path }, message)
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));

        let server = compile_server(&raw, &invalid)?;
        let admin = match &raw.admin {
            None => None,
            Some(a) => Some(AdminSettings {
                listen: parse_addr(&a.listen).map_err(|m| invalid("admin.listen", m))?,
                token: match &a.token_env {
                    None => None,
                    Some(var) => Some(Secret::new(env(var).filter(|v| !v.is_empty()).ok_or_else(
                        || {
                            invalid(
                                "admin.token_env",
                                format!("environment variable `{var}` is not set"),
                            )
                        },
                    )?)),
                },
            }),
        };
        if let Some(a) = &admin {
            if a.listen == server.listen {
                return Err(invalid(
                    "admin.listen",
                    "admin.listen must differ from server.listen".into(),
                ));
            }
        }

        let mut auth = Vec::new();
        if let Some(a) = &raw.auth {
            if a.keys.is_empty() {
                return Err(invalid(
                    "auth.keys",
                    "auth.keys is empty; list at least one key or remove [auth]".into(),
                ));
            }
            for (i, k) in a.keys.iter().enumerate() {
                let p = format!("auth.keys[{i}]");
                let sha256 = match (&k.key_env, &k.key_file, &k.sha256) {
                    (Some(var), None, None) => {
                        let v = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                            invalid(
                                &format!("{p}.key_env"),
                                format!("environment variable `{var}` is not set"),
                            )
                        })?;
                        sha256(v.as_bytes())
                    }
                    (None, Some(f), None) => {
                        let v = read_secret_file(base_dir, f)
                            .map_err(|m| invalid(&format!("{p}.key_file"), m))?;
                        sha256(v.as_bytes())
                    }
                    (None, None, Some(hex)) => parse_sha256_hex(hex).ok_or_else(|| {
                        invalid(
                            &format!("{p}.sha256"),
                            "expected 64 hex characters (sha256 of the key)".into(),
                        )
                    })?,
                    _ => {
                        return Err(invalid(
                            &p,
                            "give exactly one of key_env, key_file or sha256".into(),
                        ))
                    }
                };
                auth.push(AuthKey {
                    name: k.name.clone(),
                    sha256,
                    scope: Scope {
                        configs: k.configs.clone(),
                        virtual_keys: k.virtual_keys.clone(),
                        inline_configs: k.allow_inline_configs.unwrap_or(true),
                    },
                    metadata: k.metadata.clone().map(Arc::new),
                    limits: KeyLimits {
                        rpm: k.rpm,
                        tpm: k.tpm,
                        max_concurrent: k.max_concurrent,
                        daily_usd: k.budget_usd.as_ref().and_then(|b| b.daily),
                        monthly_usd: k.budget_usd.as_ref().and_then(|b| b.monthly),
                    },
                });
                let l = &auth.last().map(|k| k.limits.clone()).unwrap_or_default();
                if [l.rpm, l.tpm, l.max_concurrent].contains(&Some(0)) {
                    return Err(invalid(
                        &p,
                        "rpm, tpm and max_concurrent must be > 0; remove them for no limit".into(),
                    ));
                }
                if [l.daily_usd, l.monthly_usd]
                    .iter()
                    .flatten()
                    .any(|v| !(v.is_finite() && *v > 0.0))
                {
                    return Err(invalid(
                        &format!("{p}.budget_usd"),
                        "budgets are USD amounts > 0, e.g. budget_usd = { daily = 50, monthly = 1000 }".into(),
                    ));
                }
            }
        }

        let mut targets = Vec::with_capacity(raw.virtual_keys.len());
        for (name, vk) in &raw.virtual_keys {
            targets.push(Arc::new(compile_target(name, vk, base_dir, env, &invalid)?));
        }
        // BTreeMap iteration already sorted them by name.
        let target_index: HashMap<String, u32> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        let by_name: HashMap<&str, u32> =
            target_index.iter().map(|(k, v)| (k.as_str(), *v)).collect();

        let mut configs = HashMap::with_capacity_and_hasher(raw.configs.len(), Default::default());
        for (id, node) in &raw.configs {
            let tree = tree::compile(id, node, &format!("configs.{id}"), &by_name, Limits::NONE)
                .map_err(|e| invalid(&e.path, e.message))?;
            configs.insert(id.clone(), Arc::new(tree));
        }
        // Scopes name only what exists (checked once everything is compiled).
        for (i, k) in auth.iter().enumerate() {
            for c in k.scope.configs.iter().flatten() {
                if !configs.contains_key(c) {
                    return Err(invalid(
                        &format!("auth.keys[{i}].configs"),
                        format!("`{c}` names no [configs.{c}] table"),
                    ));
                }
            }
            for v in k.scope.virtual_keys.iter().flatten() {
                if !target_index.contains_key(v) {
                    return Err(invalid(
                        &format!("auth.keys[{i}].virtual_keys"),
                        format!("`{v}` names no [virtual_keys.{v}] table"),
                    ));
                }
            }
        }
        if let Some(d) = &server.default_config {
            if !configs.contains_key(d) {
                return Err(invalid(
                    "server.default_config",
                    format!("default_config `{d}` names no [configs.{d}] table"),
                ));
            }
        }
        let direct = targets
            .iter()
            .enumerate()
            .map(|(i, t)| Arc::new(tree::direct(&t.name, i as u32)))
            .collect();
        // The built-in catalog, under the operator's rows (checked like them).
        let mut pricing: Pricing = catalog::catalog()
            .models
            .into_iter()
            .map(|(model, p)| {
                let price = Price {
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                    cached_input_per_mtok: p.cached_input_per_mtok,
                };
                (model.into(), price)
            })
            .collect();
        for (model, p) in &raw.pricing {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !(ok(p.input_per_mtok)
                && ok(p.output_per_mtok)
                && p.cached_input_per_mtok.is_none_or(ok))
            {
                return Err(invalid(
                    &format!("pricing.{model}"),
                    "prices must be finite numbers >= 0".into(),
                ));
            }
            pricing.insert(
                model.as_str().into(),
                Price {
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                    cached_input_per_mtok: p.cached_input_per_mtok,
                },
            );
        }
        let cluster = match &raw.cluster {
            None => None,
            Some(c) => {
                let url = match (&c.redis_url, &c.redis_url_env) {
                    (Some(u), None) => u.clone(),
                    (None, Some(var)) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        invalid(
                            "cluster.redis_url_env",
                            format!("environment variable `{var}` is not set"),
                        )
                    })?,
                    _ => {
                        return Err(invalid(
                            "cluster",
                            "give exactly one of redis_url or redis_url_env".into(),
                        ))
                    }
                };
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("unix://"))
                {
                    return Err(invalid(
                        "cluster.redis_url",
                        "expected a redis:// URL, e.g. \"redis://127.0.0.1:6379\"".into(),
                    ));
                }
                let local_share = c.local_share.unwrap_or(1.0);
                if !(local_share > 0.0 && local_share <= 1.0) {
                    return Err(invalid(
                        "cluster.local_share",
                        "local_share must be in (0, 1], e.g. 0.34 for three replicas".into(),
                    ));
                }
                Some(ClusterSettings {
                    redis_url: Secret::new(url),
                    key_prefix: c.key_prefix.clone().unwrap_or_else(|| "llmux".into()),
                    local_share,
                })
            }
        };
        let mut cache = CacheSettings::default();
        if let Some(c) = &raw.cache {
            if let Some(b) = c.max_bytes {
                if b < 1024 * 1024 {
                    return Err(invalid(
                        "cache.max_bytes",
                        format!(
                            "max_bytes is the in-memory cache's size in bytes; {b} is under 1 MiB"
                        ),
                    ));
                }
                cache.max_bytes = b;
            }
            if let Some(b) = c.max_entry_bytes {
                if b == 0 || b as u64 > cache.max_bytes / 4 {
                    return Err(invalid(
                        "cache.max_entry_bytes",
                        "max_entry_bytes must be > 0 and at most a quarter of max_bytes".into(),
                    ));
                }
                cache.max_entry_bytes = b;
            }
            if let Some(n) = c.semantic_max_entries {
                if !(1..=1_000_000).contains(&n) {
                    return Err(invalid(
                        "cache.semantic_max_entries",
                        "semantic_max_entries must be from 1 to 1000000".into(),
                    ));
                }
                cache.semantic_max_entries = n;
            }
            if let Some(m) = &c.embeddings_model {
                cache.embeddings_model = m.clone();
            }
            if let Some(vk) = &c.embeddings_virtual_key {
                // That it serves embeddings is checked with the providers (`providers::check`).
                if !target_index.contains_key(vk) {
                    return Err(invalid(
                        "cache.embeddings_virtual_key",
                        format!("`{vk}` names no [virtual_keys.{vk}] table"),
                    ));
                }
                cache.embeddings_virtual_key = Some(vk.clone());
            }
        }
        if cache.embeddings_virtual_key.is_none() {
            if let Some(at) = configs.values().find_map(|t| t.semantic_at.as_ref()) {
                return Err(invalid(
                    at,
                    "semantic caching embeds prompts: set [cache] embeddings_virtual_key to an embeddings-capable virtual key".into(),
                ));
            }
        }
        let usage_path = raw
            .usage
            .as_ref()
            .and_then(|u| u.path.as_ref())
            .map(|p| base_dir.join(p));
        let telemetry = match &raw.telemetry {
            Some(t) => Some(TelemetrySettings::compile(t, &invalid)?),
            None => None,
        };
        Ok(Config {
            telemetry,
            usage_path,
            cache,
            cluster,
            file: path.to_owned(),
            server,
            admin,
            auth,
            targets,
            target_index,
            configs,
            direct,
            pricing,
        })
    }

    pub fn target_index(&self, name: &str) -> Option<u32> {
        self.target_index.get(name).copied()
    }

    /// The single-leaf tree of the target at `index` (an index of [`Config::targets`]).
    pub fn direct_tree_at(&self, index: u32) -> &Arc<Tree> {
        &self.direct[index as usize]
    }

    pub fn direct_tree(&self, name: &str) -> Option<&Arc<Tree>> {
        self.target_index(name).map(|i| &self.direct[i as usize])
    }

    /// Compiles a client's inline config (`x-portkey-config` JSON). Leaves may only name
    /// virtual keys defined here, so a client can never bring a host or a key, and the
    /// compiled tree is bounded by `server.max_inline_config_{leaves,bytes}`.
    pub fn inline_tree(&self, json: &str) -> Result<Tree, TreeError> {
        const HEADER: &str = "x-portkey-config";
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: RawNode = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let p = e.path().to_string();
            TreeError {
                path: if p == "." {
                    HEADER.into()
                } else {
                    format!("{HEADER}.{p}")
                },
                message: e.into_inner().to_string(),
            }
        })?;
        let by_name: HashMap<&str, u32> = self
            .target_index
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        let limits = Limits {
            max_leaves: self.server.max_inline_config_leaves,
            max_bytes: self.server.max_inline_config_bytes,
            list_names: false,
        };
        let tree = tree::compile("inline", &raw, HEADER, &by_name, limits)?;
        if let (Some(at), None) = (&tree.semantic_at, &self.cache.embeddings_virtual_key) {
            return Err(TreeError {
                path: at.clone(),
                message: "semantic caching is not set up on this gateway ([cache] embeddings_virtual_key); use mode \"simple\"".into(),
            });
        }
        Ok(tree)
    }

    /// Model names the configs route to (from `override_params.model`), for `GET /v1/models`.
    pub fn models(&self) -> Vec<String> {
        fn walk(node: &Node, out: &mut Vec<String>) {
            match &node.kind {
                NodeKind::Leaf(l) => {
                    if let Some(serde_json::Value::String(m)) = l.override_params.get("model") {
                        out.push(m.clone());
                    }
                }
                NodeKind::Group(g) => g.children.iter().for_each(|c| walk(c, out)),
            }
        }
        let mut out = Vec::new();
        for t in self.configs.values() {
            walk(&t.root, &mut out);
        }
        for t in &self.targets {
            if let Some(d) = &t.deployment {
                out.push(d.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

type Invalid<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

fn compile_server(raw: &RawFile, invalid: &Invalid<'_>) -> Result<ServerSettings, ConfigError> {
    let s = &raw.server;
    let ms = |v: Option<u64>, default: u64, field: &str| -> Result<Duration, ConfigError> {
        match v {
            Some(0) => Err(invalid(
                &format!("server.{field}"),
                format!("{field} must be > 0 (milliseconds)"),
            )),
            v => Ok(Duration::from_millis(v.unwrap_or(default))),
        }
    };
    let max_body_bytes = s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes < 1024 {
        return Err(invalid(
            "server.max_body_bytes",
            "max_body_bytes must be at least 1024".into(),
        ));
    }
    let max_upstream_body_bytes = s
        .max_upstream_body_bytes
        .unwrap_or(DEFAULT_MAX_UPSTREAM_BODY);
    if max_upstream_body_bytes < 1024 {
        return Err(invalid(
            "server.max_upstream_body_bytes",
            "max_upstream_body_bytes must be at least 1024".into(),
        ));
    }
    Ok(ServerSettings {
        listen: parse_addr(&s.listen).map_err(|m| invalid("server.listen", m))?,
        default_config: s.default_config.clone(),
        max_body_bytes,
        max_upstream_body_bytes,
        request_deadline: ms(s.request_deadline_ms, 600_000, "request_deadline_ms")?,
        stream_idle_timeout: ms(s.stream_idle_timeout_ms, 60_000, "stream_idle_timeout_ms")?,
        max_queue_wait: s
            .max_queue_wait_ms
            .filter(|&v| v > 0)
            .map(Duration::from_millis),
        shutdown_grace: ms(s.shutdown_grace_ms, 30_000, "shutdown_grace_ms")?,
        workers: match s.workers {
            Some(0) => return Err(invalid("server.workers", "workers must be > 0".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        },
        request_log_size: s.request_log_size.unwrap_or(1000),
        max_messages: s.max_messages.unwrap_or(2048),
        max_header_bytes: s.max_header_bytes.unwrap_or(64 * 1024).max(1024),
        header_timeout: ms(s.header_timeout_ms, 10_000, "header_timeout_ms")?,
        body_timeout: ms(s.body_timeout_ms, 30_000, "body_timeout_ms")?,
        max_inline_config_leaves: match s.max_inline_config_leaves {
            Some(0) => {
                return Err(invalid(
                    "server.max_inline_config_leaves",
                    "max_inline_config_leaves must be >= 1".into(),
                ))
            }
            v => v.unwrap_or(DEFAULT_INLINE_LEAVES),
        },
        max_inline_config_bytes: s
            .max_inline_config_bytes
            .unwrap_or(DEFAULT_INLINE_BYTES)
            .max(4096),
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a socket address; write it like \"127.0.0.1:8787\""))
}

fn read_secret_file(base_dir: &Path, f: &Path) -> Result<String, String> {
    let full = base_dir.join(f);
    let v = std::fs::read_to_string(&full)
        .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("{} is empty", full.display()));
    }
    Ok(v.to_owned())
}

/// `url` with any `user:password@` in its authority replaced by `[redacted]@`, for showing.
pub fn redact_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}[redacted]{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

fn ser_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_userinfo(url))
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

/// The SHA-256 digest gateway keys are kept as (never the key itself).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.toml"), &|_| None)
    }

    #[test]
    fn userinfo_is_redacted_for_display() {
        for (url, shown) in [
            (
                "https://user:pass@example.com/v1",
                "https://[redacted]@example.com/v1",
            ),
            ("https://tok@example.com", "https://[redacted]@example.com"),
            (
                "http://a:b@c@host:8080?x=@y",
                "http://[redacted]@host:8080?x=@y",
            ),
            ("https://example.com/v1/@x", "https://example.com/v1/@x"),
            ("https://example.com", "https://example.com"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url}");
        }
    }

    #[test]
    fn base_url_credentials_never_serialize() {
        let c = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.a]\nprovider = \"openai\"\n\
             base_url = \"https://alice:s3cr3t-pw@example.com/v1\"\n",
        )
        .unwrap();
        let shown = serde_json::to_string(&c.targets).unwrap();
        assert!(
            !shown.contains("s3cr3t-pw") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(
            shown.contains("https://[redacted]@example.com/v1"),
            "{shown}"
        );
        // The real URL still carries them: reqwest sends userinfo as basic auth.
        assert_eq!(
            c.targets[0].base_url,
            "https://alice:s3cr3t-pw@example.com/v1"
        );
        let err = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.a]\nprovider = \"openai\"\n\
             base_url = \"ftp://alice:s3cr3t-pw@example.com/v1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cr3t-pw"), "{err}");
    }

    #[test]
    fn max_upstream_body_bytes() {
        let base = "[server]\nlisten = \"127.0.0.1:1\"\n";
        assert_eq!(
            parse(base).unwrap().server.max_upstream_body_bytes,
            32 * 1024 * 1024
        );
        let set = parse(&format!("{base}max_upstream_body_bytes = 4096\n")).unwrap();
        assert_eq!(set.server.max_upstream_body_bytes, 4096);
        let err = parse(&format!("{base}max_upstream_body_bytes = 10\n")).unwrap_err();
        assert_eq!(err.path(), "server.max_upstream_body_bytes");
    }
}
