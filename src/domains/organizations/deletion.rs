//! The GDPR deletion of an organization: a background job that hard-deletes every row the
//! organization owns, in bounded batches, each batch its own transaction. It is resumable (its
//! state is the `org_deletions` row and whatever rows are left), safe to run twice (a batch
//! deletes what is there), and confined to the one organization by row-level security: it runs
//! as `ibex_gdpr` with `app.current_org_id` set, so no statement of it can touch another tenant.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::Database;
use crate::domains::analytics::store::TraceStore;
use crate::storage::Storage;

/// Every org-scoped table, children before parents. Adding a table to the deletion is one line
/// here. The organization's row goes last, after the delivered events that mention it.
pub const CASCADE: &[&str] = &[
    "ibex_core.audit_events",
    "ibex_core.idempotency_keys",
    "ibex_core.memory_relationships",
    "ibex_core.memory_tags",
    "ibex_core.memory_versions",
    "ibex_core.memory_exports",
    "ibex_core.memories",
    "ibex_core.checkpoints",
    "ibex_core.sessions",
    "ibex_core.directive_versions",
    "ibex_core.directives",
    "ibex_core.agents",
    "ibex_core.users",
];

/// How often the job looks for requested deletions besides being woken by a request.
const POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct DeletionJob {
    pub db: Database,
    /// The organization's objects (exports, session archives) go too; while the store is
    /// unreachable the deletion waits and retries.
    pub storage: Option<Storage>,
    /// The organization's rows in the trace store go too (a ClickHouse mutation); while
    /// ClickHouse is unreachable the deletion waits and retries.
    pub traces: Option<TraceStore>,
    pub wake: Arc<Notify>,
    pub batch_size: u32,
    pub batch_pause: Duration,
}

impl DeletionJob {
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                while let Some(org_id) = self.next_requested().await {
                    if let Err(problem) = self.run(org_id).await {
                        tracing::warn!(%org_id, reason = %problem, "organization deletion interrupted; it resumes later");
                        break;
                    }
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }

    /// The oldest deletion not yet done (as the login role: this looks across organizations).
    async fn next_requested(&self) -> Option<Uuid> {
        let mut conn = self.db.platform().await.ok()?;
        sqlx::query_scalar(
            // An erasure request of the organization still planning counts its rows first.
            "SELECT org_id FROM ibex_core.org_deletions o WHERE state <> 'done'
               AND NOT EXISTS (
                   SELECT 1 FROM ibex_core.data_requests d
                   WHERE d.org_id = o.org_id AND d.type = 'erasure'
                     AND d.subject_kind = 'organization' AND d.status IN ('received', 'planning'))
             ORDER BY requested_at LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten()
    }

    /// Deletes everything of `org_id`; returns early (Ok) when another replica holds it.
    async fn run(&self, org_id: Uuid) -> Result<(), String> {
        let mut conn = self.db.platform().await.map_err(|e| e.to_string())?;
        let lock_key = i64::from_be_bytes(org_id.as_bytes()[..8].try_into().expect("8 bytes"));
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key)
            .fetch_one(&mut *conn)
            .await
            .map_err(describe)?;
        if !locked {
            tokio::time::sleep(POLL).await;
            return Ok(());
        }
        let outcome = self.delete_all(&mut conn, org_id).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_key)
            .execute(&mut *conn)
            .await;
        outcome
    }

    async fn delete_all(&self, conn: &mut PgConnection, org_id: Uuid) -> Result<(), String> {
        in_org(conn, org_id, async move |tx| {
            sqlx::query(
                "UPDATE ibex_core.org_deletions
                 SET state = 'running', started_at = COALESCE(started_at, now())
                 WHERE org_id = $1",
            )
            .bind(org_id)
            .execute(tx)
            .await
            .map(|_| ())
        })
        .await?;
        tracing::info!(%org_id, "organization deletion running");
        for table in CASCADE {
            let mut total = 0u64;
            loop {
                let batch = i64::from(self.batch_size);
                let deleted = in_org(conn, org_id, async move |tx| {
                    let deleted = sqlx::query(&format!(
                        "DELETE FROM {table} WHERE ctid IN
                             (SELECT ctid FROM {table} WHERE org_id = $1 LIMIT $2)"
                    ))
                    .bind(org_id)
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    sqlx::query(
                        "UPDATE ibex_core.org_deletions SET rows_deleted = rows_deleted + $2
                         WHERE org_id = $1",
                    )
                    .bind(org_id)
                    .bind(deleted as i64)
                    .execute(&mut *tx)
                    .await?;
                    Ok(deleted)
                })
                .await?;
                total += deleted;
                if deleted < self.batch_size as u64 {
                    break;
                }
                tracing::debug!(%org_id, table, deleted = total, "organization deletion progress");
                if !self.batch_pause.is_zero() {
                    tokio::time::sleep(self.batch_pause).await;
                }
            }
            tracing::info!(%org_id, table, rows = total, "organization deletion: table done");
        }
        // Objects under `{org_id}/` in both buckets, after the rows (no new export can start
        // once its job rows are gone). An error leaves the deletion `running`, to be retried.
        match &self.storage {
            Some(storage) => {
                for bucket in storage.buckets() {
                    let objects = bucket
                        .delete_prefix(&org_id.to_string())
                        .await
                        .map_err(|e| format!("bucket {}: {e}", bucket.name))?;
                    tracing::info!(%org_id, bucket = %bucket.name, objects, "organization deletion: objects done");
                }
            }
            None => {
                tracing::warn!(%org_id, "no object store configured: the organization's objects, if any, are not deleted")
            }
        }
        match &self.traces {
            Some(traces) => {
                traces
                    .delete_org(org_id)
                    .await
                    .map_err(|e| format!("trace store: {e}"))?;
                tracing::info!(%org_id, "organization deletion: traces done");
            }
            None => {
                tracing::warn!(%org_id, "no trace store configured: the organization's traces, if any, are not deleted")
            }
        }
        // Events not yet delivered stay (they name only the organization) until the publisher has
        // sent them and its clean-up removes them; delivered ones go now, then the row itself.
        in_org(conn, org_id, async move |tx| {
            sqlx::query(
                "DELETE FROM ibex_core.outbox WHERE org_id = $1 AND delivered_at IS NOT NULL",
            )
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ibex_core.organizations WHERE id = $1")
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE ibex_core.org_deletions SET state = 'done', finished_at = now()
                 WHERE org_id = $1",
            )
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map(|_| ())
        })
        .await?;
        tracing::info!(%org_id, "organization deletion done");
        Ok(())
    }
}

pub fn describe(e: sqlx::Error) -> String {
    crate::db::error::describe_unavailable(&e)
}

/// A transaction as `ibex_gdpr`, confined to `org_id` by row-level security: how the
/// data-protection jobs enter an organization.
pub async fn begin_in_org(
    conn: &mut PgConnection,
    org_id: Uuid,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "SELECT set_config('role', 'ibex_gdpr', true), set_config('app.current_org_id', $1, true)",
    )
    .bind(org_id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// Runs `work` in a transaction of [`begin_in_org`] and commits it.
pub async fn in_org<T>(
    conn: &mut PgConnection,
    org_id: Uuid,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, String> {
    let mut tx = begin_in_org(conn, org_id).await.map_err(describe)?;
    let value = work(&mut tx).await.map_err(describe)?;
    tx.commit().await.map_err(describe)?;
    Ok(value)
}
