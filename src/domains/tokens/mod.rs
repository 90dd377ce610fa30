//! Personal access tokens of the caller's organization.

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
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{token_id}", get(get_token).delete(delete_token))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// Token id (never the token itself).
    pub token_id: Uuid,
}

stub!(list_tokens: get "/v1/tokens", "tokens", "List tokens",
    params(PageParams), extract(Page) => CursorPage<ResourceRef>);
stub!(create_token: post "/v1/tokens", "tokens", "Create a token", params(), extract());
stub!(get_token: get "/v1/tokens/{token_id}", "tokens", "Get a token",
    params(TokenPath), extract(ApiPath<TokenPath>));
stub!(delete_token: delete "/v1/tokens/{token_id}", "tokens", "Revoke a token",
    params(TokenPath), extract(ApiPath<TokenPath>));
