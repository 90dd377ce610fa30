//! Agents (DOMAINS.md §3): the AI agents an organization runs through the proxy.
//!
//! `model` holds the types and lifecycle rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

pub use model::{Agent, AgentPath, AgentStatus};
use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route(
            "/v1/agents/{agent_id}",
            get(get_agent).patch(update_agent).delete(delete_agent),
        )
        .route("/v1/agents/{agent_id}/activate", post(activate_agent))
        .route("/v1/agents/{agent_id}/pause", post(pause_agent))
        .route("/v1/agents/{agent_id}/archive", post(archive_agent))
}
