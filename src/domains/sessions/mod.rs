//! Sessions (DOMAINS.md §8): the proxy's record of each conversation, and replay links to the
//! archives the platform's archiver writes to the object store.
//!
//! `model` holds the types and filters, `repo` the SQL, `routes` the operations.

pub mod model;
pub mod repo;
pub mod routes;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use routes::*;

use crate::state::AppState;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{session_id}", get(get_session))
        .route("/v1/sessions/{session_id}/replay", get(replay_session))
}
