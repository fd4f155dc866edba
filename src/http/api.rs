//! The OpenAI-compatible front: `POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `GET /v1/models`. Each handler authenticates, reads and validates the
//! body, picks the strategy tree (stored id, inline Portkey JSON, virtual key or default), routes
//! it, and answers with the route in its headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{fn_service, Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{json, Value};

pub use super::body::parse_body;
use super::names::{self, Known};
use super::AppState;
use crate::actors::supervisor::{current, Runtime};
use crate::cache::Status as CacheStatus;
use crate::clock::unix_ms;
use crate::config::{AuthKey, Leaf, Scope, Tree};
use crate::error::Error;
use crate::http::auth::Refused;
use crate::observability::otel;
use crate::observability::requestlog::{Draft, Entry};
use crate::observability::telemetry::InFlight;
use crate::providers::{Body, Endpoint};
use crate::proxy::{self, ClientStream, GraceEnd, Prepared, Reply};
use crate::routing::estimate::Estimate;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One handler per path, checking the method itself: a method guard costs every request
    // an allocation (actix records each guard's method in the request's extensions). A known
    // path with the wrong method gets an OpenAI-shaped 405 naming the right one.
    cfg.service(web::resource("/v1/chat/completions").route(routed(Endpoint::Chat)))
        .service(web::resource("/v1/completions").route(routed(Endpoint::Completions)))
        .service(web::resource("/v1/embeddings").route(routed(Endpoint::Embeddings)))
        .service(web::resource("/v1/responses").route(routed(Endpoint::Responses)))
        .service(web::resource("/v1/models").to(models))
        .configure(super::responses::routes);
}

/// A routed endpoint's handler, as a service owning its request rather than an actix handler
/// (`.to(f)`): actix's handler wrapper keeps its own copy of the request until the answer, and
/// with it the request's header map (~6.7 kB: actix sizes every map for 16 headers) for as long
/// as the upstream takes, for a stream until its first content. Owning the request lets
/// [`handle`] free the map as soon as everything it needs from the headers is read.
fn routed(endpoint: Endpoint) -> actix_web::Route {
    web::route().service(fn_service(move |req: ServiceRequest| handle(endpoint, req)))
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

async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if req.method() != Method::GET {
        return method_not_allowed(&req, "GET");
    }
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

/// The client's trace id if it is sane, else a fresh one: 128 random bits as 32 hex digits.
fn trace_id(k: &Known) -> Arc<str> {
    if let Some(t) = Known::text(k.trace_id)
        .or_else(|| Known::text(k.request_id))
        .filter(|t| t.len() <= 128 && t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return t.into();
    }
    // Written out by hand: `format!("{:032x}")` went through the formatting machinery and
    // cost ~4x this on every request without a trace id.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = rand::thread_rng().gen::<u128>();
    let mut out = [0u8; 32];
    for (i, d) in out.iter_mut().enumerate() {
        *d = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(&out).map_or_else(|_| "0".repeat(32).into(), Into::into)
}

/// The gateway key the request presents (`None` without `[auth]`).
pub(crate) fn authenticate<'a>(
    runtime: &'a Runtime,
    h: &HeaderMap,
) -> Result<Option<&'a AuthKey>, Error> {
    match crate::http::auth::authenticate(&runtime.config.auth, h) {
        Ok(key) => Ok(key),
        Err(Refused::Missing) => Err(Error::Unauthorized(
            "missing API key: send `Authorization: Bearer <key>` or `x-portkey-api-key`",
        )),
        Err(Refused::Invalid) => Err(Error::Unauthorized("invalid API key")),
    }
}

/// Reads the whole request body, at most `limit` bytes, within `within`.
async fn read_body(
    content_length: Option<&HeaderValue>,
    mut payload: Payload,
    limit: usize,
    within: Duration,
) -> Result<Bytes, Error> {
    let declared = Known::text(content_length).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut body = Collected::Empty;
    let push = |body: &mut Collected, chunk: Result<Bytes, _>| {
        let chunk = chunk.map_err(|e: actix_web::error::PayloadError| {
            Error::invalid(format!("could not read request body: {e}"), None)
        })?;
        body.push(chunk, declared, limit)
    };
    // Most bodies arrive with their headers: take what is already there without arming the
    // timer (a timer costs a wheel entry and two clock reads per request).
    loop {
        match futures_util::future::poll_immediate(payload.next()).await {
            Some(Some(chunk)) => push(&mut body, chunk)?,
            Some(None) => return Ok(body.finish()),
            None => break,
        }
    }
    let read = async {
        while let Some(chunk) = payload.next().await {
            push(&mut body, chunk)?;
        }
        Ok(())
    };
    match tokio::time::timeout(within, read).await {
        Ok(r) => r.map(|()| body.finish()),
        Err(_) => Err(Error::ClientTimeout(within)),
    }
}

