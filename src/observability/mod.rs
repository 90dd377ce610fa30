//! What operators see inside the service besides the access log: Prometheus metrics on their own
//! listener, and OpenTelemetry traces exported over OTLP when the standard `OTEL_*` variables say
//! where.

pub mod metrics;
pub mod routes;
pub mod traces;
