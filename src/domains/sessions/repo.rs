//! The sessions' SQL, in an [`OrgTx`]: one statement text per filter combination, each walking
//! the index of its filter from the cursor.

use uuid::Uuid;

use super::model::{Session, SessionFilters};
use crate::db::{DbError, FromRow, OrgTx, Sql, from_row};
use crate::domains::agents::repo::read_if_agent;
use crate::error::ApiError;
use crate::wire::pagination::{CursorPage, PageRequest, Position};

const COLUMNS: &str = "id, agent_id, external_id, status, model, provider, directive_version_id, \
     turn_count, total_input_tokens, total_output_tokens, total_latency_ms, created_at, \
     updated_at, completed_at";

pub fn not_found() -> ApiError {
    ApiError::not_found("No session with this id.")
}

/// The statement of one page: `limit` rows after `after`. Public for the plan benchmark
/// (`examples/list_plans.rs`), which runs exactly what the API runs.
pub fn list_statement(
    org_id: Uuid,
    filters: &SessionFilters,
    after: Option<Position>,
    limit: i64,
) -> Sql {
    let mut qb = Sql::new(format!(
        "SELECT {COLUMNS} FROM ibex_core.sessions WHERE deleted_at IS NULL AND org_id = "
    ));
    qb.push_bind(org_id);
    if let Some(agent_id) = filters.agent_id {
        qb.push(" AND agent_id = ").push_bind(agent_id);
    }
    if let Some(status) = filters.status {
        qb.push(" AND status = ").push_bind(status);
    }
    if let Some(after) = filters.started_after {
        qb.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filters.started_before {
        qb.push(" AND created_at < ").push_bind(before);
    }
    qb.newest_first(after.as_ref(), limit);
    qb
}

pub async fn list(
    tx: &mut OrgTx,
    filters: &SessionFilters,
    page: &PageRequest,
) -> Result<CursorPage<Session>, ApiError> {
    let qb = list_statement(tx.org_id(), filters, page.after, page.fetch_limit());
    let rows = match filters.agent_id {
        // The filter's agent must be the organization's (404 AGENT_NOT_FOUND), checked in the
        // same flight as the page.
        Some(agent_id) => {
            let rows = read_if_agent(
                tx,
                agent_id,
                ApiError::AgentNotFound,
                qb.text(),
                &qb.params(),
            )
            .await?;
            rows.iter()
                .map(Session::from_row)
                .collect::<Result<Vec<_>, DbError>>()?
        }
        None => tx.fetch_all::<Session>(qb.text(), &qb.params()).await?,
    };
    Ok(page.finish(rows, |s| Position::new(s.created_at, s.id)))
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<Session, ApiError> {
    tx.fetch_live("sessions", COLUMNS, id)
        .await?
        .ok_or_else(not_found)
}

from_row! {
    Session {
        id, agent_id, external_id, status, model, provider, directive_version_id, turn_count,
        total_input_tokens, total_output_tokens, total_latency_ms, created_at, updated_at,
        completed_at,
    }
}

/// Where the platform's archiver writes a session's archive in the archive bucket.
pub fn archive_key(org_id: Uuid, agent_id: Uuid, session_id: Uuid) -> String {
    format!("{org_id}/{agent_id}/{session_id}/{session_id}.ndjson")
}
