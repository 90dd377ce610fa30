//! Where idempotency keys live: claimed in PostgreSQL under the caller's row-level security,
//! the first answer stored with them, replayed from them, and swept once expired.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::Value;
use uuid::Uuid;

use super::REPLAYED_HEADER;
use crate::auth::Caller;
use crate::db::{Database, DbError, Sql};
use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::wire::response::{KeepBody, NotReplayable};

/// Expired keys removed per statement by the sweep, so it never holds locks for long.
const SWEEP_BATCH: i64 = 1_000;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Headers of an answer that a replay repeats; the rest (request id, CORS, rate limits) belong
/// to the request that gets the replay.
const REPLAYED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::RETRY_AFTER,
];

/// The layer's settings and database handle.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub db: Database,
    /// How long a key's answer is kept.
    pub ttl: Duration,
    /// How long a running request holds its key before a retry may run it again.
    pub lease: Duration,
}

/// What the claim of a key found.
pub(super) enum Claim {
    /// The key is this request's: run it.
    Claimed,
    /// A request with the same key runs now.
    InUse,
    /// The key was used for a different request.
    Mismatch,
    /// The first request's answer, to replay.
    Stored(StoredAnswer),
    /// The first answer held a secret; its `Location`, if any.
    Withheld(Option<String>),
}

pub(super) struct StoredAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub(super) struct Scope {
    pub org_id: Uuid,
    pub caller_id: Uuid,
    pub key: String,
}

impl Idempotency {
    pub(super) async fn claim(
        &self,
        caller: &Caller,
        scope: &Scope,
        fingerprint: &[u8],
    ) -> Result<Claim, ApiError> {
        const CLAIM: &str = "
            INSERT INTO ibex_core.idempotency_keys AS k
                (org_id, caller_id, key, fingerprint, expires_at, locked_until)
            VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5),
                    now() + make_interval(secs => $6))
            ON CONFLICT (org_id, caller_id, key) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, created_at = now(),
                    expires_at = EXCLUDED.expires_at, locked_until = EXCLUDED.locked_until,
                    status = NULL, headers = NULL, body = NULL, replayable = true
                -- An expired key starts afresh; an abandoned one (its replica died) runs again.
                WHERE k.expires_at <= now()
                   OR (k.status IS NULL AND k.locked_until <= now()
                       AND k.fingerprint = EXCLUDED.fingerprint)
            RETURNING 1";
        // A separate statement (a fresh snapshot) sees the row a concurrent claim committed.
        const EXISTING: &str = "
            SELECT fingerprint, status, headers, body, replayable
            FROM ibex_core.idempotency_keys
            WHERE org_id = $1 AND caller_id = $2 AND key = $3";
        let ttl = self.ttl.as_secs_f64();
        let lease = self.lease.as_secs_f64();
        let fingerprint = fingerprint.to_vec();
        let mut tx = self.db.begin_for(caller).await?;
        let mut results = tx
            .query_pipelined(&[
                (
                    CLAIM,
                    &[
                        &scope.org_id,
                        &scope.caller_id,
                        &scope.key,
                        &fingerprint,
                        &ttl,
                        &lease,
                    ],
                ),
                (EXISTING, &[&scope.org_id, &scope.caller_id, &scope.key]),
            ])
            .await?;
        tx.commit().await?;
        let existing = results.pop().unwrap_or_default();
        let claimed = results.pop().unwrap_or_default();
        if !claimed.is_empty() {
            return Ok(Claim::Claimed);
        }
        // No row at all: a concurrent claim's transaction was still deciding; it runs now.
        let Some(row) = existing.into_iter().next() else {
            return Ok(Claim::InUse);
        };
        let stored_fingerprint: Vec<u8> = row.try_get("fingerprint").map_err(DbError::from)?;
        if stored_fingerprint != fingerprint {
            return Ok(Claim::Mismatch);
        }
        let Some(status) = row
            .try_get::<_, Option<i16>>("status")
            .map_err(DbError::from)?
        else {
            return Ok(Claim::InUse);
        };
        let headers: Vec<(String, String)> = row
            .try_get::<_, Option<Value>>("headers")
            .map_err(DbError::from)?
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        if !row
            .try_get::<_, bool>("replayable")
            .map_err(DbError::from)?
        {
            let location = headers
                .into_iter()
                .find(|(name, _)| name == header::LOCATION.as_str())
                .map(|(_, value)| value);
            return Ok(Claim::Withheld(location));
        }
        Ok(Claim::Stored(StoredAnswer {
            status: status as u16,
            headers,
            body: row
                .try_get::<_, Option<Vec<u8>>>("body")
                .map_err(DbError::from)?
                .unwrap_or_default(),
        }))
    }

    /// Stores the answer (or releases the key after a 5xx) and hands the answer on.
    pub(super) async fn settle(
        &self,
        caller: &Caller,
        scope: &Scope,
        fingerprint: &[u8],
        response: Response,
    ) -> Response {
        let status = response.status();
        if status.is_server_error() {
            const RELEASE: &str = "DELETE FROM ibex_core.idempotency_keys
                WHERE org_id = $1 AND caller_id = $2 AND key = $3 AND status IS NULL";
            let mut sql = Sql::new(RELEASE);
            sql.arg(scope.org_id)
                .arg(scope.caller_id)
                .arg(scope.key.clone());
            if let Err(error) = self.write(caller, RELEASE, sql).await {
                tracing::warn!(code = error.code(), "could not release an idempotency key");
            }
            return response;
        }
        let replayable = response.extensions().get::<NotReplayable>().is_none();
        let (parts, body) = response.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(_) => return ApiError::Internal.into_response(),
        };
        let mut stored_body = body.to_vec();
        let mut stored_headers = kept_headers(&parts.headers);
        if let Some(error) = parts.extensions.get::<ApiError>() {
            // Errors are rendered by the envelope layer further out; store the envelope now, its
            // request id filled in at replay.
            let rendered = error.clone().into_envelope("");
            stored_headers = kept_headers(rendered.headers());
            stored_body = axum::body::to_bytes(rendered.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
        }
        if !replayable {
            stored_body.clear();
        }
        const STORE: &str = "UPDATE ibex_core.idempotency_keys
            SET status = $5, headers = $6, body = $7, replayable = $8, locked_until = NULL
            WHERE org_id = $1 AND caller_id = $2 AND key = $3 AND fingerprint = $4
              AND status IS NULL";
        let mut sql = Sql::new(STORE);
        sql.arg(scope.org_id)
            .arg(scope.caller_id)
            .arg(scope.key.clone())
            .arg(fingerprint.to_vec())
            .arg(status.as_u16() as i16)
            .arg(serde_json::to_value(&stored_headers).unwrap_or(Value::Null))
            .arg(stored_body)
            .arg(replayable);
        if let Err(error) = self.write(caller, STORE, sql).await {
            // The work is done; only the replay is lost. The key stays held until its lease
            // ends, then a retry runs again.
            tracing::warn!(code = error.code(), "could not store an idempotent answer");
        }
        Response::from_parts(parts, Body::from(body))
    }

    async fn write(&self, caller: &Caller, sql: &'static str, params: Sql) -> Result<(), ApiError> {
        let mut tx = self.db.begin_for(caller).await?;
        tx.execute_at_commit(sql, params);
        tx.commit().await
    }
}

