//! A development auth service implementing the platform's contract, for local runs, the
//! benchmark and the tests: tokens live in memory, CreateToken mints working tokens that
//! ValidateToken then accepts with their bits, RevokeToken makes them fail, ListTokens pages
//! newest first with the platform's `"<unix_nanos>|<uuid>"` cursor.
//!
//! It refuses the health-probe sentinel with UNAUTHENTICATED, like the real service. It is only
//! ever started by an explicit command-line flag, and only on a loopback address.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::proto::auth_service_server::{AuthService, AuthServiceServer};
use super::proto::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, TokenMetadata, ValidateTokenRequest,
    ValidateTokenResponse,
};

/// Fixed ids so that a developer's data lines up across restarts.
pub const DEV_ORG_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f70);
pub const DEV_USER_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f71);
pub const DEV_TOKEN_ID: Uuid = Uuid::from_u128(0x0192_f0c4_5d7e_7c3a_9f1e_2b3c_4d5e_6f72);

const TOKEN_CREATE: i64 = 1 << 36;
const TOKEN_REVOKE: i64 = 1 << 37;

/// A fresh token in the platform's format: `ibex_pat_<uuid>_<43 base64url characters>`.
pub fn generate_token() -> String {
    token_with_id(DEV_TOKEN_ID)
}

/// A well-formed PAT naming `id` as its token id.
pub fn token_with_id(id: Uuid) -> String {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    format!("ibex_pat_{}_{}", id, base64url(&secret))
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

#[derive(Clone)]
struct StoredToken {
    id: Uuid,
    plaintext: String,
    org_id: Uuid,
    user_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    name: String,
    permissions: i64,
    created_at: SystemTime,
    expires_at: Option<SystemTime>,
    revoked_at: Option<SystemTime>,
}

impl StoredToken {
    fn prefix(&self) -> String {
        self.plaintext.chars().take(17).collect()
    }

    fn is_live(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    fn metadata(&self) -> TokenMetadata {
        TokenMetadata {
            token_id: self.id.to_string(),
            name: self.name.clone(),
            prefix: self.prefix(),
            permissions: self.permissions,
            expires_at: self.expires_at.map(Into::into),
            created_at: Some(self.created_at.into()),
            revoked_at: self.revoked_at.map(Into::into),
            is_revoked: self.revoked_at.is_some(),
        }
    }
}

/// The in-memory auth service.
pub struct DevAuthService {
    tokens: Mutex<Vec<StoredToken>>,
}

impl std::fmt::Debug for DevAuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.tokens.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("DevAuthService")
            .field("tokens", &count)
            .finish()
    }
}

impl DevAuthService {
    /// A service that knows `token` as the development owner's, with every permission bit.
    pub fn new(token: String) -> Self {
        let service = Self {
            tokens: Mutex::new(Vec::new()),
        };
        service.insert(StoredToken {
            id: token_id_of(&token).unwrap_or(DEV_TOKEN_ID),
            plaintext: token,
            org_id: DEV_ORG_ID,
            user_id: Some(DEV_USER_ID),
            agent_id: None,
            name: "development".into(),
            permissions: -1,
            created_at: SystemTime::now(),
            expires_at: Some(SystemTime::now() + Duration::from_secs(24 * 3600)),
            revoked_at: None,
        });
        service
    }

    fn insert(&self, token: StoredToken) {
        self.tokens.lock().expect("token store").push(token);
    }

    /// Registers a token (for tests and seeding); returns its plaintext.
    pub fn add_token(&self, org_id: Uuid, user_id: Option<Uuid>, permissions: u64) -> String {
        let id = Uuid::now_v7();
        let plaintext = token_with_id(id);
        self.insert(StoredToken {
            id,
            plaintext: plaintext.clone(),
            org_id,
            user_id,
            agent_id: None,
            name: "added".into(),
            permissions: permissions as i64,
            created_at: SystemTime::now(),
            expires_at: None,
            revoked_at: None,
        });
        plaintext
    }

    /// Whether `plaintext` was ever issued here (revoked and expired ones included).
    pub fn knows(&self, plaintext: &str) -> bool {
        self.tokens
            .lock()
            .expect("token store")
            .iter()
            .any(|t| t.plaintext == plaintext)
    }

    fn live(&self, plaintext: &str) -> Option<StoredToken> {
        let now = SystemTime::now();
        self.tokens
            .lock()
            .expect("token store")
            .iter()
            .find(|t| t.plaintext == plaintext && t.is_live(now))
            .cloned()
    }

    /// The caller of a management RPC: its own PAT from the `authorization` metadata, valid and
    /// of `org_id`.
    fn authorize<T>(&self, request: &Request<T>, org_id: &str) -> Result<StoredToken, Status> {
        let pat = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing caller token"))?;
        let caller = self
            .live(pat)
            .ok_or_else(|| Status::unauthenticated("invalid caller token"))?;
        if caller.org_id.to_string() != org_id {
            return Err(Status::permission_denied("wrong organization"));
        }
        Ok(caller)
    }
}

fn token_id_of(token: &str) -> Option<Uuid> {
    token
        .strip_prefix("ibex_pat_")
        .and_then(|rest| rest.get(..36))
        .and_then(|id| Uuid::try_parse(id).ok())
}

fn nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

