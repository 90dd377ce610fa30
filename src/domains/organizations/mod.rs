//! Organizations (docs/domains/organizations.md): the caller's tenant, its suspension and its GDPR deletion.
//!
//! `model` holds the types, `repo` the SQL, `routes` the operations, `deletion` the background
//! job that removes a deleted organization's rows.

pub mod deletion;
pub mod model;
pub mod repo;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use model::{OrgPath, Organization};
use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(
            get_organization,
            update_organization,
            delete_organization
        ))
        .routes(routes!(suspend_organization))
}
