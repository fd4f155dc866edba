//! Google Cloud settings of a `provider = "vertex"` account: its project, location and the
//! service-account key file it signs token requests with. Everything is read and checked at
//! load (a missing file, a file that is not a service-account key, a private key that is not
//! an RSA PEM are config errors naming the field), so a request never meets a broken key.
//! The private key never appears in `Debug`, admin output or messages.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::raw::{ProviderKind, RawVirtualKey};
use super::Secret;

/// A Vertex AI account: where its models live and who it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VertexSpec {
    pub project: String,
    /// A region (`us-east5`, `europe-west1`) or `global`.
    pub location: String,
    pub credentials: ServiceAccount,
}

/// A service-account key file (`"type": "service_account"` JSON), the private key parsed.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    /// Where the signed assertion is exchanged for an access token.
    pub token_uri: String,
    /// The file it was read from, for messages.
    pub file: PathBuf,
    /// The PEM as read, only to tell on reload whether the key changed.
    pem: Secret,
    key: Arc<jsonwebtoken::EncodingKey>,
}

impl ServiceAccount {
    /// Reads and checks a key file; the error says what is wrong and how to fix it, never
    /// any of the file's content.
    pub fn load(file: &Path) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read the service-account key file {}: {e}; download a JSON key for the \
                 service account (IAM › Service accounts › Keys) and point to it",
                file.display()
            )
        })?;
        ServiceAccount::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<ServiceAccount, String> {
        #[derive(Deserialize)]
        struct KeyFile {
            #[serde(rename = "type")]
            kind: Option<String>,
            client_email: Option<String>,
            private_key: Option<String>,
            private_key_id: Option<String>,
            token_uri: Option<String>,
        }
        let shown = file.display();
        // serde_json's message names a position, never the text around it.
        let k: KeyFile = serde_json::from_str(text)
            .map_err(|e| format!("{shown} is not a JSON service-account key file ({e})"))?;
        if let Some(kind) = k.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(format!(
                "{shown} is a `{kind}` credential; vertex needs a service-account key file \
                 (\"type\": \"service_account\")"
            ));
        }
        let need = |v: Option<String>, name: &str| {
            v.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("{shown} has no `{name}`; is it a service-account key file?")
            })
        };
        let client_email = need(k.client_email, "client_email")?;
        let private_key_id = need(k.private_key_id, "private_key_id")?;
        let pem = need(k.private_key, "private_key")?;
        let token_uri = k
            .token_uri
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(format!("{shown}: `token_uri` must be an http(s) URL"));
        }
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
            format!(
                "{shown}: `private_key` is not an RSA private key in PEM form; download a new \
                 JSON key for the service account"
            )
        })?;
        Ok(ServiceAccount {
            client_email,
            private_key_id,
            token_uri,
            file: file.to_owned(),
            pem: Secret::new(pem),
            key: Arc::new(key),
        })
    }

    /// The key the token request's assertion is signed with.
    pub fn signing_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.key
    }
}

