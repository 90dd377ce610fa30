//! Memory exports as background jobs: the worker claims a pending job (or one whose worker died,
//! its lease run out) with `FOR UPDATE SKIP LOCKED`, so two replicas never run the same job;
//! keeps renewing its lease while it works; streams the matching memories from PostgreSQL (under
//! the job's organization, row-level security on) through an encoder into a multipart upload, so
//! memory use stays flat whatever the export's size; and records the row count, the size or a
//! failure code. A job that failed for a passing reason (the object store or the database away)
//! goes back to `pending` with an exponential backoff with jitter, for as long as its
//! [`RetryPolicy`] allows (by default ten minutes from its first start, so a routine restart of the
//! store, minutes long, fails no export); only then does it end `failed`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::model::{Filters, Memory};
use super::repo;
use crate::db::Database;
use crate::leased::{self, LeaseEnd, LeasedWorker};
use crate::storage::Storage;

/// How long a job keeps retrying, and how far apart its attempts may drift.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// From the job's first start: past it, a failed attempt fails the job for good.
    pub window: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// 1 s, 2 s, 4 s ... up to `max_backoff`, each between half and all of it (jitter), so the
    /// jobs that one outage failed together do not all come back in the same instant.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exponential = Duration::from_secs(1 << attempt.clamp(1, 20).saturating_sub(1));
        exponential
            .min(self.max_backoff)
            .mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Whether an attempt that failed after the job had been running `elapsed` may retry.
    pub fn allows(&self, elapsed: Duration) -> bool {
        elapsed < self.window
    }
}
/// S3's smallest multipart part; two in flight at most keeps an export's memory bounded.
const PART_BYTES: usize = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;
/// Encoded rows are handed to the upload in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;
/// How often the worker looks for jobs besides being woken by a request.
/// The export statement may run as long as the upload takes.
const STATEMENT_TIMEOUT_MS: &str = "600000";

/// Why a job did not succeed, as the code the job shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    ObjectStore,
    Database,
    /// Nothing a retry can mend (the stored filters no longer parse).
    Invalid,
    /// Another worker holds the job now (this one's lease ran out): leave it alone.
    LeaseLost,
}

impl Failure {
    fn code(self) -> &'static str {
        match self {
            Self::ObjectStore => "OBJECT_STORE_UNAVAILABLE",
            Self::Database => "DATABASE_UNAVAILABLE",
            Self::Invalid | Self::LeaseLost => "EXPORT_FAILED",
        }
    }
}

#[derive(Debug)]
pub struct Claimed {
    id: Uuid,
    org_id: Uuid,
    agent_id: Uuid,
    format: String,
    filters: Value,
    attempt: i32,
    /// How long ago the job's first attempt started, measured from the claim.
    started_ago: Duration,
    claimed: std::time::Instant,
}

impl crate::leased::Job for Claimed {
    fn id(&self) -> Uuid {
        self.id
    }
}

#[derive(Debug, Clone)]
pub struct ExportWorker {
    pub db: Database,
    pub storage: Option<Storage>,
    pub lease: Duration,
    pub retry: RetryPolicy,
}

impl LeasedWorker for ExportWorker {
    type Job = Claimed;
    const JOB: &'static str = "export";

