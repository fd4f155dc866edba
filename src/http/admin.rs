//! The admin listener: per-target health read from the target actors, the request log, the
//! effective config (secrets redacted), reload, liveness and readiness.

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::actors::supervisor::current;
use crate::actors::target::{GetStatus, HealthState, TargetStatus};
use crate::config::AuthKey;
use crate::error::Error;
use crate::http::auth::{self, Refused};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(ui))
        .route("/ui", web::get().to(ui))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/targets", web::get().to(targets))
        .route("/admin/targets/{name}", web::get().to(target))
        .route("/admin/requests", web::get().to(requests))
        .route("/admin/config", web::get().to(config))
        .route("/admin/reload", web::get().to(reload_status))
        .route("/admin/reload", web::post().to(reload))
        .route("/admin/usage", web::get().to(usage))
        .route("/admin/keys", web::get().to(keys))
        .route("/admin/cache", web::get().to(cache_stats))
        .route("/admin/cache", web::delete().to(cache_clear))
        .route("/metrics", web::get().to(metrics_text))
        .route("/admin/traffic", web::get().to(traffic));
}

fn authorized(state: &AppState, h: &HeaderMap) -> Result<(), Error> {
    let runtime = current(&state.current);
    let Some(token) = runtime.config.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        return Ok(());
    };
    let key = [AuthKey {
        name: "admin".into(),
        sha256: crate::config::sha256(token.expose().as_bytes()),
        scope: Default::default(),
        metadata: None,
        limits: Default::default(),
    }];
    match auth::authenticate(&key, h) {
        Ok(_) => Ok(()),
        Err(Refused::Missing) => Err(Error::Unauthorized("admin token required")),
        Err(Refused::Invalid) => Err(Error::Unauthorized("invalid admin token")),
    }
}

