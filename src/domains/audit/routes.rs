//! The audit operation: the organization's owners and admins read its trail.

use axum::Json;

use super::model::{AuditEvent, AuditFilterParams, AuditFilters};
use super::repo;
use crate::error::{ApiError, ErrorResponse};
use crate::tenancy::Tenant;
use crate::wire::extract::ApiQuery;
use crate::wire::pagination::{CursorPage, Page, PageParams};

/// List audit events
///
/// The organization's owners and admins only: the caller's token must belong to a user who is an
/// active `owner` or `admin` of the organization (no permission bit grants it; an agent's token
/// never can). Every change made through the API, newest first; filters are exact matches and all
/// given apply together; a cursor is valid only with the filters that produced it.
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(PageParams, AuditFilterParams),
    responses(
        (status = 200, description = "One page of audit events.", body = CursorPage<AuditEvent>),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: the caller is not an active owner or admin of the organization.", body = ErrorResponse),
        (status = 404, description = "USER_NOT_FOUND: `actor_id` is not a user of the organization (deleted users count: the trail is history).", body = ErrorResponse),
    ))]
pub async fn list_audit_events(
    page: Page,
    ApiQuery(params): ApiQuery<AuditFilterParams>,
    mut t: Tenant,
) -> Result<Json<CursorPage<AuditEvent>>, ApiError> {
    let user = t.caller.user_id.ok_or(ApiError::InsufficientPermissions)?;
    let filters = AuditFilters::parse(&params)?;
    let page = page.resolve(&filters.scope())?;
    let events = repo::list(&mut t.tx, user, &filters, &page).await?;
    t.tx.finish_read();
    Ok(Json(events))
}
