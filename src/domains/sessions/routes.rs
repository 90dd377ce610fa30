//! The three session operations; all need `session:read`.

use axum::Json;
use axum::extract::State;

use super::model::{Replay, Session, SessionFilterParams, SessionFilters, SessionPath};
use super::repo;
use crate::auth::{Caller, Permissions};
use crate::error::{ApiError, Conflict, ErrorResponse};
use crate::state::AppState;
use crate::wire::extract::{ApiPath, ApiQuery};
use crate::wire::pagination::{CursorPage, Page, PageParams};

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", summary = "List sessions",
    description = "Needs `session:read`. Newest first. Filters are exact matches and all given apply together; a cursor is valid only with the filters that produced it.",
    params(PageParams, SessionFilterParams),
    responses(
        (status = 200, description = "One page of sessions.", body = CursorPage<Session>),
        (status = 404, description = "AGENT_NOT_FOUND: `agent_id` is not a live agent of the organization (another organization's and an unknown one answer alike).", body = ErrorResponse),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    page: Page,
    ApiQuery(params): ApiQuery<SessionFilterParams>,
) -> Result<Json<CursorPage<Session>>, ApiError> {
    caller.require(Permissions::SESSION_READ)?;
    let filters = SessionFilters::parse(&params)?;
    let page = page.resolve(&filters.scope())?;
    let mut tx = state.db.begin_for(&caller).await?;
    let sessions = repo::list(&mut tx, &filters, &page).await?;
    tx.finish_read();
    Ok(Json(sessions))
}

#[utoipa::path(get, path = "/v1/sessions/{session_id}", tag = "sessions", summary = "Get a session",
    description = "Needs `session:read`.",
    params(SessionPath),
    responses(
        (status = 200, description = "The session.", body = Session),
        (status = 404, description = "NOT_FOUND: no such session in the organization.", body = ErrorResponse),
    ))]
pub async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<SessionPath>,
) -> Result<Json<Session>, ApiError> {
    caller.require(Permissions::SESSION_READ)?;
    let mut tx = state.db.begin_for(&caller).await?;
    let session = repo::get(&mut tx, path.session_id).await?;
    tx.finish_read();
    Ok(Json(session))
}

#[utoipa::path(get, path = "/v1/sessions/{session_id}/replay", tag = "sessions",
    summary = "Get a replay link",
    description = "Needs `session:read`. A pre-signed GET URL of the session's archive (written by the platform's archiver), valid 15 minutes, made at this request; no credentials needed, useless once changed or expired.",
    params(SessionPath),
    responses(
        (status = 200, description = "The link.", body = Replay),
        (status = 404, description = "NOT_FOUND: no such session in the organization.", body = ErrorResponse),
        (status = 409, description = "SESSION_NOT_ARCHIVED: the session's archive does not exist (yet).", body = ErrorResponse),
    ))]
pub async fn replay_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<SessionPath>,
) -> Result<Json<Replay>, ApiError> {
    caller.require(Permissions::SESSION_READ)?;
    let mut tx = state.db.begin_for(&caller).await?;
    let session = repo::get(&mut tx, path.session_id).await?;
    tx.finish_read();
    let storage = state.storage.as_ref().ok_or(ApiError::ServiceUnavailable)?;
    let key = repo::archive_key(caller.org_id, session.agent_id, session.id);
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
