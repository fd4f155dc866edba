//! `[telemetry]`: where and how OpenTelemetry traces are exported, validated once at load.

use std::time::Duration;

use super::{raw, redact_userinfo, ConfigError};

/// `[telemetry]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// The full OTLP/HTTP traces URL.
    pub traces_url: String,
    pub service_name: String,
    pub capture_content: bool,
    pub sample_ratio: f64,
    pub batch_delay: Duration,
    pub export_timeout: Duration,
    pub max_queue: usize,
}

impl TelemetrySettings {
    pub(super) fn compile(
        raw: &raw::RawTelemetry,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<TelemetrySettings, ConfigError> {
        let url = raw.otlp_endpoint.trim();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.contains(char::is_whitespace) {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                format!(
                    "`{}` is not an http:// or https:// URL; give the collector's OTLP/HTTP \
                     address, e.g. \"http://127.0.0.1:4318\"",
                    redact_userinfo(url)
                ),
            ));
        }
        let base = url.trim_end_matches('/');
        let traces_url = if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        };
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                "sample_ratio must be from 0 to 1".into(),
            ));
        }
        let max_queue = raw.max_queue.unwrap_or(4096);
        if !(1..=1_000_000).contains(&max_queue) {
            return Err(invalid(
                "telemetry.max_queue",
                "max_queue must be from 1 to 1000000".into(),
            ));
        }
        let ms = |v: Option<u64>, default: u64, what: &str| match v.unwrap_or(default) {
            n @ 1..=600_000 => Ok(Duration::from_millis(n)),
            _ => Err(invalid(
                &format!("telemetry.{what}"),
                format!("{what} must be from 1 to 600000"),
            )),
        };
        Ok(TelemetrySettings {
            traces_url,
            service_name: raw
                .service_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "llmux".to_owned()),
            capture_content: raw.capture_content.unwrap_or(false),
            sample_ratio,
            batch_delay: ms(raw.batch_delay_ms, 2_000, "batch_delay_ms")?,
            export_timeout: ms(raw.export_timeout_ms, 5_000, "export_timeout_ms")?,
            max_queue,
        })
    }
}
