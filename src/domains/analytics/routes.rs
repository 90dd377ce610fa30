//! The four analytics operations; all need `trace:read`. Each validates its parameters, checks a
//! given `agent_id` against the caller's organization (404 AGENT_NOT_FOUND for a foreign or unknown one), then answers
//! from the cache or from ClickHouse, filling every bucket of the range.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use serde::Serialize;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{Content, Object, Ref, RefOr, ResponseBuilder, Type};

use super::model::{
    ErrorBucket, ErrorCodeParam, ErrorCount, ErrorSeries, GranularityParam, LatencyBucket,
    LatencySeries, ModelBreakdown, PercentileParam, Query, RangeParams, RawParams, UsageBucket,
    UsageSeries,
};
use super::store::TraceStore;
use super::{Analytics, cache};
use crate::auth::Caller;
use crate::domains::agents::repo::require_live_agent;
use crate::error::ApiError;
use crate::state::{AppState, Shared};
use crate::tenancy::{Permitted, need};
use crate::wire::extract::ApiQuery;
use uuid::Uuid;

/// Who asks an analytics question (with `trace:read`, checked first) and what answers it.
pub struct Asker {
    state: AppState,
    analytics: Arc<Analytics>,
    caller: Caller,
}

impl<S: Shared> FromRequestParts<S> for Asker
where
    Arc<Analytics>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Permitted(caller) =
            Permitted::<{ need::TRACE_READ }>::from_request_parts(parts, state).await?;
        Ok(Self {
            state: state.app_state().clone(),
            analytics: Arc::from_ref(state),
            caller,
        })
    }
}

impl Asker {
    /// Validates, checks the agent, then answers from the cache or computes (and caches) the
    /// answer; `compute` gets the store, the caller's organization and the query.
    async fn answer<T, F, Fut>(
        self,
        endpoint: &str,
        params: RawParams<'_>,
        compute: F,
    ) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: FnOnce(TraceStore, Uuid, Query) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let query = Query::parse(params)?;
        if let Some(agent_id) = query.agent_id {
            let mut tx = self.state.db.begin_for(&self.caller).await?;
            require_live_agent(&mut tx, agent_id).await?;
            tx.finish_read();
        }
        let key = cache::key(self.caller.org_id, &query.normalized(endpoint));
        let cache = &self.analytics.cache;
        let cached = cache.get(&key).await;
        crate::observability::metrics::record_analytics_cache_lookup(cached.is_some());
        if let Some(hit) = cached {
            return Ok(json(hit));
        }
        let store = self
            .analytics
            .store
            .clone()
            .ok_or(ApiError::AnalyticsUnavailable)?;
        let ttl = if endpoint == "models" {
            60
        } else {
            query.granularity.cache_ttl_secs()
        };
        let answer = compute(store, self.caller.org_id, query).await?;
        let body = serde_json::to_vec(&answer).map_err(|_| ApiError::Internal)?;
        cache.put(&key, &body, ttl).await;
        Ok(json(body))
    }
}

fn json(body: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// Every bucket of the query's range, oldest first: `fill` makes each from its row, a bucket
/// without traffic from an empty (default) row.
fn buckets<R: Default, B>(
    q: &Query,
    rows: Vec<R>,
    at: impl Fn(&R) -> u32,
    fill: impl Fn(chrono::DateTime<chrono::Utc>, R) -> B,
) -> Vec<B> {
    let mut by_bucket: BTreeMap<u32, R> = rows.into_iter().map(|r| (at(&r), r)).collect();
    q.granularity
        .buckets(q.start, q.end)
        .into_iter()
        .map(|start| {
            let secs = u32::try_from(start.timestamp()).unwrap_or(0);
            fill(start, by_bucket.remove(&secs).unwrap_or_default())
        })
        .collect()
}

/// The answers every analytics query shares beyond its 200: the agent filter's 404 and the
/// trace store's 503.
struct AnalyticsRefusals;

impl utoipa::IntoResponses for AnalyticsRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let error = || Content::new(Some(Ref::from_schema_name("ErrorResponse")));
        BTreeMap::from([
            (
                "404".to_owned(),
                ResponseBuilder::new()
                    .description("AGENT_NOT_FOUND: `agent_id` is not a live agent of the organization (another organization's and an unknown one answer alike).")
                    .content("application/json", error())
                    .build()
                    .into(),
            ),
            (
                "503".to_owned(),
                ResponseBuilder::new()
                    .description("ANALYTICS_UNAVAILABLE: ClickHouse is down or the query ran past its deadline.")
                    .content("application/json", error())
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::Integer)))
                            .description(Some("Seconds to wait."))
                            .build(),
                    )
                    .build()
                    .into(),
            ),
        ])
    }
}

/// Requests and tokens over time
///
/// Needs `trace:read`. Per UTC bucket (`week` starts on Monday): requests and input, output and
/// total tokens of the caller's organization (or one agent). Every bucket of the range is present,
/// zeros included, oldest first; only requests inside [start, end) count. At most 90 days (7 for
/// `hour`).
#[utoipa::path(get, path = "/v1/analytics/usage", tag = "analytics", params(RangeParams, GranularityParam),
    responses(
        (status = 200, description = "The series.", body = UsageSeries),
        AnalyticsRefusals,
    ))]
