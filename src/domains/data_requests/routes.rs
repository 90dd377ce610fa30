//! The operations. `/v1/data-requests`: owners and admins of the organization (a user's token);
//! erasure of the organization or of an owner: owners only. `GET /v1/data-map`: any valid
//! token. `GET /.well-known/jwks.json` and `GET /v1/data-request-receipts/{receipt_id}`: no
//! token (public keys; receipts hold nothing personal and their ids are unguessable).

use axum::Json;
use axum::response::IntoResponse;
use chrono::Utc;
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::data_map::data_map;
use super::model::{
    ArchiveLink, CreateDataRequestBody, DataMap, DataRequest, DataRequestFilterParams,
    DataRequestFilters, DataRequestPath, DataRequestStatus, DataRequestType, ExtendDataRequestBody,
    Extension, NewDataRequest, ReceiptPath, SignedReceipt, SubjectKind,
};
use super::repo;
use crate::auth::{Caller, CallerToken};
use crate::db::{DbError, OrgTx};
use crate::domains::audit::{AuditContext, record};
use crate::domains::users::repo::caller_role;
use crate::error::{ApiError, Conflict, ErrorResponse};
use crate::request_id::RequestId;
use crate::signing::JwkSet;
use crate::state::AppState;
use crate::tenancy::Tenant;
use crate::wire::extract::{ApiJson, ApiPath, ApiQuery};
use crate::wire::pagination::{CursorPage, Page, PageParams};

/// The data map
///
/// Every store the service keeps (PostgreSQL tables, the ClickHouse trace table, the object store's
/// buckets, Redis key spaces and channels): what it holds, its personal data by field, which kinds
/// of data subject reach it, which subject kinds an access or an erasure request covers, and how
/// long it is kept. For records of processing and for planning data requests.
#[utoipa::path(get, path = "/v1/data-map", tag = "data-requests", responses((status = 200, description = "The map.", body = DataMap)))]
pub async fn get_data_map(state: AppState, _caller: Caller) -> Json<DataMap> {
    Json(data_map(state.storage.as_ref()))
}

/// The service's public signing keys
///
/// No token. The Ed25519 public keys (a JWK Set, RFC 7517 and 8037) that verify what the service
/// signs: data-request receipts and archive manifests, compact JWS with `alg` `EdDSA` naming their
/// key by `kid` (its RFC 7638 thumbprint). The first configured key signs; earlier ones stay listed
/// after a rotation.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "data-requests", operation_id = "jwks",
    responses((status = 200, description = "The key set.", body = JwkSet)))]
pub async fn jwks(state: AppState) -> Json<JwkSet> {
    Json(state.signing.jwks())
}

/// The caller's role, which must be owner or admin (403 otherwise); whether it is owner.
async fn require_manager(tx: &mut OrgTx, caller: &Caller) -> Result<bool, ApiError> {
    match caller_role(tx, caller.user_id).await?.as_deref() {
        Some("owner") => Ok(true),
        Some("admin") => Ok(false),
        _ => Err(ApiError::InsufficientPermissions),
    }
}

/// Erasing the organization, or an owner, is for owners only.
async fn needs_owner(tx: &mut OrgTx, request: &DataRequest) -> Result<bool, ApiError> {
    if request.kind != DataRequestType::Erasure {
        return Ok(false);
    }
    Ok(match (request.subject.kind, request.subject.user_id) {
        (SubjectKind::Organization, _) => true,
        (SubjectKind::User, Some(user)) => {
            repo::subject_role(tx, user).await?.as_deref() == Some("owner")
        }
        _ => false,
    })
}

/// File a data request
///
/// Owners and admins; erasure of the organization or of an owner: owners only. Records a request
/// the controller received (Art. 15, 17 and 20 GDPR) and starts planning it: the exact items it
/// covers are frozen before anything is touched. An erasure then waits in `awaiting_confirmation`
/// with its plan until confirmed; an access request runs on to its archive. `due_at` is one
/// calendar month after `received_at`. A `user_id` of another organization, or of none, is 404;
/// another organization's session ids simply match nothing.
#[utoipa::path(post, path = "/v1/data-requests", tag = "data-requests",
    request_body = CreateDataRequestBody,
    responses(
        (status = 202, description = "Received; poll `Location`.", body = DataRequest,
            headers(("Location" = String, description = "/v1/data-requests/{request_id}"))),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: not an owner or admin (or not an owner, for the organization or an owner).", body = ErrorResponse),
        (status = 404, description = "USER_NOT_FOUND: `subject.user_id` is not an operator of the organization.", body = ErrorResponse),
        (status = 503, description = "SERVICE_UNAVAILABLE: an access request needs the object store, which is not configured.", body = ErrorResponse),
    ))]
