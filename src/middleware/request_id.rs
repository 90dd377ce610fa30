//! The outermost layer: assigns each request its id ([`crate::request_id`]), makes it current
//! for the request's task and echoes it exactly once in `X-Request-ID`; it also stamps
//! `X-Content-Type-Options: nosniff` on every answer.

use http::header::X_CONTENT_TYPE_OPTIONS;
use http::{HeaderValue, Request};

use crate::layer::{Answer, Around, AroundLayer, Inner};
use crate::request_id::{RequestId, X_REQUEST_ID, scoped};

/// Outermost layer: assigns the id, makes it current for the request's task, sets the response
/// header.
pub fn layer() -> AroundLayer<AssignRequestId> {
    AroundLayer(AssignRequestId)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AssignRequestId;

impl<S: Inner<B>, B> Around<S, B> for AssignRequestId {
    fn call(&self, inner: &mut S, mut req: Request<B>) -> Answer<S, B> {
        let id = RequestId::from_headers(req.headers());
        let header = id.header_value();
        req.headers_mut().insert(&X_REQUEST_ID, header.clone());
        req.extensions_mut().insert(id);
        let future = scoped(id, || inner.call(req));
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
