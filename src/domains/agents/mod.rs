//! Agents: the AI agents an organization runs through the proxy.

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::stub;
use crate::app::AppState;
use crate::extract::ApiPath;
use crate::pagination::{CursorPage, Page, PageParams, ResourceRef};

pub fn router() -> Router<AppState> {
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    /// Agent id.
    pub agent_id: Uuid,
}

stub!(list_agents: get "/v1/agents", "agents", "List agents",
    params(PageParams), extract(Page) => CursorPage<ResourceRef>);
stub!(create_agent: post "/v1/agents", "agents", "Create an agent", params(), extract());
stub!(get_agent: get "/v1/agents/{agent_id}", "agents", "Get an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(update_agent: patch "/v1/agents/{agent_id}", "agents", "Update an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(delete_agent: delete "/v1/agents/{agent_id}", "agents", "Delete an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(activate_agent: post "/v1/agents/{agent_id}/activate", "agents", "Activate an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(pause_agent: post "/v1/agents/{agent_id}/pause", "agents", "Pause an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(archive_agent: post "/v1/agents/{agent_id}/archive", "agents", "Archive an agent",
    params(AgentPath), extract(ApiPath<AgentPath>));
