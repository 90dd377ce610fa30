//! The platform's domains, one folder each: its routes, its queries and its types.
//!
//! Each domain is one folder shaped alike: `model` (types, body and parameter rules), `repo` or
//! `store` (queries), `routes` (the operations with their OpenAPI description), `mod` (router).

pub mod agents;
pub mod analytics;
pub mod audit;
pub mod data_requests;
pub mod directives;
pub mod memories;
pub mod organizations;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;

use crate::state::Shared;

/// Every route of the service (probes and domains) with its OpenAPI description, before any
/// layer: generic over the application's state, which provides what each domain takes.
pub fn router<S: Shared>() -> OpenApiRouter<S>
where
    memories::search::MemoryService: FromRef<S>,
    Arc<analytics::Analytics>: FromRef<S>,
{
    OpenApiRouter::new()
        .merge(crate::probes::router())
        .merge(organizations::router())
        .merge(users::router())
        .merge(agents::router())
        .merge(tokens::router())
        .merge(directives::router())
        .merge(memories::router())
        .merge(sessions::router())
        .merge(analytics::router())
        .merge(audit::router())
        .merge(data_requests::router())
}
