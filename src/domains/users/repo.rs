//! The users' SQL, in an [`OrgTx`] like every request query.

use uuid::Uuid;

use super::model::{NewUser, User, UserChanges};
use crate::db::OrgTx;
use crate::error::{ApiError, Conflict};
use crate::wire::pagination::{CursorPage, PageRequest, Position};

const COLUMNS: &str = "id, org_id, email, name, role, status, created_at, updated_at, version";

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
    let sql = "SELECT role FROM ibex_core.users
               WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status = 'active'";
    Ok(tx.fetch_value(sql, &[&org_id, &user_id]).await?)
}

pub async fn list(tx: &mut OrgTx, page: &PageRequest) -> Result<CursorPage<User>, ApiError> {
    let org_id = tx.org_id();
    let limit = page.fetch_limit();
    let rows = match page.after {
        None => {
            tx.fetch_all::<User>(
                &format!(
                    "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND deleted_at IS NULL
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                &[&org_id, &limit],
            )
            .await?
        }
        Some(after) => {
            tx.fetch_all::<User>(
                &format!(
                    "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND deleted_at IS NULL
                       AND (created_at, id) < ($2, $3)
                     ORDER BY created_at DESC, id DESC LIMIT $4"
                ),
                &[&org_id, &after.created_at, &after.id, &limit],
            )
            .await?
        }
    };
    Ok(page.finish(rows, |user| Position::new(user.created_at, user.id)))
}

pub async fn insert(tx: &mut OrgTx, new: NewUser) -> Result<User, ApiError> {
    let org_id = tx.org_id();
    tx.fetch_one::<User>(
        &format!(
            "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
             VALUES ($1, $2, $3, $4, $5, 'invited') RETURNING {COLUMNS}"
        ),
        &[&Uuid::now_v7(), &org_id, &new.email, &new.name, &new.role],
    )
    .await
    .map_err(|e| e.on_insert("users_org_email_live_key", Conflict::UserEmail))
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<User, ApiError> {
    tx.fetch_live("users", COLUMNS, id)
        .await?
        .ok_or_else(not_found)
}

/// The role order, highest first: a caller grants and takes away only roles below its own, and
/// only an owner grants or removes `owner` (docs: issue 27, OWASP API5 "broken function level
/// authorization"; GitHub's and Stripe's team roles work the same way).
pub fn rank(role: &str) -> u8 {
    match role {
        "owner" => 3,
        "admin" => 2,
        "member" => 1,
        _ => 0,
    }
}

/// May a caller whose role is `caller` (`None`: no active user, such as an agent's token) give
/// a user the role `to`, taking `from` away (`None`: a new user)? `own` is a change to the
/// caller's own user, which may only go down.
pub fn may_change_role(
    caller: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    own: bool,
) -> bool {
    if from == to {
        return true;
    }
    let Some(caller) = caller else {
        return false;
    };
    if own {
        // Stepping down is always allowed (the last-owner rule still applies); up never.
        return match (from, to) {
            (Some(from), Some(to)) => rank(to) < rank(from),
            (Some(_), None) => true,
            _ => false,
        };
    }
    if caller == "owner" {
        return true;
    }
    let below = |role: Option<&str>| role.is_none_or(|role| rank(role) < rank(caller));
    below(from) && below(to)
}

/// Who may change roles, locked for the rest of the transaction.
struct Owners {
    /// Every live owner's id.
    ids: Vec<Uuid>,
    /// The caller's role, if the caller is an active user of the organization.
    caller_role: Option<String>,
}

/// Locks, in one statement, every live owner of the organization and the target: two requests
/// that would each remove one of the last two owners serialize here, and the second sees one
/// owner left. The caller's own ownership is read from the same rows.
async fn lock_owners_and(
    tx: &mut OrgTx,
    id: Uuid,
    caller: Option<Uuid>,
) -> Result<(Owners, User), ApiError> {
    let org_id = tx.org_id();
    let rows = tx
        .fetch_all::<User>(
            &format!(
                "SELECT {COLUMNS} FROM ibex_core.users
                 WHERE org_id = $1 AND deleted_at IS NULL
                   AND (role = 'owner' OR id = $2 OR id = $3)
                 ORDER BY id FOR UPDATE"
            ),
            &[&org_id, &id, &caller],
        )
        .await?;
    let owners = Owners {
        ids: rows
            .iter()
            .filter(|u| u.role == "owner")
            .map(|u| u.id)
            .collect(),
        caller_role: rows
            .iter()
            .find(|u| Some(u.id) == caller && u.status == "active")
            .map(|u| u.role.clone()),
    };
    let target = rows
        .into_iter()
        .find(|u| u.id == id)
        .ok_or_else(not_found)?;
    Ok((owners, target))
}

/// The role order (see [`may_change_role`]), and the owner role never away from the last owner.
/// `new_role`: `None` removes the user.
fn check_role_rules(
    owners: &Owners,
    caller: Option<Uuid>,
    target: &User,
    new_role: Option<&str>,
) -> Result<(), ApiError> {
    let own = caller == Some(target.id);
    if !may_change_role(
        owners.caller_role.as_deref(),
        Some(&target.role),
        new_role,
        own,
    ) {
        return Err(ApiError::RoleNotGrantable);
    }
    let loses_owner = target.role == "owner" && new_role != Some("owner");
    if loses_owner && owners.ids.iter().filter(|id| **id != target.id).count() == 0 {
        return Err(ApiError::Conflict(Conflict::LastOwner));
    }
    Ok(())
}

/// 412 when `if_match` names versions and `user` (locked) has none of them.
fn check_version(user: &User, if_match: Option<&[i64]>) -> Result<(), ApiError> {
    match if_match {
        Some(versions) if !versions.contains(&user.version) => Err(ApiError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// `caller` is the calling user, if the token has one: only an owner moves the owner role.
/// `if_match`: the versions the change may apply to, checked on the locked row.
pub async fn update(
    tx: &mut OrgTx,
    id: Uuid,
    changes: UserChanges,
    caller: Option<Uuid>,
    if_match: Option<Vec<i64>>,
) -> Result<User, ApiError> {
    let (owners, target) = lock_owners_and(tx, id, caller).await?;
    check_version(&target, if_match.as_deref())?;
    let new_role = changes.role.filter(|role| *role != target.role);
    check_role_rules(
        &owners,
        caller,
        &target,
        new_role.or(Some(target.role.as_str())),
    )?;
    if changes.name.is_none() && new_role.is_none() {
        return Ok(target);
    }
    let org_id = tx.org_id();
    Ok(tx
        .fetch_one::<User>(
            &format!(
                "UPDATE ibex_core.users
                 SET name = COALESCE($3, name), role = COALESCE($4, role), updated_at = now()
                 WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[&org_id, &id, &changes.name, &new_role],
        )
        .await?)
}

/// Soft delete: the user is deactivated and disappears from reads; the email is free again.
pub async fn soft_delete(
    tx: &mut OrgTx,
    id: Uuid,
    caller: Option<Uuid>,
    if_match: Option<Vec<i64>>,
) -> Result<(), ApiError> {
    let (owners, target) = lock_owners_and(tx, id, caller).await?;
    check_version(&target, if_match.as_deref())?;
    // Removing a user is taking its role away.
    check_role_rules(&owners, caller, &target, None)?;
    let org_id = tx.org_id();
    tx.execute(
        "UPDATE ibex_core.users SET deleted_at = now(), status = 'deactivated', updated_at = now()
         WHERE org_id = $1 AND id = $2",
        &[&org_id, &id],
    )
    .await?;
    Ok(())
}
