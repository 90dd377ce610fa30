//! The analytics' queries on the platform's ClickHouse trace store (`llm_traces`), through the
//! official `clickhouse` crate: its HTTP client keeps a connection pool; every value is bound
//! with `?` (escaped by the client), never formatted into the SQL; the organization is always
//! the caller's. Each query runs under `max_execution_time` and a client deadline, with
//! `wait_end_of_query=1` so a failure mid-query is an error rather than a short result.
//!
//! Written for ClickHouse 18.16 (Debian's, used by the tests) and current releases alike: plain
//! `RowBinary` (schema validation off: 18.16 lacks the format the crate validates with), bucket
//! starts computed as integer arithmetic on the Unix time (no `toStartOfInterval`, and
//! independent of the server's time zone), gaps filled by the caller, not `WITH FILL`.

use std::time::Duration;

use clickhouse::Client;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use uuid::Uuid;

use super::model::{Granularity, ModelUsage, Query};
use crate::config::ClickHouseConfig;
use crate::error::ApiError;
use crate::readiness::ReadinessCheck;

#[derive(Debug, Clone)]
pub struct TraceStore {
    client: Client,
    timeout: Duration,
}

#[derive(Debug, Default, clickhouse::Row, Deserialize)]
pub struct UsageRow {
    pub bucket: u32,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Default, clickhouse::Row, Deserialize)]
pub struct LatencyRow {
    pub bucket: u32,
    pub requests: u64,
    pub proxy_overhead_ms: f64,
    pub ttfb_ms: f64,
}

#[derive(Debug, Default, clickhouse::Row, Deserialize)]
pub struct ErrorRow {
    pub bucket: u32,
    pub error_code: String,
    pub count: u64,
}

/// The range and tenant filter every query starts with. DateTime has whole seconds: a row at
/// second `s` lies in `[start, end)` exactly when `ceil(start) <= s < ceil(end)`.
const RANGE: &str = "org_id = ? AND requested_at >= toDateTime(?) AND requested_at < toDateTime(?)";