impl StoredAnswer {
    pub(super) fn replay(self, request_id: Option<RequestId>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut body = self.body;
        if status.is_client_error() {
            // The stored envelope, with this request's id (every error carries its own).
            if let (Ok(mut envelope), Some(id)) =
                (serde_json::from_slice::<Value>(&body), request_id)
            {
                envelope["error"]["request_id"] = Value::String(id.to_string());
                body = serde_json::to_vec(&envelope).unwrap_or_default();
            }
        }
        let mut response = Response::new(Body::from(Bytes::from(body)));
        *response.status_mut() = status;
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        // The envelope layer must not render a stored error again.
        response.extensions_mut().insert(KeepBody);
        response
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    REPLAYED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

/// Deletes expired keys in bounded batches, every minute, on the platform connection (across
/// organizations); each batch is its own statement.
pub fn spawn_sweep(db: Database) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            match sweep(&db).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired idempotency keys swept"),
                Err(error) => tracing::warn!(code = error.code(), "idempotency key sweep failed"),
            }
        }
    })
}

/// One sweep: batches until a batch comes back short. Returns how many keys it deleted.
pub async fn sweep(db: &Database) -> Result<u64, ApiError> {
    let mut conn = db.platform().await?;
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM ibex_core.idempotency_keys WHERE ctid IN
                 (SELECT ctid FROM ibex_core.idempotency_keys WHERE expires_at <= now() LIMIT $1)",
        )
        .bind(SWEEP_BATCH)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < SWEEP_BATCH as u64 {
            return Ok(total);
        }
    }
}
