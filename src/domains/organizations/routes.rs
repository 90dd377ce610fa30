//! The four organization operations. The path names the caller's own organization (any other is
//! 403: the caller named it, so nothing leaks); suspending and deleting also need the caller to be
//! one of its owners. Permission bits are checked first, then the path, then the role.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::Value;

use super::model::{OrgChanges, OrgPath, Organization};
use super::repo;
use crate::auth::Caller;
use crate::db::OrgTx;
use crate::domains::audit::{AuditContext, record};
use crate::domains::users::repo::caller_role;
use crate::error::{ApiError, ErrorResponse};
use crate::tenancy::{Tenant, need};
use crate::wire::conditional::{IfMatch, IfNoneMatch, Preconditions, Tagged};
use crate::wire::extract::{ApiJson, ApiPath};

fn own_org(caller: &Caller, path: &OrgPath) -> Result<(), ApiError> {
    if path.org_id == caller.org_id {
        Ok(())
    } else {
        Err(ApiError::InsufficientPermissions)
    }
}

/// Owners only; a token without a user (an agent's) is never an owner.
async fn require_owner(tx: &mut OrgTx, caller: &Caller) -> Result<(), ApiError> {
    match caller_role(tx, caller.user_id).await?.as_deref() {
        Some("owner") => Ok(()),
        _ => Err(ApiError::InsufficientPermissions),
    }
}

/// Get the caller's organization
#[utoipa::path(get, path = "/v1/organizations/{org_id}", tag = "organizations",
    params(OrgPath, IfNoneMatch),
    responses(
        (status = 200, description = "The organization; `deletion` is set while a requested deletion is under way.", body = Organization),
        (status = 404, description = "NOT_FOUND: the organization no longer exists.", body = ErrorResponse),
    ))]
pub async fn get_organization(
    ApiPath(path): ApiPath<OrgPath>,
    preconditions: Preconditions,
    mut t: Tenant,
) -> Result<Response, ApiError> {
    own_org(&t.caller, &path)?;
    let org = repo::get(&mut t.tx).await?;
    t.tx.finish_read();
    Ok(preconditions.read(org.version, Json(org)))
}

/// Update the caller's organization
///
/// Needs `org_settings:write`. Changes `name`, `billing_email` (null clears it) and `settings`
/// (replaced whole) only.
#[utoipa::path(patch, path = "/v1/organizations/{org_id}", tag = "organizations",
    params(OrgPath, IfMatch),
    request_body = crate::domains::organizations::model::UpdateOrganizationBody,
    responses(
        (status = 200, description = "The updated organization.", body = Organization),
        (status = 404, description = "NOT_FOUND: the organization no longer exists.", body = ErrorResponse),
        (status = 409, description = "ORG_STATUS_CONFLICT: the organization's deletion is under way.", body = ErrorResponse),
    ))]
pub async fn update_organization(
    ApiPath(path): ApiPath<OrgPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Tagged<Json<Organization>>, ApiError> {
    own_org(&t.caller, &path)?;
    let changes = OrgChanges::parse(body)?;
    let changed = changes.sent.clone();
    let org = repo::update(&mut t.tx, changes, preconditions.if_match_versions()).await?;
    record(&mut t, &audit, "organization.update", org.id, &changed);
    t.tx.commit().await?;
    Ok(Tagged(org.version, Json(org)))
}

/// Suspend the caller's organization
///
/// Needs `org_settings:write` and an owner. Blocks the organization's traffic platform-wide:
/// `{"v":1,"event_type":"org_suspend",…}` is published on `ibex:token:revocations`. Already
/// suspended: a no-op 200.
#[utoipa::path(post, path = "/v1/organizations/{org_id}/suspend", tag = "organizations",
    params(OrgPath),
    responses(
        (status = 200, description = "The suspended organization.", body = Organization),
        (status = 404, description = "NOT_FOUND: the organization no longer exists.", body = ErrorResponse),
        (status = 409, description = "ORG_STATUS_CONFLICT: the organization's deletion is under way.", body = ErrorResponse),
    ))]
pub async fn suspend_organization(
    audit: AuditContext,
    ApiPath(path): ApiPath<OrgPath>,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
) -> Result<Json<Organization>, ApiError> {
    own_org(&t.caller, &path)?;
    require_owner(&mut t.tx, &t.caller).await?;
    let org = repo::suspend(&mut t.tx).await?;
    record(&mut t, &audit, "organization.suspend", org.id, &[]);
    t.tx.commit().await?;
    Ok(Json(org))
}

/// Delete the caller's organization (GDPR)
///
/// Needs `org_settings:write` and an owner. The organization turns `cancelled`, its traffic is
/// blocked as for a suspension, and a background job removes every row it owns for good; `GET`
/// shows `deletion` until the organization's own row goes. Asking again while it runs: 202 again.
#[utoipa::path(delete, path = "/v1/organizations/{org_id}", tag = "organizations",
    params(OrgPath, IfMatch),
    responses(
        (status = 202, description = "The deletion is scheduled.", body = Organization),
        (status = 404, description = "NOT_FOUND: the organization no longer exists.", body = ErrorResponse),
    ))]
pub async fn delete_organization(
    ApiPath(path): ApiPath<OrgPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::ORG_SETTINGS_WRITE }>,
) -> Result<impl IntoResponse, ApiError> {
    own_org(&t.caller, &path)?;
    require_owner(&mut t.tx, &t.caller).await?;
    let org = repo::request_deletion(
        &mut t.tx,
        preconditions.if_match_versions(),
        t.caller.user_id,
    )
    .await?;
    record(&mut t, &audit, "organization.delete_request", org.id, &[]);
    t.tx.commit().await?;
    t.state.deletions.notify_one();
    t.state.data_requests.notify_one();
    Ok((StatusCode::ACCEPTED, Json(org)))
}
