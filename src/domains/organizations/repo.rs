//! The organization's SQL. Its row-level security policy compares `id` (not `org_id`) with the
//! caller's organization; the statements still name the id.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::model::{Deletion, OrgChanges, Organization};
use crate::db::{DbError, OrgTx, from_row};
use crate::error::{ApiError, Conflict};
use crate::events::{self, Event};

const COLUMNS: &str = "o.id, o.name, o.slug, o.tier, o.status, o.billing_email, o.settings,
                       o.created_at, o.updated_at, o.version, d.state, d.requested_at";

const SELECT: &str = "SELECT o.id, o.name, o.slug, o.tier, o.status, o.billing_email, o.settings,
                             o.created_at, o.updated_at, o.version, d.state, d.requested_at
                      FROM ibex_core.organizations o
                      LEFT JOIN ibex_core.org_deletions d ON d.org_id = o.id AND d.state <> 'done'
                      WHERE o.id = $1 AND o.deleted_at IS NULL";

from_row! {
    Organization {
        id, name, slug, tier, status, billing_email, settings, created_at, updated_at, version,
    }
    deletion: |row| {
        let state: Option<String> = row.try_get("state")?;
        let requested_at: Option<DateTime<Utc>> = row.try_get("requested_at")?;
        state.zip(requested_at).map(|(state, requested_at)| Deletion { state, requested_at })
    },
}

fn missing() -> ApiError {
    ApiError::not_found("The organization does not exist.")
}

pub async fn get(tx: &mut OrgTx) -> Result<Organization, ApiError> {
    let org_id = tx.org_id();
    tx.fetch_optional::<Organization>(SELECT, &[&org_id])
        .await?
        .ok_or_else(missing)
}

/// The organization's status, locked until the transaction ends; 412 when `if_match` names
/// versions and the locked row has none of them.
async fn lock_status(tx: &mut OrgTx, if_match: Option<&[i64]>) -> Result<String, ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_opt(
            "SELECT status, version FROM ibex_core.organizations
             WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            &[&org_id],
        )
        .await?
        .ok_or_else(missing)?;
    let version: i64 = row.try_get(1).map_err(DbError::from)?;
    check_version(version, if_match)?;
    Ok(row.try_get(0).map_err(DbError::from)?)
}