    /// The oldest runnable job, now running under this worker's lease (as the login role: jobs
    /// of every organization).
    async fn claim(&self) -> Option<Claimed> {
        let mut conn = self.db.platform().await.ok()?;
        let row = sqlx::query(
            "UPDATE ibex_core.memory_exports SET status = 'running', attempts = attempts + 1,
                 lease_until = now() + make_interval(secs => $1),
                 started_at = COALESCE(started_at, now())
             WHERE id = (
                 SELECT id FROM ibex_core.memory_exports
                 WHERE status IN ('pending', 'running')
                   AND (lease_until IS NULL OR lease_until <= now())
                 ORDER BY created_at
                 FOR UPDATE SKIP LOCKED
                 LIMIT 1)
             RETURNING id, org_id, agent_id, format, filters, attempts,
                 extract(epoch FROM now() - started_at)::float8 AS started_ago",
        )
        .bind(self.lease.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await
        .ok()??;
        Some(Claimed {
            id: row.get("id"),
            org_id: row.get("org_id"),
            agent_id: row.get("agent_id"),
            format: row.get("format"),
            filters: row.get("filters"),
            attempt: row.get("attempts"),
            started_ago: Duration::from_secs_f64(row.get::<f64, _>("started_ago").max(0.0)),
            claimed: std::time::Instant::now(),
        })
    }

    async fn run(&self, job: Claimed) {
        tracing::info!(job_id = %job.id, org_id = %job.org_id, attempt = job.attempt, "export running");
        let outcome = tokio::select! {
            outcome = self.export(&job) => outcome,
            lost = self.keep_lease(&job) => Err(lost),
        };
        let recorded = match outcome {
            Ok((rows, bytes, key)) => {
                let recorded = self
                    .finish(
                        &job,
                        "UPDATE ibex_core.memory_exports SET status = 'succeeded', row_count = $3,
                             size_bytes = $4, object_key = $5, error = NULL, lease_until = NULL,
                             finished_at = now()
                         WHERE id = $1 AND attempts = $2",
                        Some((rows, bytes, key.clone())),
                        None,
                    )
                    .await;
                if matches!(recorded, Ok(0)) {
                    // The job went meanwhile (its organization is being deleted, or another
                    // worker took over): the file must not outlive it.
                    if let Some(storage) = &self.storage {
                        let _ = storage
                            .exports
                            .store()
                            .delete(&Path::from(key.as_str()))
                            .await;
                    }
                    tracing::warn!(job_id = %job.id, "export finished after its job was gone; file removed");
                } else {
                    tracing::info!(job_id = %job.id, rows, bytes, "export succeeded");
                }
                recorded.map(|_| ())
            }
            Err(Failure::LeaseLost) => {
                tracing::warn!(job_id = %job.id, "export lease lost; another worker has the job");
                Ok(())
            }
            Err(failure)
                if failure != Failure::Invalid
                    && self.retry.allows(job.started_ago + job.claimed.elapsed()) =>
            {
                let backoff = self.retry.backoff(job.attempt);
                tracing::warn!(job_id = %job.id, code = failure.code(), attempt = job.attempt,
                    backoff_ms = backoff.as_millis() as u64, "export failed; it is retried");
                self.finish(
                    &job,
                    "UPDATE ibex_core.memory_exports SET status = 'pending', error = $3,
                         lease_until = now() + make_interval(secs => $4)
                     WHERE id = $1 AND attempts = $2",
                    None,
                    Some((failure.code(), backoff.as_secs_f64())),
                )
                .await
                .map(|_| ())
            }
            Err(failure) => {
                tracing::warn!(job_id = %job.id, code = failure.code(), "export failed");
                self.finish(
                    &job,
                    "UPDATE ibex_core.memory_exports SET status = 'failed', error = $3,
                         lease_until = NULL, finished_at = now()
                     WHERE id = $1 AND attempts = $2",
                    None,
                    Some((failure.code(), 0.0)),
                )
                .await
                .map(|_| ())
            }
        };
        if let Err(problem) = recorded {
            // The lease runs out and the job is claimed again.
            tracing::warn!(job_id = %job.id, %problem, "export outcome not recorded");
        }
    }
}

impl ExportWorker {
    /// Records the outcome, only while this attempt still owns the job; returns whether it did
    /// (1) or not (0).
    async fn finish(
        &self,
        job: &Claimed,
        sql: &str,
        success: Option<(i64, i64, String)>,
        failure: Option<(&str, f64)>,
    ) -> Result<u64, String> {
        let mut conn = self.db.platform().await.map_err(|e| e.to_string())?;
        let mut query = sqlx::query(sql).bind(job.id).bind(job.attempt);
        if let Some((rows, bytes, key)) = success {
            query = query.bind(rows).bind(bytes).bind(key);
        }
        if let Some((code, backoff_secs)) = failure {
            query = query.bind(code);
            if sql.contains("$4") {
                query = query.bind(backoff_secs);
            }
        }
        query
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| crate::db::error::describe_unavailable(&e))
    }

    /// Keeps the lease while the export runs; the failure to record once it ends.
    async fn keep_lease(&self, job: &Claimed) -> Failure {
        const RENEW: &str = "UPDATE ibex_core.memory_exports
                             SET lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND attempts = $2 AND status = 'running'";
        match leased::keep(&self.db, RENEW, job.id, job.attempt, self.lease).await {
            LeaseEnd::Lost => Failure::LeaseLost,
            LeaseEnd::DatabaseAway => Failure::Database,
        }
    }

