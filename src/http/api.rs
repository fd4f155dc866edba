//! The OpenAI-compatible front: `POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `GET /v1/models`. Each handler authenticates, reads and validates the
//! body, picks the strategy tree (stored id, inline Portkey JSON, virtual key or default), routes
//! it, and answers with the route in its headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE,
};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::actors::supervisor::{current, Runtime, Supervisor};
use crate::actors::target::{OutcomeKind, Permit};
use crate::clock::unix_ms;
use crate::config::{Leaf, Tree};
use crate::error::Error;
use crate::http::auth::Refused;
use crate::observability::requestlog::{Entry, RequestLog};
use crate::observability::telemetry::InFlight;
use crate::providers::stream::{Frame, UpstreamStream};
use crate::providers::Endpoint;
use crate::proxy::GraceEnd;
use crate::proxy::{self, Prepared, Reply};
use crate::routing::estimate::Estimate;
use actix::Addr;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A known path with the wrong method gets an OpenAI-shaped 405 naming the right one.
    let resource = |path: &'static str, allow: &'static str| {
        web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
            method_not_allowed(&req, allow)
        }))
    };
    cfg.service(
        resource("/v1/chat/completions", "POST").route(web::post().to(endpoint(Endpoint::Chat))),
    )
    .service(
        resource("/v1/completions", "POST").route(web::post().to(endpoint(Endpoint::Completions))),
    )
    .service(
        resource("/v1/embeddings", "POST").route(web::post().to(endpoint(Endpoint::Embeddings))),
    )
    .service(resource("/v1/models", "GET").route(web::get().to(models)));
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((ALLOW, allow))
        .json(json!({"error": {
            "message": format!("method {} is not allowed on {}: use {allow}", req.method(), req.path()),
            "type": "invalid_request_error",
            "param": null,
            "code": "method_not_allowed",
        }}))
}

/// The handler for one routed endpoint.
fn endpoint(
    e: Endpoint,
) -> impl Fn(HttpRequest, web::Payload, web::Data<AppState>) -> LocalBoxFuture<'static, HttpResponse>
       + Clone {
    move |req, body, state| Box::pin(handle(e, req, body, state))
}

async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let runtime = current(&state.current);
    if let Err(e) = authenticate(&runtime, req.headers()) {
        return e.error_response();
    }
    let data: Vec<Value> = runtime
        .config
        .models()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "llmux"}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// Unmatched paths and methods get an OpenAI-shaped 404 rather than an empty body.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Error::NotFound(format!("{} {}", req.method(), req.path())).error_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The client's trace id if it is sane, else a fresh one.
fn trace_id(h: &HeaderMap) -> String {
    header(h, "x-portkey-trace-id")
        .or_else(|| header(h, "x-request-id"))
        .filter(|t| t.len() <= 128 && t.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::thread_rng().gen::<u128>()))
}

fn authenticate(runtime: &Runtime, h: &HeaderMap) -> Result<(), Error> {
    match crate::http::auth::authenticate(&runtime.config.auth, h) {
        Ok(_) => Ok(()),
        Err(Refused::Missing) => Err(Error::Unauthorized(
            "missing API key: send `Authorization: Bearer <key>` or `x-portkey-api-key`",
        )),
        Err(Refused::Invalid) => Err(Error::Unauthorized("invalid API key")),
    }
}

async fn read_body(
    h: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
    within: Duration,
) -> Result<BytesMut, Error> {
    let declared = header(h, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| Error::invalid(format!("could not read request body: {e}"), None))?;
            if buf.len() + chunk.len() > limit {
                return Err(Error::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(within, read).await {
        Ok(r) => r.map(|()| buf),
        Err(_) => Err(Error::ClientTimeout(within)),
    }
}

/// Parses and type-checks the body. Deep validation is the provider's job; this catches what
/// would otherwise be forwarded as garbage or break routing.
pub fn parse_body(
    endpoint: Endpoint,
    raw: &[u8],
    max_messages: usize,
) -> Result<Map<String, Value>, Error> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| Error::InvalidRequest {
        message: format!("request body is not valid JSON: {e}"),
        param: None,
        code: Some("invalid_json"),
    })?;
    let Value::Object(body) = v else {
        return Err(Error::invalid("request body must be a JSON object", None));
    };
    let wrong = |param: &str, what: &str| {
        Err(Error::invalid(
            format!("`{param}` must be {what}"),
            Some(param),
        ))
    };
    if let Some(m) = body.get("model") {
        if !m.is_string() {
            return wrong("model", "a string");
        }
    }
    if let Some(s) = body.get("stream") {
        if !s.is_boolean() && !s.is_null() {
            return wrong("stream", "a boolean");
        }
    }
    for key in ["max_tokens", "max_completion_tokens", "n"] {
        if let Some(v) = body.get(key) {
            if !(v.is_u64() || v.is_null()) {
                return wrong(key, "a non-negative integer");
            }
        }
    }
    match endpoint {
        Endpoint::Chat => {
            let Some(Value::Array(messages)) = body.get("messages") else {
                return wrong("messages", "a non-empty array of messages");
            };
            if messages.is_empty() {
                return wrong("messages", "a non-empty array of messages");
            }
            if messages.len() > max_messages {
                return Err(Error::invalid(
                    format!(
                        "too many messages: {} (limit {max_messages})",
                        messages.len()
                    ),
                    Some("messages"),
                ));
            }
            for (i, m) in messages.iter().enumerate() {
                if !m.get("role").is_some_and(Value::is_string) {
                    return Err(Error::invalid(
                        format!("messages[{i}] must be an object with a string `role`"),
                        Some(&format!("messages[{i}].role")),
                    ));
                }
            }
        }
        Endpoint::Completions => {
            if body.get("prompt").is_none() {
                return wrong("prompt", "given");
            }
        }
        Endpoint::Embeddings => match body.get("input") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            _ => return wrong("input", "a string or an array"),
        },
    }
    Ok(body)
}

