//! Azure OpenAI: the deployment in the URL picks the model, `api-version` is a query
//! parameter, and the key goes in `api-key`. Bodies and errors are OpenAI's.

use super::{AttemptError, Endpoint, Merged};
use crate::config::TargetSpec;

pub fn build(
    client: &reqwest::Client,
    spec: &TargetSpec,
    endpoint: Endpoint,
    body: &Merged<'_>,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let deployment = spec.deployment.as_deref().unwrap_or_default();
    let api_version = spec.api_version.as_deref().unwrap_or_default();
    let mut req = client
        .post(format!(
            "{}/openai/deployments/{deployment}{}",
            spec.base_url,
            endpoint.openai_path()
        ))
        .query(&[("api-version", api_version)])
        .json(body);
    if let Some(key) = &spec.api_key {
        req = req.header("api-key", key.expose());
    }
    Ok(req)
}
