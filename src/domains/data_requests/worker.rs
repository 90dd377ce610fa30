//! The worker that carries data requests through their statuses.
//!
//! A request is claimed by one replica at a time (`FOR UPDATE SKIP LOCKED` under a lease the
//! worker keeps renewing; every write is fenced by the claim's `attempts`, so a worker that lost
//! its lease changes nothing). `planning` freezes the items in one transaction; `running` works
//! through the frozen items store by store in batches, each batch marked done in the transaction
//! that deletes it (or right after an external store confirmed it), so a restart resumes where it
//! stopped and repeats nothing. After a store's work its items are counted again where they live;
//! anything left sends the store back to work. While a store is unreachable the request stays
//! `running`, shows that store's last error, and is retried with a backoff: it never succeeds
//! with anything left.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;
use uuid::Uuid;

use super::archive;
use super::model::{DataRequestType, StoreProgress, Subject, SubjectKind, hex};
use super::plan::{self, Location, Store};
use super::receipt::{self, Facts};
use crate::db::Database;
use crate::domains::analytics::store::TraceStore;
use crate::domains::organizations::deletion::{describe, in_org};
use crate::leased::{self, LeasedWorker};
use crate::signing::SigningKeys;
use crate::storage::Storage;

/// How often the worker looks for work besides being woken.
/// How soon an organization's erasure looks again at its deletion job's progress.
const DELETION_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DataRequestWorker {
    pub db: Database,
    pub storage: Option<Storage>,
    pub traces: Option<TraceStore>,
    pub signing: Arc<SigningKeys>,
    /// Wakes this worker (a request created or confirmed).
    pub wake: Arc<Notify>,
    /// Wakes the organization-deletion job (an organization's erasure runs through it).
    pub deletions: Arc<Notify>,
    pub lease: Duration,
    /// The longest wait between two attempts while a store is unreachable.
    pub retry_max: Duration,
    /// How long an access archive is kept.
    pub archive_ttl: Duration,
    /// Items per batch.
    pub batch_size: i64,
}

/// A claimed request.
#[derive(Debug, Clone)]
pub struct Claimed {
    id: Uuid,
    org_id: Uuid,
    kind: DataRequestType,
    subject: Option<Subject>,
    subject_kind: String,
    commitment: String,
    status: String,
    attempt: i32,
    confirmed: bool,
    received_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    progress: BTreeMap<String, StoreProgress>,
    items_digest: Option<String>,
    /// The API request that last moved it: the worker's events name it.
    caused_by: Option<Uuid>,
}

