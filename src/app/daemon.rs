//! The daemon's life cycle: start the actor system and both listeners, reload on SIGHUP (or
//! `POST /admin/reload`) and report what a reload cannot apply, drain and exit on
//! SIGTERM/SIGINT, ending what is still open when the grace period is over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

use crate::actors::supervisor::{current, Supervisor};
use crate::config::{Config, ConfigError};
use crate::http::{admin, api, AppState};
use crate::observability::requestlog::RequestLog;
use crate::proxy::Grace;

/// After the grace period ends, how long the error events and 503s get to reach their clients
/// before the listeners close every connection left.
const FLUSH_BACKSTOP: Duration = Duration::from_secs(1);

/// actix's own graceful-stop limit. llmux ends the drain itself (grace period, read from the
/// running config at SIGTERM so that a reload applies to it, then [`FLUSH_BACKSTOP`]), so this
/// only has to be longer than any grace period.
const ACTIX_SHUTDOWN_CEILING_SECS: u64 = 7 * 24 * 3600;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cluster.redis_url: {0}")]
    Cluster(String),
    #[error("cannot start the target actors: {0}")]
    Targets(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Re-reads the config file and swaps it in (see [`crate::http::AppState::reload`]), telling
/// systemd while it does.
async fn reload(state: &AppState) {
    notify(&[sd_notify::NotifyState::Reloading]);
    let _ = state.reload().await;
    notify(&[sd_notify::NotifyState::Ready]);
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config_path: PathBuf) -> Result<(), DaemonError> {
    let config = crate::actors::reload::load(&config_path)?;
    // After the load (`[telemetry]` says where traces go), before any runtime exists (the
    // exporter's blocking client builds its own). Dropped last: flushes pending spans.
    let _telemetry = crate::observability::telemetry::init(config.telemetry.as_ref());
    let system = actix::System::new();
    system.block_on(serve(config))
}

/// Tells systemd (when run under `Type=notify`) where the daemon stands; a no-op elsewhere.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    // Installed before anything listens or READY=1 is sent: a SIGHUP that arrives as soon as the
    // daemon answers must reload it, not kill it (the default action), which it did when the
    // handlers were installed by a task that had not run yet.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) = (
        signal(SignalKind::hangup())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    crate::observability::telemetry::install_metrics();
    let server = config.server.clone();
    let admin_cfg = config.admin.clone();
    let cluster = match &config.cluster {
        Some(c) => {
            let cluster =
                crate::cluster::Cluster::new(c.redis_url.expose(), &c.key_prefix, c.local_share)
                    .map_err(|e| DaemonError::Cluster(e.to_string()))?;
            actix_web::rt::spawn(cluster.clone().supervise());
            Some(cluster)
        }
        None => None,
    };
    // Built once: its store settings (`[cache] max_bytes` …) apply from start; trees decide
    // per request whether to use it, so reloads change that at once.
    let cache = Arc::new(crate::cache::Cache::new(&config.cache, cluster.clone()));
    let (supervisor, cur, reload_status) =
        Supervisor::start(config, cluster.clone()).map_err(DaemonError::Targets)?;
    // Usage aggregates: read back at start, saved every minute and when the daemon stops.
    let usage = Arc::new(crate::observability::usage::Usage::new(
        current(&cur).config.usage_path.clone(),
    ));
    let saver = usage.clone();
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = saver.save() {
                tracing::warn!(error = %e, "could not save the usage aggregates");
            }
        }
    });
    let (end_grace, grace_end) = Grace::new();
    let state = web::Data::new(AppState {
        supervisor: supervisor.clone(),
        current: cur.clone(),
        log: Arc::new(RequestLog::new(server.request_log_size).with_usage(usage.clone())),
        inline: crate::http::inline_cache(),
        cache,
        conversations: Arc::new(crate::conversation::Conversations::new(cluster.clone())),
        tenancy: Arc::new(crate::tenancy::Tenancy::new(cluster.clone())),
        cluster,
        reload: reload_status,
        grace_end,
    });

    let api_state = state.clone();
    let api_server = HttpServer::new(move || {
        // Runs on each worker's thread: its memory purger and grace relay live there too.
        actix_web::rt::spawn(crate::app::memory::purge_while_idle());
        App::new()
            .app_data(api_state.grace_end.for_this_worker())
            .app_data(api_state.clone())
            .configure(api::routes)
            .default_service(web::to(api::not_found))
    })
    .on_connect(|conn, _| {
        // SSE frames must reach the client as they are written: no Nagle delay behind a
        // delayed ACK (which otherwise adds up to 40 ms between stream chunks).
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(server.workers)
    .backlog(4096)
    .max_connection_rate(4096)
    .client_request_timeout(server.header_timeout)
    .shutdown_timeout(ACTIX_SHUTDOWN_CEILING_SECS)
    .disable_signals()
    .bind(server.listen)?
    .run();
    tracing::info!(listen = %server.listen, "llmux API listening");

    let admin_server = match &admin_cfg {
        Some(a) => {
            let admin_state = state.clone();
            let srv = HttpServer::new(move || {
                App::new()
                    .app_data(admin_state.clone())
                    .configure(admin::routes)
                    .default_service(web::to(api::not_found))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(a.listen)?
            .run();
            tracing::info!(listen = %a.listen, "llmux admin listening");
            Some(srv)
        }
        None => None,
    };

    let api_handle = api_server.handle();
    let admin_handle = admin_server.as_ref().map(|s| s.handle());
    let signals_state = state.clone();
    let (force_close, forced) = tokio::sync::oneshot::channel::<()>();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    reload(&signals_state).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        // Read now, so that a reload's shutdown_grace_ms applies.
        let grace = current(&signals_state.current).config.server.shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: draining in-flight requests"
        );
        notify(&[sd_notify::NotifyState::Stopping]);
        // Both listeners stop accepting at once and drain together.
        let admin_stop = admin_handle.as_ref().map(|h| h.stop(true));
        let drained = futures_util::future::join(api_handle.stop(true), async move {
            if let Some(stop) = admin_stop {
                stop.await;
            }
        });
        tokio::pin!(drained);
        tokio::select! {
            _ = &mut drained => return,
            _ = tokio::time::sleep(grace) => {}
        }
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "shutdown grace period over: ending the streams and requests still open"
        );
        let _ = end_grace.send(true);
        tokio::select! {
            _ = &mut drained => {}
            _ = tokio::time::sleep(FLUSH_BACKSTOP) => {
                tracing::warn!("closing the connections still open");
                let _ = force_close.send(());
            }
        }
        // Keep the sender alive until here: dropping it earlier would never end the grace.
        drop(end_grace);
    });

    notify(&[sd_notify::NotifyState::Ready]);
    let servers = async move {
        match admin_server {
            Some(admin) => {
                let (a, b) = futures_util::future::join(api_server, admin).await;
                a.and(b)
            }
            None => api_server.await,
        }
    };
    // Dropping the servers (after the backstop) closes every connection they still hold.
    match futures_util::future::select(Box::pin(servers), forced).await {
        futures_util::future::Either::Left((result, _)) => result?,
        futures_util::future::Either::Right(_) => {}
    }
    if let Err(e) = usage.save() {
        tracing::warn!(error = %e, "could not save the usage aggregates");
    }
    tracing::info!("stopped");
    Ok(())
}
