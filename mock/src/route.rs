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
    Gemini,
    Bedrock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub endpoint: Endpoint,
    pub provider: Provider,
    /// Path prefix without surrounding slashes ("" when none).
    pub account: &'a str,
    /// Azure deployment name.
    pub deployment: Option<&'a str>,
    /// Response id of `…/responses/{id}[/…]`; the model of Gemini's `…/models/{m}:verb`.
    pub id: Option<&'a str>,
}

/// Control API paths (not under an account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stats,
    Behavior,
    Reset,
    /// An OTLP/HTTP trace sink (`POST /_mock/v1/traces`): what llmux's `[telemetry]` exports
    /// to in the benchmark.
    Traces,
}

pub fn control(path: &str) -> Option<Control> {
    match path.trim_end_matches('/') {
        "/_mock/stats" => Some(Control::Stats),
        "/_mock/behavior" => Some(Control::Behavior),
        "/_mock/reset" => Some(Control::Reset),
        "/_mock/v1/traces" => Some(Control::Traces),
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

const RESPONSES: &str = "/responses";

/// `<prefix>/responses[/{id}[/input_items|/cancel]]`: (prefix, id, sub-resource).
fn split_responses(path: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    for (at, _) in path.match_indices(RESPONSES) {
        let prefix = &path[..at];
        let tail = &path[at + RESPONSES.len()..];
        if tail.is_empty() {
            return Some((prefix, None, None));
        }
        let Some(tail) = tail.strip_prefix('/') else {
            continue;
        };
        match tail.split_once('/') {
            None if !tail.is_empty() => return Some((prefix, Some(tail), None)),
            Some((id, sub @ ("input_items" | "cancel"))) if !id.is_empty() => {
                return Some((prefix, Some(id), Some(sub)))
            }
            _ => {}
        }
    }
    None
}

/// The Responses API: OpenAI `<account>[/v1]/responses…`, Azure
/// `<account>/openai[/v1]/responses…` (so an OpenAI account named `openai`
/// is taken for Azure).
fn responses_route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let (prefix, id, sub) = split_responses(path)?;
    let azure_account = prefix
        .strip_suffix("/openai/v1")
        .or_else(|| prefix.strip_suffix("/openai"));
    let (provider, account) = match azure_account {
        Some(acct) => (Provider::Azure, account_of(acct)),
        None => (
            Provider::OpenAi,
            account_of(prefix.strip_suffix("/v1").unwrap_or(prefix)),
        ),
    };
    let azure = provider == Provider::Azure;
    let pick = |openai, az| if azure { az } else { openai };
    let endpoint = match (method, id, sub) {
        (&Method::POST, None, None) => pick(Endpoint::Responses, Endpoint::AzureResponses),
        (&Method::GET, Some(_), None) => pick(Endpoint::ResponsesGet, Endpoint::AzureResponsesGet),
        (&Method::DELETE, Some(_), None) => {
            pick(Endpoint::ResponsesDelete, Endpoint::AzureResponsesDelete)
        }
        (&Method::GET, Some(_), Some("input_items")) => pick(
            Endpoint::ResponsesInputItems,
            Endpoint::AzureResponsesInputItems,
        ),
        (&Method::POST, Some(_), Some("cancel")) => {
            pick(Endpoint::ResponsesCancel, Endpoint::AzureResponsesCancel)
        }
        _ => return None,
    };
    Some(Route {
        endpoint,
        provider,
        account,
        deployment: None,
        id,
    })
}

const VERTEX_MARK: &str = "/v1/projects/";

/// Vertex AI: `<account>/v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:{verb}`
/// (POST). Google's models speak Gemini's wire format, Anthropic's Anthropic's.
fn vertex_route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let at = path.find(VERTEX_MARK)?;
    let account = account_of(&path[..at]);
    let rest = &path[at + VERTEX_MARK.len()..];
    let mut segs = rest.split('/');
    let (_project, loc_kw, _location, pub_kw, publisher, models_kw, last) = (
        segs.next()?,
        segs.next()?,
        segs.next()?,
        segs.next()?,
        segs.next()?,
        segs.next()?,
        segs.next()?,
    );
    if segs.next().is_some()
        || method != Method::POST
        || (loc_kw, pub_kw, models_kw) != ("locations", "publishers", "models")
    {
        return None;
    }
    let (model, verb) = last.split_once(':')?;
    if model.is_empty() {
        return None;
    }
    let (endpoint, provider) = match (publisher, verb) {
        ("google", "generateContent") => (Endpoint::VertexGenerate, Provider::Gemini),
        ("google", "streamGenerateContent") => (Endpoint::VertexStream, Provider::Gemini),
        ("anthropic", "rawPredict") => (Endpoint::VertexRawPredict, Provider::Anthropic),
        ("anthropic", "streamRawPredict") => {
            (Endpoint::VertexStreamRawPredict, Provider::Anthropic)
        }
        _ => return None,
    };
    Some(Route {
        endpoint,
        provider,
        account,
        deployment: None,
        id: Some(model),
    })
}

