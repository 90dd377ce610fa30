//! The request's own size limits, enforced here rather than by the HTTP server, so that a
//! request over them still gets the envelope with its request id (hyper answers its own limits
//! with an empty body before any layer runs).
//!
//! The server's limits are raised well above these ([`SERVER_MAX_HEADERS`],
//! [`SERVER_MAX_HEADER_BYTES`]); only a request beyond those, which cannot be read without
//! holding an unbounded buffer, still gets hyper's bare answer (docs/errors.md).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use tower::{BoxError, Service};

use crate::error::ApiError;
use crate::layer::{Answer, Around, AroundLayer};

/// Headers a request may carry (hyper's own default, now answered with the envelope).
pub const MAX_HEADERS: usize = 100;
/// Bytes of the request line and header section, counted as on the wire.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Bytes of the request target (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// What the HTTP server itself reads before refusing bare: five times the limits above.
pub const SERVER_MAX_HEADERS: usize = 5 * MAX_HEADERS;
pub const SERVER_MAX_HEADER_BYTES: usize = 5 * MAX_HEADER_BYTES;

pub fn layer() -> AroundLayer<RequestLimits> {
    AroundLayer(RequestLimits)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLimits;

/// The limit `req` exceeds, if any.
fn check<B>(req: &Request<B>) -> Result<(), ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong);
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge);
    }
    // "NAME: VALUE\r\n" per header, and the request line.
    let bytes = target
        + 16
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge);
    }
    Ok(())
}

/// Below sit tower-http's layers, whose bodies become axum's here (once, as the envelope above
/// would otherwise).
impl<S, B, ResB> Around<S, B> for RequestLimits
where
    S: Service<Request<B>, Response = http::Response<ResB>, Future: Send + 'static>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        if let Err(error) = check(&req) {
            // Tagged like every ApiError: the envelope layer renders it.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = error.status();
            response.extensions_mut().insert(error);
            return Box::pin(async move { Ok(response) });
        }
        let future = inner.call(req);
        Box::pin(async move { Ok(future.await?.map(Body::new)) })
    }
}
