//! The agents' SQL. Every statement runs in an [`OrgTx`] (row-level security on) and still says
//! `org_id = $1`, so the planner uses the per-organization indexes.

use serde_json::Value;
use uuid::Uuid;

use super::model::{Agent, AgentChanges, AgentStatus, NewAgent};
use crate::db::{OrgTx, Sql};
use crate::error::{ApiError, Conflict};
use crate::wire::pagination::{CursorPage, PageRequest, Position};

const COLUMNS: &str = "id, org_id, name, slug, status, config, total_sessions, total_memories, \
                       last_active_at, created_at, updated_at, version";

fn not_found() -> ApiError {
    ApiError::not_found("No agent with this id.")
}

pub async fn list(
    tx: &mut OrgTx,
    status: Option<AgentStatus>,
    page: &PageRequest,
) -> Result<CursorPage<Agent>, ApiError> {
    // One statement text per filter combination: each gets a plan that walks its own index from
    // the cursor, where an `$n IS NULL OR …` catch-all would scan from the top on a generic plan.
    let mut sql = Sql::new(format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE deleted_at IS NULL AND org_id = "
    ));
    sql.push_bind(tx.org_id());
    if let Some(status) = status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    sql.newest_first(page.after.as_ref(), page.fetch_limit());
    let rows = tx.fetch_all::<Agent>(sql.text(), &sql.params()).await?;
    Ok(page.finish(rows, |agent| Position::new(agent.created_at, agent.id)))
}

