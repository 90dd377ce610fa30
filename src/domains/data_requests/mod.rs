//! Data-protection requests (docs/domains/data-requests.md). So far: the data map, the
//! inventory of every store the service keeps, what personal data each holds, which data
//! subjects reach it and what covers it today: the ground the access and erasure requests of
//! `/v1/data-requests` will plan over.
//!
//! `model` holds the answer's types, `data_map` the inventory itself (the one place a new table,
//! bucket or channel is declared), `retention` the sweep that removes deleted rows for good once
//! their retention period is over, `routes` the operations.

pub mod data_map;
pub mod model;
pub mod retention;
pub mod routes;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::AppState;

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(get_data_map))
        .routes(routes!(jwks))
}