    /// Writes the file; returns (rows, bytes, object key).
    async fn export(&self, job: &Claimed) -> Result<(i64, i64, String), Failure> {
        let storage = self.storage.as_ref().ok_or(Failure::ObjectStore)?;
        let filters = Filters::from_json(&job.filters).map_err(|_| Failure::Invalid)?;
        let extension = if job.format == "csv" { "csv" } else { "ndjson" };
        let key = format!(
            "{}/memories/{}/{}.{extension}",
            job.org_id, job.agent_id, job.id
        );
        let mut tx = self
            .db
            .begin_for_job(job.org_id)
            .await
            .map_err(|_| Failure::Database)?;
        // One statement reads every row: one snapshot, a consistent file.
        tx.execute(
            "SELECT set_config('statement_timeout', $1, true)",
            &[&STATEMENT_TIMEOUT_MS],
        )
        .await
        .map_err(|_| Failure::Database)?;

        let mut upload = BufWriter::with_capacity(
            storage.exports.store(),
            Path::from(key.as_str()),
            PART_BYTES,
        )
        .with_max_concurrency(PARTS_IN_FLIGHT);
        let mut encoder = Encoder::new(&job.format);
        let mut rows = 0i64;
        let mut bytes = 0i64;
        // After `shutdown` (even a failed one) the writer must not be aborted: it panics.
        let mut shut_down = false;
        let written: Result<(), Failure> = async {
            let query = repo::export_query(job.org_id, job.agent_id, &filters);
            let read_failed = |e: crate::db::DbError| {
                tracing::warn!(job_id = %job.id, problem = %e.describe(), "export read failed");
                Failure::Database
            };
            let stream = tx
                .stream(query.text(), &query.params())
                .await
                .map_err(read_failed)?;
            let mut stream = std::pin::pin!(stream);
            while let Some(row) = stream.next().await {
                let memory = row
                    .map_err(crate::db::DbError::from)
                    .and_then(|row| <Memory as crate::db::FromRow>::from_row(&row))
                    .map_err(read_failed)?;
                encoder.encode(&memory);
                rows += 1;
                if encoder.pending() >= CHUNK_BYTES {
                    bytes += send(&mut encoder, &mut upload).await?;
                }
            }
            bytes += send(&mut encoder, &mut upload).await?;
            // Completes the multipart upload (or the single PUT of a small file).
            shut_down = true;
            upload.shutdown().await.map_err(|_| Failure::ObjectStore)
        }
        .await;
        drop(tx);
        match written {
            Ok(()) => Ok((rows, bytes, key)),
            Err(failure) => {
                if !shut_down {
                    let _ = upload.abort().await;
                }
                Err(failure)
            }
        }
    }
}

/// A line of an NDJSON export: the `Memory` shape without `metadata`.
#[derive(Serialize)]
struct Exported<'a> {
    id: Uuid,
    agent_id: Uuid,
    session_id: Option<Uuid>,
    content: &'a str,
    category: &'a str,
    source: &'a str,
    status: &'a str,
    confidence: f32,
    retrieval_count: i32,
    #[serde(serialize_with = "crate::wire::time::rfc3339_opt")]
    last_retrieved_at: Option<DateTime<Utc>>,
    tags: &'a [String],
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    updated_at: DateTime<Utc>,
}

impl<'a> From<&'a Memory> for Exported<'a> {
    fn from(m: &'a Memory) -> Self {
        Self {
            id: m.id,
            agent_id: m.agent_id,
            session_id: m.session_id,
            content: &m.content,
            category: &m.category,
            source: &m.source,
            status: &m.status,
            confidence: m.confidence,
            retrieval_count: m.retrieval_count,
            last_retrieved_at: m.last_retrieved_at,
            tags: &m.tags,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Uploads what the encoder holds; returns how many bytes that was.
async fn send(encoder: &mut Encoder, upload: &mut BufWriter) -> Result<i64, Failure> {
    let chunk = encoder.take();
    upload
        .write_all(&chunk)
        .await
        .map_err(|_| Failure::ObjectStore)?;
    Ok(chunk.len() as i64)
}

/// Turns memories into the export's bytes: CSV (RFC 4180, a header row, CRLF) or NDJSON.
enum Encoder {
    Csv(Box<csv::Writer<Vec<u8>>>),
    Json(Vec<u8>),
}

/// Columns of the CSV, in order (docs/domains/memories.md).
pub const CSV_COLUMNS: [&str; 7] = [
    "id",
    "category",
    "content",
    "confidence",
    "source",
    "created_at",
    "retrieval_count",
];

/// A spreadsheet runs a cell that starts like a formula; prefixing `'` makes it text (OWASP's
/// CSV injection guidance).
pub fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(2 * CHUNK_BYTES))
}

