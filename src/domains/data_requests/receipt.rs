//! Receipts: what a succeeded request did, without personal data, signed (compact JWS, EdDSA)
//! and chained per organization by the SHA-256 of the previous receipt, so a removed receipt
//! shows as a gap in the chain.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{StoreProgress, hex};
use crate::signing::SigningKeys;

/// A store's line of a receipt.
#[derive(Debug, Serialize)]
pub struct StoreCount {
    pub selected: i64,
    pub done: i64,
    pub remaining: i64,
}

/// The receipt's content: ids, counts, digests and times; never an identifier of the subject.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub receipt_id: Uuid,
    pub request_id: Uuid,
    pub org_id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub subject_kind: String,
    pub subject_commitment: String,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub due_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::wire::time::rfc3339")]
    pub completed_at: DateTime<Utc>,
    pub stores: BTreeMap<String, StoreCount>,
    /// SHA-256 over the frozen items (`store \t item \n`, in order).
    pub items_digest: String,
    /// The access archive's SHA-256.
    pub archive_sha256: Option<String>,
    /// Position in the organization's chain, from 1.
    pub sequence: i64,
    /// The SHA-256 of the organization's previous receipt (its JWS payload), none for the first.
    pub previous_receipt_sha256: Option<String>,
}

/// What the request row says, for its receipt.
pub struct Facts {
    pub request_id: Uuid,
    pub org_id: Uuid,
    pub kind: &'static str,
    pub subject_kind: String,
    pub subject_commitment: String,
    pub received_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub items_digest: String,
    pub archive_sha256: Option<String>,
    /// When the work ended (the request's `completed_at`).
    pub completed_at: DateTime<Utc>,
}

/// Writes the request's receipt in `tx` (a transaction as `ibex_gdpr` in the organization):
/// the organization's chain is locked for the transaction, so two receipts never share a place.
/// Returns the receipt's id.
pub async fn issue(
    tx: &mut PgConnection,
    facts: &Facts,
    progress: &BTreeMap<String, StoreProgress>,
    signing: &SigningKeys,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 29))")
        .bind(facts.org_id.to_string())
        .execute(&mut *tx)
        .await?;
    let previous: Option<(i64, String)> = sqlx::query_as(
        "SELECT sequence, sha256 FROM ibex_core.data_request_receipts
         WHERE org_id = $1 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(facts.org_id)
    .fetch_optional(&mut *tx)
    .await?;
    let receipt = Receipt {
        receipt_id: Uuid::new_v4(),
        request_id: facts.request_id,
        org_id: facts.org_id,
        kind: facts.kind,
        subject_kind: facts.subject_kind.clone(),
        subject_commitment: facts.subject_commitment.clone(),
        received_at: facts.received_at,
        due_at: facts.due_at,
        completed_at: facts.completed_at,
        stores: progress
            .iter()
            .map(|(store, p)| {
                (
                    store.clone(),
                    StoreCount {
                        selected: p.items_total,
                        done: p.items_done,
                        remaining: p.remaining.unwrap_or(0),
                    },
                )
            })
            .collect(),
        items_digest: facts.items_digest.clone(),
        archive_sha256: facts.archive_sha256.clone(),
        sequence: previous.as_ref().map_or(1, |(n, _)| n + 1),
        previous_receipt_sha256: previous.map(|(_, sha)| sha),
    };
    let claims = serde_json::to_value(&receipt).expect("a receipt serializes");
    let text = serde_json::to_string(&claims).expect("a receipt serializes");
    let jws = signing.sign(&claims);
    sqlx::query(
        "INSERT INTO ibex_core.data_request_receipts
             (id, org_id, request_id, sequence, receipt, jws, sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(receipt.receipt_id)
    .bind(facts.org_id)
    .bind(facts.request_id)
    .bind(receipt.sequence)
    .bind(&text)
    .bind(&jws)
    .bind(hex(&Sha256::digest(text.as_bytes())))
    .execute(&mut *tx)
    .await?;
    Ok(receipt.receipt_id)
}
