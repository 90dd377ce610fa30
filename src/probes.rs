//! The platform's probe contract: `/health` (liveness) and `/ready` (readiness).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::readiness::{HealthReport, HealthStatus};
use crate::state::{AppState, Shared};
use crate::wire::response::KeepBody;

pub fn router<S: Shared>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

/// Liveness: the process serves HTTP. Touches no dependency, so a dependency outage never gets
/// the pod restarted.
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health",
    responses((status = 200, description = "The process is alive.", body = HealthReport)))]
pub async fn health() -> Json<HealthReport> {
    Json(HealthReport {
        status: HealthStatus::Ok,
        checks: Default::default(),
    })
}

/// Readiness: every critical dependency answers within its deadline and the service is not
/// draining.
#[utoipa::path(get, path = "/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready (`ok`, or `degraded` when only a non-critical check failed).", body = HealthReport),
        (status = 503, description = "Not ready: a critical check failed or the service is draining.", body = HealthReport),
    ))]
pub async fn ready(state: AppState) -> Response {
    let report = state.readiness.report().await;
    let status = match report.status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Ok | HealthStatus::Degraded => StatusCode::OK,
    };
    let mut response = (status, Json(report)).into_response();
    response.extensions_mut().insert(KeepBody);
    response
}
