//! Memories (DOMAINS.md §7): what the memory engine keeps for an agent. Operators list, read,
//! search (through the platform's memory service), delete (one or in bulk, with the proxy told at
//! once) and export them (background jobs writing to the object store).
//!
//! `model` holds the types and body rules, `repo` the SQL, `routes` the operations, `search`
//! the memory service's client, `export` the export worker, `dev_service` the development
//! stand-in for the memory service.

pub mod dev_service;
pub mod export;
pub mod model;
pub mod repo;
pub mod routes;
pub mod search;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
    search::MemoryService: FromRef<S>,
{
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
