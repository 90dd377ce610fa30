//! The memory-export worker.

use std::time::Duration;

use super::setting::Setting;

settings! {
    /// The memory-export worker's settings.
    pub struct ExportConfig {
        /// Lease of a running export job, renewed by its worker every third of it; a job whose
        /// worker died is taken up again once its lease ran out.
        LEASE = millis("IBEX_API_EXPORT_LEASE_MS", "30000", 300) => lease: Duration;
        /// How long a memory export keeps retrying after the object store or the database failed
        /// it, from its first start (10 minutes: a store restart of a few minutes fails no export).
        /// Past it the job ends `failed`.
        RETRY_WINDOW = millis("IBEX_API_EXPORT_RETRY_WINDOW_MS", "600000", 0)
            => retry_window: Duration;
        /// Longest wait between two attempts of an export; waits start at 1 s and double, each with
        /// jitter (between half and all of it).
        RETRY_MAX_BACKOFF = millis("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", "30000", 100)
            => retry_max_backoff: Duration;
    }
}
