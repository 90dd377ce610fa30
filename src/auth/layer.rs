//! The tower layer that stands between the network and every non-public route.
//!
//! It wraps the whole router (not `route_layer`), so an anonymous caller gets 401 for unknown
//! paths and wrong methods as well, and learns nothing about which routes exist.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http::Request;

use super::cache::ValidationCache;
use super::caller::{Caller, CallerToken};
use super::client::{AuthClient, AuthFailure};
use super::token::bearer_token;
use crate::error::ApiError;
use crate::layer::{Answer, Around, AroundLayer, Inner};
use crate::request_id::RequestId;

/// Paths served without a token: probes and the API description. Matching is exact, as routing
/// is, plus the flat Swagger UI asset folder (`/docs/<file>`, no dot-segments or subfolders).
pub fn is_public(path: &str) -> bool {
    if matches!(
        path,
        "/health" | "/ready" | "/openapi.json" | "/docs" | "/.well-known/jwks.json"
    ) {
        return true;
    }
    // A receipt, by its unguessable id: it holds nothing personal and outlives its organization.
    if let Some(id) = path.strip_prefix("/v1/data-request-receipts/") {
        return !id.is_empty() && !id.contains('/');
    }
    path.strip_prefix("/docs/")
        .is_some_and(|file| !file.contains('/') && !file.starts_with('.'))
}

/// Validates tokens, with the optional cache in front of the auth service.
#[derive(Debug, Clone)]
pub struct Validator {
    client: AuthClient,
    cache: Option<Arc<ValidationCache>>,
}

impl Validator {
    pub fn new(client: AuthClient, cache: Option<ValidationCache>) -> Self {
        Self {
            client,
            cache: cache.map(Arc::new),
        }
    }

    pub fn client(&self) -> &AuthClient {
        &self.client
    }

    /// Forgets every cached validation of the token `token_id`, so this replica stops serving a
    /// token it has just revoked.
    pub fn forget_token(&self, token_id: uuid::Uuid) {
        if let Some(cache) = &self.cache {
            cache.forget_token(token_id);
        }
    }

    pub async fn validate(
        &self,
        token: &str,
        request_id: RequestId,
    ) -> Result<Caller, AuthFailure> {
        match &self.cache {
            None => self.client.validate(token, request_id).await,
            Some(cache) => {
                let client = self.client.clone();
                let owned = token.to_owned();
                cache
                    .get_or_validate(token, move || {
                        async move { client.validate(&owned, request_id).await }.boxed()
                    })
                    .await
            }
        }
    }
}

pub fn layer(validator: Arc<Validator>) -> AroundLayer<Authenticate> {
    AroundLayer(Authenticate { validator })
}

#[derive(Debug, Clone)]
pub struct Authenticate {
    validator: Arc<Validator>,
}

impl<S, B> Around<S, B> for Authenticate
where
    S: Inner<B> + Clone + Send + 'static,
    B: Send + 'static,
{
    fn call(&self, inner: &mut S, mut req: Request<B>) -> Answer<S, B> {
        if is_public(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        // The ready inner service goes with this request; a fresh clone waits for the next.
        let clone = inner.clone();
        let mut inner = std::mem::replace(inner, clone);
        let validator = Arc::clone(&self.validator);
        Box::pin(async move {
            let request_id = req
                .extensions()
                .get::<RequestId>()
                .copied()
                .unwrap_or_else(RequestId::generate);
            let (caller, token) = match bearer_token(req.headers()) {
                Ok(token) => (
                    validator.validate(token, request_id).await,
                    CallerToken::new(token),
                ),
                Err(refusal) => return Ok(refusal.into_response()),
            };
            let caller = match caller {
                Ok(caller) => caller,
                Err(failure) => {
                    match &failure {
                        AuthFailure::Unavailable(reason) => {
                            tracing::warn!(reason = %reason, "auth service unavailable: request refused");
                        }
                        other => tracing::debug!(reason = %other, "token refused"),
                    }
                    return Ok(ApiError::from(failure).into_response());
                }
            };
            req.extensions_mut().insert(caller.clone());
            req.extensions_mut().insert(token);
            let mut response: Response<Body> = inner.call(req).await?;
            response.extensions_mut().insert(caller);
            // An authenticated answer is one caller's data: no shared or browser cache keeps
            // it (OWASP REST Security Cheat Sheet). ETag and If-None-Match still revalidate.
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        })
    }
}
