//! Logs and metrics.

use std::net::SocketAddr;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// `json` (one JSON object per line, for production) or `text` (readable, for development).
    /// `--dev` defaults to `text`.
    LOG_FORMAT = text("IBEX_API_LOG_FORMAT", "json");
    /// Log filter: a level (`debug`) or tracing directives (`info,ibex_api=debug`).
    LOG_LEVEL = text("IBEX_API_LOG_LEVEL", "info");
    /// Address of the Prometheus listener (`GET /metrics`), separate from the API port. Empty turns
    /// metrics off.
    METRICS_ADDR = text("IBEX_API_METRICS_ADDR", "0.0.0.0:9464");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// `None` when the variable is unset, so a dev run can pick its own default.
    pub log_format: Option<LogFormat>,
    pub log_level: String,
    /// `None`: no metrics listener and no recorder.
    pub metrics_addr: Option<SocketAddr>,
}

impl ObservabilityConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        let log_format = match v.given(&LOG_FORMAT) {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("text") => Some(LogFormat::Text),
            Some(_) => return Err(LOG_FORMAT.error("expected `json` or `text`")),
        };
        let log_level = v.get(&LOG_LEVEL).to_owned();
        tracing_subscriber::EnvFilter::builder()
            .parse(&log_level)
            .map_err(|e| LOG_LEVEL.error(format!("not a log filter: {e}")))?;
        let metrics_addr = match v.get(&METRICS_ADDR) {
            "" => None,
            _ => Some(v.parse(&METRICS_ADDR, "IP:PORT such as 0.0.0.0:9464")?),
        };
        Ok(Self {
            log_format,
            log_level,
            metrics_addr,
        })
    }
}
