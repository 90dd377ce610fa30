//! Sessions (docs/domains/sessions.md): the proxy's record of each conversation, and replay links to the
//! archives the platform's archiver writes to the object store.
//!
//! `model` holds the types and filters, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(get_session))
        .routes(routes!(replay_session))
}
