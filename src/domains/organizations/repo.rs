//! The organization's SQL. Its row-level security policy compares `id` (not `org_id`) with the
//! caller's organization; the statements still name the id.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::model::{Deletion, OrgChanges, Organization};
use crate::db::OrgTx;
use crate::error::{ApiError, Conflict};
use crate::events::{self, Event};

const SELECT: &str = "SELECT o.id, o.name, o.slug, o.tier, o.status, o.billing_email, o.settings,
                             o.created_at, o.updated_at, d.state, d.requested_at
                      FROM ibex_core.organizations o
                      LEFT JOIN ibex_core.org_deletions d ON d.org_id = o.id AND d.state <> 'done'
                      WHERE o.id = $1 AND o.deleted_at IS NULL";

fn from_row(row: PgRow) -> Organization {
    let deletion = row
        .get::<Option<String>, _>("state")
        .zip(row.get::<Option<DateTime<Utc>>, _>("requested_at"))
        .map(|(state, requested_at)| Deletion {
            state,
            requested_at,
        });
    Organization {
        id: row.get("id"),
        name: row.get("name"),
        slug: row.get("slug"),
        tier: row.get("tier"),
        status: row.get("status"),
        billing_email: row.get("billing_email"),
        settings: row.get("settings"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        deletion,
    }
}

pub async fn get(tx: &mut OrgTx) -> Result<Organization, ApiError> {
    let org_id = tx.org_id();
    sqlx::query(SELECT)
        .bind(org_id)
        .fetch_optional(tx.conn())
        .await?
        .map(from_row)
        .ok_or_else(|| ApiError::not_found("The organization does not exist."))
}

/// The organization's status, locked until the transaction ends.
async fn lock_status(tx: &mut OrgTx) -> Result<String, ApiError> {
    let org_id = tx.org_id();
    sqlx::query_scalar(
        "SELECT status FROM ibex_core.organizations
         WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(org_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| ApiError::not_found("The organization does not exist."))
}

pub async fn update(tx: &mut OrgTx, changes: OrgChanges) -> Result<Organization, ApiError> {
    // An organization being deleted is read-only.
    if lock_status(tx).await? == "cancelled" {
        return Err(ApiError::Conflict(Conflict::OrgStatus));
    }
    if !changes.is_empty() {
        let org_id = tx.org_id();
        let (set_email, email) = match changes.billing_email {
            None => (false, None),
            Some(email) => (true, email),
        };
        sqlx::query(
            "UPDATE ibex_core.organizations
             SET name = COALESCE($2, name),
                 billing_email = CASE WHEN $3 THEN $4 ELSE billing_email END,
                 settings = COALESCE($5, settings),
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(org_id)
        .bind(changes.name)
        .bind(set_email)
        .bind(email)
        .bind(changes.settings.map(Value::Object))
        .execute(tx.conn())
        .await?;
    }
    get(tx).await
}

/// Suspends the organization and announces it (in the same transaction); already suspended is a
/// no-op that announces nothing.
pub async fn suspend(tx: &mut OrgTx) -> Result<Organization, ApiError> {
    match lock_status(tx).await?.as_str() {
        "suspended" => return get(tx).await,
        "cancelled" => return Err(ApiError::Conflict(Conflict::OrgStatus)),
        _ => {}
    }
    let org_id = tx.org_id();
    let now: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE ibex_core.organizations SET status = 'suspended', updated_at = now()
         WHERE id = $1 RETURNING updated_at",
    )
    .bind(org_id)
    .fetch_one(tx.conn())
    .await?;
    events::enqueue(tx, Event::org_suspended(org_id, now)).await?;
    get(tx).await
}

/// Cancels the organization, blocks its traffic and schedules the GDPR deletion job. Asking again
/// while it is scheduled is a no-op.
pub async fn request_deletion(tx: &mut OrgTx) -> Result<Organization, ApiError> {
    let org_id = tx.org_id();
    if lock_status(tx).await? != "cancelled" {
        let now: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE ibex_core.organizations SET status = 'cancelled', updated_at = now()
             WHERE id = $1 RETURNING updated_at",
        )
        .bind(org_id)
        .fetch_one(tx.conn())
        .await?;
        events::enqueue(tx, Event::org_suspended(org_id, now)).await?;
    }
    sqlx::query(
        "INSERT INTO ibex_core.org_deletions (org_id) VALUES ($1) ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org_id)
    .execute(tx.conn())
    .await?;
    get(tx).await
}
