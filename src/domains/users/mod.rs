//! Users (docs/domains/users.md): the people of an organization and their roles.
//!
//! `model` holds the types and role rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use model::{User, UserPath};
use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}
