//! `/ready`: how long each check may take and how long a result is reused.

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Deadline of each /ready check.
    CHECK_TIMEOUT = millis("IBEX_API_READY_CHECK_TIMEOUT_MS", "500", 1);
    /// How long a /ready result is served again before the checks re-run. /ready needs no token:
    /// this bounds the auth-service probes anyone can cause to one per period. 0 re-runs them every
    /// time.
    CACHE = millis("IBEX_API_READY_CACHE_MS", "1000", 0);
}

#[derive(Debug, Clone)]
pub struct ReadinessConfig {
    pub check_timeout: Duration,
    pub cache: Duration,
}

impl ReadinessConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        Ok(Self {
            check_timeout: v.millis(&CHECK_TIMEOUT)?,
            cache: v.millis(&CACHE)?,
        })
    }
}
