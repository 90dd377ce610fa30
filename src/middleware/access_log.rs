//! One structured line per request: method, matched route template, status, latency, request id,
//! and the caller's org and user once authenticated.
//!
//! The line never carries a body, a header value, the raw path or the query string: the route
//! template (`/v1/agents/{agent_id}`) says what was called without echoing caller input.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::MatchedPath;
use http::Request;
use uuid::Uuid;

use crate::auth::Caller;
use crate::layer::{Answer, Around, AroundLayer, Inner};
use crate::observability::routes::RouteTemplates;

/// The access log over the routes `templates` knows (for requests refused before routing).
pub fn layer(templates: Arc<RouteTemplates>) -> AroundLayer<AccessLog> {
    AroundLayer(AccessLog { templates })
}

#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    templates: Arc<RouteTemplates>,
}

impl<S: Inner<B>, B> Around<S, B> for AccessLog {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        let started = Instant::now();
        let method = req.method().clone();
        let templates = Arc::clone(&self.templates);
        // Only kept for requests that might be refused before routing (a cheap clone).
        let uri = req.uri().clone();
        let future = inner.call(req);
        Box::pin(async move {
            let in_flight = crate::observability::metrics::InFlight::start();
            let result = future.await;
            drop(in_flight);
            let elapsed = started.elapsed();
            // Whole microseconds: no `0.8908780000000001` in the line.
            let latency_ms = elapsed.as_micros() as f64 / 1000.0;
            match &result {
                Ok(response) => {
                    let extensions = response.extensions();
                    let route = match extensions.get::<MatchedPath>() {
                        Some(matched) => matched.as_str(),
                        None => templates.find(uri.path()).unwrap_or("-"),
                    };
                    crate::observability::metrics::record_request(
                        &method,
                        route,
                        response.status().as_u16(),
                        elapsed,
                    );
                    let caller = extensions.get::<Caller>();
                    // Ids rendered into stack buffers: recorded as plain strings, they skip
                    // the formatting machinery on this once-per-request line.
                    let (mut org_buf, mut user_buf) =
                        (Uuid::encode_buffer(), Uuid::encode_buffer());
                    let org_id = caller.map(|c| &*c.org_id.hyphenated().encode_lower(&mut org_buf));
                    let user_id = caller
                        .and_then(|c| c.user_id)
                        .map(|id| &*id.hyphenated().encode_lower(&mut user_buf));
                    tracing::info!(
                        target: "access",
                        method = method.as_str(),
                        route,
                        status = response.status().as_u16(),
                        latency_ms,
                        org_id,
                        user_id,
                        "request served"
                    );
                }
                Err(_) => {
                    tracing::error!(target: "access", method = method.as_str(), latency_ms, "request failed without a response");
                }
            }
            result
        })
    }
}

/// Route layer: copies the matched route template onto the response, where the access log
/// (which runs outside the router) can read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExposeMatchedPath;

impl<S: Inner<B>, B> Around<S, B> for ExposeMatchedPath {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(matched) = matched {
                response.extensions_mut().insert(matched);
            }
            Ok(response)
        })
    }
}