#[tonic::async_trait]
impl AuthService for DevAuthService {
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let token = self
            .live(&request.get_ref().access_token)
            .ok_or_else(|| Status::unauthenticated("invalid token"))?;
        Ok(Response::new(ValidateTokenResponse {
            org_id: token.org_id.to_string(),
            permissions: token.permissions,
            agent_id: token.agent_id.map(|id| id.to_string()),
            user_id: token.user_id.map(|id| id.to_string()),
            token_id: Some(token.id.to_string()),
            expires_at: token.expires_at.map(Into::into),
        }))
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = self.authorize(&request, &request.get_ref().org_id)?;
        let create = request.into_inner();
        if caller.permissions & TOKEN_CREATE == 0 {
            return Err(Status::permission_denied("token:create required"));
        }
        if create.permissions & !caller.permissions != 0 {
            return Err(Status::permission_denied("permission elevation"));
        }
        if create.name.trim().is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        let parse_id = |id: Option<String>| match id.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => Uuid::try_parse(text)
                .map(Some)
                .map_err(|_| Status::invalid_argument("bad id")),
        };
        let expires_at = create
            .expires_at
            .map(SystemTime::try_from)
            .transpose()
            .map_err(|_| Status::invalid_argument("bad expires_at"))?;
        let id = Uuid::now_v7();
        let token = StoredToken {
            id,
            plaintext: token_with_id(id),
            org_id: caller.org_id,
            user_id: parse_id(create.user_id)?,
            agent_id: parse_id(create.agent_id)?,
            name: create.name,
            permissions: create.permissions,
            created_at: SystemTime::now(),
            expires_at,
            revoked_at: None,
        };
        let response = CreateTokenResponse {
            token_id: id.to_string(),
            plaintext: token.plaintext.clone(),
            prefix: token.prefix(),
            created_at: Some(token.created_at.into()),
        };
        self.insert(token);
        Ok(Response::new(response))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let caller = self.authorize(&request, &request.get_ref().org_id)?;
        let revoke = request.into_inner();
        let target = Uuid::try_parse(&revoke.token_id)
            .map_err(|_| Status::invalid_argument("bad token id"))?;
        if caller.permissions & TOKEN_REVOKE == 0 && caller.id != target {
            return Err(Status::permission_denied("token:revoke required"));
        }
        let mut tokens = self.tokens.lock().expect("token store");
        let token = tokens
            .iter_mut()
            .find(|t| t.id == target && t.org_id == caller.org_id)
            .ok_or_else(|| Status::not_found("no such token"))?;
        token.revoked_at.get_or_insert_with(SystemTime::now);
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let caller = self.authorize(&request, &request.get_ref().org_id)?;
        if caller.permissions & TOKEN_CREATE == 0 {
            return Err(Status::permission_denied("token:create required"));
        }
        let list = request.into_inner();
        if !(1..=100).contains(&list.limit) {
            return Err(Status::invalid_argument("limit must be 1 to 100"));
        }
        // The platform's cursor; a malformed one is INTERNAL there, and so here.
        let after = match list.cursor.as_str() {
            "" => None,
            cursor => {
                let (at, id) = cursor
                    .split_once('|')
                    .ok_or_else(|| Status::internal("cursor"))?;
                let at: u128 = at.parse().map_err(|_| Status::internal("cursor"))?;
                let id = Uuid::try_parse(id).map_err(|_| Status::internal("cursor"))?;
                Some((at, id))
            }
        };
        let mut tokens: Vec<StoredToken> = self
            .tokens
            .lock()
            .expect("token store")
            .iter()
            .filter(|t| t.org_id == caller.org_id)
            .cloned()
            .collect();
        tokens.sort_by_key(|t| std::cmp::Reverse((nanos(t.created_at), t.id)));
        let page: Vec<StoredToken> = tokens
            .into_iter()
            .filter(|t| after.is_none_or(|position| (nanos(t.created_at), t.id) < position))
            .take(list.limit as usize + 1)
            .collect();
        let more = page.len() > list.limit as usize;
        let page = &page[..page.len().min(list.limit as usize)];
        let next_cursor = match (more, page.last()) {
            (true, Some(last)) => format!("{}|{}", nanos(last.created_at), last.id),
            _ => String::new(),
        };
        Ok(Response::new(ListTokensResponse {
            tokens: page.iter().map(StoredToken::metadata).collect(),
            next_cursor,
        }))
    }
}

/// Binds `addr` (which must be loopback) and serves until the process ends.
pub async fn spawn(addr: SocketAddr, token: String) -> std::io::Result<SocketAddr> {
    spawn_with(addr, token, Vec::new()).await
}

/// [`spawn`], knowing more tokens besides: (organization, user, plaintext), each with every
/// permission (several tenants, for the soak).
pub async fn spawn_with(
    addr: SocketAddr,
    token: String,
    org_tokens: Vec<(Uuid, Option<Uuid>, String)>,
) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(
            "the dev auth service only binds loopback addresses",
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let service = DevAuthService::new(token);
    for (org_id, user_id, plaintext) in org_tokens {
        service.insert(StoredToken {
            id: token_id_of(&plaintext).unwrap_or_else(Uuid::now_v7),
            plaintext,
            org_id,
            user_id,
            agent_id: None,
            name: "tenant".into(),
            permissions: -1,
            created_at: SystemTime::now(),
            expires_at: None,
            revoked_at: None,
        });
    }
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(AuthServiceServer::new(service))
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
        assert_eq!(token_id_of(&token), Some(DEV_TOKEN_ID));
    }
}
