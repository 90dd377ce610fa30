//! Logs and metrics.

use std::net::SocketAddr;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Where logs and metrics go.
    pub struct ObservabilityConfig {
        /// `json` (one JSON object per line, for production) or `text` (readable, for
        /// development). `--dev` defaults to `text`.
        LOG_FORMAT = text("IBEX_API_LOG_FORMAT", "json")
            => log_format: Option<LogFormat>, by log_format;
        /// Log filter: a level (`debug`) or tracing directives (`info,ibex_api=debug`).
        LOG_LEVEL = text("IBEX_API_LOG_LEVEL", "info") => log_level: String, by log_filter;
        /// Address of the Prometheus listener (`GET /metrics`), separate from the API port. Empty
        /// turns metrics off.
        METRICS_ADDR = text("IBEX_API_METRICS_ADDR", "0.0.0.0:9464")
            => metrics_addr: Option<SocketAddr>, by metrics_addr;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// `None` when the variable is unset, so a dev run can pick its own default.
fn log_format(v: &Values, setting: &Setting) -> Result<Option<LogFormat>, ConfigError> {
    match v.given(setting) {
        None => Ok(None),
        Some("json") => Ok(Some(LogFormat::Json)),
        Some("text") => Ok(Some(LogFormat::Text)),
        Some(_) => Err(setting.error("expected `json` or `text`")),
    }
}

fn log_filter(v: &Values, setting: &Setting) -> Result<String, ConfigError> {
    let filter = v.get(setting);
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| setting.error(format!("not a log filter: {e}")))?;
    Ok(filter.to_owned())
}

/// `None`: no metrics listener and no recorder.
fn metrics_addr(v: &Values, setting: &Setting) -> Result<Option<SocketAddr>, ConfigError> {
    match v.get(setting) {
        "" => Ok(None),
        _ => v.parse(setting, "IP:PORT such as 0.0.0.0:9464").map(Some),
    }
}
