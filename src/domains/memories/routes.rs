//! The seven memory operations. Each checks its permission bit first, then that the agent is a
//! live agent of the caller's organization (404 otherwise, before anything else is read).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::model::{
    ConfirmParam, ExportJob, ExportJobPath, ExportRequest, FilterParams, Filters, Memory,
    MemoryPath, ScoredMemory, SearchRequest, SearchResults,
};
use super::repo::{self, Selection};
use super::search::MemoryService;
use crate::domains::agents::AgentPath;
use crate::domains::agents::repo::live_status;
use crate::domains::audit::{AuditContext, record};
use crate::error::{ApiError, ErrorResponse};
use crate::state::AppState;
use crate::tenancy::{Permitted, Tenant, need};
use crate::wire::extract::{ApiJson, ApiPath, ApiQuery};
use crate::wire::pagination::{CursorPage, Page, PageParams};

/// The header a bulk delete reports its count in.
pub const DELETED_COUNT: &str = "ibex-deleted-count";

/// List an agent's memories
///
/// Needs `memory:read`. Newest first. Every filter is an exact match and all given apply together;
/// `status` defaults to `active`. A cursor is valid only with the filters that produced it.
#[utoipa::path(get, path = "/v1/agents/{agent_id}/memories", tag = "memories",
    params(AgentPath, PageParams, FilterParams),
    responses((status = 200, description = "One page of memories.", body = CursorPage<Memory>)))]
pub async fn list_memories(
    ApiPath(path): ApiPath<AgentPath>,
    page: Page,
    ApiQuery(params): ApiQuery<FilterParams>,
    mut t: Tenant<{ need::MEMORY_READ }>,
) -> Result<Json<CursorPage<Memory>>, ApiError> {
    let filters = Filters::parse(&params)?;
    let page = page.resolve(&filters.scope(path.agent_id))?;
    // The agent check travels with the read (`read_below_agent`).
    let memories = repo::list(&mut t.tx, path.agent_id, &filters, &page).await?;
    t.tx.finish_read();
    Ok(Json(memories))
}

/// Get a memory
///
/// Needs `memory:read`. A deleted memory is a 404.
#[utoipa::path(get, path = "/v1/agents/{agent_id}/memories/{memory_id}", tag = "memories",
    params(MemoryPath),
    responses((status = 200, description = "The memory.", body = Memory)))]
pub async fn get_memory(
    ApiPath(path): ApiPath<MemoryPath>,
    mut t: Tenant<{ need::MEMORY_READ }>,
) -> Result<Json<Memory>, ApiError> {
    // The agent check travels with the read (`read_below_agent`).
    let memory = repo::get(&mut t.tx, path.agent_id, path.memory_id).await?;
    t.tx.finish_read();
    Ok(Json(memory))
}

/// Delete a memory
///
/// Needs `memory:delete`. A soft delete with its cascade in one transaction: a `delete` history
/// row, its relationships removed, and the proxy told at once (its hot cache loses the id;
/// `ibex:memory:deletions` is published). A memory already deleted is a 404.
#[utoipa::path(delete, path = "/v1/agents/{agent_id}/memories/{memory_id}", tag = "memories",
    params(MemoryPath),
    responses((status = 204, description = "Deleted.")))]
pub async fn delete_memory(
    ApiPath(path): ApiPath<MemoryPath>,
    audit: AuditContext,
    mut t: Tenant<{ need::MEMORY_DELETE }>,
) -> Result<StatusCode, ApiError> {
    live_status(&mut t.tx, path.agent_id, false).await?;
    let deleted = repo::delete(
        &mut t.tx,
        path.agent_id,
        Selection::One(path.memory_id),
        t.caller.user_id,
    )
    .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("No memory with this id."));
    }
    record(&mut t, &audit, "memory.delete", path.memory_id, &[]);
    t.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete every memory the filters match
///
/// Needs `memory:delete` and `confirm=true`. Atomic: all the matching memories or none, each with
/// the cascade of a single delete. The count is in `Ibex-Deleted-Count` (0 when nothing matched).
#[utoipa::path(delete, path = "/v1/agents/{agent_id}/memories", tag = "memories",
    params(AgentPath, ConfirmParam, FilterParams),
    responses(
        (status = 204, description = "Deleted.",
            headers(("Ibex-Deleted-Count" = u64, description = "How many memories were deleted."))),
    ))]
pub async fn delete_memories(
    ApiPath(path): ApiPath<AgentPath>,
    ApiQuery(confirm): ApiQuery<ConfirmParam>,
    ApiQuery(params): ApiQuery<FilterParams>,
    audit: AuditContext,
    mut t: Tenant<{ need::MEMORY_DELETE }>,
) -> Result<impl IntoResponse, ApiError> {
    if confirm.confirm.as_deref() != Some("true") {
        return Err(ApiError::field(
            "confirm",
            "CONFIRMATION_REQUIRED",
            "must be true to delete every matching memory",
        ));
    }
    let filters = Filters::parse(&params)?;
    live_status(&mut t.tx, path.agent_id, false).await?;
    let deleted = repo::delete(
        &mut t.tx,
        path.agent_id,
        Selection::Matching(&filters),
        t.caller.user_id,
    )
    .await?;
    // The target is the agent whose memories went; the filters are not recorded (a tag can
    // be content).
    record(&mut t, &audit, "memory.bulk_delete", path.agent_id, &[]);
    t.tx.commit().await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(DELETED_COUNT, deleted.to_string())],
    ))
}

