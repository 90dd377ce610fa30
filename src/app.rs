//! Assembles the router and the layer stack around it. The stack's order is stated here once,
//! in [`build`]: outermost first, each layer with the reason for its place.

use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::Notify;

use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::cache::ValidationCache;
use crate::auth::{AuthClient, AuthReachable, Validator};
use crate::config::Config;
use crate::db::{Database, DatabaseReady};
use crate::domains::analytics::Analytics;
use crate::domains::analytics::cache::AnalyticsCache;
use crate::domains::analytics::store::{ClickHouseReady, TraceStore};
use crate::domains::data_requests::retention::RetentionSweep;
use crate::domains::data_requests::worker::{DataRequestSampler, DataRequestWorker};
use crate::domains::memories::export::{ExportWorker, RetryPolicy};
use crate::domains::memories::search::MemoryService;
use crate::domains::organizations::deletion::DeletionJob;
use crate::events::publisher::{self, RedisReady};
use crate::layer::AroundLayer;
use crate::middleware::access_log::{self, ExposeMatchedPath};
use crate::middleware::cors;
use crate::middleware::envelope;
use crate::middleware::idempotency::{self, Idempotency};
use crate::middleware::rate_limit::{self, RateLimiter};
use crate::middleware::request_id;
use crate::middleware::request_limits;
use crate::observability::routes::RouteTemplates;
use crate::observability::traces;
use crate::readiness::{Check, Readiness};
use crate::signing::SigningKeys;
use crate::state::{AppState, Shared};
use crate::storage::{Storage, StorageReady};
use crate::wire::pagination::CursorKeys;

/// What the server needs of the assembled application.
pub trait HttpService:
    Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The application's state: what every handler shares, plus the services of the domains that
/// have one, each handed to its handlers as a `State` of its own.
#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    /// The platform's memory service (semantic search).
    pub memory_service: MemoryService,
    /// The trace store and the analytics cache.
    pub analytics: Arc<Analytics>,
    /// `None` when limits are off or there is no Redis.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// How long answers to POSTs with an Idempotency-Key are kept.
    pub idempotency_ttl: Duration,
}

impl Shared for App {
    fn app_state(&self) -> &AppState {
        &self.state
    }
}

impl FromRef<App> for MemoryService {
    fn from_ref(app: &App) -> Self {
        app.memory_service.clone()
    }
}

impl FromRef<App> for Arc<Analytics> {
    fn from_ref(app: &App) -> Self {
        Arc::clone(&app.analytics)
    }
}

/// The OpenAPI document `/openapi.json` serves and `ibex-api openapi` prints: the base of
/// `openapi.rs` completed with every route's own description.
pub fn document() -> utoipa::openapi::OpenApi {
    // The document without a configuration (`ibex-api openapi`) says the defaults.
    crate::openapi::complete(
        crate::domains::router::<App>().split_for_parts().1,
        Config::default().requests.idempotency_ttl,
    )
}

