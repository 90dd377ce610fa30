//! Data-protection requests (docs/domains/data-requests.md): access, portability and erasure
//! for one end user, one operator or a whole organization, planned before anything is touched,
//! carried out store by store, and proven by a signed receipt.
//!
//! `model` holds the types and body rules, `repo` the operations' SQL, `routes` the operations;
//! `plan` freezes what a request covers (and names, per subject kind, the stores it covers),
//! `worker` carries requests through their statuses, `archive` writes access archives, `receipt`
//! signs and chains receipts; `data_map` is the inventory of every store (the one place a new
//! table, bucket or channel is declared), `retention` the sweep that removes deleted rows for
//! good once their retention period is over.

pub mod archive;
pub mod data_map;
pub mod model;
pub mod plan;
pub mod receipt;
pub mod repo;
pub mod retention;
pub mod routes;
pub mod worker;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(get_data_map))
        .routes(routes!(jwks))
        .routes(routes!(create_data_request, list_data_requests))
        .routes(routes!(get_data_request))
        .routes(routes!(confirm_data_request))
        .routes(routes!(cancel_data_request))
        .routes(routes!(extend_data_request))
        .routes(routes!(get_archive))
        .routes(routes!(get_receipt))
        .routes(routes!(get_public_receipt))
}
