//! The data requests' SQL for the operations, in an [`OrgTx`] (the worker has its own, in
//! `worker`).

use chrono::{DateTime, Months, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{
    ArchiveInfo, DataRequest, DataRequestFilters, DataRequestStatus, DataRequestType, Extension,
    NewDataRequest, SlaState, StoreProgress, Subject,
};
use crate::db::{DbError, FromRow, OrgTx, Sql};
use crate::error::{ApiError, Conflict};
use crate::events::{self, Event};
use crate::wire::pagination::{CursorPage, PageRequest, Position};

const COLUMNS: &str = "id, type, status, rejection_code, subject_kind, subject, subject_salt, \
     subject_commitment, reference, received_at, due_at, extension_reason, plan, progress, \
     archive_sha256, archive_bytes, archive_expires_at, archive_purged_at, receipt_id, \
     created_at, updated_at, completed_at";

pub fn not_found() -> ApiError {
    ApiError::not_found("No data request with this id in the organization.")
}

/// One calendar month after `at` (the last day of a shorter month when the day does not exist).
pub fn plus_months(at: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    at.checked_add_months(Months::new(months)).unwrap_or(at)
}

pub fn status_of(text: &str) -> DataRequestStatus {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .unwrap_or(DataRequestStatus::Rejected)
}

impl FromRow for DataRequest {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let kind: String = row.try_get("subject_kind")?;
        let subject: Option<serde_json::Value> = row.try_get("subject")?;
        let subject = subject
            .and_then(|s| serde_json::from_value::<Subject>(s).ok())
            .unwrap_or_else(|| Subject {
                kind: serde_json::from_value(serde_json::Value::String(kind))
                    .unwrap_or(super::model::SubjectKind::Organization),
                user_id: None,
                external_ids: Vec::new(),
                session_ids: Vec::new(),
                agent_ids: Vec::new(),
            });
        let due_at: DateTime<Utc> = row.try_get("due_at")?;
        let completed_at: Option<DateTime<Utc>> = row.try_get("completed_at")?;
        let plan: Option<serde_json::Value> = row.try_get("plan")?;
        let progress: serde_json::Value = row.try_get("progress")?;
        let archive_sha256: Option<String> = row.try_get("archive_sha256")?;
        let archive = match archive_sha256 {
            Some(sha256) => Some(ArchiveInfo {
                sha256,
                bytes: row.try_get::<_, Option<i64>>("archive_bytes")?.unwrap_or(0),
                expires_at: row
                    .try_get::<_, Option<DateTime<Utc>>>("archive_expires_at")?
                    .unwrap_or(due_at),
                purged: row
                    .try_get::<_, Option<DateTime<Utc>>>("archive_purged_at")?
                    .is_some(),
            }),
            None => None,
        };
        let type_: String = row.try_get("type")?;
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: if type_ == "access" {
                DataRequestType::Access
            } else {
                DataRequestType::Erasure
            },
            status: status_of(&status),
            rejection_code: row.try_get("rejection_code")?,
            subject,
            subject_salt: row.try_get("subject_salt")?,
            subject_commitment: row.try_get("subject_commitment")?,
            reference: row.try_get("reference")?,
            received_at: row.try_get("received_at")?,
            due_at,
            sla_state: SlaState::of(due_at, completed_at, Utc::now()),
            extension_reason: row.try_get("extension_reason")?,
            plan: plan.and_then(|p| serde_json::from_value(p).ok()),
            progress: serde_json::from_value::<std::collections::BTreeMap<String, StoreProgress>>(
                progress,
            )
            .unwrap_or_default(),
            archive,
            receipt_id: row.try_get("receipt_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            completed_at,
        })
    }
}

pub async fn insert(
    tx: &mut OrgTx,
    new: &NewDataRequest,
    created_by: Option<Uuid>,
) -> Result<DataRequest, ApiError> {
    let org_id = tx.org_id();
    let id = Uuid::now_v7();
    let salt = super::model::hex(&random_bytes());
    let commitment = new.subject.commitment(&salt);
    let subject = serde_json::to_value(&new.subject).expect("a subject serializes");
    let kind = new.kind.as_str();
    let due_at = plus_months(new.received_at, 1);
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO ibex_core.data_requests
                     (id, org_id, type, subject_kind, subject, subject_salt, subject_commitment,
                      reference, received_at, due_at, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &org_id,
                &kind,
                &new.subject.kind.as_str(),
                &subject,
                &salt,
                &commitment,
                &new.reference,
                &new.received_at,
                &due_at,
                &created_by,
            ],
        )
        .await?;
    events::enqueue(tx, Event::data_request_status(org_id, id, "received")).await?;
    Ok(DataRequest::from_row(&row)?)
}

fn random_bytes() -> [u8; 16] {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    salt
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<DataRequest, ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM ibex_core.data_requests WHERE org_id = $1 AND id = $2"),
            &[&org_id, &id],
        )
        .await?
        .ok_or_else(not_found)?;
    Ok(DataRequest::from_row(&row)?)
}

