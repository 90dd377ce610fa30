//! What handlers share: handles of the layers below the domains (the database, the auth
//! client, the object store, readiness, the background jobs' wake-ups).
//!
//! Nothing here names a domain, so every domain may depend on it and nothing in it depends back.
//! A domain with a service of its own (memory search, analytics) takes that as a `State`, which
//! the application provides (`app::App` implements `FromRef` for each); the domains' routers are
//! generic over the application's state for that reason, bound by [`Shared`].

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use tokio::sync::Notify;

use crate::auth::Validator;
use crate::db::Database;
use crate::readiness::Readiness;
use crate::signing::SigningKeys;
use crate::storage::Storage;

#[derive(Debug, Clone)]
pub struct AppState {
    pub readiness: Arc<Readiness>,
    pub db: Database,
    /// Wakes the organization-deletion job after a deletion is requested.
    pub deletions: Arc<Notify>,
    /// Wakes the export worker after an export is requested.
    pub exports: Arc<Notify>,
    /// Wakes the data-request worker after a request is filed or confirmed.
    pub data_requests: Arc<Notify>,
    /// The auth service's client and this replica's validation cache.
    pub auth: Arc<Validator>,
    /// The object store; `None` when not configured.
    pub storage: Option<Storage>,
    /// What signs receipts and manifests (and `/.well-known/jwks.json` publishes).
    pub signing: Arc<SigningKeys>,
}

/// The application's state as the domains' routers see it: whatever provides an [`AppState`]
/// (`app::App`, which holds the domains' own services besides). One bound, `S: Shared`, instead
/// of `S: Clone + Send + Sync + 'static, AppState: FromRef<S>` in every router.
pub trait Shared: Clone + Send + Sync + 'static {
    fn app_state(&self) -> &AppState;
}

/// Handlers take the state as it is (`state: AppState`).
impl<S: Shared> FromRequestParts<S> for AppState {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(state.app_state().clone())
    }
}
