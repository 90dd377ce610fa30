//! The directives' SQL, in an [`OrgTx`]. Versions are only ever inserted (the database refuses
//! updates); a new version is numbered under the directive row's lock, so numbers have no gaps
//! even when updates race.

use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::model::{Directive, DirectiveChange, DirectiveVersion, DirectiveVersionSummary};
use crate::db::OrgTx;
use crate::domains::agents::AgentStatus;
use crate::domains::agents::repo::live_status;
use crate::error::{ApiError, Conflict};
use crate::pagination::{CursorPage, PageRequest, Position};

fn no_directive() -> ApiError {
    ApiError::not_found("This agent has no directive.")
}

/// A directive can only change while its agent is not archived (archived is read-only).
pub async fn writable_agent(tx: &mut OrgTx, agent_id: Uuid) -> Result<(), ApiError> {
    match live_status(tx, agent_id, true).await? {
        AgentStatus::Archived => Err(ApiError::Conflict(Conflict::AgentStatus)),
        _ => Ok(()),
    }
}

pub async fn get(tx: &mut OrgTx, agent_id: Uuid) -> Result<Directive, ApiError> {
    let org_id = tx.org_id();
    let row = sqlx::query(
        "SELECT d.id, d.agent_id, d.injection_mode, d.is_active, v.version_num, v.content,
                d.created_at, d.updated_at
         FROM ibex_core.directives d
         LEFT JOIN ibex_core.directive_versions v ON v.id = d.active_version_id AND d.is_active
         WHERE d.org_id = $1 AND d.agent_id = $2",
    )
    .bind(org_id)
    .bind(agent_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(no_directive)?;
    Ok(Directive {
        id: row.get("id"),
        agent_id: row.get("agent_id"),
        injection_mode: row.get("injection_mode"),
        is_active: row.get("is_active"),
        version_num: row.get("version_num"),
        content: row.get("content"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

/// What a write did: whether the directive was created now, and whether anything changed (and so
/// must be announced).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub created: bool,
    pub changed: bool,
}

struct Locked {
    id: Uuid,
    is_active: bool,
    last_version_num: i32,
    injection_mode: String,
    active_hash: Option<String>,
}

async fn lock(tx: &mut OrgTx, agent_id: Uuid) -> Result<Option<Locked>, ApiError> {
    let org_id = tx.org_id();
    let row = sqlx::query(
        "SELECT d.id, d.is_active, d.last_version_num, d.injection_mode, v.content_hash
         FROM ibex_core.directives d
         LEFT JOIN ibex_core.directive_versions v ON v.id = d.active_version_id
         WHERE d.org_id = $1 AND d.agent_id = $2
         FOR UPDATE OF d",
    )
    .bind(org_id)
    .bind(agent_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|row| Locked {
        id: row.get("id"),
        is_active: row.get("is_active"),
        last_version_num: row.get("last_version_num"),
        injection_mode: row.get("injection_mode"),
        active_hash: row.get("content_hash"),
    }))
}

pub fn content_hash(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates or updates the directive: a new version N+1 becomes active, unless the content equals
/// the active version's (then only a different `injection_mode` changes anything).
pub async fn set(
    tx: &mut OrgTx,
    agent_id: Uuid,
    change: DirectiveChange,
    created_by: Option<Uuid>,
) -> Result<Outcome, ApiError> {
    let org_id = tx.org_id();
    // Two first writes at once: one inserts, the other finds the row and waits on its lock.
    let created = sqlx::query(
        "INSERT INTO ibex_core.directives (id, org_id, agent_id, injection_mode, is_active)
         VALUES ($1, $2, $3, COALESCE($4, 'system_first'), false)
         ON CONFLICT (agent_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(agent_id)
    .bind(change.injection_mode)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1;
    let current = lock(tx, agent_id).await?.ok_or_else(no_directive)?;
    let hash = content_hash(&change.content);
    if current.is_active && current.active_hash.as_deref() == Some(hash.as_str()) {
        let mode_changes = change
            .injection_mode
            .is_some_and(|mode| mode != current.injection_mode);
        if mode_changes {
            sqlx::query(
                "UPDATE ibex_core.directives SET injection_mode = $3, updated_at = now()
                 WHERE org_id = $1 AND id = $2",
            )
            .bind(org_id)
            .bind(current.id)
            .bind(change.injection_mode)
            .execute(tx.conn())
            .await?;
        }
        return Ok(Outcome {
            created,
            changed: mode_changes,
        });
    }
    let version_num = current.last_version_num + 1;
    let version_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO ibex_core.directive_versions
             (id, directive_id, org_id, version_num, content, content_hash, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6,
                 (SELECT id FROM ibex_core.users WHERE id = $7 AND org_id = $3), clock_timestamp())",
    )
    .bind(version_id)
    .bind(current.id)
    .bind(org_id)
    .bind(version_num)
    .bind(change.content)
    .bind(hash)
    .bind(created_by)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "UPDATE ibex_core.directives
         SET active_version_id = $3, is_active = true, last_version_num = $4,
             injection_mode = COALESCE($5, injection_mode), updated_at = now()
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(current.id)
    .bind(version_id)
    .bind(version_num)
    .bind(change.injection_mode)
    .execute(tx.conn())
    .await?;
    Ok(Outcome {
        created,
        changed: true,
    })
}

/// Moves the active pointer to an existing version; creates nothing. The active version already:
/// a no-op. A deactivated directive has nothing to roll back (404).
pub async fn rollback(
    tx: &mut OrgTx,
    agent_id: Uuid,
    version_num: i32,
) -> Result<Outcome, ApiError> {
    let org_id = tx.org_id();
    let current = lock(tx, agent_id).await?.ok_or_else(no_directive)?;
    if !current.is_active {
        return Err(no_directive());
    }
    let target: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT v.id, v.id = d.active_version_id
         FROM ibex_core.directive_versions v JOIN ibex_core.directives d ON d.id = v.directive_id
         WHERE v.org_id = $1 AND v.directive_id = $2 AND v.version_num = $3",
    )
    .bind(org_id)
    .bind(current.id)
    .bind(version_num)
    .fetch_optional(tx.conn())
    .await?;
    let (version_id, already_active) =
        target.ok_or_else(|| ApiError::not_found("This directive has no such version."))?;
    if already_active {
        return Ok(Outcome {
            created: false,
            changed: false,
        });
    }
    sqlx::query(
        "UPDATE ibex_core.directives SET active_version_id = $3, updated_at = now()
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(current.id)
    .bind(version_id)
    .execute(tx.conn())
    .await?;
    Ok(Outcome {
        created: false,
        changed: true,
    })
}

/// Deactivates the directive and clears its pointer; the history stays. Already inactive: a
/// no-op.
pub async fn deactivate(tx: &mut OrgTx, agent_id: Uuid) -> Result<Outcome, ApiError> {
    let org_id = tx.org_id();
    let current = lock(tx, agent_id).await?.ok_or_else(no_directive)?;
    if !current.is_active {
        return Ok(Outcome {
            created: false,
            changed: false,
        });
    }
    sqlx::query(
        "UPDATE ibex_core.directives
         SET is_active = false, active_version_id = NULL, updated_at = now()
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(current.id)
    .execute(tx.conn())
    .await?;
    Ok(Outcome {
        created: false,
        changed: true,
    })
}

pub async fn list_versions(
    tx: &mut OrgTx,
    agent_id: Uuid,
    page: &PageRequest,
) -> Result<CursorPage<DirectiveVersionSummary>, ApiError> {
    let org_id = tx.org_id();
    let directive_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM ibex_core.directives WHERE org_id = $1 AND agent_id = $2",
    )
    .bind(org_id)
    .bind(agent_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(no_directive)?;
    let before = page
        .after
        .map(|p| p.as_sequence())
        .unwrap_or(i64::from(i32::MAX) + 1);
    let rows = sqlx::query_as::<_, DirectiveVersionSummary>(
        "SELECT v.version_num, v.content_hash, v.created_by, v.created_at,
                v.id IS NOT DISTINCT FROM d.active_version_id AS is_active
         FROM ibex_core.directive_versions v JOIN ibex_core.directives d ON d.id = v.directive_id
         WHERE v.org_id = $1 AND v.directive_id = $2 AND v.version_num < $3
         ORDER BY v.version_num DESC LIMIT $4",
    )
    .bind(org_id)
    .bind(directive_id)
    .bind(before)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    Ok(page.finish(rows, |v| Position::sequence(i64::from(v.version_num))))
}

pub async fn get_version(
    tx: &mut OrgTx,
    agent_id: Uuid,
    version_num: i32,
) -> Result<DirectiveVersion, ApiError> {
    let org_id = tx.org_id();
    sqlx::query_as::<_, DirectiveVersion>(
        "SELECT v.version_num, v.content, v.content_hash, v.created_by, v.created_at,
                v.id IS NOT DISTINCT FROM d.active_version_id AS is_active
         FROM ibex_core.directive_versions v JOIN ibex_core.directives d ON d.id = v.directive_id
         WHERE v.org_id = $1 AND d.agent_id = $2 AND v.version_num = $3",
    )
    .bind(org_id)
    .bind(agent_id)
    .bind(version_num)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| ApiError::not_found("This directive has no such version."))
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            super::content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
