//! Data-protection work: the organization-deletion job and the data-request worker.

use std::time::Duration;

use super::setting::{Setting, Values};

settings! {
    /// The organization-deletion job's and the data-request worker's settings.
    pub struct GdprConfig {
        /// Rows the organization-deletion job removes per transaction, and items a data request
        /// erases per batch.
        BATCH_SIZE = number("IBEX_API_GDPR_BATCH_SIZE", "1000", 1, 100_000) => batch_size: u32;
        /// Pause between two batches of the organization-deletion job, to spare the database on
        /// large organizations.
        BATCH_PAUSE = millis("IBEX_API_GDPR_BATCH_PAUSE_MS", "0", 0) => batch_pause: Duration;
        /// Days an access request's archive is kept in the object store; then it is deleted and
        /// `GET …/archive` answers 410.
        ARCHIVE_DAYS = number("IBEX_API_DATA_REQUEST_ARCHIVE_DAYS", "7", 1, 365)
            => archive_ttl: Duration, by Values::days;
        /// Lease of a data request being worked on, renewed by its worker every third of it; a
        /// request whose worker died is taken up again once its lease ran out.
        LEASE = millis("IBEX_API_DATA_REQUEST_LEASE_MS", "30000", 300) => lease: Duration;
        /// Longest wait between two attempts of a data request while a store is unreachable; waits
        /// start at 1 s and double, each with jitter. A request waits as long as it takes: it never
        /// ends while anything remains.
        RETRY_MAX = millis("IBEX_API_DATA_REQUEST_RETRY_MAX_MS", "60000", 100) => retry_max: Duration;
        /// 1 runs the data-request worker on this replica; 0 leaves the work to the other replicas
        /// (this one still accepts requests and answers about them).
        WORKER = number("IBEX_API_DATA_REQUEST_WORKER", "1", 0, 1) => worker: bool, by Values::switch;
    }
}
