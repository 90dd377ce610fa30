//! The directives' SQL, in an [`OrgTx`]. Versions are only ever inserted (the database refuses
//! updates); a new version is numbered under the directive row's lock, so numbers have no gaps
//! even when updates race.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{Directive, DirectiveChange, DirectiveVersion, DirectiveVersionSummary};
use crate::db::{DbError, FromRow, OrgTx, from_row};
use crate::domains::agents::AgentStatus;
use crate::domains::agents::repo::{
    LIVE_STATUS, LIVE_STATUS_FOR_SHARE, live_status, read_below_agent,
};
use crate::error::{ApiError, Conflict};
use crate::wire::pagination::{CursorPage, PageRequest, Position};

fn no_directive() -> ApiError {
    ApiError::not_found("This agent has no directive.")
}

const LOCK: &str = "SELECT d.id, d.is_active, d.last_version_num, d.injection_mode, d.version,
            v.content_hash
     FROM ibex_core.directives d
     LEFT JOIN ibex_core.directive_versions v ON v.id = d.active_version_id
     WHERE d.org_id = $1 AND d.agent_id = $2
     FOR UPDATE OF d";

const SELECT: &str = "SELECT d.id, d.agent_id, d.injection_mode, d.is_active, v.version_num,
            v.content, d.created_at, d.updated_at, d.version
     FROM ibex_core.directives d
     LEFT JOIN ibex_core.directive_versions v ON v.id = d.active_version_id AND d.is_active
     WHERE d.org_id = $1 AND d.agent_id = $2";

/// The agent's status row (shared-locked by [`LIVE_STATUS_FOR_SHARE`]): 404 when missing, 409
/// when archived (archived is read-only).
fn check_writable(rows: &[tokio_postgres::Row]) -> Result<(), ApiError> {
    let row = rows
        .first()
        .ok_or_else(|| ApiError::not_found("No agent with this id."))?;
    let status: String = row.try_get(0).map_err(DbError::from)?;
    match AgentStatus::try_from(status).map_err(|_| ApiError::Internal)? {
        AgentStatus::Archived => Err(ApiError::Conflict(Conflict::AgentStatus)),
        _ => Ok(()),
    }
}

fn locked(row: &tokio_postgres::Row) -> Result<Locked, ApiError> {
    let read = || -> Result<Locked, tokio_postgres::Error> {
        Ok(Locked {
            id: row.try_get("id")?,
            is_active: row.try_get("is_active")?,
            last_version_num: row.try_get("last_version_num")?,
            injection_mode: row.try_get("injection_mode")?,
            active_hash: row.try_get("content_hash")?,
            version: row.try_get("version")?,
        })
    };
    Ok(read().map_err(DbError::from)?)
}

/// The directive as it is now in this transaction (after a write, in the write's flight).
fn directive(rows: &[tokio_postgres::Row]) -> Result<Directive, ApiError> {
    Ok(Directive::from_row(rows.first().ok_or_else(no_directive)?)?)
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
    let rows = read_below_agent(
        tx,
        agent_id,
        "SELECT d.id, d.agent_id, d.injection_mode, d.is_active, v.version_num, v.content,
                d.created_at, d.updated_at, d.version
         FROM ibex_core.directives d
         LEFT JOIN ibex_core.directive_versions v ON v.id = d.active_version_id AND d.is_active
         WHERE d.org_id = $1 AND d.agent_id = $2",
        &[&org_id, &agent_id],
    )
    .await?;
    Ok(Directive::from_row(rows.first().ok_or_else(no_directive)?)?)
}

from_row! {
    Directive {
        id, agent_id, injection_mode, is_active, version_num, content, created_at, updated_at,
        version,
    }
}

from_row! {
    DirectiveVersionSummary {
        version_num, content_hash, created_by, created_at, is_active,
    }
}

from_row! {
    DirectiveVersion {
        version_num, content, content_hash, created_by, created_at, is_active,
    }
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
    /// The directive's version (its `ETag`), for `If-Match`.
    version: i64,
}

impl Locked {
    /// 412 when `if_match` names versions and the locked directive has none of them.
    fn check_version(&self, if_match: Option<&[i64]>) -> Result<(), ApiError> {
        match if_match {
            Some(versions) if !versions.contains(&self.version) => {
                Err(ApiError::PreconditionFailed)
            }
            _ => Ok(()),
        }
    }
}

async fn lock(tx: &mut OrgTx, agent_id: Uuid) -> Result<Option<Locked>, ApiError> {
    let org_id = tx.org_id();
    match tx.query_opt(LOCK, &[&org_id, &agent_id]).await? {
        Some(row) => Ok(Some(locked(&row)?)),
        None => Ok(None),
    }
}

