//! Azure OpenAI: the deployment in the URL picks the model, `api-version` is a query
//! parameter, and the key goes in `api-key`. Bodies, answers, errors and streams are OpenAI's.

use bytes::Bytes;

use super::stream::Framing;
use super::{openai, Answer, AttemptError, Endpoint, Merged, Provider, Upstream, Urls};

pub struct Azure;

impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure-openai"
    }

    fn urls(
        &self,
        base_url: &str,
        deployment: Option<&str>,
        api_version: Option<&str>,
    ) -> Result<Urls, String> {
        let deployment = deployment.unwrap_or_default();
        let mut urls = Urls::every_endpoint(
            |e| {
                format!(
                    "{base_url}/openai/deployments/{deployment}{}",
                    e.openai_path()
                )
            },
            &format!("{base_url}/openai/models"),
        )?;
        let version = api_version.unwrap_or_default();
        for u in urls
            .endpoints
            .iter_mut()
            .flatten()
            .chain([&mut urls.health])
        {
            u.query_pairs_mut().append_pair("api-version", version);
        }
        // The Responses API is not per deployment (the body's `model` names the deployment)
        // and its v1 path takes no api-version.
        urls.endpoints[Endpoint::Responses as usize] =
            Some(Urls::parse(&format!("{base_url}/openai/v1/responses"))?);
        Ok(urls)
    }

    fn build(
        &self,
        client: &reqwest::Client,
        spec: &Upstream,
        endpoint: Endpoint,
        body: &Merged<'_>,
    ) -> Result<reqwest::RequestBuilder, AttemptError> {
        let Some(url) = spec.urls.endpoint(endpoint) else {
            unreachable!("Azure targets have every endpoint")
        };
        Ok(spec.with_credential(body.attach(client.post(url.clone()))?))
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("api-key", key.to_owned()))
    }

    fn error(&self, status: u16, body: &[u8]) -> AttemptError {
        openai::parse_error(status, body)
    }

    fn answer(&self, endpoint: Endpoint, status: u16, body: Bytes) -> Result<Answer, AttemptError> {
        openai::answer(endpoint, status, body)
    }

    fn framing(&self, _include_usage: bool, _model: &str) -> Framing {
        Framing::OpenAi {
            drop_usage_chunk: false,
        }
    }
}
