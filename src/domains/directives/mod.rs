//! Directives (docs/domains/directives.md): an agent's standing instruction, with an append-only version
//! history, announced to the proxy on every change.
//!
//! `model` holds the types and body rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(get_directive, set_directive, delete_directive))
        .routes(routes!(list_directive_versions))
        .routes(routes!(get_directive_version))
        .routes(routes!(rollback_directive))
}
