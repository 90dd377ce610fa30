//! The request's own size limits, enforced here rather than by the HTTP server, so that a
//! request over them still gets the envelope with its request id (hyper answers its own limits
//! with an empty body before any layer runs).
//!
//! The server's limits are raised well above these ([`SERVER_MAX_HEADERS`],
//! [`SERVER_MAX_HEADER_BYTES`]); only a request beyond those, which cannot be read without
//! holding an unbounded buffer, still gets hyper's bare answer (docs/errors.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::error::ApiError;

/// Headers a request may carry (hyper's own default, now answered with the envelope).
pub const MAX_HEADERS: usize = 100;
/// Bytes of the request line and header section, counted as on the wire.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Bytes of the request target (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// What the HTTP server itself reads before refusing bare: five times the limits above.
pub const SERVER_MAX_HEADERS: usize = 5 * MAX_HEADERS;
pub const SERVER_MAX_HEADER_BYTES: usize = 5 * MAX_HEADER_BYTES;

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLimitsLayer;

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestLimits<S> {
    inner: S,
}

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

impl<S, B, ResB> Service<Request<B>> for RequestLimits<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Err(error) = check(&req) {
            // Tagged like every ApiError: the envelope layer renders it.
            let mut response = Response::new(ResB::default());
            *response.status_mut() = error.status();
            response.extensions_mut().insert(error);
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(req))
    }
}