pub async fn create_data_request(
    audit: AuditContext,
    mut t: Tenant,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let owner = require_manager(&mut t.tx, &t.caller).await?;
    let new = NewDataRequest::parse(body, Utc::now())?;
    if new.kind == DataRequestType::Access && t.state.storage.is_none() {
        return Err(ApiError::ServiceUnavailable);
    }
    if let Some(user) = new.subject.user_id {
        // Deleted operators too: their data may still be held.
        let role = repo::subject_role(&mut t.tx, user).await?;
        let Some(role) = role else {
            return Err(ApiError::UserNotFound);
        };
        if role == "owner" && new.kind == DataRequestType::Erasure && !owner {
            return Err(ApiError::InsufficientPermissions);
        }
    }
    if new.subject.kind == SubjectKind::Organization
        && new.kind == DataRequestType::Erasure
        && !owner
    {
        return Err(ApiError::InsufficientPermissions);
    }
    let request = repo::insert(&mut t.tx, &new, t.caller.user_id).await?;
    record(&mut t, &audit, "data_request.create", request.id, &[]);
    t.tx.commit().await?;
    t.state.data_requests.notify_one();
    let location = format!("/v1/data-requests/{}", request.id);
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(request)))
}

/// List data requests
///
/// Owners and admins. Newest first; filters apply together.
#[utoipa::path(get, path = "/v1/data-requests", tag = "data-requests",
    params(PageParams, DataRequestFilterParams),
    responses(
        (status = 200, description = "One page of requests.", body = CursorPage<DataRequest>),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: not an owner or admin.", body = ErrorResponse),
    ))]
pub async fn list_data_requests(
    page: Page,
    ApiQuery(params): ApiQuery<DataRequestFilterParams>,
    mut t: Tenant,
) -> Result<Json<CursorPage<DataRequest>>, ApiError> {
    // Who asks first, then what they ask.
    require_manager(&mut t.tx, &t.caller).await?;
    let filters = DataRequestFilters::parse(&params)?;
    let page = page.resolve(&filters.scope())?;
    let requests = repo::list(&mut t.tx, &filters, &page).await?;
    t.tx.finish_read();
    Ok(Json(requests))
}

/// Get a data request
///
/// Owners and admins. Its status, deadline and SLA state, plan and per-store progress.
#[utoipa::path(get, path = "/v1/data-requests/{request_id}", tag = "data-requests",
    params(DataRequestPath),
    responses((status = 200, description = "The request.", body = DataRequest)))]
pub async fn get_data_request(
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
) -> Result<Json<DataRequest>, ApiError> {
    require_manager(&mut t.tx, &t.caller).await?;
    let request = repo::get(&mut t.tx, path.request_id).await?;
    t.tx.finish_read();
    Ok(Json(request))
}

/// Confirm an erasure
///
/// Owners and admins; the organization's or an owner's erasure: owners only. Starts the erasure of
/// exactly the plan shown. An operator's tokens are revoked now, through the auth service on the
/// caller's behalf (503 if it cannot be reached: nothing changed, confirm again).
#[utoipa::path(post, path = "/v1/data-requests/{request_id}/confirm", tag = "data-requests",
    params(DataRequestPath),
    responses(
        (status = 200, description = "Running.", body = DataRequest),
        (status = 409, description = "DATA_REQUEST_INVALID_TRANSITION: not awaiting confirmation.", body = ErrorResponse),
    ))]