pub fn content_hash(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates or updates the directive: a new version N+1 becomes active, unless the content equals
/// the active version's (then only a different `injection_mode` changes anything). Returns the
/// directive as it is afterwards. Two flights: the agent check, the directive row (inserted on
/// the first write) and its lock; then the change and the answer.
pub async fn set(
    tx: &mut OrgTx,
    agent_id: Uuid,
    change: DirectiveChange,
    created_by: Option<Uuid>,
    if_match: Option<Vec<i64>>,
) -> Result<(Outcome, Directive), ApiError> {
    let org_id = tx.org_id();
    // Two first writes at once: one inserts, the other finds the row and waits on its lock.
    // Only for a live, writable agent (the check in the same flight says which answer).
    let mut first = tx
        .query_pipelined(&[
            (LIVE_STATUS_FOR_SHARE, &[&org_id, &agent_id]),
            (
                "INSERT INTO ibex_core.directives (id, org_id, agent_id, injection_mode, is_active)
                 SELECT $1::uuid, $2::uuid, $3::uuid, COALESCE($4::text, 'system_first'), false
                 WHERE EXISTS (SELECT 1 FROM ibex_core.agents a
                               WHERE a.org_id = $2 AND a.id = $3 AND a.deleted_at IS NULL
                                 AND a.status <> 'archived')
                 ON CONFLICT (agent_id) DO NOTHING RETURNING id",
                &[&Uuid::now_v7(), &org_id, &agent_id, &change.injection_mode],
            ),
            (LOCK, &[&org_id, &agent_id]),
        ])
        .await?;
    let lock_rows = first.pop().unwrap_or_default();
    let created = !first.pop().unwrap_or_default().is_empty();
    check_writable(&first.pop().unwrap_or_default())?;
    let current = locked(lock_rows.first().ok_or_else(no_directive)?)?;
    // A directive created by this very request had no version the caller could have seen.
    if created && if_match.is_some() {
        return Err(ApiError::PreconditionFailed);
    }
    current.check_version(if_match.as_deref())?;
    let hash = content_hash(&change.content);
    if current.is_active && current.active_hash.as_deref() == Some(hash.as_str()) {
        let mode_changes = change
            .injection_mode
            .is_some_and(|mode| mode != current.injection_mode);
        let rows = if mode_changes {
            tx.query_pipelined(&[
                (
                    "UPDATE ibex_core.directives SET injection_mode = $3, updated_at = now()
                     WHERE org_id = $1 AND id = $2",
                    &[&org_id, &current.id, &change.injection_mode],
                ),
                (SELECT, &[&org_id, &agent_id]),
            ])
            .await?
            .pop()
            .unwrap_or_default()
        } else {
            tx.query(SELECT, &[&org_id, &agent_id]).await?
        };
        let outcome = Outcome {
            created,
            changed: mode_changes,
        };
        return Ok((outcome, directive(&rows)?));
    }
    let version_num = current.last_version_num + 1;
    let version_id = Uuid::now_v7();
    // The version, the pointer to it, and the answer.
    let rows = tx
        .query_pipelined(&[
            (
                "WITH version AS (
                     INSERT INTO ibex_core.directive_versions
                         (id, directive_id, org_id, version_num, content, content_hash,
                          created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6,
                             (SELECT id FROM ibex_core.users WHERE id = $7 AND org_id = $3),
                             clock_timestamp())
                     RETURNING id)
                 UPDATE ibex_core.directives
                 SET active_version_id = (SELECT id FROM version), is_active = true,
                     last_version_num = $4, injection_mode = COALESCE($8, injection_mode),
                     updated_at = now()
                 WHERE org_id = $3 AND id = $2",
                &[
                    &version_id,
                    &current.id,
                    &org_id,
                    &version_num,
                    &change.content,
                    &hash,
                    &created_by,
                    &change.injection_mode,
                ],
            ),
            (SELECT, &[&org_id, &agent_id]),
        ])
        .await?
        .pop()
        .unwrap_or_default();
    let outcome = Outcome {
        created,
        changed: true,
    };
    Ok((outcome, directive(&rows)?))
}

