//! Organizations: the tenant an operator's token belongs to.

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::stub;
use crate::app::AppState;
use crate::extract::ApiPath;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/organizations/{org_id}",
            get(get_organization)
                .patch(update_organization)
                .delete(delete_organization),
        )
        .route(
            "/v1/organizations/{org_id}/suspend",
            post(suspend_organization),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// Organization id.
    pub org_id: Uuid,
}

stub!(get_organization: get "/v1/organizations/{org_id}", "organizations", "Get an organization",
    params(OrgPath), extract(ApiPath<OrgPath>));
stub!(update_organization: patch "/v1/organizations/{org_id}", "organizations", "Update an organization",
    params(OrgPath), extract(ApiPath<OrgPath>));
stub!(delete_organization: delete "/v1/organizations/{org_id}", "organizations", "Delete an organization",
    params(OrgPath), extract(ApiPath<OrgPath>));
stub!(suspend_organization: post "/v1/organizations/{org_id}/suspend", "organizations", "Suspend an organization",
    params(OrgPath), extract(ApiPath<OrgPath>));
