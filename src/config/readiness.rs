//! `/ready`: how long each check may take and how long a result is reused.

use std::time::Duration;

use super::setting::Setting;

settings! {
    /// `/ready`'s settings.
    pub struct ReadinessConfig {
        /// Deadline of each /ready check.
        CHECK_TIMEOUT = millis("IBEX_API_READY_CHECK_TIMEOUT_MS", "500", 1) => check_timeout: Duration;
        /// How long a /ready result is served again before the checks re-run. /ready needs no token:
        /// this bounds the auth-service probes anyone can cause to one per period. 0 re-runs them
        /// every time.
        CACHE = millis("IBEX_API_READY_CACHE_MS", "1000", 0) => cache: Duration;
    }
}
