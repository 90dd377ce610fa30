//! Memories: what the memory engine keeps for an agent; search, export and GDPR deletion.

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::agents::AgentPath;
use super::stub;
use crate::app::AppState;
use crate::extract::ApiPath;
use crate::pagination::{CursorPage, Page, PageParams, ResourceRef};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/agents/{agent_id}/memories",
            get(list_memories).delete(delete_memories),
        )
        .route(
            "/v1/agents/{agent_id}/memories/{memory_id}",
            get(get_memory).delete(delete_memory),
        )
        .route(
            "/v1/agents/{agent_id}/memories/search",
            post(search_memories),
        )
        .route(
            "/v1/agents/{agent_id}/memories/export",
            post(export_memories),
        )
        .route(
            "/v1/agents/{agent_id}/memories/export/{job_id}",
            get(get_memory_export),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemoryPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Memory id.
    pub memory_id: Uuid,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExportJobPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Export job id.
    pub job_id: Uuid,
}

stub!(list_memories: get "/v1/agents/{agent_id}/memories", "memories", "List an agent's memories",
    params(AgentPath, PageParams), extract(ApiPath<AgentPath>, Page) => CursorPage<ResourceRef>);
stub!(delete_memories: delete "/v1/agents/{agent_id}/memories", "memories", "Delete all of an agent's memories",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(get_memory: get "/v1/agents/{agent_id}/memories/{memory_id}", "memories", "Get a memory",
    params(MemoryPath), extract(ApiPath<MemoryPath>));
stub!(delete_memory: delete "/v1/agents/{agent_id}/memories/{memory_id}", "memories", "Delete a memory",
    params(MemoryPath), extract(ApiPath<MemoryPath>));
stub!(search_memories: post "/v1/agents/{agent_id}/memories/search", "memories", "Search an agent's memories",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(export_memories: post "/v1/agents/{agent_id}/memories/export", "memories", "Start an export of an agent's memories",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(get_memory_export: get "/v1/agents/{agent_id}/memories/export/{job_id}", "memories", "Get an export job",
    params(ExportJobPath), extract(ApiPath<ExportJobPath>));
