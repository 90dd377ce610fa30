//! CORS for the operator dashboard: an exact allow-list of origins from configuration.
//!
//! Hand-written rather than tower-http's `CorsLayer`: that layer is cloned with every request (its
//! allow-lists are `Vec`s) and joins its `Vary` header anew on every response, which measured at
//! about 5,000 instructions per request, an eighth of the whole `/health` request. Here the
//! policy is shared behind an `Arc` and every header value is built once, at start-up.
//!
//! A CORS preflight (an `OPTIONS` with both `Origin` and `Access-Control-Request-Method`) is
//! answered here, before auth: a preflight never carries a token. Any other `OPTIONS` is an
//! ordinary request and goes on to auth (401 without a token) like any other method. Allowed origins get the allow headers; any other origin gets none, so the browser
//! refuses the call. Actual responses (errors included, as this layer sits outside the envelope)
//! carry `Access-Control-Allow-Origin` and expose `X-Request-ID` (and the ETag, rate-limit and
//! replay headers) for an allowed origin.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};

use crate::layer::{Answer, Around, AroundLayer, Inner};

#[derive(Debug)]
struct Policy {
    origins: Vec<HeaderValue>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    vary_preflight: HeaderValue,
}

#[derive(Debug, Clone)]
pub struct Cors {
    policy: Arc<Policy>,
}

/// `origins` are validated by the configuration (no wildcard, scheme://host[:port]).
pub fn layer(origins: Vec<HeaderValue>) -> AroundLayer<Cors> {
    AroundLayer(Cors {
        policy: Arc::new(Policy {
            origins,
            allow_methods: HeaderValue::from_static("GET,POST,PUT,PATCH,DELETE,OPTIONS"),
            // The dashboard sends preconditions and idempotency keys, and reads versions,
            // replays and its remaining rate.
            allow_headers: HeaderValue::from_static(
                "authorization,content-type,x-request-id,if-match,if-none-match,idempotency-key",
            ),
            expose_headers: HeaderValue::from_static(
                "x-request-id,etag,location,retry-after,idempotent-replayed,\
                     ratelimit-limit,ratelimit-remaining,ratelimit-reset",
            ),
            max_age: HeaderValue::from_static("600"),
            vary_preflight: HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        }),
    })
}

impl Policy {
    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        origin.filter(|o| self.origins.contains(o)).cloned()
    }

    fn preflight(&self, origin: Option<HeaderValue>) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(header::VARY, self.vary_preflight.clone());
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone(),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        response
    }
}

impl<S: Inner<B>, B> Around<S, B> for Cors {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B> {
        let allowed = self.policy.allowed(req.headers().get(header::ORIGIN));
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key(header::ORIGIN)
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            let response = self.policy.preflight(allowed);
            return Box::pin(async move { Ok(response) });
        }
        let expose = self.policy.expose_headers.clone();
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            // The answer depends on the Origin header: caches must key on it.
            headers.append(header::VARY, HeaderValue::from_static("origin"));
            if let Some(origin) = allowed {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
            }
            Ok(response)
        })
    }
}