/// Resolves the strategy tree: `x-portkey-virtual-key`, else `x-portkey-config` (id or inline
/// JSON), else `server.default_config`.
fn pick_tree(state: &AppState, runtime: &Runtime, h: &HeaderMap) -> Result<Arc<Tree>, Error> {
    let config = &runtime.config;
    if let Some(vk) = header(h, "x-portkey-virtual-key") {
        return config
            .direct_tree(vk)
            .cloned()
            .ok_or_else(|| Error::UnknownVirtualKey(vk.to_owned()));
    }
    match header(h, "x-portkey-config") {
        Some(c) if c.starts_with('{') => {
            // Portkey SDKs resend the same JSON on every request: a hit skips parse + compile.
            // An entry from an older generation (compiled against the old config) is a miss.
            if let Some((generation, tree)) = state.inline.get(c) {
                if generation == runtime.generation {
                    return Ok(tree);
                }
            }
            let tree = Arc::new(config.inline_tree(c).map_err(|e| Error::InvalidConfig {
                path: e.path,
                message: e.message,
            })?);
            state
                .inline
                .insert(c.to_owned(), (runtime.generation, tree.clone()));
            Ok(tree)
        }
        Some(id) => config
            .configs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownConfig(id.to_owned())),
        None => config
            .server
            .default_config
            .as_ref()
            .and_then(|d| config.configs.get(d))
            .cloned()
            .ok_or(Error::NoConfig),
    }
}

async fn handle(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let in_flight = InFlight::start();
    let h = req.headers();
    let trace_id = trace_id(h);
    let runtime = current(&state.current);
    let mut entry = Some(Entry {
        time: unix_ms(),
        trace_id: trace_id.clone(),
        config: None,
        endpoint: endpoint_name(endpoint),
        status: 0,
        latency_ms: 0.0,
        stream: false,
        attempts: Vec::new(),
        served_by: None,
        virtual_key: None,
        provider: None,
        model_requested: None,
        model_used: None,
        prompt_tokens: 0,
        cached_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cost_usd: None,
        cost: None,
        error: None,
    });
    let mut in_flight = Some(in_flight);
    let supervisor = req
        .app_data::<Addr<Supervisor>>()
        .unwrap_or(&state.supervisor);
    let grace_end = req.app_data::<GraceEnd>().unwrap_or(&state.grace_end);
    let result = serve(
        endpoint,
        h,
        supervisor,
        payload,
        &state,
        &runtime,
        &trace_id,
        &mut entry,
        started,
        &mut in_flight,
        grace_end,
    )
    .await;
    let mut resp = result.unwrap_or_else(|e| {
        if let Some(entry) = &mut entry {
            entry.error = Some(e.to_string());
        }
        e.error_response()
    });
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-portkey-trace-id"), v);
    }
    // A stream took the entry with it: it is logged when the stream ends.
    if let Some(mut entry) = entry {
        entry.status = resp.status().as_u16();
        entry.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        finish_entry(&state.log, &runtime, entry);
    }
    resp
}

/// The headers that say how a request was routed: on every response that reached a leaf.
fn insert_route_headers(
    h: &mut HeaderMap,
    leaf: &Leaf,
    provider: &'static str,
    retries: u32,
    attempts: usize,
) {
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-portkey-last-used-option-index", &leaf.path);
    put("x-llmux-virtual-key", &leaf.virtual_key);
    put("x-portkey-provider", provider);
    put("x-portkey-retry-attempt-count", &retries.to_string());
    put("x-llmux-attempts", &attempts.to_string());
}

