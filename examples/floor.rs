//! The floor of llmux's own stack, for `bench/run.sh`: an actix-web server that forwards every
//! POST body to one upstream URL and returns the answer, with the same client settings, worker
//! count and allocator as llmux but no routing, parsing, actors, logging or metrics. llmux's
//! throughput against this shows what its own work costs; this against nginx shows what the
//! framework pair costs. Event streams are relayed chunk by chunk, so the memory of held-open
//! streams can be compared too.
//!
//! The upstream client is reqwest, as in llmux, or (`hyper`) the hyper-util client that
//! reqwest wraps, to show what reqwest's own layers cost on this path.
//!
//! `cargo run --release --example floor -- UPSTREAM_URL LISTEN_ADDR [WORKERS] [reqwest|hyper]`

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use http_body_util::{BodyExt, BodyStream, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Hyper = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    static REQWEST: reqwest::Client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client");
    static HYPER: Hyper = {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(http)
    };
}

fn is_event_stream(h: &http::HeaderMap) -> bool {
    h.get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

fn relayed(answer: Result<Bytes, String>) -> HttpResponse {
    match answer {
        Ok(b) => HttpResponse::Ok().content_type("application/json").body(b),
        Err(e) => HttpResponse::BadGateway().body(e),
    }
}

async fn via_reqwest(body: web::Bytes, upstream: web::Data<reqwest::Url>) -> HttpResponse {
    let client = REQWEST.with(reqwest::Client::clone);
    let sent = client
        .post(upstream.get_ref().clone())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if is_event_stream(r.headers()) => HttpResponse::Ok()
            .content_type("text/event-stream")
            .streaming(r.bytes_stream()),
        Ok(r) => relayed(r.bytes().await.map_err(|e| e.to_string())),
        Err(e) => relayed(Err(e.to_string())),
    }
}

async fn via_hyper(body: web::Bytes, upstream: web::Data<http::Uri>) -> HttpResponse {
    let client = HYPER.with(Hyper::clone);
    let req = http::Request::post(upstream.get_ref().clone())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a valid request");
    match client.request(req).await {
        Ok(r) if is_event_stream(r.headers()) => {
            let frames = BodyStream::new(r.into_body());
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .streaming(futures_util::StreamExt::filter_map(frames, |f| async {
                    match f {
                        Ok(f) => f.into_data().ok().map(Ok),
                        Err(e) => Some(Err(e)),
                    }
                }))
        }
        Ok(r) => relayed(
            r.into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string()),
        ),
        Err(e) => relayed(Err(e.to_string())),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // The same memory policy as llmux, so that both are measured alike.
    llmux::app::memory::tune();
    let mut args = std::env::args().skip(1);
    let (Some(upstream), Some(listen)) = (args.next(), args.next()) else {
        eprintln!("usage: floor UPSTREAM_URL LISTEN_ADDR [WORKERS] [reqwest|hyper]");
        std::process::exit(2);
    };
    let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let hyper = match args.next().as_deref() {
        None | Some("reqwest") => false,
        Some("hyper") => true,
        Some(other) => {
            eprintln!("unknown client `{other}`: use reqwest or hyper");
            std::process::exit(2);
        }
    };
    let url = reqwest::Url::parse(&upstream).map_err(std::io::Error::other)?;
    let uri: http::Uri = upstream.parse().map_err(std::io::Error::other)?;
    HttpServer::new(move || {
        let app = App::new()
            .app_data(web::Data::new(url.clone()))
            .app_data(web::Data::new(uri.clone()));
        if hyper {
            app.default_service(web::to(via_hyper))
        } else {
            app.default_service(web::to(via_reqwest))
        }
    })
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .backlog(4096)
    .bind(listen)?
    .run()
    .await
}
