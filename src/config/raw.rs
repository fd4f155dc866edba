//! The on-disk (TOML) and inline (`x-portkey-config` JSON) shapes of a config, exactly as
//! written by operators and Portkey clients. Nothing here is validated beyond types: see
//! [`super::compile`] for the checks that need the whole tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub server: RawServer,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub virtual_keys: BTreeMap<String, RawVirtualKey>,
    #[serde(default)]
    pub configs: BTreeMap<String, RawNode>,
    #[serde(default)]
    pub pricing: BTreeMap<String, RawPrice>,
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub cache: Option<RawCacheSettings>,
    #[serde(default)]
    pub usage: Option<RawUsage>,
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
}

/// `[telemetry]`: OpenTelemetry trace export (OTLP over HTTP/protobuf).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP base URL (`http://host:4318`); `/v1/traces` is appended
    /// unless the path already ends with it.
    pub otlp_endpoint: String,
    pub service_name: Option<String>,
    /// Export prompts and completions as span attributes (off: they may hold personal data).
    pub capture_content: Option<bool>,
    /// Share of new traces kept (a client's sampled `traceparent` flag is followed).
    pub sample_ratio: Option<f64>,
    /// How long spans wait to be batched before export.
    pub batch_delay_ms: Option<u64>,
    /// The export call's timeout.
    pub export_timeout_ms: Option<u64>,
    /// Spans held while the collector is slow or away; beyond it new spans are dropped.
    pub max_queue: Option<usize>,
}

/// `[usage]`: where the usage aggregates (`/admin/usage`) persist across restarts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// A JSON file, relative to the config file; memory only when absent.
    pub path: Option<PathBuf>,
}

