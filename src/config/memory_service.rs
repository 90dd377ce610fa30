//! The platform memory service (semantic search).

use std::time::Duration;

use super::setting::{Setting, Values};

settings! {
    /// The memory service's settings.
    pub struct MemoryServiceConfig {
        /// Base URL of the platform's memory service (semantic search calls `POST
        /// {url}/internal/memories/search`). Empty turns search off: it answers 503
        /// MEMORY_SERVICE_UNAVAILABLE.
        URL = text("IBEX_API_MEMORY_SERVICE_URL", "http://127.0.0.1:8020")
            => url: Option<String>, by Values::optional_http_url;
        /// Deadline of one memory-service search call; past it the answer is 503
        /// MEMORY_SERVICE_UNAVAILABLE. Must be below IBEX_API_REQUEST_TIMEOUT_MS.
        TIMEOUT = millis("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "2000", 1) => timeout: Duration;
    }
}