/// The complete service: `extra_routes` lets tests mount handlers (a panic, a slow one) behind
/// exactly the production stack.
pub fn build(config: &Config, app: App, extra_routes: Router<App>) -> impl HttpService {
    let validator = Arc::clone(&app.state.auth);
    let (routes, documented) = crate::domains::router::<App>().split_for_parts();
    let openapi = crate::openapi::complete(documented, config.requests.idempotency_ttl);
    let templates = Arc::new(RouteTemplates::new(
        openapi.paths.paths.keys().map(String::as_str),
    ));
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi.clone())
        // Swagger UI would otherwise send the document to validator.swagger.io.
        .config(utoipa_swagger_ui::Config::default().validator_url("none"));
    let idempotency = Idempotency {
        db: app.state.db.clone(),
        ttl: app.idempotency_ttl,
        // Past the request timeout the answer is lost anyway; the margin covers the store.
        lease: (config.server.request_timeout * 2).max(Duration::from_secs(10)),
    };
    let rate_limiter = app.rate_limiter.clone();
    // Inside the auth layer (both need the caller): the limit first, so a refused request
    // touches no key; idempotency only on matched routes.
    let router = routes
        .merge(extra_routes)
        .merge(docs)
        .route_layer(AroundLayer(ExposeMatchedPath))
        .route_layer(from_fn_with_state(idempotency, idempotency::layer))
        .layer(from_fn_with_state(rate_limiter, rate_limit::layer))
        .layer(axum::Extension(cursor_keys(config)))
        .with_state(app);

    ServiceBuilder::new()
        // Request id first: every response, even a CORS preflight, carries `X-Request-ID` (and
        // `nosniff`), and every log line the id.
        .layer(request_id::layer())
        // The request's server span (when traces are exported), around everything below, so
        // every line of the request carries its trace id.
        .layer(traces::layer(Arc::clone(&templates)))
        // The access log sees the final status of everything, refusals included.
        .layer(access_log::layer(templates))
        // CORS answers preflights before auth, and decorates every error the layers below make,
        // so the dashboard can read them.
        .layer(cors::layer(config.server.cors_allowed_origins.clone()))
        // The envelope turns any error response from below into the platform's JSON envelope.
        .layer(envelope::layer())
        // Header count and size and the target's length, refused with the envelope (the HTTP
        // server's own limits sit far above them, since it answers without one).
        .layer(request_limits::layer())
        // A panicking handler (or auth client) becomes a 500 the envelope renders.
        .layer(CatchPanicLayer::new())
        // Oversized bodies are refused before anyone buffers them.
        .layer(RequestBodyLimitLayer::new(config.server.max_body_bytes))
        // Bounds auth plus handler; the auth deadline is validated to be shorter (a 503, not
        // this 504).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.server.request_timeout,
        ))
        // Auth wraps the whole router, so unknown paths and wrong methods are 401 without a
        // token. Inside it, as router layers (both need the caller), the rate limit and the
        // idempotency keys (see `router` above).
        .layer(crate::auth::layer::layer(validator))
        // Wrapping the router as a service (not `Router::layer`) puts the stack in front of
        // routing itself.
        .service(router)
}

/// The keys list cursors are signed with; without configured ones, a key of this process.
fn cursor_keys(config: &Config) -> CursorKeys {
    if config.requests.cursor_keys.is_empty() {
        tracing::warn!(
            "IBEX_API_CURSOR_KEYS is not set: list cursors are signed with a key of this process and work only on this replica"
        );
        return CursorKeys::ephemeral();
    }
    let secrets: Vec<&str> = config
        .requests
        .cursor_keys
        .iter()
        .map(|k| k.expose())
        .collect();
    CursorKeys::new(&secrets)
}

/// The keys receipts and manifests are signed with; without configured ones, a key of this
/// process.
fn signing_keys(config: &Config) -> SigningKeys {
    let seeds = config.signing.seeds();
    if seeds.is_empty() {
        tracing::warn!(
            "IBEX_API_SIGNING_KEYS is not set: receipts are signed with a key of this process, and verify only while it runs"
        );
        return SigningKeys::ephemeral();
    }
    SigningKeys::new(&seeds)
}

/// What `/metrics` samples at scrape time: the pool, the outbox backlog, the export queue.
pub fn metric_samplers(db: &Database) -> Vec<Arc<dyn crate::observability::metrics::Sampler>> {
    vec![
        Arc::new(crate::db::PoolSampler(db.clone())),
        Arc::new(publisher::OutboxSampler(db.clone())),
        Arc::new(crate::domains::memories::export::ExportQueueSampler(
            db.clone(),
        )),
        Arc::new(DataRequestSampler(db.clone())),
    ]
}

