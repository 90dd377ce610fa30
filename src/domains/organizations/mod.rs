//! Organizations (DOMAINS.md §4): the caller's tenant, its suspension and its GDPR deletion.
//!
//! `model` holds the types, `repo` the SQL, `routes` the operations, `deletion` the background
//! job that removes a deleted organization's rows.

pub mod deletion;
pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

pub use model::{OrgPath, Organization};
use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route(
            "/v1/organizations/{org_id}",
            get(get_organization)
                .patch(update_organization)
                .delete(delete_organization),
        )
        .route(
            "/v1/organizations/{org_id}/suspend",
            post(suspend_organization),
        )
}