macro_rules! guard {
    ($state:expr, $req:expr) => {
        if let Err(e) = authorized(&$state, $req.headers()) {
            return e.error_response();
        }
    };
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn statuses(state: &AppState) -> Vec<TargetStatus> {
    let runtime = current(&state.current);
    let answers = join_all(runtime.targets.iter().map(|t| t.addr.send(GetStatus))).await;
    answers.into_iter().filter_map(Result::ok).collect()
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let all = statuses(&state).await;
    let ready = all.iter().any(|s| s.state != HealthState::Unhealthy);
    let body = json!({"ready": ready, "targets": all.len(),
        "healthy": all.iter().filter(|s| s.state == HealthState::Healthy).count()});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn targets(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    HttpResponse::Ok().json(json!({
        "targets": statuses(&state).await,
        "cluster": state.cluster.as_ref().map(|c| c.status()),
        "cache": state.cache.stats(),
    }))
}

/// `GET /admin/keys`: each gateway key's scope, limits and spend this UTC day and month
/// (names only: keys are never shown).
async fn keys(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    let runtime = current(&state.current);
    let keys: Vec<_> = runtime
        .config
        .auth
        .iter()
        .map(|k| {
            let (day, month) = state.tenancy.spent(&k.name).unwrap_or((0.0, 0.0));
            json!({"name": k.name, "scope": k.scope, "limits": k.limits, "metadata": k.metadata,
                "spent_today_usd": day, "spent_this_month_usd": month})
        })
        .collect();
    HttpResponse::Ok().json(json!({"keys": keys}))
}

#[derive(Deserialize)]
struct UsageQuery {
    group_by: Option<String>,
    /// Unix ms (default: 24 hours ago / now).
    from: Option<u64>,
    to: Option<u64>,
    /// `hour` (default) or `day`.
    bucket: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// `GET /admin/usage?group_by=key|virtual_key|model|config|metadata.KEY&from=&to=&bucket=&format=`
async fn usage(
    req: HttpRequest,
    q: web::Query<UsageQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    guard!(state, req);
    let Some(usage) = &state.log.usage else {
        return Error::NotFound("usage reports are not enabled".into()).error_response();
    };
    let group =
        match crate::observability::usage::GroupBy::parse(q.group_by.as_deref().unwrap_or("key")) {
            Some(g) => g,
            None => {
                return Error::invalid(
                    "group_by is key, virtual_key, model, config or metadata.KEY",
                    Some("group_by"),
                )
                .error_response()
            }
        };
    let day = match q.bucket.as_deref() {
        None | Some("hour") => false,
        Some("day") => true,
        Some(_) => return Error::invalid("bucket is hour or day", Some("bucket")).error_response(),
    };
    let to = q.to.unwrap_or_else(|| crate::clock::unix_ms() + 1);
    let from = q.from.unwrap_or(to.saturating_sub(24 * 3_600_000));
    let lines = usage.report(&group, from, to, day);
    if q.format.as_deref() == Some("csv") {
        return HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(crate::observability::usage::csv(&lines));
    }
    HttpResponse::Ok().json(
        json!({"from": from, "to": to, "group_by": q.group_by.as_deref().unwrap_or("key"),
        "bucket": if day { "day" } else { "hour" }, "rows": lines}),
    )
}

async fn cache_stats(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    HttpResponse::Ok().json(state.cache.stats())
}

#[derive(Deserialize)]
struct ClearQuery {
    /// Only this namespace (`?namespace=` alone: answers stored without one).
    namespace: Option<String>,
}

/// `DELETE /admin/cache[?namespace=NAME]`: empties the cache here and, with a cluster, in
/// Redis (for every replica).
async fn cache_clear(
    req: HttpRequest,
    q: web::Query<ClearQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    guard!(state, req);
    let cleared = state.cache.clear(q.namespace.as_deref()).await;
    HttpResponse::Ok().json(json!({"cleared": cleared, "namespace": q.namespace}))
}

async fn target(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    guard!(state, req);
    let runtime = current(&state.current);
    let Some(t) = runtime.targets.iter().find(|t| t.spec.name == *name) else {
        return Error::NotFound(format!("target `{name}`")).error_response();
    };
    match t.addr.send(GetStatus).await {
        Ok(s) => HttpResponse::Ok().json(s),
        Err(_) => Error::Internal("target actor stopped".into()).error_response(),
    }
}

#[derive(Deserialize)]
struct RequestsQuery {
    trace_id: Option<String>,
    limit: Option<usize>,
}

async fn requests(
    req: HttpRequest,
    q: web::Query<RequestsQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    guard!(state, req);
    let metadata = super::metadata::filters(req.query_string());
    let entries = state.log.matching(
        q.trace_id.as_deref(),
        &metadata,
        q.limit.unwrap_or(100).min(10_000),
    );
    HttpResponse::Ok().json(json!({"requests": entries}))
}

async fn config(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    let runtime = current(&state.current);
    let c = &runtime.config;
    let configs: std::collections::BTreeMap<&String, &crate::config::Node> =
        c.configs.iter().map(|(k, v)| (k, &v.root)).collect();
    HttpResponse::Ok().json(json!({
        "file": c.file.display().to_string(),
        "generation": runtime.generation,
        "server": c.server,
        "admin": c.admin,
        "auth_keys": c.auth.iter().map(|k| &k.name).collect::<Vec<_>>(),
        "virtual_keys": c.targets,
        "configs": configs,
        "pricing": c.pricing,
        "cluster": c.cluster,
    }))
}

async fn reload_status(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    HttpResponse::Ok().json(state.reload.snapshot())
}

async fn reload(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    let result = state.reload().await;
    let body = state.reload.snapshot();
    if result.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::UnprocessableEntity().json(body)
    }
}

async fn metrics_text(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::observability::telemetry::render_metrics())
}

async fn traffic(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    guard!(state, req);
    HttpResponse::Ok().json(json!({"window_seconds": crate::observability::requestlog::Traffic::WINDOW, "series": state.log.traffic()}))
}

/// The status page: one self-contained file (no external requests), polling the admin API.
async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"))
        .body(include_str!("ui.html"))
}