/// Wires the auth client, the optional cache and the readiness checks from configuration.
pub fn from_config(
    config: &Config,
    extra_routes: Router<App>,
) -> Result<(impl HttpService, Arc<Readiness>, Database), String> {
    let client = AuthClient::new(
        &config.auth.grpc_addr,
        config.auth.connect_timeout,
        config.auth.timeout,
    )?;
    let cache = (!config.auth.cache_ttl.is_zero())
        .then(|| ValidationCache::new(config.auth.cache_ttl, config.auth.cache_max_entries));
    let db = Database::connect_lazy(&config.database)?;
    let storage = Storage::from_config(config.object_store.as_ref())?;
    let mut checks = vec![
        Check::critical("auth", AuthReachable(client.clone())),
        Check::critical("database", DatabaseReady(db.clone())),
        Check::optional("object_store", StorageReady(storage.clone())),
    ];
    let traces = config.analytics.as_ref().map(TraceStore::new);
    checks.push(Check::optional(
        "clickhouse",
        ClickHouseReady(traces.clone()),
    ));
    let redis = match &config.redis.url {
        Some(url) => Some(
            redis::Client::open(url.expose())
                .map_err(|_| "IBEX_API_REDIS_URL is not a valid Redis URL".to_owned())?,
        ),
        None => None,
    };
    if let Some(client) = &redis {
        let redis = RedisReady {
            db: db.clone(),
            client: Some(client.clone()),
        };
        checks.push(Check::optional("redis", redis));
    }
    // Background work lives as long as the runtime: the event publisher, the deletion job, the
    // export worker.
    publisher::spawn(
        db.clone(),
        config.redis.url.clone(),
        config.redis.outbox_poll,
    );
    let deletions = Arc::new(Notify::new());
    DeletionJob {
        db: db.clone(),
        storage: storage.clone(),
        traces: traces.clone(),
        wake: Arc::clone(&deletions),
        batch_size: config.gdpr.batch_size,
        batch_pause: config.gdpr.batch_pause,
    }
    .spawn();
    idempotency::spawn_sweep(db.clone());
    RetentionSweep {
        db: db.clone(),
        retention: config.retention.deleted_rows,
        every: config.retention.sweep_every,
    }
    .spawn();
    let rate_limiter = match (&config.rate_limits.limits, &redis) {
        (Some(limits), Some(client)) => Some(Arc::new(RateLimiter::new(
            client.clone(),
            limits.clone(),
            config.rate_limits.timeout,
        ))),
        _ => None,
    };
    let signing = Arc::new(signing_keys(config));
    let data_requests = Arc::new(Notify::new());
    let worker = DataRequestWorker {
        db: db.clone(),
        storage: storage.clone(),
        traces: traces.clone(),
        signing: Arc::clone(&signing),
        wake: Arc::clone(&data_requests),
        deletions: Arc::clone(&deletions),
        lease: config.gdpr.lease,
        retry_max: config.gdpr.retry_max,
        archive_ttl: config.gdpr.archive_ttl,
        batch_size: i64::from(config.gdpr.batch_size),
    };
    if config.gdpr.worker {
        crate::leased::spawn(worker, Arc::clone(&data_requests));
    }
    let exports = Arc::new(Notify::new());
    let worker = ExportWorker {
        db: db.clone(),
        storage: storage.clone(),
        lease: config.exports.lease,
        retry: RetryPolicy {
            window: config.exports.retry_window,
            max_backoff: config.exports.retry_max_backoff,
        },
    };
    crate::leased::spawn(worker, Arc::clone(&exports));
    let readiness = Arc::new(Readiness::new(
        checks,
        config.readiness.check_timeout,
        config.readiness.cache,
    ));
    let app = App {
        state: AppState {
            readiness: Arc::clone(&readiness),
            db: db.clone(),
            deletions,
            exports,
            data_requests,
            auth: Arc::new(Validator::new(client, cache)),
            storage,
            signing,
        },
        memory_service: MemoryService::from_config(&config.memory_service)?,
        analytics: Arc::new(Analytics {
            store: traces,
            cache: AnalyticsCache::new(redis),
        }),
        rate_limiter,
        idempotency_ttl: config.requests.idempotency_ttl,
    };
    let app = build(config, app, extra_routes);
    Ok((app, readiness, db))
}