fn check_version(version: i64, if_match: Option<&[i64]>) -> Result<(), ApiError> {
    match if_match {
        Some(versions) if !versions.contains(&version) => Err(ApiError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// `if_match`: the versions the change may apply to, checked in the UPDATE itself.
pub async fn update(
    tx: &mut OrgTx,
    changes: OrgChanges,
    if_match: Option<Vec<i64>>,
) -> Result<Organization, ApiError> {
    if changes.is_empty() {
        let org = get(tx).await?;
        check_version(org.version, if_match.as_deref())?;
        return match org.status.as_str() {
            "cancelled" => Err(ApiError::Conflict(Conflict::OrgStatus)),
            _ => Ok(org),
        };
    }
    let org_id = tx.org_id();
    let (set_email, email) = match changes.billing_email {
        None => (false, None),
        Some(email) => (true, email),
    };
    // One statement: the change, the read-only check on the row it locks (an organization being
    // deleted is read-only), and the answer.
    let updated = tx
        .fetch_optional::<Organization>(
            &format!(
                "WITH o AS (
                     UPDATE ibex_core.organizations
                     SET name = COALESCE($2, name),
                         billing_email = CASE WHEN $3 THEN $4 ELSE billing_email END,
                         settings = COALESCE($5, settings),
                         updated_at = now()
                     WHERE id = $1 AND deleted_at IS NULL AND status <> 'cancelled'
                       AND ($6::int8[] IS NULL OR version = ANY($6))
                     RETURNING *)
                 SELECT {COLUMNS} FROM o
                 LEFT JOIN ibex_core.org_deletions d ON d.org_id = o.id AND d.state <> 'done'"
            ),
            &[
                &org_id,
                &changes.name,
                &set_email,
                &email,
                &changes.settings.map(Value::Object),
                &if_match,
            ],
        )
        .await?;
    match updated {
        Some(org) => Ok(org),
        // Missing (404), changed since If-Match (412) or being deleted (409).
        None => {
            check_version(get(tx).await?.version, if_match.as_deref())?;
            Err(ApiError::Conflict(Conflict::OrgStatus))
        }
    }
}

/// Suspends the organization and announces it (in the same transaction); already suspended is a
/// no-op that announces nothing.
pub async fn suspend(tx: &mut OrgTx) -> Result<Organization, ApiError> {
    match lock_status(tx, None).await?.as_str() {
        "suspended" => return get(tx).await,
        "cancelled" => return Err(ApiError::Conflict(Conflict::OrgStatus)),
        _ => {}
    }
    let org_id = tx.org_id();
    let now = updated_at(tx, "suspended").await?;
    events::enqueue(tx, Event::org_suspended(org_id, now)).await?;
    get(tx).await
}

async fn updated_at(tx: &mut OrgTx, status: &str) -> Result<DateTime<Utc>, ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_one(
            "UPDATE ibex_core.organizations SET status = $2, updated_at = now()
             WHERE id = $1 RETURNING updated_at",
            &[&org_id, &status],
        )
        .await?;
    Ok(row.try_get(0).map_err(DbError::from)?)
}

/// Cancels the organization, blocks its traffic and schedules the GDPR deletion job. Asking again
/// while it is scheduled is a no-op.
pub async fn request_deletion(
    tx: &mut OrgTx,
    if_match: Option<Vec<i64>>,
    created_by: Option<Uuid>,
) -> Result<Organization, ApiError> {
    let org_id = tx.org_id();
    if lock_status(tx, if_match.as_deref()).await? != "cancelled" {
        let now = updated_at(tx, "cancelled").await?;
        events::enqueue(tx, Event::org_suspended(org_id, now)).await?;
    }
    tx.execute(
        "INSERT INTO ibex_core.org_deletions (org_id) VALUES ($1) ON CONFLICT (org_id) DO NOTHING",
        &[&org_id],
    )
    .await?;
    file_erasure_request(tx, created_by).await?;
    get(tx).await
}

/// The subject of an organization's erasure, as data requests serialize it.
const ORGANIZATION_SUBJECT: &str =
    r#"{"kind":"organization","user_id":null,"external_ids":[],"session_ids":[],"agent_ids":[]}"#;

/// The deletion is the organization's erasure as a data request (docs/domains/data-requests.md):
/// one already awaiting confirmation is confirmed by it, else a new one is filed, confirmed (the
/// DELETE is the confirmation), unless one is under way. The subject commitment is the one
/// `data_requests::model::Subject::commitment` makes for `{"kind":"organization"}`
/// (`tests/it/data_requests/organization.rs` holds them equal).
async fn file_erasure_request(tx: &mut OrgTx, created_by: Option<Uuid>) -> Result<(), ApiError> {
    let org_id = tx.org_id();
    let rows = tx
        .query(
            "WITH confirmed AS (
                 UPDATE ibex_core.data_requests
                 SET status = 'running', confirmed_at = now(), updated_at = now(), lease_until = NULL,
                     request_id = NULLIF(current_setting('app.request_id', true), '')::uuid
                 WHERE org_id = $1 AND type = 'erasure' AND subject_kind = 'organization'
                   AND status = 'awaiting_confirmation'
                 RETURNING id, 'running' AS status),
             filed AS (
                 INSERT INTO ibex_core.data_requests
                     (id, org_id, type, subject_kind, subject, subject_salt, subject_commitment,
                      received_at, due_at, created_by, confirmed_at)
                 SELECT $2, $1, 'erasure', 'organization', $4::text::jsonb, salt,
                        encode(sha256(convert_to(salt || ':' || $4::text, 'UTF8')), 'hex'),
                        now(), now() + interval '1 month', $3, now()
                 FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS salt) s
                 WHERE NOT EXISTS (SELECT 1 FROM confirmed)
                   AND NOT EXISTS (
                       SELECT 1 FROM ibex_core.data_requests
                       WHERE org_id = $1 AND type = 'erasure' AND subject_kind = 'organization'
                         AND status IN ('received', 'planning', 'awaiting_confirmation', 'running'))
                 RETURNING id, status)
             SELECT id, status FROM confirmed UNION ALL SELECT id, status FROM filed",
            &[&org_id, &Uuid::now_v7(), &created_by, &ORGANIZATION_SUBJECT],
        )
        .await?;
    for row in rows {
        let id: Uuid = row.try_get(0).map_err(DbError::from)?;
        let status: String = row.try_get(1).map_err(DbError::from)?;
        events::enqueue(tx, Event::data_request_status(org_id, id, &status)).await?;
    }
    Ok(())
}
