//! Tokens (DOMAINS.md §5): personal access tokens, owned by the auth service and managed through
//! it on the caller's behalf.
//!
//! `model` holds the types and the create body's rules, `routes` the operations (there is no
//! `repo`: the auth service is the store).

pub mod model;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

pub use model::{Token, TokenPath};
use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{token_id}", get(get_token).delete(delete_token))
}
