//! Storage limitation (GDPR Art. 5(1)(e)): what the API deletes is first only marked
//! (`deleted_at`: it vanishes from every read, and the platform's own deletions stay
//! reversible for a while); after the retention period (`IBEX_API_DELETED_RETENTION_DAYS`) a
//! bounded background sweep removes it for good (docs/domains/data-requests.md, "Retention").
//!
//! Per batch, one statement on the platform connection: the doomed rows are locked with
//! `SKIP LOCKED`, so replicas sweeping at once share the work instead of repeating it, and a
//! row's dependents go in the same statement (foreign keys are checked at its end).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::Database;
use crate::error::ApiError;

/// Memories deleted (or whose agent was deleted) before the cutoff, with their tags, history and
/// relationships.
const MEMORIES: &str = "
    WITH doomed AS (
        SELECT m.id FROM ibex_core.memories m
        WHERE m.deleted_at < $1
           OR m.agent_id IN (SELECT a.id FROM ibex_core.agents a WHERE a.deleted_at < $1)
        LIMIT $2 FOR UPDATE OF m SKIP LOCKED),
    relationships AS (
        DELETE FROM ibex_core.memory_relationships
        WHERE source_memory_id IN (SELECT id FROM doomed)
           OR target_memory_id IN (SELECT id FROM doomed)),
    tags AS (DELETE FROM ibex_core.memory_tags WHERE memory_id IN (SELECT id FROM doomed)),
    versions AS (DELETE FROM ibex_core.memory_versions WHERE memory_id IN (SELECT id FROM doomed))
    DELETE FROM ibex_core.memories WHERE id IN (SELECT id FROM doomed)";

/// Sessions deleted before the cutoff, with their checkpoints.
const SESSIONS: &str = "
    WITH doomed AS (
        SELECT id FROM ibex_core.sessions WHERE deleted_at < $1
        LIMIT $2 FOR UPDATE SKIP LOCKED),
    checkpoints AS (
        DELETE FROM ibex_core.checkpoints WHERE session_id IN (SELECT id FROM doomed))
    DELETE FROM ibex_core.sessions WHERE id IN (SELECT id FROM doomed)";

/// Agents deleted before the cutoff that nothing else refers to any more (their memories go
/// above; sessions and export jobs keep an agent until the organization goes), with their
/// directive and its versions.
const AGENTS: &str = "
    WITH doomed AS (
        SELECT a.id FROM ibex_core.agents a
        WHERE a.deleted_at < $1
          AND NOT EXISTS (SELECT 1 FROM ibex_core.memories m WHERE m.agent_id = a.id)
          AND NOT EXISTS (SELECT 1 FROM ibex_core.sessions s WHERE s.agent_id = a.id)
          AND NOT EXISTS (SELECT 1 FROM ibex_core.memory_exports e WHERE e.agent_id = a.id)
        LIMIT $2 FOR UPDATE OF a SKIP LOCKED),
    directives AS (
        SELECT id FROM ibex_core.directives WHERE agent_id IN (SELECT id FROM doomed)),
    versions AS (
        DELETE FROM ibex_core.directive_versions
        WHERE directive_id IN (SELECT id FROM directives)),
    gone AS (
        DELETE FROM ibex_core.directives WHERE id IN (SELECT id FROM directives))
    DELETE FROM ibex_core.agents WHERE id IN (SELECT id FROM doomed)";

/// Users deleted before the cutoff (the agents they created keep `created_by` null; audit
/// events keep the bare id, which then names no one).
const USERS: &str = "
    DELETE FROM ibex_core.users WHERE id IN (
        SELECT id FROM ibex_core.users WHERE deleted_at < $1
        LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// How many rows a batch takes.
pub const BATCH: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct RetentionSweep {
    pub db: Database,
    /// How long a deleted row is kept.
    pub retention: Duration,
    /// How often the sweep runs.
    pub every: Duration,
}

impl RetentionSweep {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            // Not at start-up: every replica's start would sweep at once, for nothing new.
            let first = tokio::time::Instant::now() + self.every;
            let mut tick = tokio::time::interval_at(first, self.every);
            loop {
                tick.tick().await;
                match self.sweep(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics::counter!(crate::observability::metrics::RETENTION_REMOVED)
                            .increment(n);
                        tracing::info!(removed = n, "deleted rows past retention removed");
                    }
                    Err(error) => tracing::warn!(code = error.code(), "retention sweep failed"),
                }
            }
        })
    }

    /// One sweep as of `now`: memories first (they hold the deleted agents back), then
    /// sessions, agents and users, each in batches until a batch comes back short. Returns how
    /// many rows it removed (dependents not counted).
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<u64, ApiError> {
        let cutoff = chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|retention| now.checked_sub_signed(retention))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut conn = self.db.platform().await?;
        let mut total = 0;
        for statement in [MEMORIES, SESSIONS, AGENTS, USERS] {
            loop {
                let removed = sqlx::query(statement)
                    .bind(cutoff)
                    .bind(BATCH)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                total += removed;
                if removed < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }
}
