//! One `[virtual_keys.NAME]` table compiled into a [`TargetSpec`]: the provider account a
//! target actor owns, with its credentials resolved and every setting checked.

use super::*;

/// One provider account (`[virtual_keys.NAME]`), owned at run time by one target actor.
/// `PartialEq` decides on reload whether the actor (and its budget and health) is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSpec {
    pub name: String,
    pub provider: ProviderKind,
    /// May carry credentials (`https://user:pass@host`, sent as basic auth): shown redacted.
    #[serde(serialize_with = "ser_url")]
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    pub anthropic_version: String,
    pub default_max_tokens: u64,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// The most requests (tokens) admitted at once, when `rpm` (`tpm`) is set: any window of
    /// length T admits at most `burst + T × limit / 60 s` (README › Health, budgets).
    pub rpm_burst: Option<u32>,
    pub tpm_burst: Option<u32>,
    pub failure_threshold: u32,
    #[serde(serialize_with = "ser_ms")]
    pub cooldown: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub max_cooldown: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub rate_limit_cooldown: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub max_retry_after: Duration,
    #[serde(serialize_with = "ser_opt_ms")]
    pub health_check_interval: Option<Duration>,
    /// How `/v1/responses` reaches this account.
    pub responses_api: ResponsesApi,
    /// `provider = "bedrock"` only: region and SigV4 credentials.
    pub bedrock: Option<BedrockAccount>,
    /// `provider = "vertex"` only: project, location and service account.
    pub vertex: Option<gcp::VertexSpec>,
}

