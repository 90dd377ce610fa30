//! How long deleted rows are kept before they are removed for good.

use std::time::Duration;

use super::setting::{Setting, Values};

settings! {
    /// The retention sweep's settings.
    pub struct RetentionConfig {
        /// Days a row deleted through the API (an agent, a user, a memory, a session) is kept,
        /// marked and invisible to every read, before a background sweep removes it for good (GDPR
        /// storage limitation).
        DAYS = number("IBEX_API_DELETED_RETENTION_DAYS", "30", 1, 3650)
            => deleted_rows: Duration, by Values::days;
        /// How often the retention sweep runs (each run works in batches of 1,000 rows).
        SWEEP_EVERY = millis("IBEX_API_RETENTION_SWEEP_MS", "3600000", 100) => sweep_every: Duration;
    }
}
