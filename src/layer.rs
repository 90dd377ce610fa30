//! The tower plumbing of the service's own layers, written once.
//!
//! Each hand-written layer (request id, limits, envelope, CORS, trace, access log, auth) only
//! says what it does around the inner service, as an [`Around`]; [`AroundLayer`] makes it a
//! `tower::Layer` whose service forwards readiness and boxes the future. Hand-written rather
//! than axum's `from_fn` because most run outside the router, on every request, where no
//! extractor is wanted and the request body's type is not yet axum's.

use std::task::{Context, Poll};

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::Request;
use tower::{Layer, Service};

/// A service below one of these layers: it answers axum responses (everything outside the
/// error envelope, and the router, does) with a future that can be boxed.
pub trait Inner<B>: Service<Request<B>, Response = Response, Future: Send + 'static> {}

impl<S, B> Inner<B> for S where S: Service<Request<B>, Response = Response, Future: Send + 'static> {}

/// The answer of an [`Around`] whose inner service is `S`.
pub type Answer<S, B> = BoxFuture<'static, Result<Response, <S as Service<Request<B>>>::Error>>;

/// What one layer does around the inner service `S` (ready when called).
pub trait Around<S: Service<Request<B>>, B>: Clone {
    fn call(&self, inner: &mut S, req: Request<B>) -> Answer<S, B>;
}

/// The layer of an [`Around`].
#[derive(Debug, Clone, Default)]
pub struct AroundLayer<M>(pub M);

impl<S, M: Clone> Layer<S> for AroundLayer<M> {
    type Service = Wrapped<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped {
            inner,
            around: self.0.clone(),
        }
    }
}

/// The inner service wrapped by an [`Around`].
#[derive(Debug, Clone)]
pub struct Wrapped<S, M> {
    inner: S,
    around: M,
}

impl<S, M, B> Service<Request<B>> for Wrapped<S, M>
where
    S: Service<Request<B>>,
    M: Around<S, B>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.around.call(&mut self.inner, req)
    }
}
