//! The ClickHouse trace store the analytics read.

use std::time::Duration;

use super::ConfigError;
use super::secret::Secret;
use super::setting::{Setting, Values};

settings! {
    /// HTTP endpoint of the ClickHouse trace store the analytics read (`ibex.llm_traces`). Empty
    /// turns analytics off: they answer 503 ANALYTICS_UNAVAILABLE.
    URL = text("IBEX_API_CLICKHOUSE_URL", "http://127.0.0.1:8123");
    /// Database holding `llm_traces`.
    DATABASE = text("IBEX_API_CLICKHOUSE_DATABASE", "ibex");
    /// ClickHouse user.
    USER = text("IBEX_API_CLICKHOUSE_USER", "default");
    /// ClickHouse password. Never logged.
    PASSWORD = text("IBEX_API_CLICKHOUSE_PASSWORD", "");
    /// Deadline of one analytics query (sent as `max_execution_time` and enforced by the client);
    /// past it the answer is 503 ANALYTICS_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
    QUERY_TIMEOUT = millis("IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS", "5000", 1);
}

/// The trace store's settings.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub query_timeout: Duration,
}

impl ClickHouseConfig {
    /// `None` when no URL is set: analytics answer 503.
    pub(super) fn read(v: &Values) -> Result<Option<Self>, ConfigError> {
        let Some(url) = v.optional_http_url(&URL)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            url,
            database: v.get(&DATABASE).to_owned(),
            user: v.get(&USER).to_owned(),
            password: Secret::new(v.get(&PASSWORD)),
            query_timeout: v.millis(&QUERY_TIMEOUT)?,
        }))
    }
}
