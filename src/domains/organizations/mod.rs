//! Organizations (DOMAINS.md §4): the caller's tenant, its suspension and its GDPR deletion.
//!
//! `model` holds the types, `repo` the SQL, `routes` the operations, `deletion` the background
//! job that removes a deleted organization's rows.

pub mod deletion;
pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::routing::{get, post};

pub use model::{OrgPath, Organization};
use routes::*;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
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
