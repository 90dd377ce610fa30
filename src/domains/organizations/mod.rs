//! Organizations (docs/domains/organizations.md): the caller's tenant, its suspension and its GDPR deletion.
//!
//! `model` holds the types, `repo` the SQL, `routes` the operations, `deletion` the background
//! job that removes a deleted organization's rows.

pub mod deletion;
pub mod model;
pub mod repo;
pub mod routes;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use model::{OrgPath, Organization};
use routes::*;

use crate::state::AppState;

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            get_organization,
            update_organization,
            delete_organization
        ))
        .routes(routes!(suspend_organization))
}
