//! The eight agent operations. Reads need any valid token of the organization; writes need
//! `org_settings:write` (docs/api.md, "Permissions"), checked before anything else so a refusal says nothing
//! about which ids exist.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::model::{Agent, AgentChanges, AgentFilter, AgentPath, AgentStatus, NewAgent};
use super::repo;
use crate::domains::audit::{AuditContext, record};
use crate::error::{ApiError, ErrorResponse};
use crate::tenancy::{Tenant, need};
use crate::wire::conditional::{IfMatch, IfNoneMatch, Preconditions, Tagged};
use crate::wire::extract::{ApiJson, ApiPath, ApiQuery};
use crate::wire::pagination::{CursorPage, ListScope, Page, PageParams};

/// List agents
///
/// The organization's live agents, newest first.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(PageParams, AgentFilter),
    responses((status = 200, description = "One page of agents.", body = CursorPage<Agent>)))]
pub async fn list_agents(
    page: Page,
    ApiQuery(filter): ApiQuery<AgentFilter>,
    mut t: Tenant,
) -> Result<Json<CursorPage<Agent>>, ApiError> {
    let status = filter.status()?;
    let scope = ListScope::new("agents").filter("status", status.map(AgentStatus::as_str));
    let page = page.resolve(&scope)?;
    let agents = repo::list(&mut t.tx, status, &page).await?;
    t.tx.finish_read();
    Ok(Json(agents))
}

/// Create an agent
///
/// Needs `org_settings:write`. New agents are `active`.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = crate::domains::agents::model::CreateAgentBody,
    responses(
        (status = 201, description = "Created; `Location` names the new agent.", body = Agent,
            headers(("Location" = String, description = "/v1/agents/{id}")),
            links(
                ("GetAgent" = (operation_id = "get_agent", parameters(("agent_id" = "$response.body#/id")))),
                ("UpdateAgent" = (operation_id = "update_agent", parameters(("agent_id" = "$response.body#/id")))),
                ("DeleteAgent" = (operation_id = "delete_agent", parameters(("agent_id" = "$response.body#/id")))),
                ("ActivateAgent" = (operation_id = "activate_agent", parameters(("agent_id" = "$response.body#/id")))),
                ("PauseAgent" = (operation_id = "pause_agent", parameters(("agent_id" = "$response.body#/id")))),
                ("ArchiveAgent" = (operation_id = "archive_agent", parameters(("agent_id" = "$response.body#/id")))),
            )),
        (status = 404, description = "NOT_FOUND: the caller's organization no longer exists (deleted).", body = ErrorResponse),
        (status = 409, description = "AGENT_SLUG_CONFLICT: a live agent of the organization has this slug.", body = ErrorResponse),
    ))]
pub async fn create_agent(
    audit: AuditContext,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewAgent::parse(body)?;
    let agent = repo::insert(&mut t.tx, t.caller.user_id, new).await?;
    record(&mut t, &audit, "agent.create", agent.id, &[]);
    t.tx.commit().await?;
    let location = format!("/v1/agents/{}", agent.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(agent)))
}

/// Get an agent
#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents", params(AgentPath, IfNoneMatch),
    responses((status = 200, description = "The agent.", body = Agent)))]
pub async fn get_agent(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    mut t: Tenant,
) -> Result<Response, ApiError> {
    let agent = repo::get(&mut t.tx, path.agent_id).await?;
    t.tx.finish_read();
    Ok(preconditions.read(agent.version, Json(agent)))
}

/// Update an agent
///
/// Needs `org_settings:write`. Changes only the fields present; `slug` is immutable and `status`
/// changes through the lifecycle operations. An archived agent is read-only.
#[utoipa::path(patch, path = "/v1/agents/{agent_id}", tag = "agents", params(AgentPath, IfMatch),
    request_body = crate::domains::agents::model::UpdateAgentBody,
    responses(
        (status = 200, description = "The updated agent.", body = Agent),
        (status = 409, description = "AGENT_STATUS_CONFLICT: the agent is archived.", body = ErrorResponse),
    ))]
pub async fn update_agent(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Tagged<Json<Agent>>, ApiError> {
    let changes = AgentChanges::parse(body)?;
    let changed = changes.sent.clone();
    let if_match = preconditions.if_match_versions();
    let agent = repo::update(&mut t.tx, path.agent_id, changes, if_match).await?;
    record(&mut t, &audit, "agent.update", agent.id, &changed);
    t.tx.commit().await?;
    Ok(Tagged(agent.version, Json(agent)))
}

/// Delete an agent
///
/// Needs `org_settings:write`. Soft delete: the agent disappears from reads and frees its slug. An
/// agent with sessions must be archived instead.
#[utoipa::path(delete, path = "/v1/agents/{agent_id}", tag = "agents", params(AgentPath, IfMatch),
    responses(
        (status = 204, description = "Deleted."),
        (status = 409, description = "AGENT_HAS_SESSIONS: archive the agent instead.", body = ErrorResponse),
    ))]
pub async fn delete_agent(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
) -> Result<StatusCode, ApiError> {
    repo::soft_delete(&mut t.tx, path.agent_id, preconditions.if_match_versions()).await?;
    record(&mut t, &audit, "agent.delete", path.agent_id, &[]);
    t.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn transition(
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
    audit: AuditContext,
    path: AgentPath,
    (target, action): (AgentStatus, &'static str),
) -> Result<Json<Agent>, ApiError> {
    let agent = repo::transition(&mut t.tx, path.agent_id, target).await?;
    record(&mut t, &audit, action, agent.id, &[]);
    t.tx.commit().await?;
    Ok(Json(agent))
}

/// Declares a lifecycle operation: same permission, same answers, one target status.
macro_rules! lifecycle {
    ($name:ident, $path:literal, $summary:literal, $target:expr, $action:literal, $from:literal) => {
        #[utoipa::path(post, path = $path, tag = "agents", summary = $summary,
            description = concat!("Needs `org_settings:write`. Allowed from ", $from,
                "; asking for the current status is a no-op 200."),
            params(AgentPath),
            responses(
                (status = 200, description = "The agent in its new status.", body = Agent),
                (status = 409, description = "AGENT_STATUS_CONFLICT: the lifecycle does not allow this transition.", body = ErrorResponse),
            ))]
        pub async fn $name(
            audit: AuditContext,
            ApiPath(path): ApiPath<AgentPath>,
            t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
        ) -> Result<Json<Agent>, ApiError> {
            transition(t, audit, path, ($target, $action)).await
        }
    };
}

lifecycle!(
    activate_agent,
    "/v1/agents/{agent_id}/activate",
    "Activate an agent",
    AgentStatus::Active,
    "agent.activate",
    "`paused`"
);
lifecycle!(
    pause_agent,
    "/v1/agents/{agent_id}/pause",
    "Pause an agent",
    AgentStatus::Paused,
    "agent.pause",
    "`active`"
);
lifecycle!(
    archive_agent,
    "/v1/agents/{agent_id}/archive",
    "Archive an agent",
    AgentStatus::Archived,
    "agent.archive",
    "`active`, `paused` or `suspended`; archived is terminal"
);
