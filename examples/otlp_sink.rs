//! Benchmark sink for traces: an OTLP/gRPC TraceService that accepts every batch and drops it, so
//! the cost measured is the service's own (span creation, batching, export), not a collector's.
//! `otlp_sink PORT`.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).unwrap().parse().unwrap();
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink))
        .serve(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
}
