//! Analytics (docs/domains/analytics.md): usage, latency, model mix and errors of the caller's organization,
//! read from the platform's ClickHouse trace store, with a Redis cache in front.
//!
//! `model` holds the parameters, buckets and answers, `store` the ClickHouse queries, `cache`
//! the cache-aside, `routes` the operations.

pub mod cache;
pub mod model;
pub mod routes;
pub mod store;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use routes::*;

use crate::state::Shared;

/// What the analytics operations share.
#[derive(Debug)]
pub struct Analytics {
    /// `None` when no ClickHouse is configured: 503.
    pub store: Option<store::TraceStore>,
    pub cache: cache::AnalyticsCache,
}

pub fn router<S: Shared>() -> OpenApiRouter<S>
where
    std::sync::Arc<Analytics>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(latency))
        .routes(routes!(models))
        .routes(routes!(errors))
}
