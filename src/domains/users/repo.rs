//! The users' SQL, in an [`OrgTx`] like every request query.

use uuid::Uuid;

use super::model::{NewUser, User, UserChanges};
use crate::db::OrgTx;
use crate::db::error::violated_constraint;
use crate::error::{ApiError, Conflict};
use crate::pagination::{CursorPage, PageRequest, Position};

const COLUMNS: &str = "id, org_id, email, name, role, status, created_at, updated_at";

fn not_found() -> ApiError {
    ApiError::not_found("No user with this id.")
}

/// The role of the caller's user in its organization; `None` for a token without a user (an
/// agent's) or a user that is not an active member.
pub async fn caller_role(
    tx: &mut OrgTx,
    user_id: Option<Uuid>,
) -> Result<Option<String>, ApiError> {
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let org_id = tx.org_id();
    Ok(sqlx::query_scalar(
        "SELECT role FROM ibex_core.users
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status = 'active'",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn list(tx: &mut OrgTx, page: &PageRequest) -> Result<CursorPage<User>, ApiError> {
    let org_id = tx.org_id();
    let rows = match page.after {
        None => {
            sqlx::query_as::<_, User>(&format!(
                "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND deleted_at IS NULL
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(org_id)
            .bind(page.fetch_limit())
            .fetch_all(tx.conn())
            .await?
        }
        Some(after) => {
            sqlx::query_as::<_, User>(&format!(
                "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND deleted_at IS NULL
                   AND (created_at, id) < ($2, $3)
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(org_id)
            .bind(after.created_at)
            .bind(after.id)
            .bind(page.fetch_limit())
            .fetch_all(tx.conn())
            .await?
        }
    };
    Ok(page.finish(rows, |user| Position {
        created_at: user.created_at,
        id: user.id,
    }))
}

pub async fn insert(tx: &mut OrgTx, new: NewUser) -> Result<User, ApiError> {
    let org_id = tx.org_id();
    sqlx::query_as::<_, User>(&format!(
        "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
         VALUES ($1, $2, $3, $4, $5, 'invited') RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(new.email)
    .bind(new.name)
    .bind(new.role)
    .fetch_one(tx.conn())
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some("users_org_email_live_key") => ApiError::Conflict(Conflict::UserEmail),
        Some("users_org_id_fkey") => {
            ApiError::not_found("The caller's organization does not exist.")
        }
        _ => e.into(),
    })
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<User, ApiError> {
    let org_id = tx.org_id();
    sqlx::query_as::<_, User>(&format!(
        "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(not_found)
}

/// Locks every live owner of the organization, then the target: two requests that would each
/// remove one of the last two owners serialize here, and the second sees one owner left.
async fn lock_owners_and(tx: &mut OrgTx, id: Uuid) -> Result<(Vec<Uuid>, User), ApiError> {
    let org_id = tx.org_id();
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ibex_core.users
         WHERE org_id = $1 AND role = 'owner' AND deleted_at IS NULL
         ORDER BY id FOR UPDATE",
    )
    .bind(org_id)
    .fetch_all(tx.conn())
    .await?;
    let target = sqlx::query_as::<_, User>(&format!(
        "SELECT {COLUMNS} FROM ibex_core.users
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(not_found)?;
    Ok((owners, target))
}

/// The owner role moves only by an owner's hand, and never away from the last owner.
fn check_owner_rules(
    caller_is_owner: bool,
    owners: &[Uuid],
    target: &User,
    new_role: Option<&str>,
) -> Result<(), ApiError> {
    let was_owner = target.role == "owner";
    let becomes_owner = new_role == Some("owner");
    let loses_owner = was_owner && new_role != Some("owner");
    if (becomes_owner && !was_owner || loses_owner) && !caller_is_owner {
        return Err(ApiError::InsufficientPermissions);
    }
    if loses_owner && owners.iter().filter(|id| **id != target.id).count() == 0 {
        return Err(ApiError::Conflict(Conflict::LastOwner));
    }
    Ok(())
}

pub async fn update(
    tx: &mut OrgTx,
    id: Uuid,
    changes: UserChanges,
    caller_is_owner: bool,
) -> Result<User, ApiError> {
    let (owners, target) = lock_owners_and(tx, id).await?;
    let new_role = changes.role.filter(|role| *role != target.role);
    check_owner_rules(
        caller_is_owner,
        &owners,
        &target,
        new_role.or(Some(target.role.as_str())),
    )?;
    if changes.name.is_none() && new_role.is_none() {
        return Ok(target);
    }
    let org_id = tx.org_id();
    Ok(sqlx::query_as::<_, User>(&format!(
        "UPDATE ibex_core.users
         SET name = COALESCE($3, name), role = COALESCE($4, role), updated_at = now()
         WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(org_id)
    .bind(id)
    .bind(changes.name)
    .bind(new_role)
    .fetch_one(tx.conn())
    .await?)
}

/// Soft delete: the user is deactivated and disappears from reads; the email is free again.
pub async fn soft_delete(tx: &mut OrgTx, id: Uuid, caller_is_owner: bool) -> Result<(), ApiError> {
    let (owners, target) = lock_owners_and(tx, id).await?;
    // Removing an owner is removing the owner role.
    check_owner_rules(caller_is_owner, &owners, &target, None)?;
    let org_id = tx.org_id();
    sqlx::query(
        "UPDATE ibex_core.users SET deleted_at = now(), status = 'deactivated', updated_at = now()
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}
