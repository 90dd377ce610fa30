//! The six directive operations. Each first checks its permission bit, then that the agent is a
//! live agent of the caller's organization (404 otherwise, like every tenant boundary); writes
//! also need the agent not archived. Every committed change is announced to the proxy through the
//! outbox, in the same transaction.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::model::{
    Directive, DirectiveChange, DirectiveVersion, DirectiveVersionPath, DirectiveVersionSummary,
    RollbackTo,
};
use super::repo::{self, Outcome};
use crate::db::OrgTx;
use crate::domains::agents::AgentPath;
use crate::domains::audit::{AuditContext, record};
use crate::error::{ApiError, ErrorResponse};
use crate::events::{self, Event};
use crate::tenancy::{Tenant, need};
use crate::wire::conditional::{IfMatch, IfNoneMatch, Preconditions, Tagged};
use crate::wire::extract::{ApiJson, ApiPath};
use crate::wire::pagination::{CursorPage, ListScope, Page, PageParams};

/// Announces a committed change, then answers with the directive as it now is.
async fn finish(
    mut tx: OrgTx,
    agent_id: uuid::Uuid,
    outcome: Outcome,
    directive: Option<Directive>,
) -> Result<Directive, ApiError> {
    let directive = match directive {
        Some(directive) => directive,
        None => repo::get(&mut tx, agent_id).await?,
    };
    if outcome.changed {
        let version = directive.version_num.filter(|_| directive.is_active);
        events::enqueue(&mut tx, Event::directive_changed(agent_id, version)).await?;
    }
    tx.commit().await?;
    Ok(directive)
}

/// Get an agent's directive
///
/// Needs `directive:read`. The directive with its active version (`version_num` and `content` null
/// while deactivated).
#[utoipa::path(get, path = "/v1/agents/{agent_id}/directive", tag = "directives",
    params(AgentPath, IfNoneMatch),
    responses(
        (status = 200, description = "The directive.", body = Directive),
        (status = 404, description = "NOT_FOUND: no such agent in the organization, or it never had a directive.", body = ErrorResponse),
    ))]
pub async fn get_directive(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    mut t: Tenant<{ need::DIRECTIVE_READ }>,
) -> Result<Response, ApiError> {
    // The agent check travels with the read (`read_below_agent`).
    let directive = repo::get(&mut t.tx, path.agent_id).await?;
    t.tx.finish_read();
    Ok(preconditions.read(directive.version, Json(directive)))
}

/// Create or update an agent's directive
///
/// Needs `directive:write`. A new version N+1 becomes active (`201` when the directive is created,
/// `200` after). Content equal to the active version's creates no version: a no-op `200`, unless
/// `injection_mode` changes. After a DELETE, a POST reactivates the directive with a new version.
/// The proxy learns of every change within a second.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/directive", tag = "directives",
    params(AgentPath, IfMatch),
    request_body = crate::domains::directives::model::SetDirectiveBody,
    responses(
        (status = 200, description = "Updated (or unchanged).", body = Directive),
        (status = 201, description = "Created with version 1; `Location` names it.", body = Directive,
            headers(("Location" = String, description = "/v1/agents/{agent_id}/directive"))),
        (status = 409, description = "AGENT_STATUS_CONFLICT: the agent is archived; its directive is read-only.", body = ErrorResponse),
    ))]
pub async fn set_directive(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::DIRECTIVE_WRITE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let change = DirectiveChange::parse(body)?;
    let changed = change.sent.clone();
    let if_match = preconditions.if_match_versions();
    let (outcome, directive) =
        repo::set(&mut t.tx, path.agent_id, change, t.caller.user_id, if_match).await?;
    record(&mut t, &audit, "directive.set", path.agent_id, &changed);
    let directive = finish(t.tx, path.agent_id, outcome, Some(directive)).await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/agents/{}/directive", path.agent_id);
    let version = directive.version;
    Ok(Tagged(
        version,
        (status, [(LOCATION, location)], Json(directive)),
    ))
}

