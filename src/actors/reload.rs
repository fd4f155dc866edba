//! What a reload is measured against and what it reports: the settings fixed at start that a
//! reload cannot change ([`not_applied`]), and the status of the last reload shown on
//! `/admin/reload`. The root [`super::supervisor::Supervisor`] owns one [`ReloadStatus`] and
//! updates it on every [`super::supervisor::ReloadFile`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::supervisor::ReloadReport;
use crate::config::{ClusterSettings, Config, ConfigError, ServerSettings};

/// Loads and fully validates a config file: the config itself, then what only the providers
/// can check (their upstream URLs). `check-config`, start and every reload accept exactly this.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    crate::providers::check(&config)?;
    Ok(config)
}

/// The settings fixed when the daemon started (listeners, workers, the cluster connection):
/// what a reload is compared with to report what it cannot apply.
pub struct Fixed {
    server: ServerSettings,
    admin_listen: Option<SocketAddr>,
    cluster: Option<ClusterSettings>,
    telemetry: Option<crate::config::TelemetrySettings>,
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
pub fn not_applied(fixed: &Fixed, new: &Config) -> Vec<NotApplied> {
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
    // The exporter is installed with the process's log output, once.
    let url = |t: &Option<crate::config::TelemetrySettings>| {
        t.as_ref().map_or_else(
            || "none".to_owned(),
            |t| crate::config::redact_userinfo(&t.traces_url).into_owned(),
        )
    };
    if fixed.telemetry != new.telemetry {
        changed(
            &mut out,
            "telemetry",
            url(&fixed.telemetry),
            url(&new.telemetry),
        );
        if url(&fixed.telemetry) == url(&new.telemetry) {
            changed(
                &mut out,
                "telemetry",
                "running settings",
                "changed settings",
            );
        }
    }
    out
}

/// The result of the last reload, shown on the admin endpoint.
pub struct ReloadStatus {
    inner: Mutex<ReloadSnapshot>,
    pub(super) fixed: Fixed,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadSnapshot {
    pub last_attempt_unix_ms: Option<u64>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub generation: u64,
    pub reloads: u64,
    pub failures: u64,
    pub report: Option<ReloadReport>,
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
                telemetry: config.telemetry.clone(),
            },
        }
    }

    pub fn snapshot(&self) -> ReloadSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ReloadStatus {
    /// Records a reload's outcome: logged, counted and kept for `/admin/reload`.
    pub fn record(&self, result: &Result<(ReloadReport, Vec<NotApplied>), String>) {
        metrics::counter!("llmux_reloads_total", "result" => if result.is_ok() { "ok" } else { "error" })
            .increment(1);
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.last_attempt_unix_ms = Some(crate::clock::unix_ms());
        match result {
            Ok((report, skipped)) => {
                tracing::info!(generation = report.generation, kept = ?report.kept,
                    started = ?report.started, retired = ?report.retired, "config reloaded");
                for n in skipped {
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
                s.report = Some(report.clone());
                s.not_applied = skipped.clone();
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload rejected; keeping the running config");
                s.ok = Some(false);
                s.error = Some(e.clone());
                s.failures += 1;
            }
        }
    }
}