/// `[cache]`: the response cache's store. Whether a request is cached is the tree's `cache`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheSettings {
    /// Bytes the in-memory store may hold (answers and keys).
    pub max_bytes: Option<u64>,
    /// Largest answer stored (in memory and in Redis).
    pub max_entry_bytes: Option<usize>,
    /// The virtual key that embeds prompts for `mode = "semantic"`.
    pub embeddings_virtual_key: Option<String>,
    /// The embeddings model asked of it.
    pub embeddings_model: Option<String>,
    /// Prompts kept for semantic matching (brute-force cosine over all of them).
    pub semantic_max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis_url: Option<String>,
    pub redis_url_env: Option<String>,
    pub key_prefix: Option<String>,
    /// Fraction of each budget this replica uses alone while Redis is unreachable.
    pub local_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub default_config: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest non-streamed upstream answer read, in bytes.
    pub max_upstream_body_bytes: Option<usize>,
    /// Overall budget for one request: all retries and fallbacks together.
    pub request_deadline_ms: Option<u64>,
    /// Largest gap between two chunks of an upstream stream.
    pub stream_idle_timeout_ms: Option<u64>,
    /// How long a request may wait for a rate-limit budget before getting a 429.
    pub max_queue_wait_ms: Option<u64>,
    /// Grace period for in-flight requests on SIGTERM.
    pub shutdown_grace_ms: Option<u64>,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Bounded in-memory request log size.
    pub request_log_size: Option<usize>,
    pub max_messages: Option<usize>,
    /// Largest total size of a request's headers.
    pub max_header_bytes: Option<usize>,
    /// A client must send its request headers within this time (slowloris guard).
    pub header_timeout_ms: Option<u64>,
    /// …and its whole body within this time.
    pub body_timeout_ms: Option<u64>,
    /// Most leaves one inline (`x-portkey-config` JSON) config may have.
    pub max_inline_config_leaves: Option<usize>,
    /// Largest estimated compiled size of one inline config, in bytes.
    pub max_inline_config_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub keys: Vec<RawAuthKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthKey {
    pub name: String,
    pub key_env: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Hex SHA-256 of the key, so the config file never holds the key itself.
    pub sha256: Option<String>,
    /// Stored configs this key may use (`x-portkey-config` ids and the default); all if absent.
    pub configs: Option<Vec<String>>,
    /// Virtual keys this key may reach through `x-portkey-virtual-key` and inline configs;
    /// all if absent.
    pub virtual_keys: Option<Vec<String>>,
    /// Whether this key may send inline configs (default true).
    pub allow_inline_configs: Option<bool>,
    /// Recorded with every request of this key (over the client's own metadata).
    pub metadata: Option<BTreeMap<String, String>>,
    /// Requests and (estimated) tokens per minute this key may send.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Requests (and streams) of this key in flight at once.
    pub max_concurrent: Option<u32>,
    /// Spend limits in USD per UTC day / calendar month.
    pub budget_usd: Option<RawBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub daily: Option<f64>,
    pub monthly: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    AzureOpenai,
    Anthropic,
    OpenaiCompatible,
    Gemini,
    Bedrock,
    /// Google Vertex AI: Gemini and Anthropic models, OAuth2 service-account credentials.
    Vertex,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::AzureOpenai => "azure-openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVirtualKey {
    pub provider: ProviderKind,
    pub api_key_env: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub base_url: Option<String>,
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    pub anthropic_version: Option<String>,
    pub default_max_tokens: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Requests (tokens) admitted at once at most; default a tenth of `rpm` (`tpm`).
    pub rpm_burst: Option<u32>,
    pub tpm_burst: Option<u32>,
    /// Consecutive failures (5xx, timeouts, connection errors) that open the circuit.
    pub failure_threshold: Option<u32>,
    /// First cooldown after the circuit opens; doubles on each failed probe.
    pub cooldown_ms: Option<u64>,
    pub max_cooldown_ms: Option<u64>,
    /// Cooldown after an upstream 429 that carried no reset hint.
    pub rate_limit_cooldown_ms: Option<u64>,
    /// Cap on any upstream-provided Retry-After.
    pub max_retry_after_ms: Option<u64>,
    /// Active health check interval (`GET {base_url}/models`); off when absent.
    pub health_check_interval_ms: Option<u64>,
    /// How `/v1/responses` reaches this account: `native` (its own Responses API) or `chat`
    /// (translated to Chat Completions by llmux).
    pub responses_api: Option<ResponsesApi>,
    /// Bedrock: the AWS region (else `AWS_REGION`) and the environment variables holding the
    /// SigV4 credentials (else the standard `AWS_ACCESS_KEY_ID`, … ones); see `config::bedrock`.
    pub region: Option<String>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// Vertex: the Google Cloud project id.
    pub project: Option<String>,
    /// Vertex: the region (`us-east5`) or `global`.
    pub location: Option<String>,
    /// Vertex: the service-account JSON key file (relative to the config file); else the
    /// file `GOOGLE_APPLICATION_CREDENTIALS` names.
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponsesApi {
    Native,
    Chat,
}

/// One node of a strategy tree. Every entry of `targets` is again a node.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub strategy: Option<RawStrategy>,
    pub targets: Option<Vec<RawNode>>,
    pub virtual_key: Option<String>,
    pub weight: Option<f64>,
    pub override_params: Option<Map<String, Value>>,
    pub retry: Option<RawRetry>,
    pub request_timeout: Option<u64>,
    /// The name a `conditional` parent's `then`/`default` choose this target by (unique
    /// among siblings there); elsewhere a free-form label.
    pub name: Option<String>,
    // Accepted by Portkey but refused by llmux with a specific message (see compile).
    pub provider: Option<IgnoredAny>,
    pub api_key: Option<IgnoredAny>,
    pub custom_host: Option<IgnoredAny>,
    pub forward_headers: Option<IgnoredAny>,
    /// `"simple"`, `"semantic"`, or `{ mode, max_age, similarity }` (checked in compile).
    pub cache: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStrategy {
    pub mode: String,
    pub on_status_codes: Option<Vec<u16>>,
    /// `conditional` only: the first condition whose query matches chooses its `then`.
    pub conditions: Option<Vec<RawCondition>>,
    /// `conditional` only: the target's name when no condition matches.
    pub default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub query: Value,
    pub then: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default)]
    pub attempts: u32,
    pub on_status_codes: Option<Vec<u16>>,
    #[serde(default = "yes")]
    pub use_retry_after_header: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Rate for prompt tokens served from the provider's prompt cache; `input_per_mtok` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
}
