//! The actix-web server: building and binding it, the single catch-all
//! handler (routing, stats, latency, fault injection, per-endpoint answers),
//! the `/_mock/*` control API, and connection resets.
//!
//! Two connection-level details matter for fault injection:
//! - `h1_allow_half_closed(false)`: when the client closes its connection,
//!   actix shuts the connection down at once, even mid-response, dropping the
//!   handler future or the response body stream; the [`DisconnectGuard`] in
//!   them counts the disconnect.
//! - [`FailMode::Reset`]: the connection's socket gets `SO_LINGER = 0`
//!   (through the raw fd recorded by `on_connect`) and the handler returns a
//!   body that fails before its first byte, so actix drops the connection
//!   with the response head still unsent and the kernel answers with a TCP
//!   RST. The client sees a connection error, never a response.

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Extensions, Server};
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;

use super::openai;
use super::responses;
use super::route::{self, Control, Provider, Route};
use super::state::{DisconnectGuard, Endpoint, Shared, DEFAULT_ACCOUNT};
use super::stream;
use super::wire::{self, Answer, ApiError, Ctx};
use super::{anthropic, bedrock, gemini, vertex, Behavior, FailMode};

/// Largest request body accepted.
const MAX_BODY: usize = 64 << 20;

/// How long a `FailMode::Timeout` request hangs.
const HANG: Duration = Duration::from_secs(3600);

/// Raw fd of a connection's socket, stored per connection by `on_connect`.
#[cfg(unix)]
#[derive(Clone, Copy)]
struct ConnFd(std::os::fd::RawFd);

fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        if let Some(s) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            // Stream chunks must leave as they are written, not wait on Nagle + delayed ACK.
            let _ = s.set_nodelay(true);
            ext.insert(ConnFd(s.as_raw_fd()));
        }
    }
    #[cfg(not(unix))]
    let _ = (conn, ext);
}

