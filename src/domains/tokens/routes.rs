//! The four token operations, all through the auth service, which owns tokens: the API checks
//! what it can first (bits, elevation, cursors), then asks on the caller's behalf with the
//! caller's own PAT.

use axum::Json;
use axum::response::IntoResponse;
use chrono::DateTime;
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::model::{CreatedToken, NewToken, Token, TokenPath, is_auth_cursor};
use crate::auth::proto::{
    CreateTokenRequest, ListTokensRequest, ListTokensResponse, RevokeTokenRequest, TokenType,
};
use crate::auth::{Caller, CallerToken, Permissions};
use crate::db::OrgTx;
use crate::domains::agents::repo::require_live_agent;
use crate::domains::audit::{AuditContext, record_in};
use crate::error::{ApiError, ErrorResponse};
use crate::request_id::RequestId;
use crate::state::AppState;
use crate::tenancy::{Permitted, need};
use crate::wire::extract::ApiJson;
use crate::wire::extract::ApiPath;
use crate::wire::pagination::{CursorPage, ListScope, Page, PageParams};
use crate::wire::response::NotReplayable;

/// Pages `GET /v1/tokens/{id}` reads at most looking for one token (100 each).
const MAX_LOOKUP_PAGES: usize = 50;

/// One page of the auth service's list of the caller's organization's tokens.
async fn auth_page(
    state: &AppState,
    caller: &Caller,
    token: &CallerToken,
    request_id: RequestId,
    cursor: String,
    limit: u32,
) -> Result<ListTokensResponse, ApiError> {
    let request = ListTokensRequest {
        org_id: caller.org_id.to_string(),
        cursor,
        limit: limit as i32,
    };
    state
        .auth
        .client()
        .list_tokens(token, request_id, request)
        .await
}

fn unusable() -> ApiError {
    tracing::warn!("the auth service answered a token operation unusably");
    ApiError::AuthUnavailable
}

/// List tokens
///
/// Needs `token:create`. The organization's tokens, newest first, revoked ones included
/// (`is_revoked`); metadata only, never a secret.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(PageParams),
    responses((status = 200, description = "One page of tokens.", body = CursorPage<Token>)))]
pub async fn list_tokens(
    state: AppState,
    token: CallerToken,
    request_id: RequestId,
    page: Page,
    Permitted(caller): Permitted<{ need::TOKEN_CREATE }>,
) -> Result<Json<CursorPage<Token>>, ApiError> {
    let page = page.resolve_foreign(&ListScope::new("tokens"), is_auth_cursor)?;
    let cursor = page.after.clone().unwrap_or_default();
    let answer = auth_page(&state, &caller, &token, request_id, cursor, page.limit).await?;
    let items = answer
        .tokens
        .into_iter()
        .map(Token::from_metadata)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(unusable)?;
    let next_cursor = (!answer.next_cursor.is_empty()).then(|| page.wrap(&answer.next_cursor));
    Ok(Json(CursorPage {
        items,
        next_cursor,
        total: None,
    }))
}

/// Create a token
///
/// Needs `token:create`, and every permission asked for must be one the caller's own token holds.
/// `agent_id`, when given, must be a live agent of the caller's organization (checked before the
/// auth service is asked). The answer carries the token's `plaintext` this once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = crate::domains::tokens::model::CreateTokenBody,
    responses(
        (status = 201, description = "Created; `plaintext` is shown this once.", body = CreatedToken,
            headers(("Location" = String, description = "/v1/tokens/{id}")),
            links(
                ("GetToken" = (operation_id = "get_token", parameters(("token_id" = "$response.body#/id")))),
                ("DeleteToken" = (operation_id = "delete_token", parameters(("token_id" = "$response.body#/id")))),
            )),
        (status = 404, description = "AGENT_NOT_FOUND: `agent_id` is not a live agent of the organization (another organization's and an unknown one answer alike); nothing minted.", body = ErrorResponse),
    ))]
pub async fn create_token(
    state: AppState,
    token: CallerToken,
    request_id: RequestId,
    audit: AuditContext,
    Permitted(caller): Permitted<{ need::TOKEN_CREATE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewToken::parse(body)?;
    if !caller.permissions.contains(new.permissions) {
        return Err(ApiError::PermissionElevationDenied);
    }
    // The agent must be the organization's before the auth service hears of it.
    let trail = AuditTrail::open(&state, &caller, new.agent_id).await?;
    let created = state
        .auth
        .client()
        .create_token(
            &token,
            request_id,
            CreateTokenRequest {
                org_id: caller.org_id.to_string(),
                name: new.name.clone(),
                description: new.description.clone().unwrap_or_default(),
                r#type: TokenType::Pat as i32,
                permissions: new.permissions.0 as i64,
                expires_at: new.expires_at.map(|at| prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: at.timestamp_subsec_nanos() as i32,
                }),
                user_id: caller.user_id.map(|id| id.to_string()),
                agent_id: new.agent_id.map(|id| id.to_string()),
            },
        )
        .await?;
    let id = uuid::Uuid::try_parse(&created.token_id).map_err(|_| unusable())?;
    let created_at = created
        .created_at
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .ok_or_else(unusable)?;
    let body = CreatedToken {
        token: Token {
            id,
            name: new.name,
            description: new.description,
            prefix: created.prefix,
            permissions: new.permissions.names(),
            expires_at: new.expires_at,
            created_at,
            revoked_at: None,
            is_revoked: false,
        },
        plaintext: created.plaintext,
    };
    trail
        .record(&state, &caller, &audit, "token.create", id)
        .await;
    let location = format!("/v1/tokens/{id}");
    // The plaintext is shown this once: never kept for an idempotent replay.
    let secret = axum::Extension(NotReplayable);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location)],
        secret,
        Json(body),
    ))
}