pub async fn usage(
    asker: Asker,
    ApiQuery(range): ApiQuery<RangeParams>,
    ApiQuery(bucket): ApiQuery<GranularityParam>,
) -> Result<Response, ApiError> {
    let params = RawParams {
        granularity: bucket.granularity.as_deref(),
        ..range.raw()
    };
    asker
        .answer("usage", params, |store, org, q| async move {
            let rows = store.usage(org, &q).await?;
            let buckets = buckets(
                &q,
                rows,
                |r| r.bucket,
                |start, r| UsageBucket {
                    start,
                    requests: r.requests,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    total_tokens: r.total_tokens,
                },
            );
            Ok(UsageSeries {
                granularity: q.granularity,
                start: q.start,
                end: q.end,
                buckets,
            })
        })
        .await
}

/// Latency percentiles over time
///
/// Needs `trace:read`. Per UTC bucket: requests, and the `percentile` (50, 95 or 99; default 95) of
/// the proxy's own overhead and of the time to first byte, in ms (ClickHouse's `quantile`: exact up
/// to 8 192 requests a bucket, a uniform sample beyond). A bucket without requests has null
/// latencies.
#[utoipa::path(get, path = "/v1/analytics/latency", tag = "analytics", params(RangeParams, GranularityParam, PercentileParam),
    responses(
        (status = 200, description = "The series.", body = LatencySeries),
        AnalyticsRefusals,
    ))]
pub async fn latency(
    asker: Asker,
    ApiQuery(range): ApiQuery<RangeParams>,
    ApiQuery(bucket): ApiQuery<GranularityParam>,
    ApiQuery(percentile): ApiQuery<PercentileParam>,
) -> Result<Response, ApiError> {
    let params = RawParams {
        granularity: bucket.granularity.as_deref(),
        percentile: percentile.percentile.as_deref(),
        ..range.raw()
    };
    asker
        .answer("latency", params, |store, org, q| async move {
            let rows = store.latency(org, &q).await?;
            let buckets = buckets(
                &q,
                rows,
                |r| r.bucket,
                |start, r| LatencyBucket {
                    start,
                    requests: r.requests,
                    // A bucket without requests has no latency.
                    proxy_overhead_ms: (r.requests > 0).then_some(r.proxy_overhead_ms),
                    ttfb_ms: (r.requests > 0).then_some(r.ttfb_ms),
                },
            );
            Ok(LatencySeries {
                granularity: q.granularity,
                start: q.start,
                end: q.end,
                percentile: q.percentile,
                buckets,
            })
        })
        .await
}

/// Usage per model
///
/// Needs `trace:read`. Per model and provider over the range: requests and tokens, most total
/// tokens first.
#[utoipa::path(get, path = "/v1/analytics/models", tag = "analytics", params(RangeParams),
    responses(
        (status = 200, description = "The breakdown.", body = ModelBreakdown),
        AnalyticsRefusals,
    ))]
pub async fn models(
    asker: Asker,
    ApiQuery(range): ApiQuery<RangeParams>,
) -> Result<Response, ApiError> {
    let params = range.raw();
    asker
        .answer("models", params, |store, org, q| async move {
            let rows = store.models(org, &q).await?;
            Ok(ModelBreakdown {
                start: q.start,
                end: q.end,
                models: rows,
            })
        })
        .await
}

/// Errors over time
///
/// Needs `trace:read`. Per UTC bucket: the requests that ended with an error, in all and per error
/// code (optionally only `error_code`), most frequent first.
#[utoipa::path(get, path = "/v1/analytics/errors", tag = "analytics", params(RangeParams, GranularityParam, ErrorCodeParam),
    responses(
        (status = 200, description = "The series.", body = ErrorSeries),
        AnalyticsRefusals,
    ))]
pub async fn errors(
    asker: Asker,
    ApiQuery(range): ApiQuery<RangeParams>,
    ApiQuery(bucket): ApiQuery<GranularityParam>,
    ApiQuery(code): ApiQuery<ErrorCodeParam>,
) -> Result<Response, ApiError> {
    let params = RawParams {
        granularity: bucket.granularity.as_deref(),
        error_code: code.error_code.as_deref(),
        ..range.raw()
    };
    asker
        .answer("errors", params, |store, org, q| async move {
            let rows = store.errors(org, &q).await?;
            let mut per_bucket: BTreeMap<u32, Vec<ErrorCount>> = BTreeMap::new();
            for row in rows {
                per_bucket.entry(row.bucket).or_default().push(ErrorCount {
                    error_code: row.error_code,
                    count: row.count,
                });
            }
            let buckets = buckets(
                &q,
                per_bucket.into_iter().collect(),
                |(at, _)| *at,
                |start, (_, codes)| ErrorBucket {
                    start,
                    errors: codes.iter().map(|c| c.count).sum(),
                    codes,
                },
            );
            Ok(ErrorSeries {
                granularity: q.granularity,
                start: q.start,
                end: q.end,
                buckets,
            })
        })
        .await
}
