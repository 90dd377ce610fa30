//! Renders every error response as the platform's envelope, whatever produced it.
//!
//! It sits inside the request-id and CORS layers (so envelopes carry both) and outside everything
//! that can fail: auth, panic catching, the timeout, the body limit, routing and handlers. A
//! response tagged with an [`ApiError`] is rendered from it; an untagged 4xx/5xx (tower-http's
//! empty 408/413, the panic handler's text, axum's 404/405) has its body discarded and is
//! classified by status, so a raw body or an echo of the request can never reach a client.

use axum::response::Response;
use http::{Request, header};

use crate::error::ApiError;
use crate::layer::{Answer, Around, AroundLayer, Inner};
use crate::request_id::RequestId;
use crate::wire::response::KeepBody;

pub fn layer() -> AroundLayer<Envelope> {
    AroundLayer(Envelope)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope;

impl<S: Inner<B>, B> Around<S, B> for Envelope {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        let request_id = req.extensions().get::<RequestId>().copied();
        let future = inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(render(response, request_id))
        })
    }
}

fn render(response: Response, id: Option<RequestId>) -> Response {
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    if !is_error || response.extensions().get::<KeepBody>().is_some() {
        return response;
    }
    let (mut parts, _discarded_body) = response.into_parts();
    let error = parts
        .extensions
        .remove::<ApiError>()
        .unwrap_or_else(|| ApiError::from_status(status));
    if matches!(error, ApiError::Internal) && status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            "request failed with an internal error"
        );
    }
    // Without the request-id layer (unit use) the envelope still gets a fresh, valid id.
    let id = id.unwrap_or_else(RequestId::generate);
    let mut rendered = error.into_envelope(&id.to_string());
    // Keep what the producer said about the resource (Allow, WWW-Authenticate, Retry-After,
    // CORS, the rate limit, the Location of a withheld replay) but never its body framing.
    for name in [
        header::ALLOW,
        header::WWW_AUTHENTICATE,
        header::RETRY_AFTER,
        header::LOCATION,
    ] {
        if let Some(value) = parts.headers.remove(&name) {
            rendered.headers_mut().insert(name, value);
        }
    }
    for name in crate::middleware::rate_limit::HEADERS {
        if let Some(value) = parts.headers.remove(&name) {
            rendered.headers_mut().insert(name, value);
        }
    }
    *rendered.extensions_mut() = parts.extensions;
    rendered
}