/// A changed key file (any field, or the key) gets a new target actor and token cache.
impl PartialEq for ServiceAccount {
    fn eq(&self, other: &ServiceAccount) -> bool {
        self.client_email == other.client_email
            && self.private_key_id == other.private_key_id
            && self.token_uri == other.token_uri
            && self.file == other.file
            && self.pem == other.pem
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("file", &self.file)
            .field("private_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Admin output shows who the account is and where the key lives, never the key.
impl Serialize for ServiceAccount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("client_email", &self.client_email)?;
        m.serialize_entry("token_uri", &self.token_uri)?;
        m.serialize_entry("file", &self.file)?;
        m.end()
    }
}

/// Whether `s` may be one segment of a Vertex URL path (`projects/{p}/locations/{l}`).
pub fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The Vertex settings of a `provider = "vertex"` account (`None` for any other provider,
/// which may not set them). Every error names the field and how to fix it.
pub(super) fn compile(
    vk: &RawVirtualKey,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    field: &dyn Fn(&str) -> String,
    invalid: &super::Invalid<'_>,
) -> Result<Option<VertexSpec>, super::ConfigError> {
    if vk.provider != ProviderKind::Vertex {
        for (name, set) in [
            ("project", vk.project.is_some()),
            ("location", vk.location.is_some()),
            ("credentials_file", vk.credentials_file.is_some()),
        ] {
            if set {
                return Err(invalid(
                    &field(name),
                    format!("`{name}` applies only to provider = \"vertex\"; remove it"),
                ));
            }
        }
        return Ok(None);
    }
    let segment = |name: &str, v: &Option<String>, example: &str| match v {
        Some(v) if plain_segment(v) => Ok(v.clone()),
        Some(_) => Err(invalid(
            &field(name),
            format!("`{name}` may use only letters, digits, '-', '_' and '.' (e.g. \"{example}\")"),
        )),
        None => Err(invalid(
            &field(name),
            format!("provider \"vertex\" needs `{name}` (e.g. {name} = \"{example}\")"),
        )),
    };
    let project = segment("project", &vk.project, "my-project")?;
    let location = segment("location", &vk.location, "us-east5")?;
    if vk.api_key.is_some() || vk.api_key_env.is_some() || vk.api_key_file.is_some() {
        return Err(invalid(
            &field("credentials_file"),
            "vertex authenticates with a service-account key file, not an API key: remove \
             api_key/api_key_env/api_key_file and set credentials_file"
                .into(),
        ));
    }
    if vk.health_check_interval_ms.is_some_and(|v| v > 0) {
        return Err(invalid(
            &field("health_check_interval_ms"),
            "vertex targets have no active health check (Vertex AI has no cheap call that \
             needs no generation); their health follows real requests: remove \
             health_check_interval_ms"
                .into(),
        ));
    }
    let file = match (&vk.credentials_file, env("GOOGLE_APPLICATION_CREDENTIALS")) {
        (Some(f), _) => base_dir.join(f),
        (None, Some(f)) if !f.is_empty() => PathBuf::from(f),
        _ => {
            return Err(invalid(
                &field("credentials_file"),
                "provider \"vertex\" needs a service-account key: set credentials_file (a \
                 JSON key file, relative to this config) or the GOOGLE_APPLICATION_CREDENTIALS \
                 environment variable"
                    .into(),
            ))
        }
    };
    let credentials = ServiceAccount::load(&file).map_err(|m| {
        let from = if vk.credentials_file.is_none() {
            " (from GOOGLE_APPLICATION_CREDENTIALS)"
        } else {
            ""
        };
        invalid(&field("credentials_file"), format!("{m}{from}"))
    })?;
    Ok(Some(VertexSpec {
        project,
        location,
        credentials,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/vertex-sa.json");

    #[test]
    fn a_key_file_loads_and_never_shows_its_key() {
        let sa = ServiceAccount::parse(FIXTURE, Path::new("sa.json")).unwrap();
        assert_eq!(
            sa.client_email,
            "llmux-test@llmux-test.iam.gserviceaccount.com"
        );
        assert_eq!(sa.token_uri, "https://oauth2.googleapis.com/token");
        let shown = format!("{sa:?} {}", serde_json::to_string(&sa).expect("serializes"));
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains("MIIE"),
            "{shown}"
        );
        assert_eq!(
            sa,
            ServiceAccount::parse(FIXTURE, Path::new("sa.json")).unwrap()
        );
    }

    /// `[virtual_keys.vx]` with `lines`, parsed as if the config sat at the crate root.
    fn parse(lines: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.vx]\n{lines}\n");
        let at = Path::new(env!("CARGO_MANIFEST_DIR")).join("c.toml");
        match super::super::Config::parse(&text, &at, env) {
            Ok(c) => Ok(c.targets[0].base_url.clone()),
            Err(super::super::ConfigError::Invalid { path, message, .. }) => {
                Err(format!("{path}: {message}"))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn vertex_settings_are_checked_at_load() {
        let none = |_: &str| None;
        let file = "credentials_file = \"tests/fixtures/vertex-sa.json\"";
        let ok = |rest: &str| parse(&format!("provider = \"vertex\"\n{file}\n{rest}"), &none);
        assert_eq!(
            ok("project = \"p\"\nlocation = \"europe-west1\"").unwrap(),
            "https://europe-west1-aiplatform.googleapis.com"
        );
        assert_eq!(
            ok("project = \"p\"\nlocation = \"global\"").unwrap(),
            "https://aiplatform.googleapis.com"
        );
        let e = ok("location = \"global\"").unwrap_err();
        assert!(e.starts_with("virtual_keys.vx.project: "), "{e}");
        let e = ok("project = \"p\"").unwrap_err();
        assert!(e.starts_with("virtual_keys.vx.location: "), "{e}");
        let e = ok("project = \"p\"\nlocation = \"us/../x\"").unwrap_err();
        assert!(e.starts_with("virtual_keys.vx.location: "), "{e}");
        let e = ok("project = \"p\"\nlocation = \"global\"\napi_key = \"k\"").unwrap_err();
        assert!(e.contains("not an API key"), "{e}");
        let e = ok("project = \"p\"\nlocation = \"global\"\nhealth_check_interval_ms = 1000")
            .unwrap_err();
        assert!(
            e.starts_with("virtual_keys.vx.health_check_interval_ms: "),
            "{e}"
        );
        let e =
            ok("project = \"p\"\nlocation = \"global\"\nresponses_api = \"native\"").unwrap_err();
        assert!(e.starts_with("virtual_keys.vx.responses_api: "), "{e}");
        let e = parse("provider = \"gemini\"\nproject = \"p\"", &none).unwrap_err();
        assert!(e.starts_with("virtual_keys.vx.project: "), "{e}");
        // The key file from GOOGLE_APPLICATION_CREDENTIALS, else the fix is named.
        let vk = "provider = \"vertex\"\nproject = \"p\"\nlocation = \"global\"";
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-sa.json");
        let adc = |name: &str| (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| fixture.into());
        assert!(parse(vk, &adc).is_ok());
        let e = parse(vk, &none).unwrap_err();
        assert!(
            e.starts_with("virtual_keys.vx.credentials_file: ")
                && e.contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "{e}"
        );
        let missing = |_: &str| Some("/nonexistent/adc.json".to_owned());
        let e = parse(vk, &missing).unwrap_err();
        assert!(
            e.contains("/nonexistent/adc.json")
                && e.contains("from GOOGLE_APPLICATION_CREDENTIALS"),
            "{e}"
        );
    }

    #[test]
    fn broken_key_files_are_refused_without_echoing_them() {
        let mut v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        v["private_key"] =
            "-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRETBITS\n-----END PRIVATE KEY-----\n".into();
        let e = ServiceAccount::parse(&v.to_string(), Path::new("sa.json")).unwrap_err();
        assert!(
            e.contains("not an RSA private key") && !e.contains("SECRETBITS"),
            "{e}"
        );
        let e = ServiceAccount::parse("{\"type\":\"authorized_user\"}", Path::new("a.json"))
            .unwrap_err();
        assert!(e.contains("authorized_user"), "{e}");
        let e = ServiceAccount::parse("SECRET garbage", Path::new("a.json")).unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let e = ServiceAccount::load(Path::new("/nonexistent/sa.json")).unwrap_err();
        assert!(e.contains("/nonexistent/sa.json"), "{e}");
    }
}