/// Prices, logs and stores one finished request.
fn finish_entry(log: &RequestLog, runtime: &Runtime, mut entry: Entry) {
    entry.price(&runtime.config.pricing);
    crate::observability::telemetry::record_request(
        crate::observability::telemetry::RequestMetrics {
            config: entry.config.as_deref().unwrap_or("-"),
            status: entry.status,
            endpoint: entry.endpoint,
            seconds: entry.latency_ms / 1000.0,
            fallbacks: entry.attempts.len().saturating_sub(1) as u64,
            prompt_tokens: entry.prompt_tokens,
            completion_tokens: entry.completion_tokens,
        },
    );
    tracing::info!(
        trace_id = %entry.trace_id,
        config = entry.config.as_deref().unwrap_or("-"),
        endpoint = entry.endpoint,
        stream = entry.stream,
        path = entry.served_by.as_deref().unwrap_or("-"),
        virtual_key = entry.virtual_key.as_deref().unwrap_or("-"),
        attempts = entry.attempts.len(),
        status = entry.status,
        latency_ms = entry.latency_ms,
        prompt_tokens = entry.prompt_tokens,
        completion_tokens = entry.completion_tokens,
        error = entry.error.as_deref().unwrap_or(""),
        "request finished"
    );
    log.push(entry);
}

fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Chat => "chat.completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts and the handler's state, passed from its single caller"
)]
async fn serve(
    endpoint: Endpoint,
    h: &HeaderMap,
    supervisor: &Addr<Supervisor>,
    payload: web::Payload,
    state: &AppState,
    runtime: &Arc<Runtime>,
    trace_id: &str,
    slot: &mut Option<Entry>,
    started: Instant,
    in_flight: &mut Option<InFlight>,
    grace_end: &GraceEnd,
) -> Result<HttpResponse, Error> {
    let entry = slot
        .as_mut()
        .expect("entry present until a stream takes it");
    let settings = &runtime.config.server;
    let header_bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > settings.max_header_bytes {
        return Err(Error::HeadersTooLarge {
            limit: settings.max_header_bytes,
        });
    }
    authenticate(runtime, h)?;
    let raw = read_body(h, payload, settings.max_body_bytes, settings.body_timeout).await?;
    let body = parse_body(endpoint, &raw, settings.max_messages)?;
    entry.model_requested = body.get("model").and_then(Value::as_str).map(str::to_owned);
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    entry.stream = stream;
    if stream && endpoint == Endpoint::Embeddings {
        return Err(Error::invalid(
            "embeddings cannot be streamed",
            Some("stream"),
        ));
    }
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let tree = pick_tree(state, runtime, h)?;
    entry.config = Some(tree.id.to_string());
    let prepared = Prepared {
        trace_id: trace_id.to_owned(),
        endpoint,
        estimate: Estimate::of(&body, raw.len()),
        body,
        raw: raw.freeze(),
        stream,
        include_usage,
        idle_timeout: settings.stream_idle_timeout,
    };
    let routed = proxy::route(supervisor, runtime.clone(), tree, &prepared);
    // A request still routing when the shutdown grace period ends answers 503 `shutting_down`
    // before the listener closes its connection (dropping the routing cancels its permits).
    let mut grace_end = grace_end.clone();
    let routed = tokio::select! {
        r = routed => r,
        _ = grace_end.ended() => return Err(Error::ShuttingDown),
    };
    let served = match routed {
        Ok(s) => s,
        Err(unserved) => {
            entry.attempts = unserved.attempts;
            let Some(last) = unserved.last else {
                return Err(unserved.error);
            };
            // A leaf answered (with a failure): the client sees which, as on a success.
            entry.error = Some(unserved.error.to_string());
            entry.served_by = Some(last.leaf.path.to_string());
            entry.virtual_key = Some(last.leaf.virtual_key.to_string());
            entry.provider = Some(last.provider);
            let mut resp = unserved.error.error_response();
            insert_route_headers(
                resp.headers_mut(),
                &last.leaf,
                last.provider,
                last.retries,
                entry.attempts.len(),
            );
            return Ok(resp);
        }
    };
    entry.attempts = served.attempts;
    entry.served_by = Some(served.leaf.path.to_string());
    entry.virtual_key = Some(served.leaf.virtual_key.to_string());
    entry.provider = Some(served.target.provider.as_str());
    let mut resp = HttpResponseBuilder::new(StatusCode::OK);
    let attempts = entry.attempts.len();
    let mut out = match served.reply {
        Reply::Full(answer) => {
            entry.model_used = answer.model;
            let u = answer.usage;
            entry.prompt_tokens = u.prompt_tokens;
            entry.cached_tokens = u.cached_tokens;
            entry.completion_tokens = u.completion_tokens;
            entry.total_tokens = u.prompt_tokens + u.completion_tokens;
            resp.status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK));
            resp.insert_header((CONTENT_TYPE, "application/json"))
                .body(answer.body)
        }
        Reply::Stream { head, upstream } => {
            let entry = slot.take().expect("entry present");
            let body = ClientStream {
                head: head.into(),
                upstream,
                permit: served.permit,
                entry: Some(entry),
                log: state.log.clone(),
                runtime: runtime.clone(),
                started,
                ended: false,
                _in_flight: in_flight.take(),
                grace_end,
            };
            resp.insert_header((CONTENT_TYPE, "text/event-stream"))
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(body.into_stream())
        }
    };
    insert_route_headers(
        out.headers_mut(),
        &served.leaf,
        served.target.provider.as_str(),
        served.retries,
        attempts,
    );
    Ok(out)
}

