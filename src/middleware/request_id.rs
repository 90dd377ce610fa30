//! The outermost layer: assigns each request its id ([`crate::request_id`]), makes it current
//! for the request's task and echoes it exactly once in `X-Request-ID`; it also stamps
//! `X-Content-Type-Options: nosniff` on every answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::X_CONTENT_TYPE_OPTIONS;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::request_id::{RequestId, X_REQUEST_ID, scoped};

/// Outermost layer: assigns the id, makes it current for the request's task, sets the response
/// header.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, ResB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = RequestId::from_headers(req.headers());
        let header = id.header_value();
        req.headers_mut().insert(&X_REQUEST_ID, header.clone());
        req.extensions_mut().insert(id);
        let future = scoped(id, || self.inner.call(req));
        Box::pin(async move {
            let mut response = future.await?;
            // `insert` replaces any value a handler set: the header appears exactly once.
            response.headers_mut().insert(&X_REQUEST_ID, header);
            // Every answer, whoever produced it: browsers never guess a type from the body
            // (OWASP REST Security Cheat Sheet).
            response
                .headers_mut()
                .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            Ok(response)
        })
    }
}
