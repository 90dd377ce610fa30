//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`, served on
//! their own listener (`IBEX_API_METRICS_ADDR`), never on the API port.
//!
//! Labels are bounded by construction: `route` is the matched template (one shared value, `-`,
//! for every unmatched request), `method` is folded to the methods the API serves, `status` is the
//! numeric status. No label ever carries caller input.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::Method;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use futures_util::future::BoxFuture;

/// Request and dependency latencies on this service run from ~100 µs (a cached token, a probe)
/// through a few ms (a gRPC call, a query) to seconds (deadlines): these buckets resolve each band.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub const HTTP_REQUESTS: &str = "ibex_http_requests_total";
pub const HTTP_DURATION: &str = "ibex_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "ibex_http_requests_in_flight";
pub const AUTH_CALLS: &str = "ibex_auth_calls_total";
pub const AUTH_DURATION: &str = "ibex_auth_call_duration_seconds";
pub const AUTH_CACHE: &str = "ibex_auth_cache_lookups_total";
pub const DB_POOL_CONNECTIONS: &str = "ibex_db_pool_connections";
pub const DB_ACQUIRE_TIMEOUTS: &str = "ibex_db_pool_acquire_timeouts_total";
pub const OUTBOX_BACKLOG: &str = "ibex_outbox_undelivered_events";
pub const OUTBOX_OLDEST_AGE: &str = "ibex_outbox_oldest_undelivered_age_seconds";
pub const DB_TRANSACTION_DURATION: &str = "ibex_db_transaction_duration_seconds";
pub const EXPORT_QUEUE: &str = "ibex_export_jobs_queued";
pub const EXPORT_OLDEST_AGE: &str = "ibex_export_oldest_queued_age_seconds";
pub const ANALYTICS_CACHE: &str = "ibex_analytics_cache_lookups_total";
pub const READY: &str = "ibex_ready";
pub const DEPENDENCY_UP: &str = "ibex_dependency_up";
pub const SPANS_DROPPED: &str = "ibex_trace_spans_dropped_total";
pub const BUILD_INFO: &str = "ibex_build_info";
pub const RATE_LIMIT_DECISIONS: &str = "ibex_rate_limit_decisions_total";
pub const RETENTION_REMOVED: &str = "ibex_retention_rows_removed_total";
pub const DATA_REQUESTS_OVERDUE: &str = "ibex_data_requests_overdue";
pub const DATA_REQUESTS_OPEN: &str = "ibex_data_requests_open";

/// Every counter with a fixed label set, exported at zero from the start: a rule such as
/// `increase(ibex_db_pool_acquire_timeouts_total[5m]) > 0` must find a series before the first
/// event, not only after it.
fn export_counters_at_zero() {
    for outcome in ["ok", "rejected", "unavailable"] {
        metrics::counter!(AUTH_CALLS, "outcome" => outcome).absolute(0);
    }
    for result in ["hit", "miss"] {
        metrics::counter!(AUTH_CACHE, "result" => result).absolute(0);
        metrics::counter!(ANALYTICS_CACHE, "result" => result).absolute(0);
    }
    metrics::counter!(DB_ACQUIRE_TIMEOUTS).absolute(0);
    metrics::counter!(SPANS_DROPPED).absolute(0);
    metrics::counter!(RETENTION_REMOVED).absolute(0);
    for outcome in ["allowed", "limited", "fail_open"] {
        metrics::counter!(RATE_LIMIT_DECISIONS, "outcome" => outcome).absolute(0);
    }
}

/// Installs the process-wide recorder once (tests start many apps in one process) and returns
/// its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("non-empty buckets")
                .install_recorder()
                .expect("the only metrics recorder of the process");
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            export_counters_at_zero();
            handle
        })
        .clone()
}

/// The method label: the methods the API serves, everything else one value.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// One finished request.
pub fn record_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method_label(method).to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts a request in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight;

impl InFlight {
    pub fn start() -> Self {
        metrics::gauge!(HTTP_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

/// One ValidateToken call: `ok`, `rejected` (a bad token) or `unavailable`.
pub fn record_auth_call(outcome: &'static str, elapsed: Duration) {
    metrics::counter!(AUTH_CALLS, "outcome" => outcome).increment(1);
    metrics::histogram!(AUTH_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

pub fn record_cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(AUTH_CACHE, "result" => result).increment(1);
}

/// One rate-limit decision: `allowed`, `limited` (429) or `fail_open` (Redis did not answer).
pub fn record_rate_limit(outcome: &'static str) {
    metrics::counter!(RATE_LIMIT_DECISIONS, "outcome" => outcome).increment(1);
}

pub fn record_acquire_timeout() {
    metrics::counter!(DB_ACQUIRE_TIMEOUTS).increment(1);
}

/// One organization transaction, from BEGIN to the end of COMMIT: the database time a request
/// waits for (its statements and the round trips around them).
pub fn record_db_transaction(outcome: &'static str, elapsed: Duration) {
    metrics::histogram!(DB_TRANSACTION_DURATION, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

pub fn record_analytics_cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(ANALYTICS_CACHE, "result" => result).increment(1);
}

/// The last readiness verdict (`/ready`, as the kubelet probes it) and each dependency's check.
pub fn record_readiness(ready: bool, checks: &[(&str, bool)]) {
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    for (name, up) in checks {
        metrics::gauge!(DEPENDENCY_UP, "dependency" => name.to_string()).set(if *up {
            1.0
        } else {
            0.0
        });
    }
}

/// Something `/metrics` asks at scrape time (the database pool, the outbox, the export queue):
/// its owner implements it and the application hands it over, so metrics know none of them.
/// A sampler bounds its own work (a scrape must not hang on a database that is away) and leaves
/// its gauges as they were when it cannot tell.
pub trait Sampler: Send + Sync + std::fmt::Debug {
    fn sample(&self) -> BoxFuture<'_, ()>;
}

/// What `/metrics` serves: what the code records as it goes, plus the samplers' gauges.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub handle: PrometheusHandle,
    pub samplers: Vec<Arc<dyn Sampler>>,
}

impl Sampled {
    async fn render(&self) -> String {
        futures_util::future::join_all(self.samplers.iter().map(|s| s.sample())).await;
        self.handle.render()
    }
}

async fn metrics_text(
    State(sampled): State<Arc<Sampled>>,
) -> ([(http::HeaderName, &'static str); 1], String) {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        sampled.render().await,
    )
}

/// Starts the metrics listener when `IBEX_API_METRICS_ADDR` is set; returns where it listens.
pub async fn start(
    config: &crate::config::Config,
    samplers: Vec<Arc<dyn Sampler>>,
) -> Result<Option<SocketAddr>, String> {
    let Some(addr) = config.observability.metrics_addr else {
        return Ok(None);
    };
    let sampled = Sampled {
        handle: handle(),
        samplers,
    };
    serve(addr, sampled)
        .await
        .map(Some)
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))
}

/// Serves `GET /metrics` on `addr` until the process ends; returns the bound address. An internal
/// port for the scraper, not the public one: a plain `axum::serve` without the API's layers.
pub async fn serve(addr: SocketAddr, sampled: Sampled) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(sampled));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener stopped");
        }
    });
    Ok(local)
}
