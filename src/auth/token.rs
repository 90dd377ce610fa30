//! Reading the bearer token and rejecting garbage before it costs an auth-service call.
//!
//! The shape check is deliberately no stricter than the platform: `ibex_pat_`, a UUID, `_`, and a
//! secret of RFC 6750 token characters, at most [`MAX_TOKEN_LEN`] bytes. The platform's tokens are
//! 89 characters with a 43-character base64url secret; the length of the secret is not pinned so
//! that a future secret size does not lock users out. Whether the token is real is only ever
//! decided by the auth service.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::ApiError;

const PAT_PREFIX: &str = "ibex_pat_";
/// Generous bound (platform tokens are 89 bytes) that keeps junk off the auth service.
pub const MAX_TOKEN_LEN: usize = 256;

/// The single `Authorization: Bearer <token>` of a request, or the reason it is refused.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(ApiError::MissingToken),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(ApiError::InvalidToken),
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidToken);
    }
    let token = token.trim_start_matches(' ');
    if is_well_formed_pat(token) {
        Ok(token)
    } else {
        Err(ApiError::InvalidToken)
    }
}

pub fn is_well_formed_pat(token: &str) -> bool {
    if token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let Some(rest) = token.strip_prefix(PAT_PREFIX) else {
        return false;
    };
    let (Some(id), Some(secret)) = (rest.get(..36), rest.get(36..)) else {
        return false;
    };
    let Some(secret) = secret.strip_prefix('_') else {
        return false;
    };
    uuid::Uuid::try_parse(id).is_ok() && is_b64token(secret)
}

/// RFC 6750 `b64token`: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_b64token(secret: &str) -> bool {
    let body = secret.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const GOOD: &str =
        "ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_q7Yx3kP0vN2mR8sT4wZ6bC1dF5gH9jK0lM2nQ4rS6tU";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn accepts_platform_tokens_with_any_scheme_case() {
        assert_eq!(GOOD.len(), 89);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let map = headers(&[&format!("{scheme} {GOOD}")]);
            assert_eq!(bearer_token(&map).unwrap(), GOOD);
        }
    }

    #[test]
    fn refuses_garbage_without_asking_anyone() {
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(ApiError::MissingToken)
        ));
        let long = format!("{GOOD}{}", "a".repeat(MAX_TOKEN_LEN));
        for bad in [
            format!("Basic {GOOD}"),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "Bearer ibex_pat_".to_owned(),
            "Bearer ibex_pat_not-a-uuid-at-all-not-a-uuid-at-all-xx_secret".to_owned(),
            "Bearer ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_".to_owned(),
            "Bearer ibex_pat_0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70_se cret".to_owned(),
            "Bearer ibex_health_probe_invalid".to_owned(),
            format!("Bearer {long}"),
        ] {
            let map = headers(&[&bad]);
            assert!(
                matches!(bearer_token(&map), Err(ApiError::InvalidToken)),
                "{bad}"
            );
        }
        let twice = headers(&[&format!("Bearer {GOOD}"), &format!("Bearer {GOOD}")]);
        assert!(matches!(bearer_token(&twice), Err(ApiError::InvalidToken)));
    }
}
