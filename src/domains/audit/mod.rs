//! The audit trail: who changed what, through the API. Every mutating operation records one
//! event in the same transaction as its change ([`record`]); `GET /v1/audit-events` lists them
//! for the organization's owners and admins.
//!
//! `model` holds the types and filters, `context` what a request tells about its origin (request
//! id, client address, user agent), `repo` the SQL, `routes` the operation.

pub mod context;
pub mod model;
pub mod repo;
pub mod routes;

pub use context::AuditContext;
pub use repo::{record, record_in};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}
