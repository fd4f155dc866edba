//! The Responses API's stateful side on the front: resolving `previous_response_id` before a
//! request is routed (the account it must go to, the conversation to replay), and
//! `GET`/`DELETE /v1/responses/{id}`, `GET …/input_items` and `POST …/cancel`, answered from
//! llmux's own store for translated responses and by the owning account for native ones.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::actors::supervisor::current;
use crate::conversation::{valid_id, Record};
use crate::error::Error;
use crate::providers::{self, Body, Endpoint};
use crate::proxy::responses::Turn;

/// How long a retrieval from the owning account may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// `previous_response_id` and `store` of a Responses request: the conversation to replay (for
/// translated targets) and the target that must serve (the one that made that response).
/// A response made through an account outside the key's `scope` is treated as unknown (no
/// other tenant's accounts are revealed or reached).
pub async fn resolve(
    state: &AppState,
    body: &Body,
    scope: &crate::config::Scope,
) -> Result<(Turn, Option<u32>), Error> {
    let map = body.map().map_err(|e| Error::invalid(e.message, None))?;
    let store = !matches!(map.get("store"), Some(Value::Bool(false)));
    let previous = match map.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => {
            return Err(Error::invalid(
                "`previous_response_id` must be a response id (letters, digits, '_' and '-')",
                Some("previous_response_id"),
            ))
        }
    };
    let mut turn = Turn {
        history: None,
        previous: previous.clone(),
        store,
    };
    let Some(id) = previous else {
        return Ok((turn, None));
    };
    // Unknown to llmux (made elsewhere, or expired here): routed by the tree; a translated
    // target then answers 400 `previous_response_not_found`, a native one decides itself.
    let Some(record) = state
        .conversations
        .get(&id)
        .await
        .filter(|r| scope.virtual_key(&r.target))
    else {
        return Ok((turn, None));
    };
    let runtime = current(&state.current);
    let Some(index) = runtime.config.target_index(&record.target) else {
        return Err(Error::Conflict(format!(
            "previous_response_id `{id}` was produced by virtual key `{}`, which is no longer \
             configured: only that account knows it",
            record.target
        )));
    };
    turn.history = record
        .stored
        .as_ref()
        .map(|s| std::sync::Arc::new(s.items.clone()));
    Ok((turn, Some(index)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/responses/{id}", web::get().to(get))
        .route("/v1/responses/{id}", web::delete().to(delete))
        .route("/v1/responses/{id}/input_items", web::get().to(input_items))
        .route("/v1/responses/{id}/cancel", web::post().to(cancel));
}

fn not_found(id: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {
        "message": format!("Response with id '{id}' not found."),
        "type": "invalid_request_error", "param": null, "code": "response_not_found"}}))
}

/// The record of `id`, after authentication, and whether llmux answers for it itself (a
/// translated response: only llmux knows it); `Err` is the response to send.
async fn record(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
) -> Result<(std::sync::Arc<Record>, bool), HttpResponse> {
    let runtime = current(&state.current);
    let key = super::api::authenticate(&runtime, req.headers()).map_err(|e| e.error_response())?;
    if !valid_id(id) {
        return Err(not_found(id));
    }
    // Another tenant's response is as unknown as a missing one.
    let record = state
        .conversations
        .get(id)
        .await
        .filter(|r| key.is_none_or(|k| k.scope.virtual_key(&r.target)))
        .ok_or_else(|| not_found(id))?;
    let ours = record.stored.is_some() || is_translated(state, &record);
    Ok((record, ours))
}

/// A 502 for a retrieval the owning account could not answer.
fn owner_failed(message: String) -> HttpResponse {
    Error::Upstream {
        status: 502,
        message,
        kind: "server_error".into(),
        code: Some("upstream_error".into()),
        param: None,
        retry_after: None,
    }
    .error_response()
}

