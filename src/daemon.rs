//! The daemon's life cycle: start the actor system and both listeners, reload on SIGHUP (or
//! `POST /admin/reload`) and report what a reload cannot apply, drain and exit on
//! SIGTERM/SIGINT, ending what is still open when the grace period is over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use serde::Serialize;
use tokio::sync::watch;

use crate::actors::supervisor::{current, Reload, Supervisor};
use crate::config::{ClusterSettings, Config, ServerSettings};
use crate::http::{admin, api, AppState};
use crate::requestlog::RequestLog;

/// After the grace period ends, how long the error events and 503s get to reach their clients
/// before the listeners close every connection left.
const FLUSH_BACKSTOP: Duration = Duration::from_secs(1);

/// actix's own graceful-stop limit. llmux ends the drain itself (grace period, read from the
/// running config at SIGTERM so that a reload applies to it, then [`FLUSH_BACKSTOP`]), so this
/// only has to be longer than any grace period.
const ACTIX_SHUTDOWN_CEILING_SECS: u64 = 7 * 24 * 3600;

/// Fires once, when the shutdown grace period ends. Streams still open then send an error
/// event and end; requests still being routed answer 503 `shutting_down`.
#[derive(Clone)]
pub struct GraceEnd(watch::Receiver<bool>);

impl GraceEnd {
    pub fn new() -> (watch::Sender<bool>, GraceEnd) {
        let (tx, rx) = watch::channel(false);
        (tx, GraceEnd(rx))
    }

    /// A receiver owned by the current worker thread, relayed from this one by a task on that
    /// thread. Every request and stream waits on its worker's receiver: waiting registers with
    /// the channel (a lock and a reference count), which must not be shared across workers on
    /// the hot path.
    pub fn for_this_worker(&self) -> GraceEnd {
        let (tx, rx) = GraceEnd::new();
        let mut root = self.clone();
        actix_rt::spawn(async move {
            root.ended().await;
            let _ = tx.send(true);
        });
        rx
    }

