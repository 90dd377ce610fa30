//! OpenTelemetry traces: W3C trace context in and out, one server span per request named by
//! method and route template, child spans for the auth call and the database transaction, export
//! over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and no exporter nor span at all otherwise.
//!
//! Export never blocks a request: spans go to the SDK's batch processor (a bounded queue drained
//! by its own thread); a collector that refuses them costs the batch, counted in
//! `ibex_trace_spans_dropped_total`, never latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderMap, Request};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::routes::RouteTemplates;
use crate::layer::{Answer, Around, AroundLayer, Inner};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Head sampling, decided before any span exists (`OTEL_TRACES_SAMPLER`, `_ARG`): an unsampled
/// request creates no span at all, which is what keeps tracing's cost proportional to the ratio.
static SAMPLER: std::sync::OnceLock<Sampler> = std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy)]
struct Sampler {
    ratio: f64,
    /// Follow an inbound `traceparent`'s sampled flag (the `parentbased_*` samplers, the default).
    parent_based: bool,
}

impl Sampler {
    fn from_env() -> Self {
        let ratio_arg = std::env::var("OTEL_TRACES_SAMPLER_ARG")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(1.0, |r| r.clamp(0.0, 1.0));
        let sampler = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        let (ratio, parent_based) = match sampler.as_str() {
            "always_on" => (1.0, false),
            "always_off" => (0.0, false),
            "traceidratio" => (ratio_arg, false),
            "parentbased_always_off" => (0.0, true),
            "parentbased_traceidratio" => (ratio_arg, true),
            _ => (1.0, true), // parentbased_always_on, the specification's default
        };
        Self {
            ratio,
            parent_based,
        }
    }

    fn sample(&self, parent: &opentelemetry::Context) -> bool {
        let inbound = parent.span().span_context().clone();
        if self.parent_based && inbound.is_valid() {
            return inbound.is_sampled();
        }
        self.ratio >= 1.0 || (self.ratio > 0.0 && fastrand_unit() < self.ratio)
    }
}

/// A uniform number in [0, 1) from the thread's UUID generator (no extra dependency).
fn fastrand_unit() -> f64 {
    let bits = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

tokio::task_local! {
    static TRACE_ID: TraceId;
}

/// Whether traces are exported (spans are only created then).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Switches span creation off and on while an exporter is installed, so a test or a benchmark can
/// compare the two in one process.
#[doc(hidden)]
pub fn set_enabled(on: bool) {
    ENABLED.store(on && PROVIDER.get().is_some(), Ordering::Relaxed);
}

/// The trace id of the request being served, for log lines.
pub fn current_trace_id() -> Option<TraceId> {
    TRACE_ID.try_with(|id| *id).ok()
}

/// Whether the standard variables ask for an exporter.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()))
}

/// The tracer provider when an endpoint is configured. Must run inside the tokio runtime (the
/// exporter's channel lives on it).
pub fn provider() -> Result<Option<SdkTracerProvider>, String> {
    if !configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("ibex-api")
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Counting(exporter))
        .with_resource(resource)
        .build();
    let _ = SAMPLER.set(Sampler::from_env());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(provider))
}

/// Keeps the installed provider, so that [`flush`] can reach it at shutdown.
pub fn keep(provider: SdkTracerProvider) {
    let _ = PROVIDER.set(provider);
}

/// Exports what is queued (bounded by the SDK's own timeouts); at shutdown.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// Counts the spans of every batch the collector did not take.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        if result.is_err() {
            metrics::counter!(super::metrics::SPANS_DROPPED).increment(spans);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Sends the current span's context onward (`traceparent`, `tracestate`) as gRPC metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if enabled() && current_trace_id().is_some() {
        let context = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Sends the current span's context onward as HTTP headers (calls to the memory service).
pub fn inject_headers(headers: &mut http::HeaderMap) {
    if enabled() && current_trace_id().is_some() {
        let context = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// A client span for a call to a dependency, or nothing while tracing is off or the request is
/// not sampled (no server span around it).
pub fn client_span(name: &'static str) -> tracing::Span {
    if enabled() && current_trace_id().is_some() {
        tracing::info_span!("dependency", otel.name = name, otel.kind = "client")
    } else {
        tracing::Span::none()
    }
}

/// The server span of every request, around everything inside it (the access log included, so
/// its line carries the trace id). Named `METHOD route-template` from the start: the template is
/// looked up from the path, as routing will.
pub fn layer(templates: Arc<RouteTemplates>) -> AroundLayer<Trace> {
    AroundLayer(Trace { templates })
}

#[derive(Debug, Clone)]
pub struct Trace {
    templates: Arc<RouteTemplates>,
}

impl<S: Inner<B>, B> Around<S, B> for Trace {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        if !enabled() {
            return Box::pin(inner.call(req));
        }
        let method = super::metrics::method_label(req.method());
        // A malformed or absent traceparent yields an empty context: a new trace starts.
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
        if !SAMPLER.get().is_some_and(|sampler| sampler.sample(&parent)) {
            return Box::pin(inner.call(req));
        }
        let route = self.templates.find(req.uri().path()).unwrap_or("-");
        let span = tracing::info_span!(
            "request",
            otel.name = format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(parent);
        let trace_id = span.context().span().span_context().trace_id();
        let future = inner.call(req);
        let instrumented_span = span.clone();
        Box::pin(TRACE_ID.scope(trace_id, async move {
            let result = future.instrument(instrumented_span).await;
            if let Ok(response) = &result {
                span.record("http.response.status_code", response.status().as_u16());
            }
            result
        }))
    }
}
