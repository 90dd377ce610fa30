//! Cross-cutting tower layers that wrap every request, outermost first in `app.rs`: request id,
//! access log, CORS and the error envelope. Authentication is its own module (`auth`) because it
//! owns a gRPC client, a cache and a development server besides its layer.

pub mod access_log;
pub mod cors;
pub mod envelope;
pub mod request_id;