/// A request body being read: one chunk is kept as it came (no copy); more are joined.
enum Collected {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    fn len(&self) -> usize {
        match self {
            Collected::Empty => 0,
            Collected::One(b) => b.len(),
            Collected::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: Bytes, declared: Option<usize>, limit: usize) -> Result<(), Error> {
        if self.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        *self = match std::mem::replace(self, Collected::Empty) {
            Collected::Empty => Collected::One(chunk),
            Collected::One(first) => {
                let want = declared.unwrap_or(0).max(first.len() + chunk.len());
                let mut joined = BytesMut::with_capacity(want.min(limit));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                Collected::Many(joined)
            }
            Collected::Many(mut joined) => {
                joined.extend_from_slice(&chunk);
                Collected::Many(joined)
            }
        };
        Ok(())
    }

    fn finish(self) -> Bytes {
        match self {
            Collected::Empty => Bytes::new(),
            Collected::One(b) => b,
            Collected::Many(b) => b.freeze(),
        }
    }
}

/// Resolves the strategy tree: `x-portkey-virtual-key`, else `x-portkey-config` (id or inline
/// JSON), else `server.default_config` — within the gateway key's scope. What a key may not
/// reach is a 403 whether it exists or not, so a scoped key learns nothing of other accounts.
fn pick_tree(
    state: &AppState,
    runtime: &Runtime,
    k: &Known,
    scope: &Scope,
) -> Result<Arc<Tree>, Error> {
    let config = &runtime.config;
    if let Some(vk) = Known::text(k.virtual_key) {
        if !scope.virtual_key(vk) {
            return Err(Error::Forbidden(format!(
                "this gateway key may not use virtual key `{vk}`"
            )));
        }
        return config
            .direct_tree(vk)
            .cloned()
            .ok_or_else(|| Error::UnknownVirtualKey(vk.to_owned()));
    }
    match Known::text(k.config) {
        Some(c) if c.starts_with('{') => {
            if !scope.inline_configs {
                return Err(Error::Forbidden(
                    "this gateway key may not send inline configs; name a stored config in x-portkey-config".into(),
                ));
            }
            let tree = inline_tree(state, runtime, c)?;
            if scope.virtual_keys.is_some() {
                if let Some(leaf) = tree
                    .root
                    .leaves
                    .iter()
                    .find(|l| !scope.virtual_key(&l.virtual_key))
                {
                    return Err(Error::Forbidden(format!(
                        "this gateway key may not use virtual key `{}` (at {})",
                        leaf.virtual_key, leaf.path
                    )));
                }
            }
            Ok(tree)
        }
        Some(id) => {
            if !scope.config(id) {
                return Err(Error::Forbidden(format!(
                    "this gateway key may not use config `{id}`"
                )));
            }
            config
                .configs
                .get(id)
                .cloned()
                .ok_or_else(|| Error::UnknownConfig(id.to_owned()))
        }
        None => {
            let default = config
                .server
                .default_config
                .as_ref()
                .ok_or(Error::NoConfig)?;
            if !scope.config(default) {
                return Err(Error::Forbidden(format!(
                    "this gateway key may not use the default config `{default}`; name a config it may use in x-portkey-config"
                )));
            }
            config.configs.get(default).cloned().ok_or(Error::NoConfig)
        }
    }
}

/// A compiled inline config, from the per-generation cache when the same JSON came before
/// (Portkey SDKs resend it with every request: a hit skips parse and compile).
fn inline_tree(state: &AppState, runtime: &Runtime, json: &str) -> Result<Arc<Tree>, Error> {
    // An entry from an older generation (compiled against the old config) is a miss.
    if let Some((generation, tree)) = state.inline.get(json) {
        if generation == runtime.generation {
            return Ok(tree);
        }
    }
    let tree = Arc::new(
        runtime
            .config
            .inline_tree(json)
            .map_err(|e| Error::InvalidConfig {
                path: e.path,
                message: e.message,
            })?,
    );
    state
        .inline
        .insert(json.to_owned(), (runtime.generation, tree.clone()));
    Ok(tree)
}

async fn handle(
    endpoint: Endpoint,
    req: ServiceRequest,
) -> Result<ServiceResponse, actix_web::Error> {
    let (req, payload) = req.into_parts();
    if req.method() != Method::POST {
        let resp = method_not_allowed(&req, "POST");
        return Ok(ServiceResponse::new(req, resp));
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let resp = Error::Internal("the API has no state".into()).error_response();
        return Ok(ServiceResponse::new(req, resp));
    };
    // Each API worker has its own (see `Grace::for_this_worker`); a server without one
    // (embedded use) never ends a grace period.
    let grace_end = req
        .app_data::<GraceEnd>()
        .cloned()
        .unwrap_or_else(GraceEnd::never);
    let started = Instant::now();
    let in_flight = InFlight::start();
    let runtime = current(&state.current);
    // Everything llmux needs of the headers is read in this block.
    let (trace_id, mut entry, admitted) = {
        let h = req.headers();
        let known = Known::of(h);
        let trace_id = trace_id(&known);
        let mut entry = Draft::new(Entry::new(
            unix_ms(),
            trace_id.clone(),
            endpoint_name(endpoint),
        ));
        if otel::enabled() {
            entry.get().otel = otel::request_span(endpoint, h, &trace_id);
        }
        // The refusal is boxed: held unboxed, its ~120 bytes would stay in the handler's
        // future for as long as an admitted request routes.
        let admitted = admit(
            endpoint,
            h,
            &known,
            payload,
            &state,
            &runtime,
            &trace_id,
            entry.get(),
        )
        .await
        .map_err(Box::new);
        (trace_id, Some(entry), admitted)
    };
    let req = without_headers(req);
    let mut in_flight = Some(in_flight);
    let result = match admitted {
        Ok(admitted) => {
            serve(
                admitted,
                &state,
                &runtime,
                &mut entry,
                started,
                &mut in_flight,
                grace_end,
            )
            .await
        }
        Err(e) => Err(*e),
    };
    let mut resp = result.unwrap_or_else(|e| {
        if let Some(entry) = &mut entry {
            entry.get().error = Some(e.to_string());
        }
        e.error_response()
    });
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert(names::TRACE_ID, v);
    }
    // A stream took the entry with it: it is logged when the stream ends.
    if let Some(mut draft) = entry {
        let entry = draft.get();
        entry.status = resp.status().as_u16();
        entry.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        state.log.finish(draft, &runtime.config.pricing);
    }
    Ok(ServiceResponse::new(req, resp))
}

