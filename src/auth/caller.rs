//! Who is calling, as the auth service said: put in the request extensions by the auth layer.

use std::time::SystemTime;

use axum::extract::FromRequestParts;
use http::request::Parts;
use uuid::Uuid;

use super::permissions::Permissions;
use super::proto::ValidateTokenResponse;
use crate::error::ApiError;

/// The caller's own PAT, kept for the life of the request so that calls to the auth service on
/// the caller's behalf (tokens) can present it. Its `Debug` prints nothing of it, and only the
/// auth layer can make one.
#[derive(Clone)]
pub struct CallerToken(String);

impl CallerToken {
    pub(crate) fn new(token: &str) -> Self {
        Self(token.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerToken(<redacted>)")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CallerToken>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!(
                    "handler requires the caller's token but the route is not authenticated"
                );
                ApiError::Internal
            })
    }
}

/// The authenticated caller. Handlers take it as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub permissions: Permissions,
    pub expires_at: Option<SystemTime>,
}

/// Why an OK answer from the auth service cannot be used; such an answer is treated as an
/// outage (503), never as a pass and never as a bad token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusableAnswer {
    #[error("org_id is empty or not a UUID")]
    OrgId,
    #[error("{0} is not a UUID")]
    Id(&'static str),
    #[error("expires_at is not a valid timestamp")]
    ExpiresAt,
}

impl Caller {
    /// Refuses with 403 INSUFFICIENT_PERMISSIONS unless every bit of `required` is granted.
    pub fn require(&self, required: Permissions) -> Result<(), ApiError> {
        if self.permissions.contains(required) {
            Ok(())
        } else {
            Err(ApiError::InsufficientPermissions)
        }
    }

    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub fn from_answer(answer: ValidateTokenResponse) -> Result<Self, UnusableAnswer> {
        let org_id = Uuid::try_parse(&answer.org_id)
            .ok()
            .filter(|id| !id.is_nil())
            .ok_or(UnusableAnswer::OrgId)?;
        let expires_at = answer
            .expires_at
            .map(SystemTime::try_from)
            .transpose()
            .map_err(|_| UnusableAnswer::ExpiresAt)?;
        Ok(Self {
            org_id,
            user_id: optional_id(answer.user_id, "user_id")?,
            agent_id: optional_id(answer.agent_id, "agent_id")?,
            token_id: optional_id(answer.token_id, "token_id")?,
            // The bitmap travels as int64; reinterpret the bits, do not convert the number.
            permissions: Permissions(answer.permissions as u64),
            expires_at,
        })
    }
}

/// An absent or empty optional id is "none"; anything else must be a UUID.
fn optional_id(value: Option<String>, name: &'static str) -> Result<Option<Uuid>, UnusableAnswer> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => Uuid::try_parse(text)
            .map(Some)
            .map_err(|_| UnusableAnswer::Id(name)),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            // Only reachable if a handler that needs a caller is mounted on a public path.
            tracing::error!("handler requires a caller but the route is not authenticated");
            ApiError::Internal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(org_id: &str) -> ValidateTokenResponse {
        ValidateTokenResponse {
            org_id: org_id.to_owned(),
            permissions: -1,
            ..Default::default()
        }
    }

    #[test]
    fn keeps_every_permission_bit() {
        let caller = Caller::from_answer(answer("0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70")).unwrap();
        assert_eq!(caller.permissions, Permissions(u64::MAX));
        assert!(caller.require(Permissions(1 << 63)).is_ok());
        let mut limited = caller.clone();
        limited.permissions = Permissions(0b01);
        assert!(limited.require(Permissions(0b11)).is_err());
    }

    #[test]
    fn unusable_answers_are_refused() {
        assert_eq!(Caller::from_answer(answer("")), Err(UnusableAnswer::OrgId));
        assert_eq!(
            Caller::from_answer(answer("org-1")),
            Err(UnusableAnswer::OrgId)
        );
        let mut bad_user = answer("0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70");
        bad_user.user_id = Some("bob".into());
        assert_eq!(
            Caller::from_answer(bad_user),
            Err(UnusableAnswer::Id("user_id"))
        );
    }
}
