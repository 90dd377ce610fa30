//! Agents (docs/domains/agents.md): the AI agents an organization runs through the proxy.
//!
//! `model` holds the types and lifecycle rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use model::{Agent, AgentPath, AgentStatus};
use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(activate_agent))
        .routes(routes!(pause_agent))
        .routes(routes!(archive_agent))
}
