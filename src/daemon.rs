//! The daemon's life cycle: start the actor system and both listeners, reload on SIGHUP (or
//! `POST /admin/reload`), drain and exit on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpServer};
use serde::Serialize;

use crate::actors::supervisor::{current, Reload, Supervisor};
use crate::config::Config;
use crate::http::{admin, api, AppState};
use crate::requestlog::RequestLog;

/// The result of the last reload, shown on the admin endpoint.
#[derive(Default)]
pub struct ReloadStatus {
    inner: Mutex<ReloadSnapshot>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadSnapshot {
    pub last_attempt_unix_ms: Option<u64>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub generation: u64,
    pub reloads: u64,
    pub failures: u64,
    pub report: Option<crate::actors::supervisor::ReloadReport>,
}

impl ReloadStatus {
    pub fn snapshot(&self) -> ReloadSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Re-reads the config file, validates it fully, and only then swaps it in. An invalid file
/// changes nothing but the reported status; a valid one also empties the inline-config cache
/// (its trees were compiled against the old config).
pub async fn reload(state: &AppState) -> Result<(), String> {
    let (supervisor, cur, status) = (&state.supervisor, &state.current, &state.reload);
    let old = current(cur);
    let path = old.config.file.clone();
    notify(&[sd_notify::NotifyState::Reloading]);
    let result = match Config::load(&path) {
        Err(e) => Err(e.to_string()),
        Ok(new) => {
            if new.server.listen != old.config.server.listen {
                tracing::warn!(old = %old.config.server.listen, new = %new.server.listen,
                    "server.listen changed; the listen address only changes on restart");
            }
            let admin_addr = |c: &Config| c.admin.as_ref().map(|a| a.listen);
            if admin_addr(&new) != admin_addr(&old.config) {
                tracing::warn!("admin.listen changed; it only changes on restart");
            }
            supervisor
                .send(Reload(new))
                .await
                .map_err(|e| e.to_string())
        }
    };
    notify(&[sd_notify::NotifyState::Ready]);
    metrics::counter!("llmux_reloads_total", "result" => if result.is_ok() { "ok" } else { "error" }).increment(1);
    let mut s = status.inner.lock().unwrap_or_else(|e| e.into_inner());
    s.last_attempt_unix_ms = Some(crate::actors::unix_ms());
    match result {
        Ok(report) => {
            tracing::info!(generation = report.generation, kept = ?report.kept, started = ?report.started,
                retired = ?report.retired, "config reloaded");
            s.ok = Some(true);
            s.error = None;
            s.generation = report.generation;
            s.reloads += 1;
            s.report = Some(report);
            state.inline.clear();
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; keeping the running config");
            s.ok = Some(false);
            s.error = Some(e.clone());
            s.failures += 1;
            Err(e)
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config_path: PathBuf) -> anyhow_like::Result {
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let system = actix::System::new();
    system.block_on(serve(config)).map_err(|e| e.to_string())
}

pub mod anyhow_like {
    pub type Result = std::result::Result<(), String>;
}

/// Tells systemd (when run under `Type=notify`) where the daemon stands; a no-op elsewhere.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    crate::telemetry::install_metrics();
    let server = config.server.clone();
    let admin_cfg = config.admin.clone();
    let cluster = match &config.cluster {
        Some(c) => {
            let cluster =
                crate::cluster::Cluster::new(c.redis_url.expose(), &c.key_prefix, c.local_share)
                    .map_err(|e| std::io::Error::other(format!("cluster.redis_url: {e}")))?;
            actix_rt::spawn(cluster.clone().supervise());
            Some(cluster)
        }
        None => None,
    };
    let (supervisor, cur) = Supervisor::start(config, cluster.clone());
    let state = web::Data::new(AppState {
        supervisor: supervisor.clone(),
        current: cur.clone(),
        log: Arc::new(RequestLog::new(server.request_log_size)),
        inline: crate::http::inline_cache(),
        cluster,
        reload: Arc::new(ReloadStatus::default()),
    });
    {
        let mut s = state.reload.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.generation = 1;
    }

    let api_state = state.clone();
    let api_server = HttpServer::new(move || {
        // Runs on each worker's thread: its supervisor shard and memory purger live there too.
        actix_rt::spawn(crate::memory::purge_while_idle());
        App::new()
            .app_data(Supervisor::shard(api_state.current.clone()))
            .app_data(api_state.clone())
            .configure(api::routes)
            .default_service(web::to(api::not_found))
    })
    .on_connect(|conn, _| {
        // SSE frames must reach the client as they are written: no Nagle delay behind a
        // delayed ACK (which otherwise adds up to 40 ms between stream chunks).
        if let Some(tcp) = conn.downcast_ref::<actix_rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(server.workers)
    .backlog(4096)
    .max_connection_rate(4096)
    .client_request_timeout(server.header_timeout)
    .shutdown_timeout(server.shutdown_grace.as_secs().max(1))
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
    actix_rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let _ = reload(&signals_state).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(h) = &admin_handle {
            h.stop(true).await;
        }
        api_handle.stop(true).await;
    });

    notify(&[sd_notify::NotifyState::Ready]);
    match admin_server {
        Some(admin) => {
            let (a, b) = futures_util::future::join(api_server, admin).await;
            a.and(b)
        }
        None => api_server.await,
    }?;
    tracing::info!("stopped");
    Ok(())
}
