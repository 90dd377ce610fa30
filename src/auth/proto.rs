//! Generated client and server for `ibex.auth.v1` (see build.rs).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ibex.auth.v1");

/// Hand-written so that formatting a request (`?request` in a log line) never prints the token.
impl std::fmt::Debug for ValidateTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateTokenRequest")
            .field("access_token", &"<redacted>")
            .finish()
    }
}
