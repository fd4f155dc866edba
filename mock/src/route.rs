//! Path routing: which endpoint and wire format a request addresses, and which
//! mock "account" (the path prefix before the API path) it belongs to.

use actix_web::http::Method;

use super::state::Endpoint;

/// The wire format a request speaks, which also picks the error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
    Anthropic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub endpoint: Endpoint,
    pub provider: Provider,
    /// Path prefix without surrounding slashes ("" when none).
    pub account: &'a str,
    /// Azure deployment name.
    pub deployment: Option<&'a str>,
}

/// Control API paths (not under an account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stats,
    Behavior,
    Reset,
}

pub fn control(path: &str) -> Option<Control> {
    match path.trim_end_matches('/') {
        "/_mock/stats" => Some(Control::Stats),
        "/_mock/behavior" => Some(Control::Behavior),
        "/_mock/reset" => Some(Control::Reset),
        _ => None,
    }
}

fn account_of(prefix: &str) -> &str {
    prefix.trim_matches('/')
}

/// `…/v1/<api>` or `…/<api>`: returns the account prefix.
fn strip_api<'a>(path: &'a str, api: &str) -> Option<&'a str> {
    let rest = path.strip_suffix(api)?;
    let rest = rest.strip_suffix('/')?;
    Some(account_of(rest.strip_suffix("/v1").unwrap_or(rest)))
}

const AZURE_MARK: &str = "/openai/deployments/";

pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let not_found = Route {
        endpoint: Endpoint::NotFound,
        provider: Provider::OpenAi,
        account: "",
        deployment: None,
    };
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let post = method == Method::POST;

    if let Some(at) = path.rfind(AZURE_MARK) {
        let account = account_of(&path[..at]);
        let rest = &path[at + AZURE_MARK.len()..];
        let Some((dep, api)) = rest.split_once('/') else {
            return not_found;
        };
        let endpoint = match api {
            "chat/completions" => Endpoint::AzureChatCompletions,
            "embeddings" => Endpoint::AzureEmbeddings,
            "completions" => Endpoint::AzureCompletions,
            _ => return not_found,
        };
        if !post || dep.is_empty() {
            return not_found;
        }
        return Route {
            endpoint,
            provider: Provider::Azure,
            account,
            deployment: Some(dep),
        };
    }

    let openai = |endpoint, account| Route {
        endpoint,
        provider: Provider::OpenAi,
        account,
        deployment: None,
    };
    if post {
        if let Some(acct) = strip_api(path, "chat/completions") {
            return openai(Endpoint::ChatCompletions, acct);
        }
        if let Some(rest) = path.strip_suffix("/v1/messages") {
            return Route {
                endpoint: Endpoint::Messages,
                provider: Provider::Anthropic,
                account: account_of(rest),
                deployment: None,
            };
        }
        if let Some(acct) = strip_api(path, "embeddings") {
            return openai(Endpoint::Embeddings, acct);
        }
        if let Some(acct) = strip_api(path, "completions") {
            return openai(Endpoint::Completions, acct);
        }
    } else if method == Method::GET {
        if let Some(acct) = strip_api(path, "models") {
            return openai(Endpoint::Models, acct);
        }
    }
    not_found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, p: &str) -> (Endpoint, Provider, &str, Option<&str>) {
        let r = route(&m, p);
        (r.endpoint, r.provider, r.account, r.deployment)
    }

    #[test]
    fn routes() {
        use Endpoint::*;
        use Provider::*;
        assert_eq!(
            r(Method::POST, "/v1/chat/completions"),
            (ChatCompletions, OpenAi, "", None)
        );
        assert_eq!(
            r(Method::POST, "/chat/completions"),
            (ChatCompletions, OpenAi, "", None)
        );
        assert_eq!(
            r(Method::POST, "/acct-a/v1/chat/completions"),
            (ChatCompletions, OpenAi, "acct-a", None)
        );
        assert_eq!(
            r(Method::POST, "/acct-a/chat/completions"),
            (ChatCompletions, OpenAi, "acct-a", None)
        );
        assert_eq!(
            r(Method::POST, "/org/x/v1/chat/completions"),
            (ChatCompletions, OpenAi, "org/x", None)
        );
        assert_eq!(
            r(
                Method::POST,
                "/az1/openai/deployments/gpt4o-prod/chat/completions"
            ),
            (AzureChatCompletions, Azure, "az1", Some("gpt4o-prod"))
        );
        assert_eq!(
            r(Method::POST, "/openai/deployments/emb/embeddings"),
            (AzureEmbeddings, Azure, "", Some("emb"))
        );
        assert_eq!(
            r(Method::POST, "/ant/v1/messages"),
            (Messages, Anthropic, "ant", None)
        );
        assert_eq!(
            r(Method::POST, "/v1/messages"),
            (Messages, Anthropic, "", None)
        );
        assert_eq!(
            r(Method::POST, "/a/v1/embeddings"),
            (Embeddings, OpenAi, "a", None)
        );
        assert_eq!(
            r(Method::POST, "/a/v1/completions"),
            (Completions, OpenAi, "a", None)
        );
        assert_eq!(r(Method::GET, "/a/v1/models"), (Models, OpenAi, "a", None));
        assert_eq!(r(Method::GET, "/models"), (Models, OpenAi, "", None));
        assert_eq!(r(Method::GET, "/a/v1/chat/completions").0, NotFound);
        assert_eq!(r(Method::POST, "/a/v1/foo").0, NotFound);
        assert_eq!(r(Method::POST, "/a/v1/xcompletions").0, NotFound);
        assert_eq!(r(Method::POST, "/").0, NotFound);
    }
}
