//! Traces exported over OTLP to a collector inside the test (a real tonic TraceService decoding
//! the protobuf): the inbound trace context is continued, the auth call is a child span, and the
//! context travels on to the auth service. One test per binary: the tracing subscriber and its
//! exporter are the process's.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ibex_api::config::LogFormat;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_callers_trace_and_reach_the_collector() {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    // SAFETY: set before any other thread reads the environment (nothing else runs yet).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    let capture = Capture::default();
    ibex_api::telemetry::init_with_writer(LogFormat::Json, "info", capture.clone());
    // Keep the default panic hook, so that a failing assertion is printed, not logged.
    drop(std::panic::take_hook());
    assert!(ibex_api::observability::traces::enabled());

    let (auth, app) = TestApp::with_auth(&[]).await;
    let (name, value) = bearer();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let reply = request(
        app.addr,
        "GET",
        "/v1/agents",
        &[(name, &value), ("traceparent", &traceparent)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A malformed traceparent starts a new trace, never an error.
    let reply = request(
        app.addr,
        "GET",
        "/v1/agents",
        &[(name, &value), ("traceparent", "00-zz-not-a-trace")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);

    let deadline = Deadline::after(Duration::from_secs(10));
    let (server, auth_span) = loop {
        let spans = collector.0.lock().unwrap().clone();
        let server = spans
            .iter()
            .find(|s| s.trace_id == TRACE_ID && s.name == "GET /v1/agents")
            .cloned();
        let auth_span = spans
            .iter()
            .find(|s| s.trace_id == TRACE_ID && s.name == "auth.ValidateToken")
            .cloned();
        // The second request's spans may leave in a later export batch: wait for them too.
        let fresh_trace = spans
            .iter()
            .any(|s| s.name == "GET /v1/agents" && s.trace_id != TRACE_ID);
        if let (Some(server), Some(auth_span), true) = (server, auth_span, fresh_trace) {
            break (server, auth_span);
        }
        deadline
            .tick(format!("spans not exported: {spans:?}"))
            .await;
    };
    assert_eq!(
        server.parent_span_id, PARENT_ID,
        "the caller's span is the parent"
    );
    assert_eq!(
        auth_span.parent_span_id, server.span_id,
        "the auth call is a child"
    );
    let spans = collector.0.lock().unwrap().clone();
    assert!(
        spans.iter().any(|s| s.trace_id == TRACE_ID
            && s.name == "db.begin"
            && s.parent_span_id == server.span_id),
        "the database work is a child: {spans:?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "GET /v1/agents" && s.trace_id != TRACE_ID),
        "the malformed header got a trace of its own"
    );
    // Every line of the traced request carries its trace id, the access line included.
    let logs = capture.text();
    let request_id = |line: &serde_json::Value| line["request_id"].as_str().map(str::to_owned);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let traced = lines
        .iter()
        .find(|l| l["target"] == "access" && l["trace_id"] == TRACE_ID)
        .expect("the access line carries the trace id");
    let traced_id = request_id(traced);
    assert!(
        lines
            .iter()
            .filter(|l| request_id(l) == traced_id)
            .all(|l| l["trace_id"] == TRACE_ID),
        "every line of the request"
    );
    // The auth service saw the same trace.
    let sent = auth.traceparents();
    assert!(
        sent.iter().any(|t| t.contains(TRACE_ID)),
        "traceparent sent to the auth service: {sent:?}"
    );
}