/// Search an agent's memories
///
/// Needs `memory:read`. Ranked by the platform's memory service, best first. Results are read back
/// under the caller's organization: an id that is not a live memory of this agent is dropped.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/memories/search", tag = "memories",
    params(AgentPath),
    request_body = crate::domains::memories::model::SearchBody,
    responses(
        (status = 200, description = "The results, best first.", body = SearchResults),
        (status = 503, description = "MEMORY_SERVICE_UNAVAILABLE: the memory service is down, slow or answered nonsense; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    ))]
pub async fn search_memories(
    state: AppState,
    State(memory_service): State<MemoryService>,
    ApiPath(path): ApiPath<AgentPath>,
    Permitted(caller): Permitted<{ need::MEMORY_READ }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<SearchResults>, ApiError> {
    let request = SearchRequest::parse(body)?;
    // The agent first: an unknown agent is a 404 without a call to the memory service.
    let mut tx = state.db.begin_for(&caller).await?;
    live_status(&mut tx, path.agent_id, false).await?;
    tx.finish_read();
    let ranked = memory_service
        .search(caller.org_id, path.agent_id, &request)
        .await?;
    let ids: Vec<_> = ranked.iter().map(|(id, _)| *id).collect();
    let mut tx = state.db.begin_for(&caller).await?;
    let mut memories = repo::get_many(&mut tx, path.agent_id, &ids).await?;
    tx.finish_read();
    let mut items = Vec::with_capacity(memories.len());
    for (id, score) in ranked {
        // In the service's order; a repeated id counts once.
        if let Some(at) = memories.iter().position(|m| m.id == id) {
            items.push(ScoredMemory {
                memory: memories.swap_remove(at),
                score,
            });
        }
    }
    Ok(Json(SearchResults { items }))
}

/// Export an agent's memories
///
/// Needs `memory:bulk_export`. Starts a background export of the memories the filters match (the
/// list's filters; `status` defaults to `active`) as CSV (columns id, category, content,
/// confidence, source, created_at, retrieval_count; RFC 4180; a cell starting with `=`, `+`, `-`,
/// `@`, tab or CR is prefixed with `'`) or NDJSON (one memory per line, without `metadata`). Poll
/// the job at `Location`; once it succeeded it carries a download URL.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/memories/export", tag = "memories",
    params(AgentPath),
    request_body = crate::domains::memories::model::ExportBody,
    responses(
        (status = 202, description = "The job, pending; `Location` names it.", body = ExportJob,
            headers(("Location" = String, description = "/v1/agents/{agent_id}/memories/export/{job_id}")),
            links(
                ("GetExport" = (operation_id = "get_memory_export", parameters(
                    ("agent_id" = "$response.body#/agent_id"),
                    ("job_id" = "$response.body#/job_id"),
                ))),
            )),
        (status = 503, description = "SERVICE_UNAVAILABLE: the object store is not configured.", body = ErrorResponse),
    ))]
pub async fn export_memories(
    ApiPath(path): ApiPath<AgentPath>,
    audit: AuditContext,
    mut t: Tenant<{ need::MEMORY_BULK_EXPORT }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let request = ExportRequest::parse(body)?;
    if t.state.storage.is_none() {
        return Err(ApiError::ServiceUnavailable);
    }
    live_status(&mut t.tx, path.agent_id, false).await?;
    let job = repo::insert_export(
        &mut t.tx,
        path.agent_id,
        request.format,
        &request.filters,
        t.caller.user_id,
    )
    .await?;
    record(&mut t, &audit, "memory_export.create", job.job_id, &[]);
    t.tx.commit().await?;
    t.state.exports.notify_one();
    let location = format!(
        "/v1/agents/{}/memories/export/{}",
        path.agent_id, job.job_id
    );
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(job)))
}

/// Get an export job
///
/// Needs `memory:bulk_export`. Once `succeeded`, `download_url` is a pre-signed GET URL made at
/// this read (valid 15 minutes; no credentials needed; useless once changed or expired).
#[utoipa::path(get, path = "/v1/agents/{agent_id}/memories/export/{job_id}", tag = "memories",
    params(ExportJobPath),
    responses((status = 200, description = "The job.", body = ExportJob)))]
pub async fn get_memory_export(
    ApiPath(path): ApiPath<ExportJobPath>,
    mut t: Tenant<{ need::MEMORY_BULK_EXPORT }>,
) -> Result<Json<ExportJob>, ApiError> {
    live_status(&mut t.tx, path.agent_id, false).await?;
    let (mut job, key) = repo::get_export(&mut t.tx, path.agent_id, path.job_id).await?;
    t.tx.finish_read();
    if let (Some(key), Some(storage)) =
        (key.filter(|_| job.status == "succeeded"), &t.state.storage)
    {
        let (url, expires_at) = storage
            .exports
            .presign_get(&key, storage.url_ttl)
            .await
            .map_err(|_| ApiError::ServiceUnavailable)?;
        job.download_url = Some(url);
        job.download_expires_at = Some(expires_at);
    }
    Ok(Json(job))
}