fn ceil_secs(t: chrono::DateTime<chrono::Utc>) -> u32 {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

impl TraceStore {
    pub fn new(config: &ClickHouseConfig) -> Self {
        let seconds = config.query_timeout.as_secs_f64().ceil().max(1.0) as u64;
        let client = Client::default()
            .with_url(&config.url)
            .with_database(&config.database)
            .with_user(&config.user)
            .with_password(config.password.expose())
            .with_validation(false)
            .with_setting("max_execution_time", seconds.to_string())
            .with_setting("wait_end_of_query", "1");
        Self {
            client,
            timeout: config.query_timeout,
        }
    }

    /// Runs one query under the deadline; any failure is 503, its text only logged.
    async fn fetch<T>(&self, query: clickhouse::query::Query) -> Result<Vec<T>, ApiError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let span = crate::observability::traces::client_span("clickhouse.query");
        let rows = tracing::Instrument::instrument(query.fetch_all::<T>(), span);
        match tokio::time::timeout(self.timeout, rows).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                tracing::warn!(problem = %describe(&e), "analytics query failed");
                Err(ApiError::AnalyticsUnavailable)
            }
            Err(_) => {
                tracing::warn!("analytics query ran past its deadline");
                Err(ApiError::AnalyticsUnavailable)
            }
        }
    }

    /// `sql` with the tenant and range bound (its `RANGE`), then the agent when the query names
    /// one (its `agent_clause`).
    fn filtered(&self, sql: &str, org_id: Uuid, q: &Query) -> clickhouse::query::Query {
        let query = self
            .client
            .query(sql)
            .bind(org_id.to_string())
            .bind(ceil_secs(q.start))
            .bind(ceil_secs(q.end));
        match q.agent_id {
            Some(agent) if sql.contains(AGENT_CLAUSE) => query.bind(agent.to_string()),
            _ => query,
        }
    }

    pub async fn usage(&self, org_id: Uuid, q: &Query) -> Result<Vec<UsageRow>, ApiError> {
        let sql = format!(
            "SELECT toUInt32({}) AS bucket, count() AS requests, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens
             FROM llm_traces WHERE {RANGE}{}
             GROUP BY bucket ORDER BY bucket",
            q.granularity.bucket_sql(),
            agent_clause(q)
        );
        self.fetch(self.filtered(&sql, org_id, q)).await
    }

    pub async fn latency(&self, org_id: Uuid, q: &Query) -> Result<Vec<LatencyRow>, ApiError> {
        // The level is one of three constants (validated), not client text.
        let level = match q.percentile {
            50 => "0.5",
            99 => "0.99",
            _ => "0.95",
        };
        let sql = format!(
            "SELECT toUInt32({}) AS bucket, count() AS requests,
                    toFloat64(quantile({level})(proxy_overhead_ms)) AS proxy_overhead_ms,
                    toFloat64(quantile({level})(ttfb_ms)) AS ttfb_ms
             FROM llm_traces WHERE {RANGE}{}
             GROUP BY bucket ORDER BY bucket",
            q.granularity.bucket_sql(),
            agent_clause(q)
        );
        self.fetch(self.filtered(&sql, org_id, q)).await
    }

    pub async fn models(&self, org_id: Uuid, q: &Query) -> Result<Vec<ModelUsage>, ApiError> {
        let sql = format!(
            "SELECT model, provider, count() AS requests, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens
             FROM llm_traces WHERE {RANGE}{}
             GROUP BY model, provider ORDER BY total_tokens DESC, model, provider",
            agent_clause(q)
        );
        self.fetch(self.filtered(&sql, org_id, q)).await
    }

    pub async fn errors(&self, org_id: Uuid, q: &Query) -> Result<Vec<ErrorRow>, ApiError> {
        let sql = format!(
            "SELECT toUInt32({}) AS bucket, error_code, count() AS count
             FROM llm_traces WHERE {RANGE} AND error_code != ''{}{}
             GROUP BY bucket, error_code ORDER BY bucket, count DESC, error_code",
            q.granularity.bucket_sql(),
            agent_clause(q),
            if q.error_code.is_some() {
                " AND error_code = ?"
            } else {
                ""
            }
        );
        let mut query = self.filtered(&sql, org_id, q);
        if let Some(code) = &q.error_code {
            query = query.bind(code.as_str());
        }
        self.fetch(query).await
    }

    /// Removes every trace of `org_id` (the GDPR deletion): a mutation, applied by ClickHouse in
    /// the background; safe to repeat.
    pub async fn delete_org(&self, org_id: Uuid) -> Result<(), String> {
        let delete = self
            .client
            .query("ALTER TABLE llm_traces DELETE WHERE org_id = ?")
            .bind(org_id.to_string())
            .execute();
        tokio::time::timeout(Duration::from_secs(30), delete)
            .await
            .map_err(|_| "no answer".to_owned())?
            .map_err(|e| describe(&e))
    }

    /// The trace ids (`request_id`) of the sessions' traces.
    pub async fn request_ids_of_sessions(
        &self,
        org_id: Uuid,
        sessions: &[Uuid],
    ) -> Result<Vec<String>, String> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let query = self
            .client
            .query("SELECT request_id FROM llm_traces WHERE org_id = ? AND has(?, session_id) ORDER BY request_id")
            .bind(org_id.to_string())
            .bind(session_texts(sessions))
            .fetch_all::<String>();
        self.bounded(query).await
    }

    /// How many of the sessions' traces are left.
    pub async fn count_sessions(&self, org_id: Uuid, sessions: &[Uuid]) -> Result<u64, String> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let query = self
            .client
            .query("SELECT count() FROM llm_traces WHERE org_id = ? AND has(?, session_id)")
            .bind(org_id.to_string())
            .bind(session_texts(sessions))
            .fetch_one::<u64>();
        self.bounded(query).await
    }

    /// How many traces the organization has.
    pub async fn count_org(&self, org_id: Uuid) -> Result<u64, String> {
        let query = self
            .client
            .query("SELECT count() FROM llm_traces WHERE org_id = ?")
            .bind(org_id.to_string())
            .fetch_one::<u64>();
        self.bounded(query).await
    }

    /// Removes the sessions' traces (an end user's erasure): a mutation, applied by ClickHouse in
    /// the background (the caller counts again until none is left); safe to repeat.
    pub async fn delete_sessions(&self, org_id: Uuid, sessions: &[Uuid]) -> Result<(), String> {
        if sessions.is_empty() {
            return Ok(());
        }
        let delete = self
            .client
            .query("ALTER TABLE llm_traces DELETE WHERE org_id = ? AND has(?, session_id)")
            .bind(org_id.to_string())
            .bind(session_texts(sessions))
            .execute();
        self.bounded(delete).await
    }

    /// The traces of the organization (every one, or only the sessions') as JSON lines, chunk by
    /// chunk, for an access archive.
    pub fn export_json(
        &self,
        org_id: Uuid,
        sessions: Option<&[Uuid]>,
    ) -> Result<clickhouse::query::BytesCursor, String> {
        let query = match sessions {
            Some(sessions) => self
                .client
                .query("SELECT * FROM llm_traces WHERE org_id = ? AND has(?, session_id) ORDER BY requested_at, request_id")
                .bind(org_id.to_string())
                .bind(session_texts(sessions)),
            None => self
                .client
                .query("SELECT * FROM llm_traces WHERE org_id = ? ORDER BY requested_at, request_id")
                .bind(org_id.to_string()),
        };
        query.fetch_bytes("JSONEachRow").map_err(|e| describe(&e))
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, String> {
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| "no answer".to_owned())?
            .map_err(|e| describe(&e))
    }

    async fn ping(&self) -> Result<(), String> {
        let one = self.client.query("SELECT toUInt8(1)").fetch_one::<u8>();
        match one.await {
            Ok(1) => Ok(()),
            Ok(_) => Err("unexpected answer".into()),
            Err(e) => Err(describe(&e)),
        }
    }
}

fn session_texts(sessions: &[Uuid]) -> Vec<String> {
    sessions.iter().map(Uuid::to_string).collect()
}

const AGENT_CLAUSE: &str = " AND agent_id = ?";

fn agent_clause(q: &Query) -> &'static str {
    if q.agent_id.is_some() {
        AGENT_CLAUSE
    } else {
        ""
    }
}

/// The error's kind: the server's text can quote the query.
fn describe(e: &clickhouse::error::Error) -> String {
    use clickhouse::error::Error;
    match e {
        Error::Network(_) => "unreachable".into(),
        Error::BadResponse(_) => "the server refused the query".into(),
        Error::TimedOut => "timed out".into(),
        _ => "failed".into(),
    }
}

/// `/ready`'s `clickhouse` check, not critical: without it only analytics fail.
#[derive(Debug)]
pub struct ClickHouseReady(pub Option<TraceStore>);

impl ReadinessCheck for ClickHouseReady {
    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let Some(store) = &self.0 else {
                return Err("not configured (IBEX_API_CLICKHOUSE_URL is empty)".into());
            };
            tokio::time::timeout(deadline, store.ping())
                .await
                .unwrap_or_else(|_| Err("no answer".into()))
                .map(|()| "reachable".to_owned())
        })
    }
}

impl Granularity {
    /// Bucket start of a row, as the query returned it.
    pub fn at(secs: u32) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
    }
}