pub async fn insert(
    tx: &mut OrgTx,
    created_by: Option<Uuid>,
    new: NewAgent,
) -> Result<Agent, ApiError> {
    let org_id = tx.org_id();
    // `created_by` only when the caller is a user of this organization the database knows.
    tx.fetch_one::<Agent>(
        &format!(
            "INSERT INTO ibex_core.agents (id, org_id, created_by, name, slug, config)
             VALUES ($1, $2, (SELECT id FROM ibex_core.users WHERE id = $3 AND org_id = $2), $4, $5, $6)
             RETURNING {COLUMNS}"
        ),
        &[
            &Uuid::now_v7(),
            &org_id,
            &created_by,
            &new.name,
            &new.slug,
            &Value::Object(new.config),
        ],
    )
    .await
    .map_err(|e| e.on_insert("agents_org_slug_live_key", Conflict::AgentSlug))
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<Agent, ApiError> {
    tx.fetch_live("agents", COLUMNS, id)
        .await?
        .ok_or_else(not_found)
}

/// A live agent's status (`$1` the organization, `$2` the agent): no row for a missing, deleted or
/// other organization's agent.
pub const LIVE_STATUS: &str =
    "SELECT status FROM ibex_core.agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL";

/// [`LIVE_STATUS`] with the row shared-locked, so the agent cannot be archived or deleted under a
/// change to something of its own.
pub const LIVE_STATUS_FOR_SHARE: &str = "SELECT status FROM ibex_core.agents
     WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL FOR SHARE";

/// The live agent's status (its row shared-locked when `lock`, so it cannot be archived or
/// deleted under a change to something of its own); 404 for a missing, deleted or other
/// organization's agent. Every domain below an agent starts here.
pub async fn live_status(tx: &mut OrgTx, id: Uuid, lock: bool) -> Result<AgentStatus, ApiError> {
    let org_id = tx.org_id();
    let sql = if lock {
        LIVE_STATUS_FOR_SHARE
    } else {
        LIVE_STATUS
    };
    let row = tx
        .query_opt(sql, &[&org_id, &id])
        .await?
        .ok_or_else(not_found)?;
    let status: String = row.try_get(0).map_err(crate::db::DbError::from)?;
    AgentStatus::try_from(status).map_err(|_| ApiError::Internal)
}

/// The rows of `sql`, read in the same flight as the check that `agent_id` is a live agent of
/// the organization (404 otherwise): what a read below an agent costs instead of two round
/// trips.
pub async fn read_below_agent(
    tx: &mut OrgTx,
    agent_id: Uuid,
    sql: &str,
    params: crate::db::Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    read_if_agent(tx, agent_id, not_found(), sql, params).await
}

/// Like [`read_below_agent`], for an agent id a query string carries (a filter): `missing` is
/// the answer when the id names no live agent of the organization (docs: an id in a body or a
/// query must name a live object of the caller's organization; a foreign id and an unknown one
/// answer alike).
pub async fn read_if_agent(
    tx: &mut OrgTx,
    agent_id: Uuid,
    missing: ApiError,
    sql: &str,
    params: crate::db::Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    let org_id = tx.org_id();
    let mut results = tx
        .query_pipelined(&[(LIVE_STATUS, &[&org_id, &agent_id]), (sql, params)])
        .await?;
    let rows = results.pop().unwrap_or_default();
    if results.pop().unwrap_or_default().is_empty() {
        return Err(missing);
    }
    Ok(rows)
}

/// 404 AGENT_NOT_FOUND unless `agent_id` is a live agent of the transaction's organization:
/// what an agent id in a request body must name before anything acts on it.
pub async fn require_live_agent(tx: &mut OrgTx, agent_id: Uuid) -> Result<(), ApiError> {
    match live_status(tx, agent_id, false).await {
        Ok(_) => Ok(()),
        Err(ApiError::NotFound(_)) => Err(ApiError::AgentNotFound),
        Err(other) => Err(other),
    }
}

/// `if_match`: the versions the change may apply to (`None`: any), checked in the UPDATE itself.
pub async fn update(
    tx: &mut OrgTx,
    id: Uuid,
    changes: AgentChanges,
    if_match: Option<Vec<i64>>,
) -> Result<Agent, ApiError> {
    // An archived agent is read-only (**Decision**: archived is terminal for its settings too).
    if changes.name.is_none() && changes.config.is_none() {
        let agent = get(tx, id).await?;
        check_version(&agent, if_match.as_deref())?;
        if agent.status == AgentStatus::Archived {
            return Err(ApiError::Conflict(Conflict::AgentStatus));
        }
        return Ok(agent);
    }
    let org_id = tx.org_id();
    // The status and version conditions are checked on the row the UPDATE locks: no
    // read-then-write race, and one statement where a locking read and the update were two.
    let updated = tx
        .fetch_optional::<Agent>(
            &format!(
                "UPDATE ibex_core.agents
                 SET name = COALESCE($3, name), config = COALESCE($4, config), updated_at = now()
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'archived'
                   AND ($5::int8[] IS NULL OR version = ANY($5))
                 RETURNING {COLUMNS}"
            ),
            &[
                &org_id,
                &id,
                &changes.name,
                &changes.config.map(Value::Object),
                &if_match,
            ],
        )
        .await?;
    match updated {
        Some(agent) => Ok(agent),
        // Missing (404), changed since If-Match (412) or archived (409): `get` tells which.
        None => {
            check_version(&get(tx, id).await?, if_match.as_deref())?;
            Err(ApiError::Conflict(Conflict::AgentStatus))
        }
    }
}

/// 412 when `if_match` names versions and the agent has none of them.
fn check_version(agent: &Agent, if_match: Option<&[i64]>) -> Result<(), ApiError> {
    match if_match {
        Some(versions) if !versions.contains(&agent.version) => Err(ApiError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// Soft delete; an agent with (live) sessions in the sessions table must be archived instead.
pub async fn soft_delete(
    tx: &mut OrgTx,
    id: Uuid,
    if_match: Option<Vec<i64>>,
) -> Result<(), ApiError> {
    let org_id = tx.org_id();
    let deleted = tx
        .execute(
            "UPDATE ibex_core.agents SET deleted_at = now(), updated_at = now()
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL
               AND ($3::int8[] IS NULL OR version = ANY($3))
               AND NOT EXISTS (SELECT 1 FROM ibex_core.sessions s
                               WHERE s.org_id = $1 AND s.agent_id = $2 AND s.deleted_at IS NULL)",
            &[&org_id, &id, &if_match],
        )
        .await?;
    if deleted == 1 {
        return Ok(());
    }
    check_version(&get(tx, id).await?, if_match.as_deref())?;
    Err(ApiError::Conflict(Conflict::AgentHasSessions))
}

/// Moves the agent to `target` if the lifecycle allows it; asking for the current status is a
/// no-op. One conditional UPDATE: concurrent transitions serialize on the row, and each re-checks
/// the status it finds after the other committed.
pub async fn transition(tx: &mut OrgTx, id: Uuid, target: AgentStatus) -> Result<Agent, ApiError> {
    let org_id = tx.org_id();
    let moved = tx
        .fetch_optional::<Agent>(
            &format!(
                "UPDATE ibex_core.agents SET status = $3, updated_at = now()
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status = ANY($4)
                 RETURNING {COLUMNS}"
            ),
            &[&org_id, &id, &target.as_str(), &target.reachable_from()],
        )
        .await?;
    if let Some(agent) = moved {
        return Ok(agent);
    }
    let agent = get(tx, id).await?;
    if agent.status == target {
        Ok(agent)
    } else {
        Err(ApiError::Conflict(Conflict::AgentStatus))
    }
}
