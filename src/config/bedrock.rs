//! The `provider = "bedrock"` part of a virtual key: the AWS region and the credentials llmux
//! signs with, resolved once at load (from the environment variables the key names, else the
//! standard `AWS_*` ones) so that a missing one fails `check-config` with the tree path and the
//! fix instead of failing every request later.
//!
//! Credentials are one of: SigV4 keys ([`AwsKeys`]: access key id, secret, optional session
//! token) or a Bedrock API key (the target's `api_key`, sent as `Authorization: Bearer`; from
//! `api_key_env`/`api_key_file`/`api_key`, else `AWS_BEARER_TOKEN_BEDROCK` as botocore reads it).

use serde::Serialize;

use super::raw::{ProviderKind, RawVirtualKey};
use super::{ConfigError, Invalid, Secret};

/// A Bedrock account's region and SigV4 keys (`None`: the target's `api_key` is a Bedrock API
/// key). Every credential is a [`Secret`]: never logged, never shown by the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BedrockAccount {
    pub region: String,
    pub sigv4: Option<AwsKeys>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwsKeys {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl BedrockAccount {
    /// The regional runtime endpoint, used when the key has no `base_url`.
    pub fn default_base_url(&self) -> String {
        format!("https://bedrock-runtime.{}.amazonaws.com", self.region)
    }

    /// Every credential value, for scrubbing upstream messages that might echo one.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.sigv4.iter().flat_map(|k| {
            [
                Some(&k.access_key_id),
                Some(&k.secret_access_key),
                k.session_token.as_ref(),
            ]
            .into_iter()
            .flatten()
        })
    }
}

