//! Users of an organization.

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
        .route("/v1/users", get(list_users).post(create_user))
        .route(
            "/v1/users/{user_id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User id.
    pub user_id: Uuid,
}

stub!(list_users: get "/v1/users", "users", "List users",
    params(PageParams), extract(Page) => CursorPage<ResourceRef>);
stub!(create_user: post "/v1/users", "users", "Create a user", params(), extract());
stub!(get_user: get "/v1/users/{user_id}", "users", "Get a user",
    params(UserPath), extract(ApiPath<UserPath>));
stub!(update_user: patch "/v1/users/{user_id}", "users", "Update a user",
    params(UserPath), extract(ApiPath<UserPath>));
stub!(delete_user: delete "/v1/users/{user_id}", "users", "Delete a user",
    params(UserPath), extract(ApiPath<UserPath>));