/// Moves the active pointer to an existing version; creates nothing. The active version already:
/// a no-op. A deactivated directive has nothing to roll back (404). Two flights: the agent check
/// and the lock; then the target, the move and the answer.
pub async fn rollback(
    tx: &mut OrgTx,
    agent_id: Uuid,
    version_num: i32,
    if_match: Option<Vec<i64>>,
) -> Result<(Outcome, Directive), ApiError> {
    let org_id = tx.org_id();
    let mut first = tx
        .query_pipelined(&[
            (LIVE_STATUS_FOR_SHARE, &[&org_id, &agent_id]),
            (LOCK, &[&org_id, &agent_id]),
        ])
        .await?;
    let lock_rows = first.pop().unwrap_or_default();
    check_writable(&first.pop().unwrap_or_default())?;
    let current = locked(lock_rows.first().ok_or_else(no_directive)?)?;
    current.check_version(if_match.as_deref())?;
    if !current.is_active {
        return Err(no_directive());
    }
    let mut results = tx
        .query_pipelined(&[
            (
                "SELECT v.id = d.active_version_id
                 FROM ibex_core.directive_versions v
                 JOIN ibex_core.directives d ON d.id = v.directive_id
                 WHERE v.org_id = $1 AND v.directive_id = $2 AND v.version_num = $3",
                &[&org_id, &current.id, &version_num],
            ),
            (
                "UPDATE ibex_core.directives d SET active_version_id = v.id, updated_at = now()
                 FROM ibex_core.directive_versions v
                 WHERE d.org_id = $1 AND d.id = $2 AND v.org_id = $1 AND v.directive_id = d.id
                   AND v.version_num = $3 AND v.id IS DISTINCT FROM d.active_version_id",
                &[&org_id, &current.id, &version_num],
            ),
            (SELECT, &[&org_id, &agent_id]),
        ])
        .await?;
    let answer = results.pop().unwrap_or_default();
    results.pop();
    let target = results.pop().unwrap_or_default();
    let already_active: bool = target
        .first()
        .ok_or_else(|| ApiError::not_found("This directive has no such version."))?
        .try_get(0)
        .map_err(DbError::from)?;
    let outcome = Outcome {
        created: false,
        changed: !already_active,
    };
    Ok((outcome, directive(&answer)?))
}

/// Deactivates the directive and clears its pointer; the history stays. Already inactive: a
/// no-op.
pub async fn deactivate(
    tx: &mut OrgTx,
    agent_id: Uuid,
    if_match: Option<Vec<i64>>,
) -> Result<Outcome, ApiError> {
    let org_id = tx.org_id();
    let current = lock(tx, agent_id).await?.ok_or_else(no_directive)?;
    current.check_version(if_match.as_deref())?;
    if !current.is_active {
        return Ok(Outcome {
            created: false,
            changed: false,
        });
    }
    tx.execute(
        "UPDATE ibex_core.directives
         SET is_active = false, active_version_id = NULL, updated_at = now()
         WHERE org_id = $1 AND id = $2",
        &[&org_id, &current.id],
    )
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
    let before = page
        .after
        .map(|p| p.as_sequence())
        .unwrap_or(i64::from(i32::MAX) + 1);
    let limit = page.fetch_limit();
    // The directive (404 without one) and its page of versions, with the agent check, in one
    // flight.
    let mut results = tx
        .query_pipelined(&[
            (LIVE_STATUS, &[&org_id, &agent_id]),
            (
                "SELECT id FROM ibex_core.directives WHERE org_id = $1 AND agent_id = $2",
                &[&org_id, &agent_id],
            ),
            (
                "SELECT v.version_num, v.content_hash, v.created_by, v.created_at,
                        v.id IS NOT DISTINCT FROM d.active_version_id AS is_active
                 FROM ibex_core.directive_versions v
                 JOIN ibex_core.directives d ON d.id = v.directive_id
                 WHERE v.org_id = $1 AND d.org_id = $1 AND d.agent_id = $2
                   AND v.version_num < $3::int8
                 ORDER BY v.version_num DESC LIMIT $4",
                &[&org_id, &agent_id, &before, &limit],
            ),
        ])
        .await?;
    let versions = results.pop().unwrap_or_default();
    let directive = results.pop().unwrap_or_default();
    if results.pop().unwrap_or_default().is_empty() {
        return Err(ApiError::not_found("No agent with this id."));
    }
    if directive.is_empty() {
        return Err(no_directive());
    }
    let rows = versions
        .iter()
        .map(DirectiveVersionSummary::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(rows, |v| Position::sequence(i64::from(v.version_num))))
}

pub async fn get_version(
    tx: &mut OrgTx,
    agent_id: Uuid,
    version_num: i32,
) -> Result<DirectiveVersion, ApiError> {
    let org_id = tx.org_id();
    let rows = read_below_agent(
        tx,
        agent_id,
        "SELECT v.version_num, v.content, v.content_hash, v.created_by, v.created_at,
                v.id IS NOT DISTINCT FROM d.active_version_id AS is_active
         FROM ibex_core.directive_versions v JOIN ibex_core.directives d ON d.id = v.directive_id
         WHERE v.org_id = $1 AND d.agent_id = $2 AND v.version_num = $3",
        &[&org_id, &agent_id, &version_num],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::not_found("This directive has no such version."))?;
    Ok(DirectiveVersion::from_row(row)?)
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
