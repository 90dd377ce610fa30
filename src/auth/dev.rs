//! A development auth service implementing the platform's contract, for local runs and benches.
//!
//! It accepts exactly one token and refuses everything else (the health-probe sentinel
//! included) with UNAUTHENTICATED, like the real service. It is only ever started by an explicit
//! command-line flag, and only on a loopback address.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::proto::auth_service_server::{AuthService, AuthServiceServer};
use super::proto::{ValidateTokenRequest, ValidateTokenResponse};

/// Fixed ids so that a developer's data lines up across restarts.
pub const DEV_ORG_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f70);
pub const DEV_USER_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f71);
pub const DEV_TOKEN_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f72);

/// A fresh token in the platform's format: `ibex_pat_<uuid>_<43 base64url characters>`.
pub fn generate_token() -> String {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    format!("ibex_pat_{}_{}", DEV_TOKEN_ID, base64url(&secret))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[derive(Debug)]
struct DevAuthService {
    token: String,
}

#[tonic::async_trait]
impl AuthService for DevAuthService {
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        if request.get_ref().access_token != self.token {
            return Err(Status::unauthenticated("invalid token"));
        }
        let expires_at = SystemTime::now() + Duration::from_secs(24 * 3600);
        Ok(Response::new(ValidateTokenResponse {
            org_id: DEV_ORG_ID.to_string(),
            permissions: -1,
            agent_id: None,
            user_id: Some(DEV_USER_ID.to_string()),
            token_id: Some(DEV_TOKEN_ID.to_string()),
            expires_at: Some(expires_at.into()),
        }))
    }
}

/// Binds `addr` (which must be loopback) and serves until the process ends.
pub async fn spawn(addr: SocketAddr, token: String) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(
            "the dev auth service only binds loopback addresses",
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(AuthServiceServer::new(DevAuthService { token }))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "dev auth service stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_the_platforms() {
        let token = generate_token();
        assert_eq!(token.len(), 89);
        assert!(crate::auth::token::is_well_formed_pat(&token));
        assert_ne!(token, generate_token());
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