/// Forwards a retrieval to the account that made the response (its own answer, status and
/// all, passes through).
async fn upstream(
    state: &AppState,
    record: &Record,
    method: reqwest::Method,
    suffix: &str,
    query: &str,
) -> HttpResponse {
    let runtime = current(&state.current);
    let Some(target) = runtime
        .config
        .target_index(&record.target)
        .map(|i| &runtime.targets[i as usize])
    else {
        return Error::Conflict(format!(
            "this response was produced by virtual key `{}`, which is no longer configured",
            record.target
        ))
        .error_response();
    };
    let Some(base) = target.spec.urls.endpoint(Endpoint::Responses) else {
        return Error::Internal("the owning account has no Responses API".into()).error_response();
    };
    let mut url = base.clone();
    url.path_segments_mut()
        .map(|mut p| {
            p.extend(suffix.split('/').filter(|s| !s.is_empty()));
        })
        .ok();
    if !query.is_empty() {
        url.set_query(Some(query));
    }
    let req = providers::client()
        .request(method, url)
        .timeout(UPSTREAM_TIMEOUT);
    let req = providers::provider(target.spec.provider).health(&target.spec, req);
    match req.send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match resp.bytes().await {
                Ok(body) => HttpResponse::build(status)
                    .content_type("application/json")
                    .body(body),
                Err(e) => owner_failed(format!(
                    "reading the owning account's answer failed: {}",
                    providers::root_cause(&e)
                )),
            }
        }
        Err(e) => owner_failed(format!(
            "the owning account `{}` could not be reached: {}",
            record.target,
            providers::root_cause(&e)
        )),
    }
}

async fn get(req: HttpRequest, id: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let (record, ours) = match record(&req, &state, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match &record.stored {
        Some(s) => HttpResponse::Ok().json(&s.response),
        None if ours => not_found(&id),
        None => {
            upstream(
                &state,
                &record,
                reqwest::Method::GET,
                &id,
                req.query_string(),
            )
            .await
        }
    }
}

async fn delete(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (record, ours) = match record(&req, &state, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if ours {
        state.conversations.delete(&id).await;
        return HttpResponse::Ok()
            .json(json!({"id": *id, "object": "response.deleted", "deleted": true}));
    }
    let resp = upstream(&state, &record, reqwest::Method::DELETE, &id, "").await;
    if resp.status().is_success() {
        state.conversations.delete(&id).await;
    }
    resp
}

#[derive(Deserialize)]
struct ListQuery {
    order: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

async fn input_items(
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (record, ours) = match record(&req, &state, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(stored) = &record.stored else {
        if ours {
            return not_found(&id);
        }
        let suffix = format!("{id}/input_items");
        return upstream(
            &state,
            &record,
            reqwest::Method::GET,
            &suffix,
            req.query_string(),
        )
        .await;
    };
    // Newest first unless `order=asc`, as OpenAI lists them.
    let mut items: Vec<&Value> = stored.input.iter().collect();
    if q.order.as_deref() != Some("asc") {
        items.reverse();
    }
    if let Some(after) = &q.after {
        if let Some(i) = items
            .iter()
            .position(|v| v.get("id").and_then(Value::as_str) == Some(after))
        {
            items.drain(..=i);
        }
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let has_more = items.len() > limit;
    items.truncate(limit);
    let id_of = |v: Option<&&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    HttpResponse::Ok().json(json!({
        "object": "list", "data": items, "first_id": id_of(items.first()),
        "last_id": id_of(items.last()), "has_more": has_more,
    }))
}

async fn cancel(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (record, ours) = match record(&req, &state, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if ours {
        return Error::invalid(
            "Only responses created with background=true can be cancelled; llmux answers translated responses in the foreground.",
            None,
        )
        .error_response();
    }
    let suffix = format!("{id}/cancel");
    upstream(&state, &record, reqwest::Method::POST, &suffix, "").await
}

/// Whether the record's account gets Responses translated (so only llmux knows the id).
fn is_translated(state: &AppState, record: &Record) -> bool {
    let runtime = current(&state.current);
    runtime
        .config
        .target_index(&record.target)
        .map(|i| &runtime.targets[i as usize])
        .is_some_and(|t| !crate::proxy::responses::native(&t.spec))
}