/// Get a token
///
/// Needs `token:create` (there is no single-token lookup in the auth service: this pages its list).
#[utoipa::path(get, path = "/v1/tokens/{token_id}", tag = "tokens", params(TokenPath),
    responses((status = 200, description = "The token's metadata.", body = Token)))]
pub async fn get_token(
    state: AppState,
    token: CallerToken,
    request_id: RequestId,
    ApiPath(path): ApiPath<TokenPath>,
    Permitted(caller): Permitted<{ need::TOKEN_CREATE }>,
) -> Result<Json<Token>, ApiError> {
    let wanted = path.token_id.to_string();
    let mut cursor = String::new();
    for _ in 0..MAX_LOOKUP_PAGES {
        let page = auth_page(&state, &caller, &token, request_id, cursor.clone(), 100).await?;
        if let Some(found) = page.tokens.into_iter().find(|t| t.token_id == wanted) {
            return Token::from_metadata(found).map(Json).ok_or_else(unusable);
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    Err(ApiError::not_found("No token with this id."))
}

/// Revoke a token
///
/// Needs `token:revoke`, or the token is the caller's own. Revoking an already revoked token is 204
/// again. This replica's validation cache forgets the token at once.
#[utoipa::path(delete, path = "/v1/tokens/{token_id}", tag = "tokens", params(TokenPath),
    responses((status = 204, description = "Revoked.")))]
pub async fn delete_token(
    state: AppState,
    caller: Caller,
    token: CallerToken,
    request_id: RequestId,
    ApiPath(path): ApiPath<TokenPath>,
    audit: AuditContext,
) -> Result<StatusCode, ApiError> {
    // The one rule that depends on the target (docs/api.md): one's own token needs no bit.
    if caller.token_id != Some(path.token_id) {
        caller.require(Permissions(need::TOKEN_REVOKE))?;
    }
    let trail = AuditTrail::open(&state, &caller, None).await?;
    state
        .auth
        .client()
        .revoke_token(
            &token,
            request_id,
            RevokeTokenRequest {
                org_id: caller.org_id.to_string(),
                token_id: path.token_id.to_string(),
                revoke_reason: Some("revoked through the management API".into()),
            },
        )
        .await?;
    state.auth.forget_token(path.token_id);
    trail
        .record(&state, &caller, &audit, "token.revoke", path.token_id)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit event of a change the auth service makes (tokens live there, not in PostgreSQL).
///
/// The transaction is opened, and PostgreSQL proven reachable, **before** the auth service is
/// asked: while the database is away a token change is refused (503) like every other write,
/// instead of happening without its audit event (the chaos soak found that gap during PostgreSQL
/// restarts). The event goes out with COMMIT once the service has answered. Should PostgreSQL fail
/// in between, the change has happened and the answer stays a success (an error would invite a
/// retry that mints a second token): the event is written by a retrying task instead.
struct AuditTrail(OrgTx);

impl AuditTrail {
    /// `agent_id`: the agent a new token is bound to, which must be a live agent of the
    /// caller's organization (404 AGENT_NOT_FOUND otherwise, and nothing minted).
    async fn open(
        state: &AppState,
        caller: &Caller,
        agent_id: Option<uuid::Uuid>,
    ) -> Result<Self, ApiError> {
        let mut tx = state.db.begin_for(caller).await?;
        // BEGIN and this in one flight: a connection that answers, held for the commit.
        match agent_id {
            Some(agent_id) => require_live_agent(&mut tx, agent_id).await?,
            None => {
                tx.execute("SELECT 1", &[]).await?;
            }
        }
        Ok(Self(tx))
    }

    async fn record(
        self,
        state: &AppState,
        caller: &Caller,
        audit: &AuditContext,
        action: &'static str,
        token_id: uuid::Uuid,
    ) {
        let mut tx = self.0;
        record_in(&mut tx, caller, audit, action, token_id, &[]);
        if let Err(error) = tx.commit().await {
            tracing::warn!(action, %token_id, code = error.code(), "audit event not written yet: retrying");
            let (state, caller, audit) = (state.clone(), caller.clone(), audit.clone());
            tokio::spawn(async move {
                let mut wait = std::time::Duration::from_millis(250);
                for _ in 0..12 {
                    tokio::time::sleep(wait).await;
                    let written = async {
                        let mut tx = state.db.begin_for(&caller).await?;
                        record_in(&mut tx, &caller, &audit, action, token_id, &[]);
                        tx.commit().await
                    }
                    .await;
                    if written.is_ok() {
                        tracing::info!(action, %token_id, "audit event written after a retry");
                        return;
                    }
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
                tracing::error!(action, %token_id, "audit event not written");
            });
        }
    }
}
