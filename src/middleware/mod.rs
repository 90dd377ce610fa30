//! Cross-cutting tower layers that wrap every request, outermost first in `app.rs`: request id,
//! access log, CORS and the error envelope; inside the auth layer, the rate limit and the
//! idempotency keys (both need the caller). Authentication is its own module (`auth`) because it
//! owns a gRPC client, a cache and a development server besides its layer.

pub mod access_log;
pub mod cors;
pub mod envelope;
pub mod idempotency;
pub mod rate_limit;
pub mod request_id;
pub mod request_limits;
