//! The five user operations. Reads need any valid token of the organization; writes need
//! `user:manage`, and the owner role moves only by an owner's hand.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::LOCATION;
use serde_json::Value;

use super::model::{NewUser, User, UserChanges, UserPath};
use super::repo;
use crate::domains::audit::{AuditContext, record};
use crate::error::{ApiError, ErrorResponse};
use crate::tenancy::{Tenant, need};
use crate::wire::conditional::{IfMatch, IfNoneMatch, Preconditions, Tagged};
use crate::wire::extract::{ApiJson, ApiPath};
use crate::wire::pagination::{CursorPage, ListScope, Page, PageParams};

/// List users
///
/// The organization's live users, newest first.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(PageParams),
    responses((status = 200, description = "One page of users.", body = CursorPage<User>)))]
pub async fn list_users(page: Page, mut t: Tenant) -> Result<Json<CursorPage<User>>, ApiError> {
    let page = page.resolve(&ListScope::new("users"))?;
    let users = repo::list(&mut t.tx, &page).await?;
    t.tx.finish_read();
    Ok(Json(users))
}

/// Invite a user
///
/// Needs `user:manage`, and the caller's user may invite only with a role below its own (owner >
/// admin > member > viewer; an owner invites any role, an agent's token none). The user starts
/// `invited`.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = crate::domains::users::model::CreateUserBody,
    responses(
        (status = 201, description = "Invited; `Location` names the new user.", body = User,
            headers(("Location" = String, description = "/v1/users/{id}")),
            links(
                ("GetUser" = (operation_id = "get_user", parameters(("user_id" = "$response.body#/id")))),
                ("UpdateUser" = (operation_id = "update_user", parameters(("user_id" = "$response.body#/id")))),
                ("DeleteUser" = (operation_id = "delete_user", parameters(("user_id" = "$response.body#/id")))),
            )),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: the token lacks `user:manage`. ROLE_NOT_GRANTABLE: the role is not below the caller's own.", body = ErrorResponse),
        (status = 404, description = "NOT_FOUND: the caller's organization no longer exists (deleted).", body = ErrorResponse),
        (status = 409, description = "USER_EMAIL_CONFLICT: a live user of the organization has this email.", body = ErrorResponse),
    ))]
pub async fn create_user(
    audit: AuditContext,
    mut t: Tenant<{ need::USER_MANAGE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewUser::parse(body)?;
    let caller_role = repo::caller_role(&mut t.tx, t.caller.user_id).await?;
    if !repo::may_change_role(caller_role.as_deref(), None, Some(new.role), false) {
        return Err(ApiError::RoleNotGrantable);
    }
    let user = repo::insert(&mut t.tx, new).await?;
    record(&mut t, &audit, "user.create", user.id, &[]);
    t.tx.commit().await?;
    let location = format!("/v1/users/{}", user.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(user)))
}

/// Get a user
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users", params(UserPath, IfNoneMatch),
    responses((status = 200, description = "The user.", body = User)))]
pub async fn get_user(
    ApiPath(path): ApiPath<UserPath>,
    preconditions: Preconditions,
    mut t: Tenant,
) -> Result<Response, ApiError> {
    let user = repo::get(&mut t.tx, path.user_id).await?;
    t.tx.finish_read();
    Ok(preconditions.read(user.version, Json(user)))
}

/// Update a user
///
/// Needs `user:manage`. Changes `name` and `role` only. A role change follows the role order owner
/// > admin > member > viewer: the caller may take away and grant only roles below its own, only an
/// owner grants or removes `owner`, and a caller may lower its own role but never raise it. The
/// last owner cannot be demoted.
#[utoipa::path(patch, path = "/v1/users/{user_id}", tag = "users", params(UserPath, IfMatch),
    request_body = crate::domains::users::model::UpdateUserBody,
    responses(
        (status = 200, description = "The updated user.", body = User),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: the token lacks `user:manage`. ROLE_NOT_GRANTABLE: the role order forbids this change; nothing changed.", body = ErrorResponse),
        (status = 409, description = "LAST_OWNER_PROTECTED: the organization's last owner keeps the role.", body = ErrorResponse),
    ))]
pub async fn update_user(
    ApiPath(path): ApiPath<UserPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::USER_MANAGE }>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Tagged<Json<User>>, ApiError> {
    let changes = UserChanges::parse(body)?;
    let changed = changes.sent.clone();
    let if_match = preconditions.if_match_versions();
    let user = repo::update(&mut t.tx, path.user_id, changes, t.caller.user_id, if_match).await?;
    record(&mut t, &audit, "user.update", user.id, &changed);
    t.tx.commit().await?;
    Ok(Tagged(user.version, Json(user)))
}

/// Delete a user
///
/// Needs `user:manage`, and the user's role must be below the caller's own (an owner removes
/// anyone; anyone may remove themselves). Soft delete: the user is deactivated and frees its email.
/// The last owner cannot be deleted.
#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "users", params(UserPath, IfMatch),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "INSUFFICIENT_PERMISSIONS: the token lacks `user:manage`. ROLE_NOT_GRANTABLE: the user's role is not below the caller's.", body = ErrorResponse),
        (status = 409, description = "LAST_OWNER_PROTECTED: the organization's last owner cannot be deleted.", body = ErrorResponse),
    ))]
pub async fn delete_user(
    ApiPath(path): ApiPath<UserPath>,
    preconditions: Preconditions,
    audit: AuditContext,
    mut t: Tenant<{ need::USER_MANAGE }>,
) -> Result<StatusCode, ApiError> {
    let if_match = preconditions.if_match_versions();
    repo::soft_delete(&mut t.tx, path.user_id, t.caller.user_id, if_match).await?;
    record(&mut t, &audit, "user.delete", path.user_id, &[]);
    t.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