impl crate::leased::Job for Claimed {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl Claimed {
    fn subject_kind(&self) -> SubjectKind {
        match self.subject_kind.as_str() {
            "organization" => SubjectKind::Organization,
            "user" => SubjectKind::User,
            _ => SubjectKind::EndUser,
        }
    }
}

/// Why an attempt stopped before the end.
#[derive(Debug)]
enum Stop {
    /// A store could not be reached: wait and retry, showing its error.
    Unreachable { store: String, kind: String },
    /// Nothing wrong; look again after this long (an organization's deletion under way, a
    /// trace mutation still applying).
    Later(Duration),
    /// Another worker holds the request now, or it was canceled: leave it.
    Lost,
}

impl From<plan::Unreachable> for Stop {
    fn from(u: plan::Unreachable) -> Self {
        Self::Unreachable {
            store: u.store.into(),
            kind: u.kind,
        }
    }
}

/// [`in_org`], a failure of the database a stop.
async fn in_org_or_stop<T>(
    conn: &mut PgConnection,
    org_id: Uuid,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, Stop> {
    in_org(conn, org_id, work).await.map_err(db_stop)
}

fn db_stop(e: impl ToString) -> Stop {
    Stop::Unreachable {
        store: "postgresql".into(),
        kind: e.to_string(),
    }
}

impl DataRequestWorker {
    /// Publishes a status on Redis through the outbox (status only).
    async fn announce(&self, conn: &mut PgConnection, job: &Claimed, status: &'static str) {
        let (org, id, cause) = (job.org_id, job.id, job.caused_by);
        let _ = in_org(conn, org, async move |tx| {
            outbox(tx, org, id, status, cause).await
        })
        .await;
        self.db.outbox_wake().notify_one();
    }
}

impl LeasedWorker for DataRequestWorker {
    type Job = Claimed;
    const JOB: &'static str = "data request";

    async fn before_claims(&self) {
        self.purge_expired_archives().await;
    }

    /// The oldest request with work to do whose lease (or backoff) is over, now this worker's.
    async fn claim(&self) -> Option<Claimed> {
        let mut conn = self.db.platform().await.ok()?;
        let row = sqlx::query(
            "UPDATE ibex_core.data_requests
             SET attempts = attempts + 1, lease_until = now() + make_interval(secs => $1),
                 status = CASE status WHEN 'received' THEN 'planning' ELSE status END
             WHERE id = (
                 SELECT id FROM ibex_core.data_requests
                 WHERE status IN ('received', 'planning', 'running')
                   AND (lease_until IS NULL OR lease_until <= now())
                 ORDER BY created_at
                 FOR UPDATE SKIP LOCKED
                 LIMIT 1)
             RETURNING id, org_id, type, subject, subject_kind, subject_commitment, status,
                 attempts, confirmed_at IS NOT NULL AS confirmed, received_at, due_at, progress,
                 items_digest, request_id",
        )
        .bind(self.lease.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await
        .ok()??;
        let subject: Option<serde_json::Value> = row.get("subject");
        let status: String = row.get("status");
        let was_received = status == "planning";
        let claimed = Claimed {
            id: row.get("id"),
            org_id: row.get("org_id"),
            kind: if row.get::<String, _>("type") == "access" {
                DataRequestType::Access
            } else {
                DataRequestType::Erasure
            },
            subject: subject.and_then(|s| serde_json::from_value(s).ok()),
            subject_kind: row.get("subject_kind"),
            commitment: row.get("subject_commitment"),
            status,
            attempt: row.get("attempts"),
            confirmed: row.get("confirmed"),
            received_at: row.get("received_at"),
            due_at: row.get("due_at"),
            progress: serde_json::from_value(row.get("progress")).unwrap_or_default(),
            items_digest: row.get("items_digest"),
            caused_by: row.get("request_id"),
        };
        if was_received && claimed.attempt == 1 {
            self.announce(&mut conn, &claimed, "planning").await;
        }
        Some(claimed)
    }

    async fn run(&self, job: Claimed) {
        tracing::info!(request_id = %job.id, org_id = %job.org_id, status = %job.status, attempt = job.attempt, "data request step");
        let outcome = tokio::select! {
            outcome = self.step(&job) => outcome,
            () = self.keep_lease(&job) => Err(Stop::Lost),
        };
        let retry = match outcome {
            Ok(()) | Err(Stop::Lost) => return,
            Err(Stop::Later(after)) => (after, None),
            Err(Stop::Unreachable { store, kind }) => {
                tracing::warn!(request_id = %job.id, store = %store, problem = %kind, "data request waits for a store");
                (self.backoff(job.attempt), Some((store, kind)))
            }
        };
        let (after, problem) = retry;
        let Ok(mut conn) = self.db.platform().await else {
            return;
        };
        let mut progress = self.current_progress(&mut conn, &job).await;
        if let Some((store, kind)) = problem {
            let entry = progress.entry(store).or_default();
            entry.status = "waiting".into();
            entry.last_error = Some(kind);
        }
        let _ = sqlx::query(
            "UPDATE ibex_core.data_requests
             SET lease_until = now() + make_interval(secs => $3), progress = $4, updated_at = now()
             WHERE id = $1 AND attempts = $2",
        )
        .bind(job.id)
        .bind(job.attempt)
        .bind(after.as_secs_f64())
        .bind(serde_json::to_value(&progress).expect("progress serializes"))
        .execute(&mut *conn)
        .await;
    }
}

impl DataRequestWorker {
    async fn current_progress(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
    ) -> BTreeMap<String, StoreProgress> {
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT progress FROM ibex_core.data_requests WHERE id = $1",
        )
        .bind(job.id)
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten()
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_else(|| job.progress.clone())
    }

    /// 1 s, 2 s, 4 s … up to `retry_max`, with jitter.
    fn backoff(&self, attempt: i32) -> Duration {
        let exponential = Duration::from_secs(1 << attempt.clamp(1, 16).saturating_sub(1));
        exponential
            .min(self.retry_max)
            .mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Keeps the lease while the step runs; returns once it ends.
    async fn keep_lease(&self, job: &Claimed) {
        const RENEW: &str = "UPDATE ibex_core.data_requests
                             SET lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND attempts = $2 AND status IN ('planning', 'running')";
        leased::keep(&self.db, RENEW, job.id, job.attempt, self.lease).await;
    }

    /// Runs a step's writes in the organization's transaction, where `work` answers false when
    /// this attempt was overtaken (it wrote nothing); wakes the outbox for what the step enqueued.
    async fn fenced(
        &self,
        conn: &mut PgConnection,
        org: Uuid,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<bool, sqlx::Error>,
    ) -> Result<(), Stop> {
        if !in_org_or_stop(conn, org, work).await? {
            return Err(Stop::Lost);
        }
        self.db.outbox_wake().notify_one();
        Ok(())
    }

    async fn step(&self, job: &Claimed) -> Result<(), Stop> {
        let mut conn = self.db.platform().await.map_err(db_stop)?;
        match (job.status.as_str(), job.kind, job.subject_kind()) {
            ("planning", _, _) => self.plan(&mut conn, job).await,
            ("running", DataRequestType::Erasure, SubjectKind::Organization) => {
                self.erase_organization(&mut conn, job).await
            }
            ("running", DataRequestType::Erasure, _) => self.erase(&mut conn, job).await,
            ("running", DataRequestType::Access, _) => self.access(&mut conn, job).await,
            _ => Ok(()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Planning.

    async fn plan(&self, conn: &mut PgConnection, job: &Claimed) -> Result<(), Stop> {
        let subject = job.subject.clone().ok_or(Stop::Lost)?;
        let scope = plan::Scope {
            org_id: job.org_id,
            kind: job.kind,
            subject: &subject,
            storage: self.storage.as_ref(),
            traces: self.traces.as_ref(),
        };
        let planned = plan::plan(conn, scope).await.map_err(Stop::from)?;
        let digest = {
            let mut hasher = Sha256::new();
            let mut lines: Vec<String> = if planned.items.is_empty() {
                planned
                    .counts
                    .iter()
                    .map(|(s, n)| format!("{s}\t{n}\n"))
                    .collect()
            } else {
                planned
                    .items
                    .iter()
                    .map(|i| format!("{}\t{}\n", i.store, i.item))
                    .collect()
            };
            lines.sort();
            for line in lines {
                hasher.update(line.as_bytes());
            }
            hex(&hasher.finalize())
        };
        let stores = match job.kind {
            DataRequestType::Access => plan::access_stores(subject.kind),
            DataRequestType::Erasure => plan::erasure_stores(subject.kind),
        };
        let mut progress = BTreeMap::new();
        for store in &stores {
            if let Some(total) = planned.counts.get(store.name) {
                progress.insert(
                    store.name.to_owned(),
                    StoreProgress {
                        status: "pending".into(),
                        items_total: *total,
                        ..StoreProgress::default()
                    },
                );
            }
        }
        let next = match (&planned.rejection, job.kind) {
            (Some(_), _) => "rejected",
            (None, DataRequestType::Erasure) if !job.confirmed => "awaiting_confirmation",
            _ => "running",
        };
        let items = planned.items;
        let counts = serde_json::to_value(&planned.counts).expect("counts serialize");
        let progress = serde_json::to_value(&progress).expect("progress serializes");
        let rejection = planned.rejection;
        let (id, attempt, org_id, cause) = (job.id, job.attempt, job.org_id, job.caused_by);
        let batch = self.batch_size as usize;
        self.fenced(conn, job.org_id, async move |tx| {
            let moved = sqlx::query(
                "UPDATE ibex_core.data_requests
                 SET status = $3, rejection_code = $4, plan = $5, progress = $6,
                     items_digest = $7, lease_until = NULL, updated_at = now(),
                     completed_at = CASE WHEN $3 = 'rejected' THEN now() END
                 WHERE id = $1 AND attempts = $2 AND status = 'planning'",
            )
            .bind(id)
            .bind(attempt)
            .bind(next)
            .bind(rejection)
            .bind(if rejection.is_some() {
                None
            } else {
                Some(counts)
            })
            .bind(if rejection.is_some() {
                serde_json::json!({})
            } else {
                progress
            })
            .bind(digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(false);
            }
            for chunk in items.chunks(batch.max(1)) {
                let stores: Vec<&str> = chunk.iter().map(|i| i.store).collect();
                let keys: Vec<&str> = chunk.iter().map(|i| i.item.as_str()).collect();
                sqlx::query(
                    "INSERT INTO ibex_core.data_request_items (request_id, org_id, store, item)
                     SELECT $1, $2, s, i FROM unnest($3::text[], $4::text[]) AS x(s, i)
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(org_id)
                .bind(stores)
                .bind(keys)
                .execute(&mut *tx)
                .await?;
            }
            outbox(tx, org_id, id, next, cause).await?;
            Ok(true)
        })
        .await?;
        tracing::info!(request_id = %job.id, status = next, "data request planned");
        if next == "running" {
            self.wake.notify_one();
            // An organization's deletion waits for its erasure's plan.
            if subject.kind == SubjectKind::Organization {
                self.deletions.notify_one();
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Erasure of an end user or an operator.

    async fn erase(&self, conn: &mut PgConnection, job: &Claimed) -> Result<(), Stop> {
        let stores = plan::erasure_stores(job.subject_kind());
        let mut progress = job.progress.clone();
        let planned: Vec<Store> = stores
            .into_iter()
            .filter(|s| progress.contains_key(s.name))
            .collect();
        for store in &planned {
            loop {
                let batch = self.pending(conn, job, store.name).await?;
                if batch.is_empty() {
                    break;
                }
                self.erase_batch(conn, job, *store, &batch).await?;
                let entry = progress.entry(store.name.to_owned()).or_default();
                entry.status = "running".into();
                entry.items_done = (entry.items_done + batch.len() as i64).min(entry.items_total);
                entry.last_error = None;
                self.save_progress(conn, job, &progress).await?;
            }
            let remaining = self.remaining(conn, job, *store).await?;
            let entry = progress.entry(store.name.to_owned()).or_default();
            entry.remaining = Some(remaining);
            if remaining > 0 {
                // Back to work: the store keeps something (a trace mutation still applying).
                entry.status = "running".into();
                self.save_progress(conn, job, &progress).await?;
                match store.location {
                    // Queued for Redis: waited for, not done again; Redis may be away.
                    Location::HotCache => {
                        return Err(Stop::Unreachable {
                            store: store.name.into(),
                            kind: format!(
                                "{remaining} hot-cache removals not yet delivered to Redis"
                            ),
                        });
                    }
                    // A trace mutation still applying: waited for, not done again.
                    Location::Traces => {}
                    _ => self.reopen(conn, job, store.name).await?,
                }
                return Err(Stop::Later(Duration::from_secs(1)));
            }
            entry.status = "done".into();
            entry.items_done = entry.items_total;
            entry.last_error = None;
            self.save_progress(conn, job, &progress).await?;
        }
        self.finish(conn, job, &progress, None).await
    }

    /// Up to a batch of the store's items not done yet.
    async fn pending(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: &'static str,
    ) -> Result<Vec<String>, Stop> {
        self.items(conn, job, store, Some(self.batch_size)).await
    }

    /// Every item of the store.
    async fn all_items(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: &'static str,
    ) -> Result<Vec<String>, Stop> {
        self.items(conn, job, store, None).await
    }

    /// The store's items, in order: with `pending`, up to that many not done yet; else all.
    async fn items(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: &'static str,
        pending: Option<i64>,
    ) -> Result<Vec<String>, Stop> {
        let (id, org) = (job.id, job.org_id);
        in_org_or_stop(conn, org, async move |tx| {
            sqlx::query_scalar(
                "SELECT item FROM ibex_core.data_request_items
                 WHERE request_id = $1 AND store = $2 AND ($3::int8 IS NULL OR NOT done)
                 ORDER BY item LIMIT $3",
            )
            .bind(id)
            .bind(store)
            .bind(pending)
            .fetch_all(&mut *tx)
            .await
        })
        .await
    }

    async fn reopen(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: &'static str,
    ) -> Result<(), Stop> {
        let (id, org) = (job.id, job.org_id);
        in_org_or_stop(conn, org, async move |tx| {
            sqlx::query("UPDATE ibex_core.data_request_items SET done = false WHERE request_id = $1 AND store = $2")
                .bind(id)
                .bind(store)
                .execute(&mut *tx)
                .await
                .map(|_| ())
        }).await
    }

    async fn save_progress(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        progress: &BTreeMap<String, StoreProgress>,
    ) -> Result<(), Stop> {
        let moved = sqlx::query(
            "UPDATE ibex_core.data_requests SET progress = $3, updated_at = now()
             WHERE id = $1 AND attempts = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(job.attempt)
        .bind(serde_json::to_value(progress).expect("progress serializes"))
        .execute(&mut *conn)
        .await
        .map_err(|e| db_stop(describe(e)))?
        .rows_affected();
        if moved == 0 {
            return Err(Stop::Lost);
        }
        Ok(())
    }

    /// Erases one batch of a store and marks it done; fenced by the claim.
    async fn erase_batch(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: Store,
        batch: &[String],
    ) -> Result<(), Stop> {
        let unreachable = |kind: String| Stop::Unreachable {
            store: store.name.into(),
            kind,
        };
        match store.location {
            Location::Archives => {
                let storage = self
                    .storage
                    .as_ref()
                    .ok_or_else(|| unreachable("not configured".into()))?;
                for key in batch {
                    storage
                        .archives
                        .delete(key)
                        .await
                        .map_err(|e| unreachable(e.to_string()))?;
                }
                self.mark_done(conn, job, store.name, batch, None).await
            }
            Location::Exports => {
                let storage = self
                    .storage
                    .as_ref()
                    .ok_or_else(|| unreachable("not configured".into()))?;
                let keys = self.export_keys(conn, job, batch).await?;
                for key in keys {
                    storage
                        .exports
                        .delete(&key)
                        .await
                        .map_err(|e| unreachable(e.to_string()))?;
                }
                let sql = ErasedTable::find(store.name).erase_sql();
                self.mark_done(conn, job, store.name, batch, Some(sql))
                    .await
            }
            Location::Traces => {
                let traces = self
                    .traces
                    .as_ref()
                    .ok_or_else(|| unreachable("not configured".into()))?;
                let sessions = self.session_ids(conn, job).await?;
                traces
                    .delete_sessions(job.org_id, &sessions)
                    .await
                    .map_err(unreachable)?;
                self.mark_done(conn, job, store.name, batch, None).await
            }
            Location::HotCache => {
                self.mark_done(conn, job, store.name, batch, Some(HOT_CACHE.into()))
                    .await
            }
            // Tokens are revoked at confirmation (on the confirming owner's behalf); one not
            // revoked then stays counted in `remaining`.
            Location::Auth => Ok(()),
            Location::Table => {
                let sql = ErasedTable::find(store.name).erase_sql();
                self.mark_done(conn, job, store.name, batch, Some(sql))
                    .await
            }
        }
    }

    /// Marks `batch` done, running `sql` (`$1` the organization, `$2` the batch's items) in the
    /// same transaction; nothing when this worker lost the request.
    async fn mark_done(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: &'static str,
        batch: &[String],
        sql: Option<Cow<'static, str>>,
    ) -> Result<(), Stop> {
        let (id, org, attempt, cause) = (job.id, job.org_id, job.attempt, job.caused_by);
        let batch = batch.to_vec();
        let hot_cache = sql.as_deref() == Some(HOT_CACHE);
        let owned = in_org_or_stop(conn, org, async move |tx| {
            // The events this batch enqueues name the request that caused the work.
            sqlx::query("SELECT set_config('app.request_id', $1, true)")
                .bind(cause.map(|c| c.to_string()).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            if !still_owned(tx, id, attempt).await? {
                return Ok(false);
            }
            if let Some(sql) = &sql {
                sqlx::query(sql)
                    .bind(org)
                    .bind(&batch)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE ibex_core.data_request_items SET done = true
                 WHERE request_id = $1 AND store = $2 AND item = ANY($3)",
            )
            .bind(id)
            .bind(store)
            .bind(&batch)
            .execute(&mut *tx)
            .await?;
            Ok(true)
        })
        .await?;
        if owned {
            if hot_cache {
                self.db.outbox_wake().notify_one();
            }
            Ok(())
        } else {
            Err(Stop::Lost)
        }
    }

    async fn export_keys(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        batch: &[String],
    ) -> Result<Vec<String>, Stop> {
        let org = job.org_id;
        let batch = batch.to_vec();
        in_org_or_stop(conn, org, async move |tx| {
            sqlx::query_scalar(
                "SELECT object_key FROM ibex_core.memory_exports
                 WHERE org_id = $1 AND id = ANY($2::text[]::uuid[]) AND object_key IS NOT NULL",
            )
            .bind(org)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await
        })
        .await
    }

    async fn session_ids(&self, conn: &mut PgConnection, job: &Claimed) -> Result<Vec<Uuid>, Stop> {
        Ok(self
            .all_items(conn, job, "sessions")
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect())
    }

    /// What is left of the store's frozen items where they live.
    async fn remaining(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        store: Store,
    ) -> Result<i64, Stop> {
        let unreachable = |kind: String| Stop::Unreachable {
            store: store.name.into(),
            kind,
        };
        match store.location {
            Location::Archives => {
                let Some(storage) = &self.storage else {
                    return Ok(0);
                };
                let mut left = 0;
                for key in self.all_items(conn, job, store.name).await? {
                    if storage
                        .archives
                        .exists(&key)
                        .await
                        .map_err(|e| unreachable(e.to_string()))?
                    {
                        left += 1;
                    }
                }
                Ok(left)
            }
            Location::Traces => {
                let Some(traces) = &self.traces else {
                    return Ok(0);
                };
                let sessions = self.session_ids(conn, job).await?;
                traces
                    .count_sessions(job.org_id, &sessions)
                    .await
                    .map(|n| n as i64)
                    .map_err(unreachable)
            }
            // The hot cache has forgotten the memories once the outbox delivered their ZREMs.
            Location::HotCache => {
                let items = self.all_items(conn, job, store.name).await?;
                let org = job.org_id;
                in_org_or_stop(conn, org, async move |tx| {
                    sqlx::query_scalar(
                        "SELECT count(*) FROM ibex_core.outbox
                         WHERE org_id = $1 AND delivered_at IS NULL AND zrem_members && $2::text[]",
                    )
                    .bind(org)
                    .bind(items)
                    .fetch_one(&mut *tx)
                    .await
                })
                .await
            }
            Location::Auth => {
                let (id, org, name) = (job.id, job.org_id, store.name);
                in_org_or_stop(conn, org, async move |tx| {
                    sqlx::query_scalar(
                        "SELECT count(*) FROM ibex_core.data_request_items
                         WHERE request_id = $1 AND store = $2 AND NOT done",
                    )
                    .bind(id)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                })
                .await
            }
            Location::Exports | Location::Table => {
                let sql = ErasedTable::find(store.name).left_sql();
                let items = self.all_items(conn, job, store.name).await?;
                let org = job.org_id;
                in_org_or_stop(conn, org, async move |tx| {
                    sqlx::query_scalar(&sql)
                        .bind(org)
                        .bind(items)
                        .fetch_one(&mut *tx)
                        .await
                })
                .await
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Erasure of the organization: through the organization-deletion job.

    async fn erase_organization(&self, conn: &mut PgConnection, job: &Claimed) -> Result<(), Stop> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM ibex_core.org_deletions WHERE org_id = $1")
                .bind(job.org_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| db_stop(describe(e)))?;
        if state.is_none() {
            let mut tx = self.db.begin_for_job(job.org_id).await.map_err(db_stop)?;
            crate::domains::organizations::repo::request_deletion(&mut tx, None, None)
                .await
                .map_err(db_stop)?;
            tx.commit().await.map_err(db_stop)?;
            self.deletions.notify_one();
        }
        let done = state.as_deref() == Some("done");
        let now = plan::count_organization(
            conn,
            job.org_id,
            self.storage.as_ref(),
            self.traces.as_ref(),
            done,
            done,
        )
        .await
        .map_err(Stop::from)?;
        let mut progress = job.progress.clone();
        // A store planning could not reach is counted from when it is reached.
        for (store, left) in &now {
            progress
                .entry(store.clone())
                .or_insert_with(|| StoreProgress {
                    items_total: *left,
                    ..StoreProgress::default()
                });
        }
        for (store, entry) in progress.iter_mut() {
            if let Some(left) = now.get(store) {
                entry.items_done = (entry.items_total - left).max(0);
                entry.remaining = Some(*left);
            }
            entry.status = if state.as_deref() == Some("done") {
                "done"
            } else {
                "running"
            }
            .into();
            entry.last_error = None;
        }
        self.save_progress(conn, job, &progress).await?;
        if !done {
            return Err(Stop::Later(DELETION_CHECK));
        }
        if now.values().any(|n| *n > 0) {
            return Err(Stop::Later(DELETION_CHECK));
        }
        self.finish(conn, job, &progress, None).await
    }

    // -----------------------------------------------------------------------------------------
    // Access.

    async fn access(&self, conn: &mut PgConnection, job: &Claimed) -> Result<(), Stop> {
        let storage = self.storage.as_ref().ok_or_else(|| Stop::Unreachable {
            store: "exports_bucket".into(),
            kind: "not configured".into(),
        })?;
        let subject = job.subject.clone().ok_or(Stop::Lost)?;
        let (id, org) = (job.id, job.org_id);
        let rows: Vec<(String, String)> = in_org_or_stop(conn, org, async move |tx| {
            sqlx::query_as(
                "SELECT store, item FROM ibex_core.data_request_items WHERE request_id = $1 ORDER BY store, item",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await
        }).await?;
        let mut items: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (store, item) in rows {
            items.entry(store).or_default().push(item);
        }
        let request = archive::Request {
            id: job.id,
            org_id: job.org_id,
            subject: &subject,
            received_at: job.received_at,
            due_at: job.due_at,
            items: &items,
        };
        let written = archive::build(conn, &request, storage, self.traces.as_ref(), &self.signing)
            .await
            .map_err(|f| Stop::Unreachable {
                store: f.store.into(),
                kind: f.kind,
            })?;
        tracing::info!(request_id = %job.id, files = written.files, bytes = written.bytes, "access archive written");
        let mut progress = job.progress.clone();
        for entry in progress.values_mut() {
            entry.status = "done".into();
            entry.items_done = entry.items_total;
            entry.remaining = Some(0);
            entry.last_error = None;
        }
        self.finish(conn, job, &progress, Some(written)).await
    }

    // -----------------------------------------------------------------------------------------
    // The end.

    /// `succeeded`, with its receipt; an erasure forgets whom it was about (the commitment
    /// stays), an organization's erasure then removes the organization's requests.
    async fn finish(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        progress: &BTreeMap<String, StoreProgress>,
        archive: Option<archive::Written>,
    ) -> Result<(), Stop> {
        let facts = Facts {
            request_id: job.id,
            org_id: job.org_id,
            kind: if job.kind == DataRequestType::Access {
                "access"
            } else {
                "erasure"
            },
            subject_kind: job.subject_kind.clone(),
            subject_commitment: job.commitment.clone(),
            received_at: job.received_at,
            due_at: job.due_at,
            items_digest: job.items_digest.clone().unwrap_or_default(),
            archive_sha256: archive.as_ref().map(|a| a.sha256.clone()),
            // Microseconds, as PostgreSQL keeps it: the receipt and the request say the same.
            completed_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .expect("now is representable"),
        };
        let completed_at = facts.completed_at;
        let (id, org, attempt, cause) = (job.id, job.org_id, job.attempt, job.caused_by);
        let erasure = job.kind == DataRequestType::Erasure;
        let organization_gone = erasure && job.subject_kind() == SubjectKind::Organization;
        let progress_json = serde_json::to_value(progress).expect("progress serializes");
        let progress = progress.clone();
        let signing = Arc::clone(&self.signing);
        let ttl = self.archive_ttl.as_secs_f64();
        self.fenced(conn, org, async move |tx| {
            if !still_owned(tx, id, attempt).await? {
                return Ok(false);
            }
            let receipt_id = receipt::issue(tx, &facts, &progress, &signing).await?;
            sqlx::query(
                "UPDATE ibex_core.data_requests
                 SET status = 'succeeded', completed_at = $9, updated_at = now(),
                     lease_until = NULL, progress = $2, receipt_id = $3,
                     subject = CASE WHEN $4 THEN NULL ELSE subject END,
                     archive_key = $5, archive_sha256 = $6, archive_bytes = $7,
                     archive_expires_at = CASE WHEN $5::text IS NULL THEN NULL
                         ELSE now() + make_interval(secs => $8) END
                 WHERE id = $1",
            )
            .bind(id)
            .bind(progress_json)
            .bind(receipt_id)
            .bind(erasure)
            .bind(archive.as_ref().map(|a| a.key.clone()))
            .bind(archive.as_ref().map(|a| a.sha256.clone()))
            .bind(archive.as_ref().map(|a| a.bytes))
            .bind(ttl)
            .bind(completed_at)
            .execute(&mut *tx)
            .await?;
            // The frozen ids are proven by the receipt's digest; they are not kept.
            sqlx::query("DELETE FROM ibex_core.data_request_items WHERE request_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if organization_gone {
                sqlx::query("DELETE FROM ibex_core.data_requests WHERE org_id = $1")
                    .bind(org)
                    .execute(&mut *tx)
                    .await?;
            } else {
                outbox(tx, org, id, "succeeded", cause).await?;
            }
            Ok(true)
        })
        .await?;
        tracing::info!(request_id = %job.id, "data request succeeded");
        Ok(())
    }

    /// Deletes the access archives whose time is over, and says so in the audit trail.
    async fn purge_expired_archives(&self) {
        let Some(storage) = &self.storage else { return };
        let Ok(mut conn) = self.db.platform().await else {
            return;
        };
        let due: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT id, org_id, archive_key FROM ibex_core.data_requests
             WHERE archive_key IS NOT NULL AND archive_purged_at IS NULL AND archive_expires_at <= now()
             ORDER BY archive_expires_at LIMIT 100",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for (id, org, key) in due {
            if storage.exports.delete(&key).await.is_err() {
                return;
            }
            let done = in_org(&mut conn, org, async move |tx| {
                sqlx::query(
                    "UPDATE ibex_core.data_requests SET archive_purged_at = now(), updated_at = now()
                     WHERE id = $1 AND archive_purged_at IS NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO ibex_core.audit_events
                         (id, org_id, action, target_type, target_id, request_id)
                     VALUES ($1, $2, 'data_request.archive_purged', 'data_request', $3, '')",
                )
                .bind(Uuid::now_v7())
                .bind(org)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map(|_| ())
            })
            .await;
            match done {
                Ok(()) => tracing::info!(request_id = %id, "access archive purged"),
                Err(problem) => {
                    tracing::warn!(request_id = %id, %problem, "archive purge not recorded")
                }
            }
        }
    }
}

/// Whether this claim still owns the running request, the row locked for the transaction: a
/// worker whose lease ran out writes nothing.
async fn still_owned(tx: &mut PgConnection, id: Uuid, attempt: i32) -> Result<bool, sqlx::Error> {
    let owned: Option<i32> = sqlx::query_scalar(
        "SELECT attempts FROM ibex_core.data_requests
         WHERE id = $1 AND attempts = $2 AND status = 'running' FOR UPDATE",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(owned.is_some())
}

/// Publishes the request's new status on Redis through the outbox, in `tx`.
async fn outbox(
    tx: &mut PgConnection,
    org: Uuid,
    id: Uuid,
    status: &str,
    cause: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let event = crate::events::Event::data_request_status(org, id, status);
    let (channel, payload) = event.publish.expect("a status event publishes");
    sqlx::query(
        "INSERT INTO ibex_core.outbox (org_id, channel, payload, request_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(org)
    .bind(channel)
    .bind(payload)
    .bind(cause)
    .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// The hot cache forgets the memories (ZREM) and downstream hears of their erasure, per agent,
/// through the outbox, before the rows go.
const HOT_CACHE: &str =
    "INSERT INTO ibex_core.outbox (org_id, channel, payload, zrem_key, zrem_members)
     SELECT $1, 'ibex:memory:deletions',
            json_build_object('v', 1, 'org_id', $1, 'agent_id', agent_id,
                              'memory_ids', array_agg(id ORDER BY id), 'reason', 'erasure')::text,
            $1::text || ':hot_memories:' || agent_id::text, array_agg(id::text ORDER BY id)
     FROM ibex_core.memories WHERE org_id = $1 AND id = ANY($2::text[]::uuid[])
     GROUP BY agent_id";

/// Which rows of a table a store's frozen items name (`$1` the organization, `$2` the items).
#[derive(Clone, Copy)]
enum Items {
    Ids,
    /// A memory's tag, frozen as `{memory_id}/{tag}`.
    MemoryTags,
}

impl Items {
    fn rows(self) -> &'static str {
        match self {
            Self::Ids => "org_id = $1 AND id = ANY($2::text[]::uuid[])",
            Self::MemoryTags => {
                "org_id = $1 AND (memory_id, tag) IN
                   (SELECT left(x, 36)::uuid, substr(x, 38) FROM unnest($2::text[]) x)"
            }
        }
    }
}

/// How a batch of a table's items is erased.
#[derive(Clone, Copy)]
enum Erase {
    /// Their rows are deleted.
    Rows,
    /// By this statement.
    Statement(&'static str),
    /// Their rows are deleted with `children` (`WITH` parts deleting the rows that hang on them,
    /// reading the ids from `ids`: rows added since planning that would keep a parent alive, a
    /// new tag or checkpoint, go too), and taken off their agents' `total_{table}` counters.
    Counted { children: &'static [&'static str] },
}

/// A table whose frozen items an erasure removes, and how it counts what is left of them.
struct ErasedTable {
    name: &'static str,
    items: Items,
    erase: Erase,
    /// What an item's row that still holds personal data matches, where not every row left does.
    holding: Option<&'static str>,
}

impl ErasedTable {
    const fn plain(name: &'static str) -> Self {
        Self {
            name,
            items: Items::Ids,
            erase: Erase::Rows,
            holding: None,
        }
    }

    fn find(name: &str) -> &'static Self {
        ERASED
            .iter()
            .find(|table| table.name == name)
            .expect("every erased table is declared")
    }

    fn erase_sql(&self) -> Cow<'static, str> {
        let name = self.name;
        match self.erase {
            Erase::Rows => format!("DELETE FROM ibex_core.{name} WHERE {}", self.items.rows()).into(),
            Erase::Statement(sql) => sql.into(),
            Erase::Counted { children } => format!(
                "WITH ids AS (SELECT unnest($2::text[])::uuid AS id),
                      {},
                      gone AS (DELETE FROM ibex_core.{name} WHERE org_id = $1 AND id IN (SELECT id FROM ids)
                               RETURNING agent_id, deleted_at)
                 UPDATE ibex_core.agents a SET total_{name} = greatest(a.total_{name} - g.n, 0)
                 FROM (SELECT agent_id, count(*) AS n FROM gone WHERE deleted_at IS NULL GROUP BY agent_id) g
                 WHERE a.org_id = $1 AND a.id = g.agent_id",
                children.join(",\n")
            )
            .into(),
        }
    }

    fn left_sql(&self) -> String {
        let holding = self
            .holding
            .map(|h| format!(" AND ({h})"))
            .unwrap_or_default();
        format!(
            "SELECT count(*) FROM ibex_core.{} WHERE {}{holding}",
            self.name,
            self.items.rows()
        )
    }
}

const ERASED: &[ErasedTable] = &[
    // Its file goes from the object store first; the row stays, marked `purged`.
    ErasedTable {
        erase: Erase::Statement(
            "UPDATE ibex_core.memory_exports SET status = 'purged', object_key = NULL,
                 row_count = NULL, size_bytes = NULL
             WHERE org_id = $1 AND id = ANY($2::text[]::uuid[])",
        ),
        holding: Some("status <> 'purged'"),
        ..ErasedTable::plain("memory_exports")
    },
    ErasedTable::plain("memory_relationships"),
    ErasedTable {
        items: Items::MemoryTags,
        ..ErasedTable::plain("memory_tags")
    },
    ErasedTable::plain("memory_versions"),
    ErasedTable {
        erase: Erase::Counted {
            children: &[
                "r AS (DELETE FROM ibex_core.memory_relationships WHERE org_id = $1
                         AND (source_memory_id IN (SELECT id FROM ids) OR target_memory_id IN (SELECT id FROM ids)))",
                "t AS (DELETE FROM ibex_core.memory_tags WHERE org_id = $1 AND memory_id IN (SELECT id FROM ids))",
                "v AS (DELETE FROM ibex_core.memory_versions WHERE org_id = $1 AND memory_id IN (SELECT id FROM ids))",
            ],
        },
        ..ErasedTable::plain("memories")
    },
    ErasedTable::plain("checkpoints"),
    ErasedTable {
        erase: Erase::Counted {
            children: &["c AS (DELETE FROM ibex_core.checkpoints WHERE org_id = $1 AND session_id IN (SELECT id FROM ids))"],
        },
        ..ErasedTable::plain("sessions")
    },
    // An operator's events stay; only where they came from goes.
    ErasedTable {
        erase: Erase::Statement(
            "UPDATE ibex_core.audit_events SET client_ip = NULL, user_agent = NULL
             WHERE org_id = $1 AND id = ANY($2::text[]::uuid[])",
        ),
        holding: Some("client_ip IS NOT NULL OR user_agent IS NOT NULL"),
        ..ErasedTable::plain("audit_events")
    },
    // An operator is a tombstone: its id stays for what it authored.
    ErasedTable {
        erase: Erase::Statement(
            "UPDATE ibex_core.users SET name = '', email = 'erased-' || id::text || '@erased.invalid',
                 status = 'deactivated', deleted_at = COALESCE(deleted_at, now()), updated_at = now()
             WHERE org_id = $1 AND id = ANY($2::text[]::uuid[])",
        ),
        holding: Some("email NOT LIKE 'erased-%@erased.invalid' OR name <> ''"),
        ..ErasedTable::plain("users")
    },
];

/// Requests not finished past their due date, and open ones, for `/metrics`.
#[derive(Debug)]
pub struct DataRequestSampler(pub Database);

impl crate::observability::metrics::Sampler for DataRequestSampler {
    fn sample(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let counted = async {
                let mut conn = self.0.platform().await.ok()?;
                sqlx::query_as::<_, (i64, i64)>(
                    "SELECT count(*) FILTER (WHERE due_at < now()), count(*)
                     FROM ibex_core.data_requests
                     WHERE status IN ('received', 'planning', 'awaiting_confirmation', 'running')",
                )
                .fetch_one(&mut *conn)
                .await
                .ok()
            };
            if let Ok(Some((overdue, open))) =
                tokio::time::timeout(Duration::from_millis(500), counted).await
            {
                metrics::gauge!(crate::observability::metrics::DATA_REQUESTS_OVERDUE)
                    .set(overdue as f64);
                metrics::gauge!(crate::observability::metrics::DATA_REQUESTS_OPEN).set(open as f64);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::memories::repo::{DELETIONS_CHANNEL, hot_cache_key};

    /// The erasure's outbox rows speak as the memories' own deletions do.
    #[test]
    fn hot_cache_statement_names_the_memories_channel_and_key() {
        assert!(HOT_CACHE.contains(&format!("'{DELETIONS_CHANNEL}'")));
        let (org, agent) = (Uuid::nil(), Uuid::max());
        assert_eq!(
            hot_cache_key(org, agent),
            format!("{org}:hot_memories:{agent}")
        );
        assert!(HOT_CACHE.contains("':hot_memories:'"));
    }

    #[test]
    fn every_erased_table_has_its_statement_and_its_count() {
        for store in plan::erasure_stores(SubjectKind::EndUser)
            .into_iter()
            .chain(plan::erasure_stores(SubjectKind::User))
            .filter(|s| s.location == Location::Table)
        {
            assert!(
                ERASED.iter().any(|table| table.name == store.name),
                "{}",
                store.name
            );
        }
    }
}