/// The request with its header map freed (see [`routed`]). The map is taken through a
/// `ServiceRequest`, actix's one way to a request's head: it requires that no other copy of
/// the request exists, which holds here (no middleware, and `handle` keeps no copy). The
/// emptied map goes back to actix's pool with the request and grows again for the next one.
fn without_headers(req: HttpRequest) -> HttpRequest {
    let mut req = ServiceRequest::from_request(req);
    drop(std::mem::take(req.headers_mut()));
    req.into_parts().0
}

/// The headers that say how a request was routed: on every response that reached a leaf.
fn insert_route_headers(
    h: &mut HeaderMap,
    leaf: &Leaf,
    provider: &'static str,
    retries: u32,
    attempts: usize,
) {
    if let Some(v) = &leaf.headers.path {
        h.insert(names::LAST_USED_OPTION, v.clone());
    }
    if let Some(v) = &leaf.headers.virtual_key {
        h.insert(names::VIRTUAL_KEY_USED, v.clone());
    }
    h.insert(names::PROVIDER, HeaderValue::from_static(provider));
    h.insert(names::RETRY_COUNT, count(retries as usize));
    h.insert(names::ATTEMPTS, count(attempts));
}

/// A small count as a header value without formatting or allocating.
fn count(n: usize) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(n) {
        Some(d) => HeaderValue::from_static(d),
        None => HeaderValue::from(n),
    }
}