/// Deactivate an agent's directive
///
/// Needs `directive:revoke`. Deactivates the directive and clears its active version; the history
/// stays. Already inactive: `204` again.
#[utoipa::path(delete, path = "/v1/agents/{agent_id}/directive", tag = "directives",
    params(AgentPath, IfMatch),
    responses(
        (status = 204, description = "Deactivated."),
        (status = 404, description = "NOT_FOUND: no such agent in the organization, or it has no directive.", body = ErrorResponse),
        (status = 409, description = "AGENT_STATUS_CONFLICT: the agent is archived; its directive is read-only.", body = ErrorResponse),
    ))]
pub async fn delete_directive(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::DIRECTIVE_REVOKE }>,
) -> Result<StatusCode, ApiError> {
    repo::writable_agent(&mut t.tx, path.agent_id).await?;
    let if_match = preconditions.if_match_versions();
    let outcome = repo::deactivate(&mut t.tx, path.agent_id, if_match).await?;
    record(&mut t, &audit, "directive.deactivate", path.agent_id, &[]);
    finish(t.tx, path.agent_id, outcome, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List directive versions
///
/// Needs `directive:read`. Every version, newest first, without content.
#[utoipa::path(get, path = "/v1/agents/{agent_id}/directive/versions", tag = "directives",
    params(AgentPath, PageParams),
    responses(
        (status = 200, description = "One page of versions.", body = CursorPage<DirectiveVersionSummary>),
        (status = 404, description = "NOT_FOUND: no such agent in the organization, or it never had a directive.", body = ErrorResponse),
    ))]
pub async fn list_directive_versions(
    ApiPath(path): ApiPath<AgentPath>,
    page: Page,
    mut t: Tenant<{ need::DIRECTIVE_READ }>,
) -> Result<Json<CursorPage<DirectiveVersionSummary>>, ApiError> {
    let scope =
        ListScope::new("directive_versions").filter("agent_id", Some(&path.agent_id.to_string()));
    let page = page.resolve(&scope)?;
    // The agent check travels with the read (`read_below_agent`).
    let versions = repo::list_versions(&mut t.tx, path.agent_id, &page).await?;
    t.tx.finish_read();
    Ok(Json(versions))
}

/// Get one directive version
///
/// Needs `directive:read`. The version with its content.
#[utoipa::path(get, path = "/v1/agents/{agent_id}/directive/versions/{version_num}", tag = "directives",
    params(DirectiveVersionPath),
    responses(
        (status = 200, description = "The version.", body = DirectiveVersion),
        (status = 404, description = "NOT_FOUND: no such agent, directive or version.", body = ErrorResponse),
    ))]
pub async fn get_directive_version(
    ApiPath(path): ApiPath<DirectiveVersionPath>,
    mut t: Tenant<{ need::DIRECTIVE_READ }>,
) -> Result<Json<DirectiveVersion>, ApiError> {
    // Past i32 no version can exist; 0 is below the first. The agent check travels with the
    // read (`read_below_agent`).
    let number = i32::try_from(path.version_num)
        .map_err(|_| ApiError::not_found("This directive has no such version."))?;
    let version = repo::get_version(&mut t.tx, path.agent_id, number).await?;
    t.tx.finish_read();
    Ok(Json(version))
}

/// Roll back to an earlier version
///
/// Needs `directive:promote`. Makes version `version_num` active again; creates no version. The
/// active one already: a no-op `200`.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/directive/rollback", tag = "directives",
    params(AgentPath, IfMatch),
    request_body = crate::domains::directives::model::RollbackBody,
    responses(
        (status = 200, description = "The directive with its new active version.", body = Directive),
        (status = 404, description = "NOT_FOUND: no such agent or version, or the directive is deactivated.", body = ErrorResponse),
        (status = 409, description = "AGENT_STATUS_CONFLICT: the agent is archived; its directive is read-only.", body = ErrorResponse),
    ))]
pub async fn rollback_directive(
    ApiPath(path): ApiPath<AgentPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::DIRECTIVE_PROMOTE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Tagged<Json<Directive>>, ApiError> {
    let RollbackTo(version_num) = RollbackTo::parse(body)?;
    let if_match = preconditions.if_match_versions();
    let (outcome, directive) =
        repo::rollback(&mut t.tx, path.agent_id, version_num, if_match).await?;
    record(
        &mut t,
        &audit,
        "directive.rollback",
        path.agent_id,
        &["active_version"],
    );
    let directive = finish(t.tx, path.agent_id, outcome, Some(directive)).await?;
    Ok(Tagged(directive.version, Json(directive)))
}
