//! Directives: an agent's versioned standing instructions.

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
            "/v1/agents/{agent_id}/directive",
            get(get_directive)
                .post(set_directive)
                .delete(delete_directive),
        )
        .route(
            "/v1/agents/{agent_id}/directive/versions",
            get(list_directive_versions),
        )
        .route(
            "/v1/agents/{agent_id}/directive/versions/{version_num}",
            get(get_directive_version),
        )
        .route(
            "/v1/agents/{agent_id}/directive/rollback",
            post(rollback_directive),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DirectiveVersionPath {
    /// Agent id.
    pub agent_id: Uuid,
    /// Version number, starting at 1.
    #[param(minimum = 1)]
    pub version_num: u32,
}

stub!(get_directive: get "/v1/agents/{agent_id}/directive", "directives", "Get an agent's current directive",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(set_directive: post "/v1/agents/{agent_id}/directive", "directives", "Set a new directive version",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(delete_directive: delete "/v1/agents/{agent_id}/directive", "directives", "Remove an agent's directive",
    params(AgentPath), extract(ApiPath<AgentPath>));
stub!(list_directive_versions: get "/v1/agents/{agent_id}/directive/versions", "directives", "List directive versions",
    params(AgentPath, PageParams), extract(ApiPath<AgentPath>, Page) => CursorPage<ResourceRef>);
stub!(get_directive_version: get "/v1/agents/{agent_id}/directive/versions/{version_num}", "directives", "Get one directive version",
    params(DirectiveVersionPath), extract(ApiPath<DirectiveVersionPath>));
stub!(rollback_directive: post "/v1/agents/{agent_id}/directive/rollback", "directives", "Roll back to an earlier version",
    params(AgentPath), extract(ApiPath<AgentPath>));
