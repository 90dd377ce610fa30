//! Analytics (DOMAINS.md §9): usage, latency, model mix and errors of the caller's organization,
//! read from the platform's ClickHouse trace store, with a Redis cache in front.
//!
//! `model` holds the parameters, buckets and answers, `store` the ClickHouse queries, `cache`
//! the cache-aside, `routes` the operations.

pub mod cache;
pub mod model;
pub mod routes;
pub mod store;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use routes::*;

use crate::state::AppState;

/// What the analytics operations share.
#[derive(Debug)]
pub struct Analytics {
    /// `None` when no ClickHouse is configured: 503.
    pub store: Option<store::TraceStore>,
    pub cache: cache::AnalyticsCache,
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
    std::sync::Arc<Analytics>: FromRef<S>,
{
    Router::new()
        .route("/v1/analytics/usage", get(usage))
        .route("/v1/analytics/latency", get(latency))
        .route("/v1/analytics/models", get(models))
        .route("/v1/analytics/errors", get(errors))
}
