//! Users (DOMAINS.md §4): the people of an organization and their roles.
//!
//! `model` holds the types and role rules, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

pub use model::{User, UserPath};
use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/v1/users", get(list_users).post(create_user))
        .route(
            "/v1/users/{user_id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
}
