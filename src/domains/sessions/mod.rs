//! Sessions: recorded agent conversations through the proxy.

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::stub;
use crate::app::AppState;
use crate::extract::ApiPath;
use crate::pagination::{CursorPage, Page, PageParams, ResourceRef};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{session_id}", get(get_session))
        .route("/v1/sessions/{session_id}/replay", get(replay_session))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// Session id.
    pub session_id: Uuid,
}

stub!(list_sessions: get "/v1/sessions", "sessions", "List sessions",
    params(PageParams), extract(Page) => CursorPage<ResourceRef>);
stub!(get_session: get "/v1/sessions/{session_id}", "sessions", "Get a session",
    params(SessionPath), extract(ApiPath<SessionPath>));
stub!(replay_session: get "/v1/sessions/{session_id}/replay", "sessions", "Replay a session",
    params(SessionPath), extract(ApiPath<SessionPath>));