/// A gateway key's refusal as the client sees it: 429, with `Retry-After` when waiting helps.
fn key_limit(key: &str, r: crate::tenancy::Refusal) -> Error {
    use crate::tenancy::Refusal;
    match r {
        Refusal::Concurrency { limit } => Error::KeyLimit {
            message: format!("gateway key `{key}` already has {limit} requests in flight (max_concurrent)"),
            code: "concurrency_limit_exceeded",
            retry_after: None,
        },
        Refusal::Rate { which, retry_after } => Error::KeyLimit {
            message: format!("gateway key `{key}` is over its {which} limit"),
            code: "rate_limit_exceeded",
            retry_after: Some(retry_after),
        },
        Refusal::Budget {
            period,
            limit,
            spent,
            resets_in,
        } => Error::KeyLimit {
            message: format!(
                "gateway key `{key}` has spent its {period} budget (${spent:.4} of ${limit}); it resets at the end of the UTC {}",
                if period == "daily" { "day" } else { "month" }
            ),
            code: "insufficient_quota",
            retry_after: Some(resets_in),
        },
    }
}

/// Longest `x-portkey-cache-namespace` accepted.
const MAX_NAMESPACE_BYTES: usize = 256;

/// `x-portkey-cache-namespace`, bounded (it is kept with every answer stored under it).
fn cache_namespace(v: Option<&HeaderValue>) -> Result<Option<Arc<str>>, Error> {
    let Some(v) = v else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Error::invalid(
            format!("x-portkey-cache-namespace {why}"),
            Some("x-portkey-cache-namespace"),
        )
    };
    let ns = v.to_str().map_err(|_| bad("must be visible ASCII"))?.trim();
    if ns.len() > MAX_NAMESPACE_BYTES {
        return Err(bad(&format!("must be at most {MAX_NAMESPACE_BYTES} bytes")));
    }
    Ok((!ns.is_empty()).then(|| ns.into()))
}

fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Chat => "chat.completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Responses => "responses",
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts and the handler's state, passed from its single caller"
)]
async fn admit(
    endpoint: Endpoint,
    h: &HeaderMap,
    known: &Known<'_>,
    payload: Payload,
    state: &AppState,
    runtime: &Arc<Runtime>,
    trace_id: &Arc<str>,
    entry: &mut Entry,
) -> Result<Box<Admitted>, Error> {
    let settings = &runtime.config.server;
    if known.bytes > settings.max_header_bytes {
        return Err(Error::HeadersTooLarge {
            limit: settings.max_header_bytes,
        });
    }
    let key = authenticate(runtime, h)?;
    let unscoped = Scope {
        inline_configs: true,
        ..Scope::default()
    };
    let scope = key.map_or(&unscoped, |k| &k.scope);
    entry.metadata = super::metadata::parse(known.metadata)?;
    if let Some(own) = key.and_then(|k| k.metadata.as_ref()) {
        // The key's metadata is the operator's word: it wins over the client's same keys.
        let mut m = entry.metadata.as_deref().cloned().unwrap_or_default();
        m.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        entry.metadata = Some(Arc::new(m));
    }
    let raw = read_body(
        known.content_length,
        payload,
        settings.max_body_bytes,
        settings.body_timeout,
    )
    .await?;
    let parsed = parse_body(endpoint, &raw, settings.max_messages)?;
    entry.model_requested = parsed.model.clone();
    if let Some(span) = &entry.otel {
        otel::request_model(span, endpoint, parsed.model.as_deref());
        if otel::capture_content() {
            span.record("gen_ai.input.messages", otel::content(&raw).as_str());
        }
    }
    let stream = parsed.stream;
    entry.stream = stream;
    if stream && endpoint == Endpoint::Embeddings {
        return Err(Error::invalid(
            "embeddings cannot be streamed",
            Some("stream"),
        ));
    }
    let estimate = Estimate::of(parsed.completion, raw.len());
    // The key's own limits, before anything is routed; its slot is held until the answer (or
    // the stream) ends.
    let mut lease = None;
    if let Some(k) = key {
        entry.key = Some(k.name.clone());
        if let Some(gate) = state.tenancy.gate(k) {
            // Boxed: with `[cluster]` this asks Redis, and only keys with limits need it.
            lease = Box::pin(gate.admit(estimate.tokens()))
                .await
                .map_err(|r| key_limit(&k.name, r))?;
            entry.spend = Some(gate);
        }
    }
    let mut tree = pick_tree(state, runtime, known, scope)?;
    let body = Body::new(raw);
    let (turn, pinned) = if endpoint == Endpoint::Responses {
        // Boxed: the lookup (maybe Redis) must not grow every request's handler future.
        let (turn, pinned) = Box::pin(super::responses::resolve(state, &body, scope)).await?;
        if let Some(t) = pinned {
            // The account that made the earlier response serves, inside this tree when it is
            // one of its leaves (keeping that leaf's params), else on its own.
            if !tree.root.leaves.iter().any(|l| l.target == t) {
                tree = runtime.config.direct_tree_at(t).clone();
            }
        }
        (Some(Arc::new(turn)), pinned)
    } else {
        (None, None)
    };
    entry.config = Some(tree.id.clone());
    let prepared = Prepared {
        trace_id: trace_id.clone(),
        endpoint,
        estimate,
        body,
        model: parsed.model,
        stream,
        include_usage: parsed.include_usage,
        idle_timeout: settings.stream_idle_timeout,
        metadata: entry.metadata.clone(),
        cache_namespace: cache_namespace(known.cache_namespace)?,
        cache_force_refresh: Known::text(known.cache_force_refresh)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        turn,
        pinned,
        otel: entry.otel.clone(),
    };
    // Boxed: async functions keep a moved argument's slot as well as its new home, so an
    // admitted request passed by value would sit three times in the handler's future (~0.8 kB
    // for as long as the upstream takes).
    Ok(Box::new(Admitted {
        prepared,
        tree,
        lease,
    }))
}