pub async fn confirm_data_request(
    token: CallerToken,
    request_id: RequestId,
    audit: AuditContext,
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
) -> Result<Json<DataRequest>, ApiError> {
    let owner = require_manager(&mut t.tx, &t.caller).await?;
    let request = repo::get(&mut t.tx, path.request_id).await?;
    if needs_owner(&mut t.tx, &request).await? && !owner {
        return Err(ApiError::InsufficientPermissions);
    }
    if request.status != DataRequestStatus::AwaitingConfirmation {
        return Err(ApiError::Conflict(Conflict::DataRequestTransition));
    }
    if request.subject.kind == SubjectKind::User {
        revoke_tokens(
            &t.state, &mut t.tx, &t.caller, &token, request_id, request.id,
        )
        .await?;
    }
    let request = repo::confirm(&mut t.tx, path.request_id).await?;
    record(&mut t, &audit, "data_request.confirm", request.id, &[]);
    t.tx.commit().await?;
    t.state.data_requests.notify_one();
    Ok(Json(request))
}

/// Revokes the tokens an operator's erasure froze, on the confirming caller's behalf; each one
/// revoked (or already gone) is marked done.
async fn revoke_tokens(
    state: &AppState,
    tx: &mut OrgTx,
    caller: &Caller,
    token: &CallerToken,
    request_id: RequestId,
    id: uuid::Uuid,
) -> Result<(), ApiError> {
    use crate::auth::proto::RevokeTokenRequest;
    let org_id = tx.org_id();
    let rows = tx
        .query(
            "SELECT item FROM ibex_core.data_request_items
             WHERE org_id = $1 AND request_id = $2 AND store = 'tokens' AND NOT done",
            &[&org_id, &id],
        )
        .await?;
    for row in rows {
        let item: String = row.try_get(0).map_err(DbError::from)?;
        let revoked = state
            .auth
            .client()
            .revoke_token(
                token,
                request_id,
                RevokeTokenRequest {
                    org_id: caller.org_id.to_string(),
                    token_id: item.clone(),
                    revoke_reason: Some("data-protection erasure of its operator".into()),
                },
            )
            .await;
        match revoked {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if let Ok(token_id) = item.parse() {
            state.auth.forget_token(token_id);
        }
        tx.execute(
            "UPDATE ibex_core.data_request_items SET done = true
             WHERE org_id = $1 AND request_id = $2 AND store = 'tokens' AND item = $3",
            &[&org_id, &id, &item],
        )
        .await?;
    }
    Ok(())
}

/// Cancel a data request
///
/// Owners and admins. Only before anything was touched (`received`, `planning`,
/// `awaiting_confirmation`).
#[utoipa::path(post, path = "/v1/data-requests/{request_id}/cancel", tag = "data-requests",
    params(DataRequestPath),
    responses(
        (status = 200, description = "Canceled.", body = DataRequest),
        (status = 409, description = "DATA_REQUEST_NOT_CANCELABLE: running or ended.", body = ErrorResponse),
    ))]
pub async fn cancel_data_request(
    audit: AuditContext,
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
) -> Result<Json<DataRequest>, ApiError> {
    require_manager(&mut t.tx, &t.caller).await?;
    let request = repo::cancel(&mut t.tx, path.request_id).await?;
    record(&mut t, &audit, "data_request.cancel", request.id, &[]);
    t.tx.commit().await?;
    Ok(Json(request))
}

/// Extend the deadline
///
/// Owners and admins. The one extension Art. 12(3) allows: `due_at` moves by `months` (1 or 2,
/// default 2), with the reason to tell the person. Only while the request is open, once.
#[utoipa::path(post, path = "/v1/data-requests/{request_id}/extend", tag = "data-requests",
    params(DataRequestPath),
    request_body = ExtendDataRequestBody,
    responses(
        (status = 200, description = "Extended.", body = DataRequest),
        (status = 409, description = "DATA_REQUEST_INVALID_TRANSITION: already extended, or ended.", body = ErrorResponse),
    ))]
pub async fn extend_data_request(
    audit: AuditContext,
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<DataRequest>, ApiError> {
    require_manager(&mut t.tx, &t.caller).await?;
    let extension = Extension::parse(body)?;
    let request = repo::extend(&mut t.tx, path.request_id, &extension).await?;
    record(
        &mut t,
        &audit,
        "data_request.extend",
        request.id,
        &["due_at", "extension_reason"],
    );
    t.tx.commit().await?;
    Ok(Json(request))
}

/// Get the access archive's link
///
/// Owners and admins. A pre-signed GET URL of the ZIP archive of a succeeded access request, made
/// at this request, valid 15 minutes. The archive is deleted 7 days
/// (IBEX_API_DATA_REQUEST_ARCHIVE_DAYS) after it was made; then 410.
#[utoipa::path(get, path = "/v1/data-requests/{request_id}/archive", tag = "data-requests",
    params(DataRequestPath),
    responses(
        (status = 200, description = "The link.", body = ArchiveLink),
        (status = 409, description = "DATA_REQUEST_NO_ARCHIVE: an erasure; DATA_REQUEST_NOT_COMPLETED: not succeeded yet.", body = ErrorResponse),
        (status = 410, description = "DATA_REQUEST_ARCHIVE_EXPIRED: deleted at the end of its retention.", body = ErrorResponse),
    ))]
