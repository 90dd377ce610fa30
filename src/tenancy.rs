//! What almost every operation starts with, taken once as an extractor: the caller, its
//! permission checked before anything else (so a refusal says nothing about which ids exist),
//! and a transaction that row-level security confines to the caller's organization.
//!
//! `Tenant<{ need::USER_MANAGE }>` needs `user:manage`; a bare `Tenant` any valid token of the
//! organization. Taken after the path and query extractors and before the body, so a malformed
//! path is still a 400 and a refused caller's body is never parsed. The transaction draws no
//! connection and sends nothing until its first statement (`db::OrgTx`), so a handler holds no
//! connection while the body arrives or is checked.

use axum::extract::FromRequestParts;
use http::request::Parts;

pub use crate::auth::permissions::need;
use crate::auth::{Caller, Permissions};
use crate::db::OrgTx;
use crate::error::ApiError;
use crate::state::{AppState, Shared};

/// The caller in its organization; `NEED` are the permission bits it must hold.
#[derive(Debug)]
pub struct Tenant<const NEED: u64 = 0> {
    pub state: AppState,
    pub caller: Caller,
    pub tx: OrgTx,
}

impl<S: Shared, const NEED: u64> FromRequestParts<S> for Tenant<NEED> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Permitted(caller) = Permitted::<NEED>::from_request_parts(parts, state).await?;
        let state = state.app_state().clone();
        let tx = state.db.begin_for(&caller).await?;
        Ok(Self { state, caller, tx })
    }
}

/// The caller alone, its permission `NEED` checked first: for operations that touch no table of
/// the organization's (tokens live in the auth service, traces in ClickHouse).
#[derive(Debug)]
pub struct Permitted<const NEED: u64>(pub Caller);

impl<S: Send + Sync, const NEED: u64> FromRequestParts<S> for Permitted<NEED> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Permissions(NEED))?;
        Ok(Self(caller))
    }
}
