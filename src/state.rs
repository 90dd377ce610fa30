//! What handlers share: handles of the layers below the domains (the database, the auth
//! client, the object store, readiness, the background jobs' wake-ups).
//!
//! Nothing here names a domain, so every domain may depend on it and nothing in it depends back.
//! A domain with a service of its own (memory search, analytics) takes that as another `State`,
//! which the application provides (`app::App` implements `FromRef` for each); the domains'
//! routers are generic over the application's state for that reason.

use std::sync::Arc;

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