/// Makes the kernel send RST (not FIN) when actix closes this connection.
#[cfg_attr(
    unix,
    expect(
        unsafe_code,
        reason = "borrows actix's connection socket by fd to set SO_LINGER; see SAFETY below"
    )
)]
fn arm_reset(req: &HttpRequest) {
    #[cfg(unix)]
    if let Some(ConnFd(fd)) = req.conn_data::<ConnFd>().copied() {
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` is the socket of the connection this request came in
        // on; actix owns it and keeps it open while the request's handler
        // runs (the handler future lives inside that connection's
        // dispatcher). `ManuallyDrop` guarantees we never close it; we only
        // set a socket option.
        let sock = std::mem::ManuallyDrop::new(unsafe { tokio::net::TcpSocket::from_raw_fd(fd) });
        #[expect(
            deprecated,
            reason = "set_linger is deprecated for blocking on close; a zero linger never blocks"
        )]
        if let Err(e) = sock.set_linger(Some(Duration::ZERO)) {
            tracing::warn!("llmux-mock: SO_LINGER failed: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = req;
}

/// Binds the server (not yet polled). `signals`: let actix handle SIGINT/SIGTERM.
pub fn build(
    addr: &str,
    shared: Arc<Shared>,
    workers: usize,
    signals: bool,
) -> io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(shared);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .default_service(web::to(dispatch))
    })
    .workers(workers.max(1))
    .h1_allow_half_closed(false)
    .on_connect(on_connect)
    .shutdown_timeout(1);
    if !signals {
        server = server.disable_signals();
    }
    let server = server.bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no address bound"))?;
    Ok((server.run(), bound))
}

enum Outcome {
    Normal,
    Status(u16),
    Timeout,
    Reset,
}

fn decide(b: &Behavior) -> Outcome {
    if let Some(s) = b.always_status {
        if s >= 400 {
            return Outcome::Status(s);
        }
    }
    if b.fail_rate > 0.0 && (b.fail_rate >= 1.0 || rand::thread_rng().gen::<f64>() < b.fail_rate) {
        return match b.fail_mode {
            FailMode::Status => Outcome::Status(fail_status(b)),
            FailMode::Timeout => Outcome::Timeout,
            FailMode::Reset => Outcome::Reset,
        };
    }
    Outcome::Normal
}

fn fail_status(b: &Behavior) -> u16 {
    if !b.fail_statuses.is_empty() {
        let i = rand::thread_rng().gen_range(0..b.fail_statuses.len());
        return b.fail_statuses[i];
    }
    if b.fail_status == 0 {
        500
    } else {
        b.fail_status
    }
}

fn azure_operation(ep: Endpoint) -> &'static str {
    match ep {
        Endpoint::AzureEmbeddings => "Embeddings_Create",
        Endpoint::AzureCompletions => "Completions_Create",
        Endpoint::AzureResponses => "Responses_Create",
        Endpoint::AzureResponsesGet
        | Endpoint::AzureResponsesDelete
        | Endpoint::AzureResponsesInputItems
        | Endpoint::AzureResponsesCancel => "Responses_Get",
        _ => "ChatCompletions_Create",
    }
}

async fn dispatch(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path();
    if let Some(c) = route::control(path) {
        return control(c, &req, &body, &shared);
    }
    let Route {
        endpoint,
        mut provider,
        account,
        deployment,
        id,
    } = route::route(req.method(), path);
    let counters = shared.counters(account);
    let full_path = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
    counters.record_request(endpoint, full_path, req.headers(), &body);
    let behavior = shared.behavior(account);
    if endpoint == Endpoint::VertexToken {
        let resp = vertex::token(
            &shared.vertex_tokens,
            &behavior,
            shared.next_seq(),
            path,
            &body,
        );
        counters.record_status(resp.status().as_u16());
        return resp;
    }
    if endpoint == Endpoint::Models && req.headers().contains_key("anthropic-version") {
        provider = Provider::Anthropic;
    }
    let ctx = Ctx {
        provider,
        account,
        behavior: &behavior,
        seq: shared.next_seq(),
        api_version: wire::query_param(req.query_string(), "api-version").filter(|v| !v.is_empty()),
        deployment,
        operation: azure_operation(endpoint),
    };

    if endpoint == Endpoint::NotFound {
        counters.record_status(404);
        let msg = format!("Invalid URL ({} {})", req.method(), path);
        return ApiError::status(404)
            .code("unknown_url")
            .message(msg)
            .render(&ctx);
    }

    let on_vertex = matches!(
        endpoint,
        Endpoint::VertexGenerate
            | Endpoint::VertexStream
            | Endpoint::VertexRawPredict
            | Endpoint::VertexStreamRawPredict
    );
    if on_vertex {
        if let Err(e) = vertex::check_bearer(&shared.vertex_tokens, req.headers()) {
            counters.record_status(e.status);
            // Vertex's own errors are Google's whichever publisher was asked.
            return e.render(&Ctx {
                provider: Provider::Gemini,
                ..ctx
            });
        }
    } else if provider == Provider::Gemini {
        if let Err(e) = gemini_auth(&req) {
            counters.record_status(e.status);
            return e.render(&ctx);
        }
    }

    if provider == Provider::Bedrock {
        // AWS authenticates before anything else happens to a request.
        let q = req.query_string();
        if let Err(e) = bedrock::authenticate(req.method().as_str(), path, q, req.headers(), &body)
        {
            counters.record_status(403);
            return e.render(&ctx);
        }
    }
    let mut guard = DisconnectGuard::new(counters.clone());
    if behavior.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behavior.latency_ms)).await;
    }
    match decide(&behavior) {
        Outcome::Normal => {}
        Outcome::Status(s) => {
            guard.disarm();
            counters.record_status(s);
            return ApiError::status(s).render(&ctx);
        }
        Outcome::Timeout => {
            tokio::time::sleep(HANG).await;
            guard.disarm();
            counters.record_status(504);
            return ApiError::status(504).render(&ctx);
        }
        Outcome::Reset => {
            guard.disarm();
            arm_reset(&req);
            return HttpResponse::Ok().streaming(stream::failing_body());
        }
    }

    let answer = match endpoint {
        Endpoint::AzureChatCompletions | Endpoint::AzureEmbeddings | Endpoint::AzureCompletions
            if ctx.api_version.is_none() =>
        {
            Err(ApiError::invalid(
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
            .code("MissingApiVersionParameter"))
        }
        Endpoint::ChatCompletions | Endpoint::AzureChatCompletions => openai::chat(&ctx, &body),
        Endpoint::Completions | Endpoint::AzureCompletions => openai::completions(&ctx, &body),
        Endpoint::Embeddings | Endpoint::AzureEmbeddings => openai::embeddings(&ctx, &body),
        Endpoint::Messages => anthropic::messages(&ctx, req.headers(), &body),
        Endpoint::Converse => bedrock::converse(&ctx, &body, false),
        Endpoint::ConverseStream => bedrock::converse(&ctx, &body, true),
        Endpoint::Models => Ok(Answer::Json(openai::models(
            provider == Provider::Anthropic,
        ))),
        Endpoint::Responses
        | Endpoint::AzureResponses
        | Endpoint::ResponsesGet
        | Endpoint::AzureResponsesGet
        | Endpoint::ResponsesDelete
        | Endpoint::AzureResponsesDelete
        | Endpoint::ResponsesInputItems
        | Endpoint::AzureResponsesInputItems
        | Endpoint::ResponsesCancel
        | Endpoint::AzureResponsesCancel => responses::handle(
            &ctx,
            endpoint,
            id,
            req.query_string(),
            &body,
            &shared.responses(account),
        ),
        Endpoint::GeminiGenerate => gemini::generate(&ctx, id.unwrap_or(""), &body, false),
        Endpoint::GeminiStream if wire::query_param(req.query_string(), "alt") != Some("sse") => {
            Err(ApiError::invalid(
                "llmux-mock serves streamGenerateContent only as SSE (?alt=sse)",
            ))
        }
        Endpoint::GeminiStream => gemini::generate(&ctx, id.unwrap_or(""), &body, true),
        Endpoint::GeminiEmbed => gemini::batch_embed(id.unwrap_or(""), &body),
        Endpoint::GeminiModels => Ok(Answer::Json(gemini::models())),
        Endpoint::VertexGenerate => vertex::generate(&ctx, id.unwrap_or(""), &body, false),
        Endpoint::VertexStream if wire::query_param(req.query_string(), "alt") != Some("sse") => {
            Err(ApiError::invalid(
                "llmux-mock serves streamGenerateContent only as SSE (?alt=sse)",
            ))
        }
        Endpoint::VertexStream => vertex::generate(&ctx, id.unwrap_or(""), &body, true),
        Endpoint::VertexRawPredict => vertex::raw_predict(&ctx, id.unwrap_or(""), &body, false),
        Endpoint::VertexStreamRawPredict => {
            vertex::raw_predict(&ctx, id.unwrap_or(""), &body, true)
        }
        // Answered before the behavior applies.
        Endpoint::VertexToken => Err(ApiError::status(404)),
        Endpoint::NotFound => Err(ApiError::status(404)),
    };
    match answer {
        Ok(Answer::Json(bytes)) => {
            guard.disarm();
            counters.record_status(200);
            ctx.json_ok(bytes)
        }
        Ok(Answer::Stream(plan)) => {
            counters.record_status(200);
            let body = plan.into_body(&behavior, guard);
            ctx.sse_ok().streaming(body)
        }
        Err(e) => {
            guard.disarm();
            counters.record_status(e.status);
            e.render(&ctx)
        }
    }
}

/// What Google checks before anything else: the key is in `x-goog-api-key`. A key in the
/// query string works at Google but leaks into logs, so the mock refuses it outright.
fn gemini_auth(req: &HttpRequest) -> Result<(), ApiError> {
    if wire::query_param(req.query_string(), "key").is_some() {
        return Err(ApiError::invalid(
            "llmux-mock: the API key must not be sent in the URL (use x-goog-api-key)",
        ));
    }
    match req.headers().get("x-goog-api-key") {
        Some(k) if !k.is_empty() => Ok(()),
        _ => Err(ApiError::status(403).message(
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
    }
}

#[derive(Deserialize)]
struct BehaviorUpdate {
    #[serde(default = "default_account")]
    account: String,
    #[serde(flatten)]
    behavior: Behavior,
}

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_owned()
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(serde_json::to_vec(v).unwrap_or_default())
}

fn control_error(status: StatusCode, message: String) -> HttpResponse {
    json(
        status,
        &serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

fn control(c: Control, req: &HttpRequest, body: &Bytes, shared: &Shared) -> HttpResponse {
    let method = req.method();
    match (c, method) {
        (Control::Stats, &Method::GET) => {
            let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default();
            match q.get("account") {
                Some(account) => json(StatusCode::OK, &shared.stats(account)),
                None => json(StatusCode::OK, &shared.all_stats()),
            }
        }
        (Control::Behavior, &Method::GET) => json(StatusCode::OK, &shared.behaviors()),
        (Control::Behavior, &Method::POST) | (Control::Behavior, &Method::PUT) => {
            match serde_json::from_slice::<BehaviorUpdate>(body) {
                Ok(u) => {
                    shared.set_behavior(&u.account, u.behavior);
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"ok": true, "account": u.account}),
                    )
                }
                Err(e) => control_error(StatusCode::BAD_REQUEST, format!("invalid behavior: {e}")),
            }
        }
        (Control::Reset, &Method::POST) => {
            shared.reset();
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        // An empty protobuf message is a valid ExportTraceServiceResponse: all accepted.
        (Control::Traces, &Method::POST) => HttpResponse::Ok()
            .insert_header((
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            ))
            .finish(),
        _ => control_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {}", req.path()),
        ),
    }
}