pub(super) fn compile_target(
    name: &str,
    vk: &RawVirtualKey,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &Invalid<'_>,
) -> Result<TargetSpec, ConfigError> {
    let p = format!("virtual_keys.{name}");
    let field = |f: &str| format!("{p}.{f}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            &p,
            "virtual key names may use only letters, digits, '-', '_' and '.'".into(),
        ));
    }
    let api_key = match (&vk.api_key_env, &vk.api_key, &vk.api_key_file) {
        (None, None, None) => None,
        (Some(var), None, None) => Some(Secret::new(
            env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(
                    &field("api_key_env"),
                    format!(
                        "environment variable `{var}` is not set; export it or use api_key_file"
                    ),
                )
            })?,
        )),
        (None, Some(k), None) => Some(Secret::new(k.as_str())),
        (None, None, Some(f)) => Some(Secret::new(
            read_secret_file(base_dir, f).map_err(|m| invalid(&field("api_key_file"), m))?,
        )),
        _ => {
            return Err(invalid(
                &p,
                "give at most one of api_key_env, api_key_file or api_key".into(),
            ))
        }
    };
    let provider = vk.provider;
    let mut api_key = api_key;
    let bedrock = bedrock::compile(&p, vk, &mut api_key, env, invalid)?;
    // Before base_url, whose Vertex default needs a checked location.
    let vertex = gcp::compile(vk, base_dir, env, &field, invalid)?;
    let base_url = match (&vk.base_url, provider) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, ProviderKind::Openai) => "https://api.openai.com/v1".to_owned(),
        (None, ProviderKind::Anthropic) => "https://api.anthropic.com".to_owned(),
        (None, ProviderKind::Gemini) => "https://generativelanguage.googleapis.com".to_owned(),
        (None, ProviderKind::Bedrock) => bedrock
            .as_ref()
            .map_or_else(String::new, BedrockAccount::default_base_url),
        // The host follows the location, which `gcp::compile` has checked (so never `None`).
        (None, ProviderKind::Vertex) => match vk.location.as_deref() {
            Some("global") => "https://aiplatform.googleapis.com".to_owned(),
            Some(l) => format!("https://{l}-aiplatform.googleapis.com"),
            None => String::new(),
        },
        (None, ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible) => {
            return Err(invalid(
                &field("base_url"),
                format!("provider `{}` needs a base_url", provider.as_str()),
            ))
        }
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(invalid(
            &field("base_url"),
            format!(
                "base_url must start with http:// or https://, got `{}`",
                redact_userinfo(&base_url)
            ),
        ));
    }
    if provider == ProviderKind::AzureOpenai && vk.deployment.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            &field("deployment"),
            "azure-openai needs `deployment` (the Azure deployment name)".into(),
        ));
    }
    if provider != ProviderKind::AzureOpenai
        && (vk.deployment.is_some() || vk.api_version.is_some())
    {
        return Err(invalid(
            &p,
            "`deployment` and `api_version` apply only to provider = \"azure-openai\"".into(),
        ));
    }
    let api_version = match provider {
        ProviderKind::AzureOpenai => Some(
            vk.api_version
                .clone()
                .unwrap_or_else(|| "2024-10-21".into()),
        ),
        _ => None,
    };
    if matches!(vk.rpm, Some(0)) || matches!(vk.tpm, Some(0)) {
        return Err(invalid(
            &p,
            "rpm/tpm must be > 0; remove them for no local limit".into(),
        ));
    }
    if matches!(vk.rpm_burst, Some(0)) || matches!(vk.tpm_burst, Some(0)) {
        return Err(invalid(&p, "rpm_burst/tpm_burst must be > 0".into()));
    }
    // A tenth of the minute's budget by default, so any 60-s window stays within 1.1 × limit.
    let burst = |limit: Option<u32>, b: Option<u32>| limit.map(|l| b.unwrap_or(l.div_ceil(10)));
    if matches!(vk.failure_threshold, Some(0)) {
        return Err(invalid(
            &field("failure_threshold"),
            "failure_threshold must be >= 1".into(),
        ));
    }
    // OpenAI and Azure speak the Responses API; most OpenAI-compatible servers speak only
    // chat; Anthropic, Gemini, Bedrock and Vertex never do.
    let responses_api = match (provider, vk.responses_api) {
        (
            ProviderKind::Anthropic
            | ProviderKind::Gemini
            | ProviderKind::Bedrock
            | ProviderKind::Vertex,
            Some(ResponsesApi::Native),
        ) => {
            return Err(invalid(
                &field("responses_api"),
                format!(
                    "{} has no Responses API: llmux translates /v1/responses to chat and then to \
                     the provider's own API; remove responses_api",
                    provider.as_str()
                ),
            ))
        }
        (_, Some(r)) => r,
        (ProviderKind::Openai | ProviderKind::AzureOpenai, None) => ResponsesApi::Native,
        (
            ProviderKind::OpenaiCompatible
            | ProviderKind::Anthropic
            | ProviderKind::Gemini
            | ProviderKind::Bedrock
            | ProviderKind::Vertex,
            None,
        ) => ResponsesApi::Chat,
    };
    let cooldown = Duration::from_millis(vk.cooldown_ms.unwrap_or(5_000).max(1));
    let max_cooldown = Duration::from_millis(vk.max_cooldown_ms.unwrap_or(300_000)).max(cooldown);
    Ok(TargetSpec {
        name: name.to_owned(),
        provider,
        base_url,
        api_key,
        deployment: vk.deployment.clone(),
        api_version,
        anthropic_version: vk
            .anthropic_version
            .clone()
            .unwrap_or_else(|| "2023-06-01".into()),
        default_max_tokens: vk.default_max_tokens.unwrap_or(4096).max(1),
        rpm: vk.rpm,
        tpm: vk.tpm,
        rpm_burst: burst(vk.rpm, vk.rpm_burst),
        tpm_burst: burst(vk.tpm, vk.tpm_burst),
        failure_threshold: vk.failure_threshold.unwrap_or(5),
        cooldown,
        max_cooldown,
        rate_limit_cooldown: Duration::from_millis(
            vk.rate_limit_cooldown_ms.unwrap_or(10_000).max(1),
        ),
        max_retry_after: Duration::from_millis(vk.max_retry_after_ms.unwrap_or(120_000).max(1)),
        health_check_interval: vk
            .health_check_interval_ms
            .filter(|&v| v > 0)
            .map(Duration::from_millis),
        responses_api,
        bedrock,
        vertex,
    })
}
