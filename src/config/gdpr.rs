//! Data-protection work: the organization-deletion job and the data-request worker.

use std::time::Duration;

use super::ConfigError;
use super::setting::{Setting, Values};

settings! {
    /// Rows the organization-deletion job removes per transaction, and items a data request
    /// erases per batch.
    BATCH_SIZE = number("IBEX_API_GDPR_BATCH_SIZE", "1000", 1, 100_000);
    /// Pause between two batches of the organization-deletion job, to spare the database on large
    /// organizations.
    BATCH_PAUSE = millis("IBEX_API_GDPR_BATCH_PAUSE_MS", "0", 0);
    /// Days an access request's archive is kept in the object store; then it is deleted and
    /// `GET …/archive` answers 410.
    ARCHIVE_DAYS = number("IBEX_API_DATA_REQUEST_ARCHIVE_DAYS", "7", 1, 365);
    /// Lease of a data request being worked on, renewed by its worker every third of it; a
    /// request whose worker died is taken up again once its lease ran out.
    LEASE = millis("IBEX_API_DATA_REQUEST_LEASE_MS", "30000", 300);
    /// Longest wait between two attempts of a data request while a store is unreachable; waits
    /// start at 1 s and double, each with jitter. A request waits as long as it takes: it never
    /// ends while anything remains.
    RETRY_MAX = millis("IBEX_API_DATA_REQUEST_RETRY_MAX_MS", "60000", 100);
    /// 1 runs the data-request worker on this replica; 0 leaves the work to the other replicas
    /// (this one still accepts requests and answers about them).
    WORKER = number("IBEX_API_DATA_REQUEST_WORKER", "1", 0, 1);
}

#[derive(Debug, Clone)]
pub struct GdprConfig {
    pub batch_size: u32,
    pub batch_pause: Duration,
    pub archive_ttl: Duration,
    pub lease: Duration,
    pub retry_max: Duration,
    pub worker: bool,
}

impl GdprConfig {
    pub(super) fn read(v: &Values) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: v.number(&BATCH_SIZE)? as u32,
            batch_pause: v.millis(&BATCH_PAUSE)?,
            archive_ttl: Duration::from_secs(v.number(&ARCHIVE_DAYS)? * 86_400),
            lease: v.millis(&LEASE)?,
            retry_max: v.millis(&RETRY_MAX)?,
            worker: v.number(&WORKER)? == 1,
        })
    }
}
