//! The floor of llmux's own stack, for `bench/run.sh`: an actix-web server that forwards every
//! POST body to one upstream URL with reqwest and returns the answer, with the same client
//! settings, worker count and allocator as llmux but no routing, parsing, actors, logging or
//! metrics. llmux's throughput against this shows what its own work costs; this against nginx
//! shows what the framework pair costs.
//!
//! `cargo run --release --example floor -- UPSTREAM_URL LISTEN_ADDR [WORKERS]`

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    static CLIENT: reqwest::Client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client");
}

async fn forward(body: web::Bytes, upstream: web::Data<reqwest::Url>) -> HttpResponse {
    let client = CLIENT.with(reqwest::Client::clone);
    let sent = client
        .post(upstream.get_ref().clone())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(b) => HttpResponse::Ok().content_type("application/json").body(b),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(upstream), Some(listen)) = (args.next(), args.next()) else {
        eprintln!("usage: floor UPSTREAM_URL LISTEN_ADDR [WORKERS]");
        std::process::exit(2);
    };
    let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let upstream = reqwest::Url::parse(&upstream).map_err(std::io::Error::other)?;
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(upstream.clone()))
            .default_service(web::to(forward))
    })
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .backlog(4096)
    .bind(listen)?
    .run()
    .await
}
