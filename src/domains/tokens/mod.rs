//! Tokens (docs/domains/tokens.md): personal access tokens, owned by the auth service and managed through
//! it on the caller's behalf.
//!
//! `model` holds the types and the create body's rules, `routes` the operations (there is no
//! `repo`: the auth service is the store).

pub mod model;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use model::{Token, TokenPath};
use routes::*;

use crate::state::Shared;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(get_token, delete_token))
}