pub async fn list(
    tx: &mut OrgTx,
    filters: &DataRequestFilters,
    page: &PageRequest,
) -> Result<CursorPage<DataRequest>, ApiError> {
    let org_id = tx.org_id();
    let mut qb = Sql::new(format!(
        "SELECT {COLUMNS} FROM ibex_core.data_requests WHERE org_id = "
    ));
    qb.push_bind(org_id);
    if let Some(kind) = filters.kind {
        qb.push(" AND type = ").push_bind(kind.to_owned());
    }
    if let Some(status) = filters.status {
        qb.push(" AND status = ").push_bind(status.to_owned());
    }
    qb.newest_first(page.after.as_ref(), page.fetch_limit());
    let rows = tx.query(qb.text(), &qb.params()).await?;
    let requests = rows
        .iter()
        .map(DataRequest::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(requests, |r| Position::new(r.created_at, r.id)))
}

/// Moves the request from one of `from` to `to` (with `set`, more assignments); the request
/// after, or the conflict `refused` when it is in another status, or 404.
async fn transition(
    tx: &mut OrgTx,
    id: Uuid,
    from: &[&str],
    to: &str,
    set: &str,
    refused: Conflict,
) -> Result<DataRequest, ApiError> {
    let org_id = tx.org_id();
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    let row = tx
        .query_opt(
            &format!(
                "UPDATE ibex_core.data_requests SET status = $4, updated_at = now(){set}
                 WHERE org_id = $1 AND id = $2 AND status = ANY($3)
                 RETURNING {COLUMNS}"
            ),
            &[&org_id, &id, &from, &to],
        )
        .await?;
    match row {
        Some(row) => {
            events::enqueue(tx, Event::data_request_status(org_id, id, to)).await?;
            Ok(DataRequest::from_row(&row)?)
        }
        None => {
            get(tx, id).await?;
            Err(ApiError::Conflict(refused))
        }
    }
}

/// `awaiting_confirmation` → `running`.
pub async fn confirm(tx: &mut OrgTx, id: Uuid) -> Result<DataRequest, ApiError> {
    transition(
        tx,
        id,
        &["awaiting_confirmation"],
        "running",
        ", confirmed_at = now(), lease_until = NULL,
           request_id = NULLIF(current_setting('app.request_id', true), '')::uuid",
        Conflict::DataRequestTransition,
    )
    .await
}

/// Anything not yet touched → `canceled`. A plan being made is abandoned (its worker finds the
/// status changed and keeps nothing).
pub async fn cancel(tx: &mut OrgTx, id: Uuid) -> Result<DataRequest, ApiError> {
    let canceled = transition(
        tx,
        id,
        &["received", "planning", "awaiting_confirmation"],
        "canceled",
        ", completed_at = now(), lease_until = NULL",
        Conflict::DataRequestNotCancelable,
    )
    .await?;
    let org_id = tx.org_id();
    tx.execute(
        "DELETE FROM ibex_core.data_request_items WHERE org_id = $1 AND request_id = $2",
        &[&org_id, &id],
    )
    .await
    .ok();
    Ok(canceled)
}

/// The one extension: `due_at` later by `months`, while the request is open.
pub async fn extend(
    tx: &mut OrgTx,
    id: Uuid,
    extension: &Extension,
) -> Result<DataRequest, ApiError> {
    let org_id = tx.org_id();
    let months = i32::try_from(extension.months).unwrap_or(2);
    let row = tx
        .query_opt(
            &format!(
                "UPDATE ibex_core.data_requests
                 SET due_at = due_at + make_interval(months => $3), extended_at = now(),
                     extension_reason = $4, updated_at = now()
                 WHERE org_id = $1 AND id = $2 AND extended_at IS NULL
                   AND status NOT IN ('succeeded', 'canceled', 'rejected')
                 RETURNING {COLUMNS}"
            ),
            &[&org_id, &id, &months, &extension.reason],
        )
        .await?;
    match row {
        Some(row) => Ok(DataRequest::from_row(&row)?),
        None => {
            get(tx, id).await?;
            Err(ApiError::Conflict(Conflict::DataRequestTransition))
        }
    }
}

/// The request and its archive's object key, for `GET …/archive`.
pub async fn archive(tx: &mut OrgTx, id: Uuid) -> Result<(DataRequest, Option<String>), ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS}, archive_key FROM ibex_core.data_requests
                 WHERE org_id = $1 AND id = $2"
            ),
            &[&org_id, &id],
        )
        .await?
        .ok_or_else(not_found)?;
    let key = row.try_get("archive_key").map_err(DbError::from)?;
    Ok((DataRequest::from_row(&row)?, key))
}

/// The role of an operator a `user` subject names, deleted ones too (their data may remain).
pub async fn subject_role(tx: &mut OrgTx, user_id: Uuid) -> Result<Option<String>, ApiError> {
    let org_id = tx.org_id();
    let sql = "SELECT role FROM ibex_core.users WHERE org_id = $1 AND id = $2";
    Ok(tx.fetch_value(sql, &[&org_id, &user_id]).await?)
}

/// The receipt of a request, as stored: (receipt JSON text, JWS).
pub async fn receipt(tx: &mut OrgTx, id: Uuid) -> Result<Option<(String, String)>, ApiError> {
    let org_id = tx.org_id();
    let row = tx
        .query_opt(
            "SELECT receipt, jws FROM ibex_core.data_request_receipts
             WHERE org_id = $1 AND request_id = $2",
            &[&org_id, &id],
        )
        .await?;
    row.map(|row| -> Result<(String, String), DbError> { Ok((row.try_get(0)?, row.try_get(1)?)) })
        .transpose()
        .map_err(ApiError::from)
}