/// An admitted request: validated, within its key's limits, its tree chosen.
struct Admitted {
    prepared: Prepared,
    tree: Arc<Tree>,
    /// The gateway key's concurrency slot, held until the answer (or the stream) ends.
    lease: Option<crate::tenancy::Lease>,
}

/// Routes an admitted request and writes its answer.
async fn serve(
    admitted: Box<Admitted>,
    state: &AppState,
    runtime: &Arc<Runtime>,
    slot: &mut Option<Draft>,
    started: Instant,
    in_flight: &mut Option<InFlight>,
    grace_end: GraceEnd,
) -> Result<HttpResponse, Error> {
    let entry = slot
        .as_mut()
        .expect("entry present until a stream takes it")
        .get();
    // Read in place: moved out of its box, the request would be copied into this future and
    // kept there (~0.25 kB) for as long as the upstream takes.
    let mut admitted = admitted;
    let tree = admitted.tree;
    let prepared = &admitted.prepared;
    let (endpoint, stream) = (prepared.endpoint, prepared.stream);
    let services = proxy::Services {
        // Responses are not cached (their ids and stored state are per response).
        cache: (endpoint != Endpoint::Responses).then_some(&state.cache),
        conversations: Some(&state.conversations),
    };
    let routed = proxy::route(runtime.clone(), tree, prepared, &services);
    // A request still routing when the shutdown grace period ends answers 503 `shutting_down`
    // before the listener closes its connection (dropping the routing cancels its permits).
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
            entry.served_by = Some(last.leaf.path.clone());
            entry.virtual_key = Some(last.leaf.virtual_key.clone());
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
    if served.cache != CacheStatus::Disabled {
        state.cache.record(served.cache);
        entry.cache = Some(served.cache.name());
    }
    entry.served_by = Some(served.leaf.path.clone());
    entry.virtual_key = Some(served.leaf.virtual_key.clone());
    entry.provider = Some(served.provider.as_str());
    let mut resp = HttpResponseBuilder::new(StatusCode::OK);
    let attempts = entry.attempts.len();
    let mut out = match served.reply {
        Reply::Full(answer) => {
            if let Some(span) = &entry.otel {
                if let Some(r) = otel::finish_reasons(&answer.body) {
                    span.record("gen_ai.response.finish_reasons", r.as_str());
                }
                if otel::capture_content() {
                    span.record(
                        "gen_ai.output.messages",
                        otel::content(&answer.body).as_str(),
                    );
                }
            }
            entry.model_used = answer.model;
            let u = answer.usage;
            entry.prompt_tokens = u.prompt_tokens;
            entry.cached_tokens = u.cached_tokens;
            entry.completion_tokens = u.completion_tokens;
            entry.total_tokens = u.prompt_tokens + u.completion_tokens;
            resp.status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK));
            resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                .body(answer.body)
        }
        Reply::Cached(stored) => {
            entry.model_used = stored.model.clone();
            let u = stored.usage;
            entry.prompt_tokens = u.prompt_tokens;
            entry.cached_tokens = u.cached_tokens;
            entry.completion_tokens = u.completion_tokens;
            entry.total_tokens = u.prompt_tokens + u.completion_tokens;
            if stream {
                let frames =
                    crate::cache::sse::replay(endpoint, &stored.body, prepared.include_usage)
                        .ok_or_else(|| {
                            Error::Internal(
                                "a cached answer could not be replayed as a stream".into(),
                            )
                        })?;
                let frames = futures_util::stream::iter(
                    frames.into_iter().map(Ok::<_, std::convert::Infallible>),
                );
                resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
                    .insert_header(("cache-control", "no-cache"))
                    .insert_header(("x-accel-buffering", "no"))
                    .streaming(frames)
            } else {
                resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                    .body(stored.body.clone())
            }
        }
        Reply::Stream { head, upstream } => {
            let entry = slot.take().expect("entry present");
            let body = ClientStream::new(
                head,
                upstream,
                served.permit,
                entry,
                state.log.clone(),
                runtime.clone(),
                started,
                in_flight.take(),
                grace_end,
                served.store,
                served.conversation,
                admitted.lease.take(),
            );
            resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(body.into_stream())
        }
    };
    insert_route_headers(
        out.headers_mut(),
        &served.leaf,
        served.provider.as_str(),
        served.retries,
        attempts,
    );
    out.headers_mut().insert(
        names::CACHE_STATUS,
        HeaderValue::from_static(served.cache.header()),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_request_leaves_routing_without_its_header_map_and_with_the_rest() {
        let req = actix_web::test::TestRequest::post()
            .uri("/v1/chat/completions?x=1")
            .insert_header(("authorization", "Bearer k"))
            .insert_header(("x-portkey-config", "main"))
            .to_http_request();
        assert_eq!(req.headers().len(), 2);
        let req = without_headers(req);
        assert!(req.headers().is_empty());
        assert_eq!(req.headers().capacity(), 0, "the map's memory is freed");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.path(), "/v1/chat/completions");
        assert_eq!(req.query_string(), "x=1");
    }

    #[test]
    fn a_trace_id_is_the_clients_when_sane_else_32_fresh_hex_digits() {
        let mut h = HeaderMap::new();
        let fresh = trace_id(&Known::of(&h));
        assert_eq!(fresh.len(), 32);
        assert!(fresh
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(fresh, trace_id(&Known::of(&h)), "each request gets its own");
        h.insert(names::REQUEST_ID, HeaderValue::from_static("req-1"));
        assert_eq!(&*trace_id(&Known::of(&h)), "req-1");
        h.insert(names::TRACE_ID, HeaderValue::from_static("trace-1"));
        assert_eq!(
            &*trace_id(&Known::of(&h)),
            "trace-1",
            "x-portkey-trace-id wins"
        );
        h.insert(names::TRACE_ID, HeaderValue::from_static("has space"));
        assert_eq!(
            trace_id(&Known::of(&h)).len(),
            32,
            "an insane one: a fresh one"
        );
        h.insert(
            names::TRACE_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        assert_eq!(trace_id(&Known::of(&h)).len(), 32, "too long: a fresh one");
    }

    #[test]
    fn a_body_is_kept_whole_from_one_chunk_and_joined_from_many_within_the_limit() {
        let mut one = Collected::Empty;
        let chunk = Bytes::from_static(b"{\"model\":\"m\"}");
        one.push(chunk.clone(), None, 64).unwrap();
        let kept = one.finish();
        assert_eq!(kept, chunk);
        assert_eq!(kept.as_ptr(), chunk.as_ptr(), "one chunk is not copied");

        let mut many = Collected::Empty;
        for part in [&b"{\"a\""[..], b":", b"1}"] {
            many.push(Bytes::copy_from_slice(part), Some(7), 64)
                .unwrap();
        }
        assert_eq!(many.finish(), Bytes::from_static(b"{\"a\":1}"));

        let mut over = Collected::Empty;
        over.push(Bytes::from_static(b"12345"), None, 8).unwrap();
        assert!(matches!(
            over.push(Bytes::from_static(b"6789"), None, 8),
            Err(Error::PayloadTooLarge { limit: 8 })
        ));
        assert_eq!(Collected::Empty.finish(), Bytes::new());
    }
}
