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

/// Hand-written so that a minted token's secret never reaches a log line.
impl std::fmt::Debug for CreateTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token_id", &self.token_id)
            .field("plaintext", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("created_at", &self.created_at)
            .finish()
    }
}