/// The Bedrock settings of virtual key `p` (`virtual_keys.NAME`); `None` for other providers,
/// which must not carry Bedrock keys. May fill `api_key` from `AWS_BEARER_TOKEN_BEDROCK`.
pub(super) fn compile(
    p: &str,
    vk: &RawVirtualKey,
    api_key: &mut Option<Secret>,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &Invalid<'_>,
) -> Result<Option<BedrockAccount>, ConfigError> {
    let field = |f: &str| format!("{p}.{f}");
    let named = [
        ("region", vk.region.is_some()),
        ("access_key_id_env", vk.access_key_id_env.is_some()),
        ("secret_access_key_env", vk.secret_access_key_env.is_some()),
        ("session_token_env", vk.session_token_env.is_some()),
    ];
    if vk.provider != ProviderKind::Bedrock {
        return match named.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(invalid(
                &field(key),
                format!("`{key}` applies only to provider = \"bedrock\"; remove it"),
            )),
            None => Ok(None),
        };
    }
    if vk.health_check_interval_ms.is_some() {
        // The runtime host has no cheap read-only call (the model list lives on another host
        // and needs other IAM rights); the circuit breaker's passive health still applies.
        return Err(invalid(
            &field("health_check_interval_ms"),
            "Bedrock has no cheap health call on its runtime endpoint, so llmux does no active \
             check for it (failures still open the circuit); remove health_check_interval_ms"
                .into(),
        ));
    }
    let set = |var: &str| env(var).filter(|v| !v.is_empty());
    let region = match &vk.region {
        Some(r) => r.clone(),
        None => set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                invalid(
                    &field("region"),
                    "provider = \"bedrock\" needs a region: set region = \"us-east-1\" (say) or \
                     export AWS_REGION"
                        .into(),
                )
            })?,
    };
    // The region becomes part of a host name and of the signature's scope.
    if region.is_empty()
        || region.len() > 32
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid(
            &field("region"),
            format!("`{region}` is not an AWS region name (like us-east-1)"),
        ));
    }
    let explicit = vk.access_key_id_env.is_some()
        || vk.secret_access_key_env.is_some()
        || vk.session_token_env.is_some();
    if api_key.is_some() {
        if explicit {
            return Err(invalid(
                p,
                "give either a Bedrock API key (api_key_env, api_key_file or api_key) or SigV4 \
                 keys (access_key_id_env, secret_access_key_env), not both"
                    .into(),
            ));
        }
        return Ok(Some(BedrockAccount {
            region,
            sigv4: None,
        }));
    }
    let from = |key: &str, var: &str| -> Result<Secret, ConfigError> {
        set(var).map(Secret::new).ok_or_else(|| {
            invalid(
                &field(key),
                format!("environment variable `{var}` is not set; export it"),
            )
        })
    };
    let keys = if explicit {
        let (Some(id_var), Some(secret_var)) = (&vk.access_key_id_env, &vk.secret_access_key_env)
        else {
            return Err(invalid(
                p,
                "SigV4 credentials need both access_key_id_env and secret_access_key_env \
                 (session_token_env is optional)"
                    .into(),
            ));
        };
        AwsKeys {
            access_key_id: from("access_key_id_env", id_var)?,
            secret_access_key: from("secret_access_key_env", secret_var)?,
            session_token: match &vk.session_token_env {
                Some(var) => Some(from("session_token_env", var)?),
                None => None,
            },
        }
    } else {
        match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => AwsKeys {
                access_key_id: Secret::new(id),
                secret_access_key: Secret::new(secret),
                session_token: set("AWS_SESSION_TOKEN").map(Secret::new),
            },
            (None, None) => match set("AWS_BEARER_TOKEN_BEDROCK") {
                Some(token) => {
                    *api_key = Some(Secret::new(token));
                    return Ok(Some(BedrockAccount {
                        region,
                        sigv4: None,
                    }));
                }
                None => {
                    return Err(invalid(
                        p,
                        "no AWS credentials for this bedrock key: set access_key_id_env and \
                         secret_access_key_env (or export AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY), or api_key_env for a Bedrock API key"
                            .into(),
                    ))
                }
            },
            (id, _) => {
                let missing = if id.is_none() {
                    "AWS_ACCESS_KEY_ID"
                } else {
                    "AWS_SECRET_ACCESS_KEY"
                };
                return Err(invalid(
                    p,
                    format!(
                        "environment variable `{missing}` is not set (its pair is); export it or \
                         name the variables with access_key_id_env and secret_access_key_env"
                    ),
                ));
            }
        }
    };
    Ok(Some(BedrockAccount {
        region,
        sigv4: Some(keys),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(vk: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.br]\n{vk}\n");
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        Config::parse(&text, std::path::Path::new("c.toml"), &lookup).map_err(|e| e.to_string())
    }

    #[test]
    fn standard_env_and_named_env() {
        let c = load(
            "provider = \"bedrock\"",
            &[
                ("AWS_REGION", "eu-west-3"),
                ("AWS_ACCESS_KEY_ID", "AKIDX"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret"),
                ("AWS_SESSION_TOKEN", "tok"),
            ],
        )
        .unwrap();
        let t = &c.targets[0];
        assert_eq!(
            t.base_url,
            "https://bedrock-runtime.eu-west-3.amazonaws.com"
        );
        let b = t.bedrock.as_ref().unwrap();
        let k = b.sigv4.as_ref().unwrap();
        assert_eq!(k.secret_access_key.expose(), "very-secret");
        assert_eq!(k.session_token.as_ref().unwrap().expose(), "tok");
        // Never in Debug or admin output.
        let shown = format!("{t:?} {}", serde_json::to_string(&**t).unwrap());
        assert!(
            !shown.contains("very-secret") && !shown.contains("AKIDX"),
            "{shown}"
        );

        let c = load(
            "provider = \"bedrock\"\nregion = \"us-west-2\"\naccess_key_id_env = \"A\"\n\
             secret_access_key_env = \"B\"\nbase_url = \"http://127.0.0.1:9/\"",
            &[("A", "id"), ("B", "sec"), ("AWS_SESSION_TOKEN", "not-ours")],
        )
        .unwrap();
        let t = &c.targets[0];
        assert_eq!(t.base_url, "http://127.0.0.1:9");
        let k = t.bedrock.as_ref().unwrap().sigv4.as_ref().unwrap();
        assert_eq!(k.access_key_id.expose(), "id");
        // A session token belongs to its own keys: not picked up for named ones.
        assert!(k.session_token.is_none());
    }

    #[test]
    fn api_key_is_a_bearer_token() {
        let c = load(
            "provider = \"bedrock\"\nregion = \"us-east-1\"",
            &[("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key")],
        )
        .unwrap();
        let t = &c.targets[0];
        assert!(t.bedrock.as_ref().unwrap().sigv4.is_none());
        assert_eq!(t.api_key.as_ref().unwrap().expose(), "bedrock-api-key");
    }

    #[test]
    fn missing_credentials_name_the_path_and_the_fix() {
        let e = load("provider = \"bedrock\"\nregion = \"us-east-1\"", &[]).unwrap_err();
        assert!(e.contains("c.toml") && e.contains("virtual_keys.br"), "{e}");
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = load(
            "provider = \"bedrock\"\nregion = \"us-east-1\"\naccess_key_id_env = \"MY_ID\"\n\
             secret_access_key_env = \"MY_SECRET\"",
            &[("MY_ID", "x")],
        )
        .unwrap_err();
        assert!(
            e.contains("virtual_keys.br.secret_access_key_env") && e.contains("MY_SECRET"),
            "{e}"
        );
        let e = load(
            "provider = \"bedrock\"",
            &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")],
        )
        .unwrap_err();
        assert!(
            e.contains("virtual_keys.br.region") && e.contains("AWS_REGION"),
            "{e}"
        );
        let e = load("provider = \"bedrock\"\nregion = \"us-east-1/x\"", &[]).unwrap_err();
        assert!(e.contains("not an AWS region"), "{e}");
        let e = load("provider = \"openai\"\nregion = \"us-east-1\"", &[]).unwrap_err();
        assert!(e.contains("virtual_keys.br.region"), "{e}");
        let e = load(
            "provider = \"bedrock\"\nregion = \"us-east-1\"\nhealth_check_interval_ms = 1000",
            &[("AWS_BEARER_TOKEN_BEDROCK", "k")],
        )
        .unwrap_err();
        assert!(e.contains("health_check_interval_ms"), "{e}");
    }
}