const GEMINI_MODELS: &str = "/v1beta/models";

/// Gemini: `<account>/v1beta/models` (GET) and `<account>/v1beta/models/{m}:{verb}` (POST).
fn gemini_route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let at = path.find(GEMINI_MODELS)?;
    let account = account_of(&path[..at]);
    let rest = &path[at + GEMINI_MODELS.len()..];
    let (endpoint, model) = if rest.is_empty() {
        (method == Method::GET).then_some((Endpoint::GeminiModels, None))?
    } else {
        let (model, verb) = rest.strip_prefix('/')?.split_once(':')?;
        if method != Method::POST || model.is_empty() || model.contains('/') {
            return None;
        }
        let endpoint = match verb {
            "generateContent" => Endpoint::GeminiGenerate,
            "streamGenerateContent" => Endpoint::GeminiStream,
            "batchEmbedContents" => Endpoint::GeminiEmbed,
            _ => return None,
        };
        (endpoint, Some(model))
    };
    Some(Route {
        endpoint,
        provider: Provider::Gemini,
        account,
        deployment: None,
        id: model,
    })
}

/// Bedrock `<account>/model/{modelId}/converse[-stream]` (the id one encoded segment).
fn bedrock_route(path: &str) -> Option<Route<'_>> {
    let (rest, op) = path.rsplit_once('/')?;
    let endpoint = match op {
        "converse" => Endpoint::Converse,
        "converse-stream" => Endpoint::ConverseStream,
        _ => return None,
    };
    let (rest, id) = rest.rsplit_once('/')?;
    let account = rest.strip_suffix("/model")?;
    (!id.is_empty()).then_some(Route {
        endpoint,
        provider: Provider::Bedrock,
        account: account_of(account),
        deployment: Some(id),
        id: None,
    })
}

pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let not_found = Route {
        endpoint: Endpoint::NotFound,
        provider: Provider::OpenAi,
        account: "",
        deployment: None,
        id: None,
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
            id: None,
        };
    }
    if let Some(r) = responses_route(method, path) {
        return r;
    }
    if path.contains(GEMINI_MODELS) {
        return gemini_route(method, path).unwrap_or(not_found);
    }
    if path.contains(VERTEX_MARK) {
        return vertex_route(method, path).unwrap_or(not_found);
    }
    if let (true, Some(rest)) = (post, path.strip_suffix("/token")) {
        // Vertex's OAuth2 token endpoint (a service account's `token_uri`).
        return Route {
            endpoint: Endpoint::VertexToken,
            provider: Provider::Gemini,
            account: account_of(rest),
            deployment: None,
            id: None,
        };
    }

    let openai = |endpoint, account| Route {
        endpoint,
        provider: Provider::OpenAi,
        account,
        deployment: None,
        id: None,
    };
    if post {
        if let Some(r) = bedrock_route(path) {
            return r;
        }
        if let Some(acct) = strip_api(path, "chat/completions") {
            return openai(Endpoint::ChatCompletions, acct);
        }
        if let Some(rest) = path.strip_suffix("/v1/messages") {
            return Route {
                endpoint: Endpoint::Messages,
                provider: Provider::Anthropic,
                account: account_of(rest),
                deployment: None,
                id: None,
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
        assert_eq!(
            r(Method::POST, "/br/model/anthropic.claude-v2%3A1/converse"),
            (Converse, Bedrock, "br", Some("anthropic.claude-v2%3A1"))
        );
        assert_eq!(
            r(Method::POST, "/model/m/converse-stream"),
            (ConverseStream, Bedrock, "", Some("m"))
        );
        assert_eq!(r(Method::POST, "/br/model//converse").0, NotFound);
        assert_eq!(r(Method::GET, "/models"), (Models, OpenAi, "", None));
        assert_eq!(r(Method::GET, "/a/v1/chat/completions").0, NotFound);
        assert_eq!(r(Method::POST, "/a/v1/foo").0, NotFound);
        assert_eq!(r(Method::POST, "/a/v1/xcompletions").0, NotFound);
        assert_eq!(r(Method::POST, "/").0, NotFound);
    }

    #[test]
    fn gemini_routes() {
        use Endpoint::*;
        fn g(m: Method, p: &str) -> (Endpoint, Provider, &str, Option<&str>) {
            let r = route(&m, p);
            (r.endpoint, r.provider, r.account, r.id)
        }
        assert_eq!(
            g(
                Method::POST,
                "/acct/v1beta/models/gemini-2.5-flash:generateContent"
            ),
            (
                GeminiGenerate,
                Provider::Gemini,
                "acct",
                Some("gemini-2.5-flash")
            )
        );
        assert_eq!(
            g(Method::POST, "/v1beta/models/m:streamGenerateContent").0,
            GeminiStream
        );
        assert_eq!(
            g(Method::POST, "/a/v1beta/models/e:batchEmbedContents").0,
            GeminiEmbed
        );
        assert_eq!(
            g(Method::GET, "/a/v1beta/models"),
            (GeminiModels, Provider::Gemini, "a", None)
        );
        assert_eq!(g(Method::POST, "/a/v1beta/models/m:nope").0, NotFound);
        assert_eq!(
            g(Method::GET, "/a/v1beta/models/m:generateContent").0,
            NotFound
        );
        assert_eq!(
            g(Method::POST, "/a/v1beta/models/x/y:generateContent").0,
            NotFound
        );
    }

    #[test]
    fn vertex_routes() {
        use Endpoint::*;
        fn v(m: Method, p: &str) -> (Endpoint, Provider, &str, Option<&str>) {
            let r = route(&m, p);
            (r.endpoint, r.provider, r.account, r.id)
        }
        let base = "/vx/v1/projects/p/locations/us-east5/publishers";
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/google/models/gemini-2.5-flash:generateContent")
            ),
            (
                VertexGenerate,
                Provider::Gemini,
                "vx",
                Some("gemini-2.5-flash")
            )
        );
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/google/models/g:streamGenerateContent")
            )
            .0,
            VertexStream
        );
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/anthropic/models/claude-x@1:rawPredict")
            ),
            (
                VertexRawPredict,
                Provider::Anthropic,
                "vx",
                Some("claude-x@1")
            )
        );
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/anthropic/models/c:streamRawPredict")
            )
            .0,
            VertexStreamRawPredict
        );
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/anthropic/models/c:generateContent")
            )
            .0,
            NotFound
        );
        assert_eq!(
            v(
                Method::GET,
                &format!("{base}/google/models/g:generateContent")
            )
            .0,
            NotFound
        );
        assert_eq!(
            v(
                Method::POST,
                &format!("{base}/google/models/a/b:generateContent")
            )
            .0,
            NotFound
        );
        assert_eq!(
            v(Method::POST, "/vx/token"),
            (VertexToken, Provider::Gemini, "vx", None)
        );
        assert_eq!(v(Method::GET, "/vx/token").0, NotFound);
    }

    fn rr(m: Method, p: &str) -> (Endpoint, Provider, &str, Option<&str>) {
        let r = route(&m, p);
        assert_eq!(r.deployment, None);
        (r.endpoint, r.provider, r.account, r.id)
    }

    #[test]
    fn responses_routes() {
        use Endpoint::*;
        use Provider::*;
        assert_eq!(
            rr(Method::POST, "/openai-main/v1/responses"),
            (Responses, OpenAi, "openai-main", None)
        );
        assert_eq!(
            rr(Method::POST, "/v1/responses"),
            (Responses, OpenAi, "", None)
        );
        assert_eq!(
            rr(Method::POST, "/a/responses/"),
            (Responses, OpenAi, "a", None)
        );
        assert_eq!(
            rr(Method::GET, "/a/v1/responses/resp_1"),
            (ResponsesGet, OpenAi, "a", Some("resp_1"))
        );
        assert_eq!(
            rr(Method::DELETE, "/a/v1/responses/resp_1"),
            (ResponsesDelete, OpenAi, "a", Some("resp_1"))
        );
        assert_eq!(
            rr(Method::GET, "/a/v1/responses/resp_1/input_items"),
            (ResponsesInputItems, OpenAi, "a", Some("resp_1"))
        );
        assert_eq!(
            rr(Method::POST, "/a/v1/responses/resp_1/cancel"),
            (ResponsesCancel, OpenAi, "a", Some("resp_1"))
        );
        assert_eq!(
            rr(Method::POST, "/az/openai/v1/responses"),
            (AzureResponses, Azure, "az", None)
        );
        assert_eq!(
            rr(Method::POST, "/az/openai/responses"),
            (AzureResponses, Azure, "az", None)
        );
        assert_eq!(
            rr(Method::POST, "/openai/v1/responses"),
            (AzureResponses, Azure, "", None)
        );
        assert_eq!(
            rr(Method::GET, "/az/openai/v1/responses/resp_2/input_items"),
            (AzureResponsesInputItems, Azure, "az", Some("resp_2"))
        );
        assert_eq!(
            rr(Method::DELETE, "/az/openai/v1/responses/resp_2"),
            (AzureResponsesDelete, Azure, "az", Some("resp_2"))
        );
        assert_eq!(
            rr(Method::POST, "/az/openai/v1/responses/resp_2/cancel"),
            (AzureResponsesCancel, Azure, "az", Some("resp_2"))
        );
        assert_eq!(
            rr(Method::GET, "/responses/v1/responses/x"),
            (ResponsesGet, OpenAi, "responses", Some("x"))
        );
        assert_eq!(
            rr(Method::POST, "/responses/v1/chat/completions").0,
            ChatCompletions
        );
        assert_eq!(rr(Method::GET, "/a/v1/responses").0, NotFound);
        assert_eq!(rr(Method::POST, "/a/v1/responses/x").0, NotFound);
        assert_eq!(rr(Method::GET, "/a/v1/responses/x/cancel").0, NotFound);
        assert_eq!(rr(Method::GET, "/a/v1/responses/x/y").0, NotFound);
        assert_eq!(rr(Method::POST, "/a/v1/responsesx").0, NotFound);
    }
}