pub async fn get_archive(
    audit: AuditContext,
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
) -> Result<Json<ArchiveLink>, ApiError> {
    require_manager(&mut t.tx, &t.caller).await?;
    let (request, key) = repo::archive(&mut t.tx, path.request_id).await?;
    if request.kind != DataRequestType::Access {
        return Err(ApiError::Conflict(Conflict::DataRequestNoArchive));
    }
    if request.status != DataRequestStatus::Succeeded {
        return Err(ApiError::Conflict(Conflict::DataRequestNotCompleted));
    }
    let expired = request
        .archive
        .as_ref()
        .is_none_or(|a| a.purged || a.expires_at <= Utc::now());
    let (Some(key), false) = (key, expired) else {
        return Err(ApiError::ArchiveExpired);
    };
    let storage = t
        .state
        .storage
        .as_ref()
        .ok_or(ApiError::ServiceUnavailable)?;
    let (url, expires_at) = storage
        .exports
        .presign_get(&key, storage.url_ttl)
        .await
        .map_err(|_| ApiError::ServiceUnavailable)?;
    record(&mut t, &audit, "data_request.archive_url", request.id, &[]);
    t.tx.commit().await?;
    Ok(Json(ArchiveLink { url, expires_at }))
}

/// Get the receipt
///
/// Owners and admins. The signed receipt of a succeeded request (see `GET
/// /v1/data-request-receipts/{receipt_id}`).
#[utoipa::path(get, path = "/v1/data-requests/{request_id}/receipt", tag = "data-requests",
    params(DataRequestPath),
    responses(
        (status = 200, description = "The receipt.", body = SignedReceipt),
        (status = 409, description = "DATA_REQUEST_NOT_COMPLETED: not succeeded.", body = ErrorResponse),
    ))]
pub async fn get_receipt(
    ApiPath(path): ApiPath<DataRequestPath>,
    mut t: Tenant,
) -> Result<Json<SignedReceipt>, ApiError> {
    require_manager(&mut t.tx, &t.caller).await?;
    repo::get(&mut t.tx, path.request_id).await?;
    let receipt = repo::receipt(&mut t.tx, path.request_id).await?;
    t.tx.finish_read();
    let (text, jws) = receipt.ok_or(ApiError::Conflict(Conflict::DataRequestNotCompleted))?;
    Ok(Json(signed(&text, jws)))
}

fn signed(text: &str, jws: String) -> SignedReceipt {
    SignedReceipt {
        receipt: serde_json::from_str(text).unwrap_or(Value::Null),
        jws,
    }
}

/// Get a receipt by its id (no token)
///
/// No token. A receipt holds no personal data and its id is random (122 bits), so it can be handed
/// to whoever must check it; it outlives its organization (an organization's own erasure receipt).
/// Verify `jws` with `/.well-known/jwks.json`.
#[utoipa::path(get, path = "/v1/data-request-receipts/{receipt_id}", tag = "data-requests",
    operation_id = "get_public_receipt",
    params(ReceiptPath),
    responses(
        (status = 200, description = "The receipt.", body = SignedReceipt),
        (status = 404, description = "NOT_FOUND: no receipt with this id.", body = ErrorResponse),
    ))]
pub async fn get_public_receipt(
    state: AppState,
    ApiPath(path): ApiPath<ReceiptPath>,
) -> Result<Json<SignedReceipt>, ApiError> {
    let mut conn = state.db.platform().await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT receipt, jws FROM ibex_core.data_request_receipts WHERE id = $1")
            .bind(path.receipt_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (text, jws) = row.ok_or_else(|| ApiError::not_found("No receipt with this id."))?;
    Ok(Json(signed(&text, jws)))
}
