//! The three session operations; all need `session:read`.

use axum::Json;

use super::model::{Replay, Session, SessionFilterParams, SessionFilters, SessionPath};
use super::repo;
use crate::error::{ApiError, Conflict, ErrorResponse};
use crate::tenancy::{Tenant, need};
use crate::wire::extract::{ApiPath, ApiQuery};
use crate::wire::pagination::{CursorPage, Page, PageParams};

/// List sessions
///
/// Needs `session:read`. Newest first. Filters are exact matches and all given apply together; a
/// cursor is valid only with the filters that produced it.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(PageParams, SessionFilterParams),
    responses(
        (status = 200, description = "One page of sessions.", body = CursorPage<Session>),
        (status = 404, description = "AGENT_NOT_FOUND: `agent_id` is not a live agent of the organization (another organization's and an unknown one answer alike).", body = ErrorResponse),
    ))]
pub async fn list_sessions(
    page: Page,
    ApiQuery(params): ApiQuery<SessionFilterParams>,
    mut t: Tenant<{ need::SESSION_READ }>,
) -> Result<Json<CursorPage<Session>>, ApiError> {
    let filters = SessionFilters::parse(&params)?;
    let page = page.resolve(&filters.scope())?;
    let sessions = repo::list(&mut t.tx, &filters, &page).await?;
    t.tx.finish_read();
    Ok(Json(sessions))
}

/// Get a session
///
/// Needs `session:read`.
#[utoipa::path(get, path = "/v1/sessions/{session_id}", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "The session.", body = Session)))]
pub async fn get_session(
    ApiPath(path): ApiPath<SessionPath>,
    mut t: Tenant<{ need::SESSION_READ }>,
) -> Result<Json<Session>, ApiError> {
    let session = repo::get(&mut t.tx, path.session_id).await?;
    t.tx.finish_read();
    Ok(Json(session))
}

/// Get a replay link
///
/// Needs `session:read`. A pre-signed GET URL of the session's archive (written by the platform's
/// archiver), valid 15 minutes, made at this request; no credentials needed, useless once changed
/// or expired.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/replay", tag = "sessions",
    params(SessionPath),
    responses(
        (status = 200, description = "The link.", body = Replay),
        (status = 409, description = "SESSION_NOT_ARCHIVED: the session's archive does not exist (yet).", body = ErrorResponse),
    ))]
pub async fn replay_session(
    ApiPath(path): ApiPath<SessionPath>,
    mut t: Tenant<{ need::SESSION_READ }>,
) -> Result<Json<Replay>, ApiError> {
    let session = repo::get(&mut t.tx, path.session_id).await?;
    t.tx.finish_read();
    let storage = t
        .state
        .storage
        .as_ref()
        .ok_or(ApiError::ServiceUnavailable)?;
    let key = repo::archive_key(t.caller.org_id, session.agent_id, session.id);
    let archived = storage
        .archives
        .exists(&key)
        .await
        .map_err(|_| ApiError::ServiceUnavailable)?;
    if !archived {
        return Err(ApiError::Conflict(Conflict::SessionNotArchived));
    }
    let (url, expires_at) = storage
        .archives
        .presign_get(&key, storage.url_ttl)
        .await
        .map_err(|_| ApiError::ServiceUnavailable)?;
    Ok(Json(Replay { url, expires_at }))
}
