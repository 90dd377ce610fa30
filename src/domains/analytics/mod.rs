//! Analytics: usage, latency, model mix and error rates of an organization.

use axum::Router;
use axum::routing::get;

use super::stub;
use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/analytics/usage", get(usage))
        .route("/v1/analytics/latency", get(latency))
        .route("/v1/analytics/models", get(models))
        .route("/v1/analytics/errors", get(errors))
}

stub!(usage: get "/v1/analytics/usage", "analytics", "Token and request usage", params(), extract());
stub!(latency: get "/v1/analytics/latency", "analytics", "Latency percentiles", params(), extract());
stub!(models: get "/v1/analytics/models", "analytics", "Usage by model", params(), extract());
stub!(errors: get "/v1/analytics/errors", "analytics", "Error rates", params(), extract());