/// The error event a stream still open at the end of the shutdown grace period ends with.
const SHUTTING_DOWN_EVENT: &str = concat!(
    r#"data: {"error":{"message":"llmux is shutting down: the stream was still open at the end "#,
    r#"of the shutdown grace period","type":"server_error","param":null,"code":"shutting_down"}}"#,
    "\n\n"
);

/// The body of a committed stream. Whatever way it ends — terminator, upstream failure (sent
/// to the client as an error event), the shutdown grace period ending (an error event too) or
/// the client going away (dropped) — its permit reports the outcome and its request-log entry
/// is written, exactly once. It holds the runtime it started on, so a reload cannot retire its
/// target under it.
struct ClientStream {
    head: VecDeque<Bytes>,
    upstream: UpstreamStream,
    permit: Option<Permit>,
    entry: Option<Entry>,
    log: Arc<RequestLog>,
    runtime: Arc<Runtime>,
    started: Instant,
    ended: bool,
    _in_flight: Option<InFlight>,
    grace_end: GraceEnd,
}

impl ClientStream {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
        futures_util::stream::unfold(self, |mut s| async move {
            if let Some(b) = s.head.pop_front() {
                return Some((Ok(b), s));
            }
            if s.ended {
                return None;
            }
            let frame = tokio::select! {
                f = s.upstream.next_frame() => f,
                _ = s.grace_end.ended() => {
                    tracing::warn!(trace_id = s.entry.as_ref().map_or("", |e| e.trace_id.as_str()),
                        "stream still open at the end of the shutdown grace period: ended");
                    s.finish(OutcomeKind::Cancelled, 503, Some("llmux is shutting down".into()));
                    return Some((Ok(Bytes::from_static(SHUTTING_DOWN_EVENT.as_bytes())), s));
                }
            };
            match frame {
                Some(Frame::Data(b)) => Some((Ok(b), s)),
                Some(Frame::Done(b)) => {
                    s.finish(OutcomeKind::Success, 200, None);
                    Some((Ok(b), s))
                }
                Some(Frame::Failed(b, e)) => {
                    tracing::warn!(trace_id = s.entry.as_ref().map_or("", |e| e.trace_id.as_str()),
                        error = %e.message, "upstream stream failed after commit");
                    s.finish(OutcomeKind::from(&e), e.status, Some(e.message));
                    Some((Ok(b), s))
                }
                None => {
                    s.finish(OutcomeKind::Success, 200, None);
                    None
                }
            }
        })
    }

    fn finish(&mut self, kind: OutcomeKind, status: u16, error: Option<String>) {
        self.ended = true;
        let usage = self.upstream.usage();
        let used = usage.prompt_tokens + usage.completion_tokens;
        if let Some(p) = self.permit.take() {
            p.report(kind, (used > 0).then_some(used), error.clone());
        }
        if let Some(mut entry) = self.entry.take() {
            entry.status = status;
            entry.error = error;
            entry.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            entry.model_used = self.upstream.model().map(str::to_owned);
            entry.prompt_tokens = usage.prompt_tokens;
            entry.cached_tokens = usage.cached_tokens;
            entry.completion_tokens = usage.completion_tokens;
            entry.total_tokens = used;
            if let Some(last) = entry.attempts.last_mut() {
                last.status = status;
            }
            finish_entry(&self.log, &self.runtime, entry);
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if !self.ended {
            // The client went away mid-stream: dropping the upstream closes its connection,
            // and the permit is released as cancelled. 499 as nginx logs it.
            self.permit.take();
            self.finish(
                OutcomeKind::Cancelled,
                499,
                Some("client closed the stream".into()),
            );
        }
    }
}