    /// Resolves when the grace period has ended (at once if it already has); never if the
    /// daemon cannot end it (its sender is gone).
    pub async fn ended(&mut self) {
        if self.0.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The settings fixed when the daemon started (listeners, workers, the cluster connection):
/// what a reload is compared with to report what it cannot apply.
struct Fixed {
    server: ServerSettings,
    admin_listen: Option<SocketAddr>,
    cluster: Option<ClusterSettings>,
}

/// A setting the config file changed that only takes effect on restart.
#[derive(Debug, Clone, Serialize)]
pub struct NotApplied {
    /// Its path in config.toml, e.g. `server.workers`.
    pub setting: &'static str,
    pub reason: &'static str,
    /// The value in effect (absent for secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// The value in the file (absent for secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configured: Option<String>,
}

const ON_RESTART: &str = "takes effect on restart";

/// What in `new` differs from the settings the daemon started with and cannot change while it
/// runs. Everything else (trees, targets, auth keys, pricing, admin token, per-request limits
/// and timeouts, default config, shutdown grace) applies on reload.
fn not_applied(fixed: &Fixed, new: &Config) -> Vec<NotApplied> {
    fn changed<T: PartialEq + std::fmt::Display>(
        out: &mut Vec<NotApplied>,
        setting: &'static str,
        running: T,
        configured: T,
    ) {
        if running != configured {
            out.push(NotApplied {
                setting,
                reason: ON_RESTART,
                running: Some(running.to_string()),
                configured: Some(configured.to_string()),
            });
        }
    }
    let mut out = Vec::new();
    let (old, s) = (&fixed.server, &new.server);
    changed(&mut out, "server.listen", old.listen, s.listen);
    changed(&mut out, "server.workers", old.workers, s.workers);
    changed(
        &mut out,
        "server.header_timeout_ms",
        old.header_timeout.as_millis(),
        s.header_timeout.as_millis(),
    );
    changed(
        &mut out,
        "server.request_log_size",
        old.request_log_size,
        s.request_log_size,
    );
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
    changed(
        &mut out,
        "admin.listen",
        show(fixed.admin_listen),
        show(new.admin.as_ref().map(|a| a.listen)),
    );
    match (&fixed.cluster, &new.cluster) {
        (None, None) => {}
        (Some(old), Some(c)) => {
            if old.redis_url != c.redis_url {
                // A secret (it may hold a password): named, never shown.
                out.push(NotApplied {
                    setting: "cluster.redis_url",
                    reason: ON_RESTART,
                    running: None,
                    configured: None,
                });
            }
            changed(
                &mut out,
                "cluster.key_prefix",
                &old.key_prefix,
                &c.key_prefix,
            );
            changed(
                &mut out,
                "cluster.local_share",
                old.local_share,
                c.local_share,
            );
        }
        (old, c) => {
            let show = |c: &Option<ClusterSettings>| if c.is_some() { "set" } else { "none" };
            changed(&mut out, "cluster", show(old), show(c));
        }
    }
    out
}

/// The result of the last reload, shown on the admin endpoint.
pub struct ReloadStatus {
    inner: Mutex<ReloadSnapshot>,
    fixed: Fixed,
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
    /// Settings in the file (as of the last successful reload) that differ from the running
    /// ones and only take effect on restart.
    pub not_applied: Vec<NotApplied>,
}

impl ReloadStatus {
    /// The status of a daemon started with `config` (generation 1).
    pub fn new(config: &Config) -> ReloadStatus {
        ReloadStatus {
            inner: Mutex::new(ReloadSnapshot {
                generation: 1,
                ..ReloadSnapshot::default()
            }),
            fixed: Fixed {
                server: config.server.clone(),
                admin_listen: config.admin.as_ref().map(|a| a.listen),
                cluster: config.cluster.clone(),
            },
        }
    }

    pub fn snapshot(&self) -> ReloadSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Re-reads the config file, validates it fully, and only then swaps it in. An invalid file
/// changes nothing but the reported status; a valid one also empties the inline-config cache
/// (its trees were compiled against the old config).
pub async fn reload(state: &AppState) -> Result<(), String> {
    let (supervisor, cur, status) = (&state.supervisor, &state.current, &state.reload);
    let path = current(cur).config.file.clone();
    notify(&[sd_notify::NotifyState::Reloading]);
    let result = match Config::load(&path) {
        Err(e) => Err(e.to_string()),
        Ok(new) => {
            let skipped = not_applied(&status.fixed, &new);
            supervisor
                .send(Reload(new))
                .await
                .map(|report| (report, skipped))
                .map_err(|e| e.to_string())
        }
    };
    notify(&[sd_notify::NotifyState::Ready]);
    metrics::counter!("llmux_reloads_total", "result" => if result.is_ok() { "ok" } else { "error" }).increment(1);
    let mut s = status.inner.lock().unwrap_or_else(|e| e.into_inner());
    s.last_attempt_unix_ms = Some(crate::actors::unix_ms());
    match result {
        Ok((report, skipped)) => {
            tracing::info!(generation = report.generation, kept = ?report.kept, started = ?report.started,
                retired = ?report.retired, "config reloaded");
            for n in &skipped {
                tracing::warn!(
                    setting = n.setting,
                    running = n.running.as_deref().unwrap_or("[redacted]"),
                    configured = n.configured.as_deref().unwrap_or("[redacted]"),
                    "setting changed in the config file but not applied by the reload: {}",
                    n.reason
                );
            }
            s.ok = Some(true);
            s.error = None;
            s.generation = report.generation;
            s.reloads += 1;
            s.report = Some(report);
            s.not_applied = skipped;
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
    let reload_status = Arc::new(ReloadStatus::new(&config));
    let (supervisor, cur) = Supervisor::start(config, cluster.clone());
    let (end_grace, grace_end) = GraceEnd::new();
    let state = web::Data::new(AppState {
        supervisor: supervisor.clone(),
        current: cur.clone(),
        log: Arc::new(RequestLog::new(server.request_log_size)),
        inline: crate::http::inline_cache(),
        cluster,
        reload: reload_status,
        grace_end,
    });

    let api_state = state.clone();
    let api_server = HttpServer::new(move || {
        // Runs on each worker's thread: its supervisor shard and memory purger live there too.
        actix_rt::spawn(crate::memory::purge_while_idle());
        App::new()
            .app_data(Supervisor::shard(api_state.current.clone()))
            .app_data(api_state.grace_end.for_this_worker())
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
    tracing::info!("stopped");
    Ok(())
}