impl Encoder {
    fn new(format: &str) -> Self {
        if format == "csv" {
            let mut writer = csv_writer();
            writer
                .write_record(CSV_COLUMNS)
                .expect("writing to memory does not fail");
            Self::Csv(Box::new(writer))
        } else {
            Self::Json(Vec::with_capacity(2 * CHUNK_BYTES))
        }
    }

    fn encode(&mut self, memory: &Memory) {
        match self {
            Self::Csv(writer) => {
                let id = memory.id.to_string();
                let confidence = memory.confidence.to_string();
                let created_at = memory
                    .created_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true);
                let retrievals = memory.retrieval_count.to_string();
                let cells = [
                    defuse(&id),
                    defuse(&memory.category),
                    defuse(&memory.content),
                    defuse(&confidence),
                    defuse(&memory.source),
                    defuse(&created_at),
                    defuse(&retrievals),
                ];
                writer
                    .write_record(cells.iter().map(|cell| cell.as_bytes()))
                    .expect("writing to memory does not fail");
            }
            Self::Json(buffer) => {
                serde_json::to_writer(&mut *buffer, &Exported::from(memory))
                    .expect("writing to memory does not fail");
                buffer.push(b'\n');
            }
        }
    }

    fn pending(&self) -> usize {
        match self {
            Self::Csv(writer) => writer.get_ref().len(),
            Self::Json(buffer) => buffer.len(),
        }
    }

    /// The bytes encoded so far, leaving the encoder empty.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Self::Csv(writer) => std::mem::replace(writer.as_mut(), csv_writer())
                .into_inner()
                .expect("flushing to memory does not fail"),
            Self::Json(buffer) => std::mem::take(buffer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(defuse(cell), format!("'{cell}"));
        }
        assert_eq!(defuse("plain = text"), "plain = text");
        assert_eq!(defuse(""), "");
    }

    #[test]
    fn retries_back_off_with_jitter_and_outlast_a_two_minute_outage() {
        let policy = RetryPolicy {
            window: Duration::from_secs(600),
            max_backoff: Duration::from_secs(30),
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)] {
            let wait = policy.backoff(attempt);
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
        // Even with every wait at its longest, attempts keep coming through a 2-minute outage:
        // the window, not an attempt count, ends the job.
        let mut elapsed = Duration::ZERO;
        let mut attempt = 1;
        while elapsed < Duration::from_secs(120) {
            assert!(policy.allows(elapsed), "gave up at {elapsed:?}");
            elapsed += Duration::from_secs(30).min(Duration::from_secs(1 << (attempt - 1).min(10)));
            attempt += 1;
        }
        assert!(!policy.allows(Duration::from_secs(600)));
    }
}

/// Export jobs waiting and running, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub pending: i64,
    pub running: i64,
    /// Age of the oldest job not finished yet; 0 when none.
    pub oldest_age_secs: f64,
}

/// One statement on the claim index (partial: unfinished jobs only), across organizations.
pub async fn queue_depth(db: &Database) -> Result<QueueDepth, crate::error::ApiError> {
    let mut conn = db.platform().await?;
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                count(*) FILTER (WHERE status = 'running') AS running,
                coalesce(extract(epoch FROM now() - min(created_at))::float8, 0) AS age
         FROM ibex_core.memory_exports WHERE status IN ('pending', 'running')",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(QueueDepth {
        pending: row.get("pending"),
        running: row.get("running"),
        oldest_age_secs: row.get("age"),
    })
}

/// The export queue, for `/metrics`.
#[derive(Debug)]
pub struct ExportQueueSampler(pub Database);

impl crate::observability::metrics::Sampler for ExportQueueSampler {
    fn sample(&self) -> futures_util::future::BoxFuture<'_, ()> {
        use crate::observability::metrics::{EXPORT_OLDEST_AGE, EXPORT_QUEUE};
        Box::pin(async move {
            let answer =
                tokio::time::timeout(Duration::from_millis(500), queue_depth(&self.0)).await;
            if let Ok(Ok(depth)) = answer {
                metrics::gauge!(EXPORT_QUEUE, "status" => "pending").set(depth.pending as f64);
                metrics::gauge!(EXPORT_QUEUE, "status" => "running").set(depth.running as f64);
                metrics::gauge!(EXPORT_OLDEST_AGE).set(depth.oldest_age_secs);
            }
        })
    }
}
