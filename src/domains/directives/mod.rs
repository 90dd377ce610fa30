//! Directives (DOMAINS.md §6): an agent's standing instruction, with an append-only version
//! history, announced to the proxy on every change.
//!
//! `model` holds the types and body rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
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
