//! Memories (docs/domains/memories.md): what the memory engine keeps for an agent. Operators list, read,
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

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S>
where
    search::MemoryService: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_memories, delete_memories))
        .routes(routes!(get_memory, delete_memory))
        .routes(routes!(search_memories))
        .routes(routes!(export_memories))
        .routes(routes!(get_memory_export))
}
