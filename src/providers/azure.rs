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
    let Some(url) = spec.urls.endpoint(endpoint) else {
        unreachable!("Azure targets have every endpoint")
    };
    let mut req = body.attach(client.post(url.clone()));
    if let Some(key) = &spec.api_key {
        req = req.header("api-key", key.expose());
    }
    Ok(req)
}
