//! The platform memory service (semantic search).

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Base URL of the platform's memory service (semantic search calls `POST
    /// {url}/internal/memories/search`). Empty turns search off: it answers 503
    /// MEMORY_SERVICE_UNAVAILABLE.
    URL = text("IBEX_API_MEMORY_SERVICE_URL", "http://127.0.0.1:8020");
    /// Deadline of one memory-service search call; past it the answer is 503
    /// MEMORY_SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
    TIMEOUT = millis("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "2000", 1);
}

#[derive(Debug, Clone)]
pub struct MemoryServiceConfig {
    /// `None` turns search off (503).
    pub url: Option<String>,
    pub timeout: Duration,
}

impl MemoryServiceConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        Ok(Self {
            url: v.optional_http_url(&URL)?,
            timeout: v.millis(&TIMEOUT)?,
        })
    }
}
