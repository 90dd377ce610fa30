//! The organization-deletion job.

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Rows the organization-deletion job removes per transaction.
    BATCH_SIZE = number("IBEX_API_GDPR_BATCH_SIZE", "1000", 1, 100_000);
    /// Pause between two batches of the organization-deletion job, to spare the database on large
    /// organizations.
    BATCH_PAUSE = millis("IBEX_API_GDPR_BATCH_PAUSE_MS", "0", 0);
}

#[derive(Debug, Clone)]
pub struct GdprConfig {
    pub batch_size: u32,
    pub batch_pause: Duration,
}

impl GdprConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: v.number(&BATCH_SIZE)? as u32,
            batch_pause: v.millis(&BATCH_PAUSE)?,
        })
    }
}
